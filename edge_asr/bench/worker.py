"""One system, one process: `python -m edge_asr.bench.worker --task TASK.json --spawned-at T`.

Running each system in its own process keeps peak memory and cold start clean of other systems.
Stdout carries JSON lines only (`progress`, then `result` or `error`); anything a library prints is
sent to stderr so it cannot corrupt them.

Timing: cold start is process start (the parent's clock just before it spawned us) to the first
transcript, model load included. Latency is the time from a complete in-memory utterance to its final
text (audio is loaded before timing). RTF is processing time over duration of the long concatenated audio.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import traceback

import numpy as np


def peak_rss_bytes() -> int:
    # VmHWM, not getrusage: Linux charges a child's ru_maxrss with the parent's peak at exec
    # (subprocess uses vfork), which would inflate a small worker to the size of its parent.
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    import resource

    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return maxrss if sys.platform == "darwin" else maxrss * 1024


class _Channel:
    def __init__(self) -> None:
        # Keep the real stdout for JSON; point fd 1 at stderr for everything else (C libraries too).
        self.out = os.fdopen(os.dup(1), "w", buffering=1)
        sys.stdout.flush()
        os.dup2(2, 1)

    def send(self, event: str, **fields) -> None:
        self.out.write(json.dumps({"event": event, **fields}) + "\n")


def _timed(system, audio: np.ndarray) -> tuple[str, float, float]:
    """(text, wall seconds, CPU seconds of this process). CPU time stays honest on a busy shared
    machine where wall time also counts waiting for a core."""
    start, cpu_start = time.perf_counter(), time.process_time()
    text = system.transcribe(audio)
    return text, time.perf_counter() - start, time.process_time() - cpu_start


def _long_audio(task: dict, audio: dict[str, np.ndarray]) -> tuple[np.ndarray | None, list[str]]:
    """Utterances from the pool, in order and cycling, with short gaps, until at least long_min_s."""
    from edge_asr.audio import load_audio

    gap = np.zeros(int(task["long_gap_s"] * 16000), np.float32)
    parts: list[np.ndarray] = []
    ids: list[str] = []
    total = 0.0
    pool = task["long_pool"]
    while pool and total < task["long_min_s"]:
        added = False
        for clip in pool:
            if clip["id"] not in audio:
                try:
                    audio[clip["id"]] = load_audio(clip["path"])
                except Exception:
                    continue
            parts += [audio[clip["id"]], gap]
            ids.append(clip["id"])
            total += (len(audio[clip["id"]]) + len(gap)) / 16000
            added = True
            if total >= task["long_min_s"]:
                break
        if not added:
            break
    return (np.concatenate(parts), ids) if parts else (None, ids)


def run_task(task: dict, spawned_at: float, channel: _Channel) -> dict:
    from edge_asr.audio import load_audio
    from edge_asr.bench.systems import SystemSpec, load_system

    spec = SystemSpec(**task["system"])
    system = load_system(spec, task["threads"], task["beam_size"], task["openai_key_env"],
                         task["openai_model"])
    result: dict = {"threads": system.threads, "size_bytes": system.size_bytes, "versions": system.versions,
                    "model_dir": system.model_dir}

    warmup_text, _, _ = _timed(system, load_audio(task["warmup"]))
    result["cold_start_s"] = time.time() - spawned_at
    result["warmup_text"] = warmup_text
    channel.send("progress")

    audio: dict[str, np.ndarray] = {}
    errors: dict[str, str] = {}
    for clip in task["speech"] + task["nonspeech"]:
        try:
            audio[clip["id"]] = load_audio(clip["path"])
        except Exception as e:  # one unreadable file is a problem for that clip, not for the run
            errors[clip["id"]] = f"{type(e).__name__}: {e}"
    result["load_errors"] = errors

    transcripts: dict[str, dict] = {}
    for clip in task["speech"] + task["nonspeech"]:
        if clip["id"] in audio:
            text, seconds, cpu_seconds = _timed(system, audio[clip["id"]])
            transcripts[clip["id"]] = {"text": text, "seconds": seconds, "cpu_seconds": cpu_seconds,
                                       "audio_s": len(audio[clip["id"]]) / 16000}
        channel.send("progress")
    result["transcripts"] = transcripts

    long_audio, long_ids = _long_audio(task, audio)
    if long_audio is not None:
        text, seconds, cpu_seconds = _timed(system, long_audio)
        result["long"] = {"audio_s": len(long_audio) / 16000, "seconds": seconds, "cpu_seconds": cpu_seconds,
                          "text": text, "ids": long_ids}
    channel.send("progress")
    result["peak_rss_bytes"] = peak_rss_bytes()
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m edge_asr.bench.worker")
    parser.add_argument("--task", required=True, help="task JSON written by the bench runner")
    parser.add_argument("--spawned-at", type=float, required=True, help="time.time() just before spawn")
    args = parser.parse_args(argv)
    channel = _Channel()
    with open(args.task, encoding="utf-8") as f:
        task = json.load(f)
    try:
        channel.send("result", **run_task(task, args.spawned_at, channel))
    except ImportError as e:
        channel.send("error", message=f"not installed or cannot import: {e}")
        return 1
    except Exception as e:
        traceback.print_exc()
        channel.send("error", message=f"{type(e).__name__}: {e}".splitlines()[0])
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
