"""Run every system in its own worker process, repeat the timings, and gather one results dict.

Order: repeat 0 runs each system over everything (speech, non-speech, long audio); repeats 1..N-1 time
only the short utterances and the long audio. Systems are interleaved within each repeat, so a slow
spell on a shared machine hits every system alike, and each ratio against the baseline is taken
between runs of the same repeat before the median is taken.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from tqdm import tqdm

import edge_asr
from edge_asr.bench import scoring
from edge_asr.bench.data import Clip, Dataset
from edge_asr.bench.machine import machine_info
from edge_asr.bench.systems import SystemSpec

# Timings whose per-repeat ratio against the baseline is reported (lower is better for all).
TIMED = ("rtf", "cpu_rtf", "latency_p50_ms", "latency_p95_ms", "cold_start_s")


@dataclass
class BenchOptions:
    threads: int = 2
    repeat: int = 1
    beam_size: int = 1
    short_max_s: float = 10.0  # utterances up to this long measure latency
    latency_clips: int = 20  # at most this many of them (spread over the set), so repeats stay cheap
    long_min_s: float = 60.0  # the long audio for RTF is at least this long
    long_gap_s: float = 0.5  # silence between concatenated utterances
    baseline: str | None = None  # default: the first system
    openai_key_env: str = "OPENAI_API_KEY"
    openai_model: str = "whisper-1"
    progress: bool = True


def _clip_dict(clip: Clip) -> dict:
    return {"id": clip.id, "path": str(clip.path)}


def run_worker(spec: SystemSpec, task: dict, workdir: Path, bar: tqdm) -> tuple[dict | None, str | None]:
    """Spawn one worker; return (result, None) or (None, one-line reason)."""
    stem = f"{spec.name.replace('/', '_').replace(':', '_')}-r{task['repeat']}"
    task_path, log_path = workdir / f"{stem}.json", workdir / f"{stem}.log"
    task_path.write_text(json.dumps(task), encoding="utf-8")
    threads = str(task["threads"])
    package_root = str(Path(edge_asr.__file__).resolve().parents[1])
    env = dict(os.environ, OMP_NUM_THREADS=threads, OPENBLAS_NUM_THREADS=threads, MKL_NUM_THREADS=threads,
               PYTHONPATH=os.pathsep.join(p for p in (os.environ.get("PYTHONPATH"), package_root) if p))
    result, error = None, None
    with open(log_path, "w", encoding="utf-8") as log:
        spawned_at = time.time()
        proc = subprocess.Popen(
            [sys.executable, "-m", "edge_asr.bench.worker", "--task", str(task_path), "--spawned-at",
             repr(spawned_at)], stdout=subprocess.PIPE, stderr=log, text=True, env=env)
        assert proc.stdout is not None
        try:
            for line in proc.stdout:
                try:
                    message = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if message.get("event") == "progress":
                    bar.update(1)
                elif message.get("event") == "result":
                    result = message
                elif message.get("event") == "error":
                    error = message.get("message", "failed")
        finally:  # Ctrl-C or an error here must not leave a worker running
            if proc.poll() is None and result is None and error is None:
                proc.kill()
        code = proc.wait()
    if result is None and error is None:
        log_lines = log_path.read_text(encoding="utf-8", errors="replace").splitlines()
        tail = [ln for ln in log_lines if ln.strip()]
        error = f"worker exited with code {code}" + (f": {tail[-1]}" if tail else "")
    return result, error


def prepare_models(specs: list[SystemSpec]) -> tuple[list[SystemSpec], dict[str, str]]:
    """Resolve `default` and built-in names to model directories, building them now if needed, so a
    first-use build is not timed as the worker's cold start."""
    from edge_asr.errors import EdgeAsrError
    from edge_asr.models import resolve_model

    prepared, failures = [], {}
    for spec in specs:
        if spec.kind == "edge-asr":
            try:
                spec = SystemSpec(spec.name, spec.kind, str(resolve_model(spec.target)))
            except EdgeAsrError as e:
                failures[spec.name] = str(e)
        prepared.append(spec)
    return prepared, failures


def _task(spec: SystemSpec, repeat: int, speech: list[Clip], nonspeech: list[Clip], warmup: Clip,
          long_pool: list[Clip], options: BenchOptions) -> dict:
    return {
        "system": spec.to_dict(), "repeat": repeat, "threads": options.threads,
        "beam_size": options.beam_size,
        "openai_key_env": options.openai_key_env, "openai_model": options.openai_model,
        "warmup": str(warmup.path), "speech": [_clip_dict(c) for c in speech],
        "nonspeech": [_clip_dict(c) for c in nonspeech], "long_pool": [_clip_dict(c) for c in long_pool],
        "long_min_s": options.long_min_s, "long_gap_s": options.long_gap_s,
    }


def _percentile(values: list[float], q: float) -> float | None:
    return float(np.percentile(values, q)) if values else None


def _median(values: list) -> float | None:
    present = [v for v in values if v is not None]
    return float(statistics.median(present)) if present else None


def _repeat_timings(run: dict | None, short_ids: list[str]) -> dict:
    """This repeat's timing metrics (None where the run failed)."""
    if run is None:
        return dict.fromkeys(TIMED)
    latencies = [run["transcripts"][i]["seconds"] * 1000 for i in short_ids if i in run["transcripts"]]
    long = run.get("long")
    return {
        "rtf": long["seconds"] / long["audio_s"] if long else None,
        "cpu_rtf": long["cpu_seconds"] / long["audio_s"] if long else None,
        "latency_p50_ms": _percentile(latencies, 50),
        "latency_p95_ms": _percentile(latencies, 95),
        "cold_start_s": run["cold_start_s"],
    }


def summarize(spec: SystemSpec, runs: list[dict | None], dataset: Dataset, short_ids: list[str]) -> dict:
    """Scores from repeat 0's transcripts; timings as medians over repeats."""
    first = runs[0]
    assert first is not None
    transcripts = first["transcripts"]
    utterances, pairs = [], []
    for clip in dataset.speech:
        row = {"id": clip.id, "reference": clip.reference}
        if clip.id in transcripts:
            t = transcripts[clip.id]
            row |= {"hypothesis": t["text"], "audio_s": t["audio_s"], "seconds": t["seconds"]}
            row |= scoring.score_utterance(clip.reference, t["text"])
            pairs.append((clip.reference, t["text"]))
        else:
            row["error"] = first["load_errors"].get(clip.id, "not transcribed")
        utterances.append(row)
    nonspeech = [{"id": c.id, "hypothesis": transcripts[c.id]["text"],
                  "words": len(scoring.normalize(transcripts[c.id]["text"]).split())}
                 for c in dataset.nonspeech if c.id in transcripts]
    per_repeat = [_repeat_timings(run, short_ids) for run in runs]
    # Per-utterance median over repeats, then percentiles across utterances.
    latency_by_utt = [
        _median([run["transcripts"][i]["seconds"] * 1000 if run and i in run["transcripts"] else None
                 for run in runs]) for i in short_ids]
    latency_by_utt = [v for v in latency_by_utt if v is not None]
    corpus = scoring.corpus_scores(pairs)
    ok_runs = [run for run in runs if run]
    metrics = {
        "wer": corpus["wer"],
        "cer": corpus["cer"],
        "ref_words": corpus["ref_words"],
        "substitutions": corpus.get("substitutions"),
        "deletions": corpus.get("deletions"),
        "insertions": corpus.get("insertions"),
        "hallucination_rate": scoring.hallucination([n["hypothesis"] for n in nonspeech])["rate"],
        "hallucinated_words": sum(n["words"] for n in nonspeech),
        "rtf": _median([r["rtf"] for r in per_repeat]),
        "cpu_rtf": _median([r["cpu_rtf"] for r in per_repeat]),
        "latency_p50_ms": _percentile(latency_by_utt, 50),
        "latency_p95_ms": _percentile(latency_by_utt, 95),
        "cold_start_s": _median([r["cold_start_s"] for r in per_repeat]),
        "peak_rss_mb": max(run["peak_rss_bytes"] for run in ok_runs) / 2**20,
        "size_mb": first["size_bytes"] / 2**20 if first["size_bytes"] is not None else None,
    }
    return {
        **spec.to_dict(), "status": "ok", "error": None, "threads": first["threads"],
        "model_dir": first["model_dir"],
        "versions": first["versions"], "metrics": metrics, "per_repeat": per_repeat,
        "long_audio": {k: first["long"][k] for k in ("audio_s", "ids")} if first.get("long") else None,
        "utterances": utterances, "nonspeech": nonspeech,
        "failed_repeats": [i for i, run in enumerate(runs) if run is None],
    }


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def add_ratios(systems: list[dict], baseline: str) -> None:
    """system / baseline for every metric (lower is better); timings pair by pair within each repeat."""
    base = next((s for s in systems if s["name"] == baseline and s["status"] == "ok"), None)
    for system in systems:
        if base is None or system["status"] != "ok":
            system["vs_baseline"] = None
            continue
        ratios = {k: _ratio(system["metrics"][k], base["metrics"][k])
                  for k in ("wer", "cer", "peak_rss_mb", "size_mb")}
        for key in TIMED:
            pairs = zip(system["per_repeat"], base["per_repeat"], strict=False)
            ratios[key] = _median([_ratio(s[key], b[key]) for s, b in pairs])
        system["vs_baseline"] = ratios


def _measure(specs: list[SystemSpec], failures: dict[str, str], dataset: Dataset, options: BenchOptions,
             problems: list[str]) -> tuple[dict[str, list[dict | None]], list[str]]:
    """All worker runs, repeat by repeat; a system that fails in repeat 0 is dropped (into `failures`),
    a later failed repeat is left out of its medians (and noted in `problems`)."""
    speech, nonspeech = dataset.speech, dataset.nonspeech
    warmup = min(speech[:10], key=lambda c: c.path.stat().st_size)  # a short clip: cold start, not RTF
    runs: dict[str, list[dict | None]] = {s.name: [] for s in specs}
    short_ids: list[str] = []
    per_full_run = len(speech) + len(nonspeech) + 2  # warm-up + clips + long audio
    alive = [s for s in specs if s.name not in failures]
    bar = tqdm(total=per_full_run * len(alive), unit="clip", disable=not options.progress, file=sys.stderr,
               desc="bench")
    with tempfile.TemporaryDirectory(prefix="edge-asr-bench-") as tmp:
        for repeat in range(options.repeat):
            alive = [s for s in specs if s.name not in failures]
            if repeat == 1:  # repeat 0 told us the durations; later repeats time only short utterances
                short_ids = _short_ids(runs, speech, options)
                bar.total = bar.n + len(alive) * (len(short_ids) + 2) * (options.repeat - 1)
                bar.refresh()
            for spec in alive:
                bar.set_postfix_str(f"{spec.name} r{repeat + 1}/{options.repeat}")
                if repeat == 0:
                    task = _task(spec, repeat, speech, nonspeech, warmup, speech, options)
                else:
                    timed = [c for c in speech if c.id in short_ids]
                    task = _task(spec, repeat, timed, [], warmup, speech, options)
                result, error = run_worker(spec, task, Path(tmp), bar)
                if error is not None:
                    tqdm.write(f"edge-asr bench: {spec.name}: {error}", file=sys.stderr)
                    if repeat == 0:
                        failures[spec.name] = error
                        bar.total -= per_full_run
                        bar.refresh()
                    else:
                        problems.append(f"system {spec.name}: repeat {repeat + 1} failed ({error}); "
                                        "left out of its medians")
                runs[spec.name].append(result)
        bar.close()
    return runs, short_ids or _short_ids(runs, speech, options)


def run_bench(dataset: Dataset, specs: list[SystemSpec], options: BenchOptions,
              problems: list[str] | None = None, command: str = "") -> dict:
    """Benchmark `specs` on `dataset`; returns the results dict that the report is written from."""
    problems = list(dataset.problems) + list(problems or [])
    load_before = _load_average()
    speech, nonspeech = dataset.speech, dataset.nonspeech
    specs, failures = prepare_models(specs)
    for name, why in failures.items():
        print(f"edge-asr bench: {name}: {why}", file=sys.stderr)
    runs, short_ids = _measure(specs, failures, dataset, options, problems)
    systems = [
        {**spec.to_dict(), "status": "failed", "error": failures[spec.name]} if spec.name in failures
        else summarize(spec, runs[spec.name], dataset, short_ids)
        for spec in specs
    ]
    ok = [s["name"] for s in systems if s["status"] == "ok"]
    baseline = options.baseline or (ok[0] if ok else None)
    add_ratios(systems, baseline)
    durations = [_audio_seconds(runs, c.id) for c in speech]
    long_audio = next((s["long_audio"] for s in systems if s.get("long_audio")), None)
    return {
        "meta": {
            "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "command": command,
            "machine": {**machine_info(), "load_before": load_before, "load_after": _load_average()},
            "options": asdict(options),
        },
        "data": {
            "name": dataset.name,
            "speech_clips": len(speech),
            "speech_seconds": sum(d for d in durations if d != float("inf")),
            "nonspeech_clips": len(nonspeech),
            "nonspeech_ids": [c.id for c in nonspeech],
            "short_ids": short_ids,
            "long_audio": long_audio,
        },
        "problems": problems + [f"system {name}: {why}" for name, why in failures.items()],
        "baseline": baseline,
        "systems": systems,
    }


def _load_average() -> float | None:
    """1-minute load average: on a shared machine it says how far to trust wall-clock timings."""
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        return None


def _audio_seconds(runs: dict[str, list[dict | None]], clip_id: str) -> float:
    """A clip's duration as the first successful worker measured it (inf if none decoded it)."""
    for system_runs in runs.values():
        if system_runs and system_runs[0] and clip_id in system_runs[0]["transcripts"]:
            return system_runs[0]["transcripts"][clip_id]["audio_s"]
    return float("inf")


def _short_ids(runs: dict[str, list[dict | None]], speech: list[Clip], options: BenchOptions) -> list[str]:
    """Utterances that measure latency: up to latency_clips of those no longer than short_max_s
    (of all utterances if none is that short), evenly spread so every part of the data set is in."""
    ids = [c.id for c in speech if _audio_seconds(runs, c.id) <= options.short_max_s]
    ids = ids or [c.id for c in speech]
    n = options.latency_clips
    if len(ids) <= n:
        return ids
    return [ids[round(i * (len(ids) - 1) / (n - 1))] for i in range(n)] if n > 1 else ids[:1]
