"""Measure a model directory on a speech-dev style manifest: corpus WER and speed, for the model card.

Runs on ONNX Runtime through `Transcriber` (no torch), so the numbers are what the device would see.
WER uses Whisper's English normalizer and jiwer (errors over all reference words, not a mean of
per-utterance rates).
"""

from __future__ import annotations

import csv
import statistics
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from edge_asr.errors import ConfigError

# Decoding options used for every WER measurement here (and by benchmarks/bench_shrink.py for its peer).
EVAL_OPTIONS = {"beam_size": 1, "word_timestamps": False, "condition_on_previous_text": True}


@dataclass
class Utterance:
    id: str
    wav: Path
    duration: float
    reference: str


def read_manifest(path: str | Path) -> list[Utterance]:
    """manifest.tsv with columns id, wav (relative to the manifest), duration_s, reference_text."""
    path = Path(path)
    if path.is_dir():
        path = path / "manifest.tsv"
    if not path.is_file():
        raise ConfigError(f"{path}: no such manifest (need a manifest.tsv with id, wav, reference_text)")
    with path.open(encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    missing = {"id", "wav", "reference_text"} - set(rows[0] if rows else {})
    if missing:
        raise ConfigError(f"{path}: manifest lacks column '{sorted(missing)[0]}'")
    return [
        Utterance(r["id"], path.parent / r["wav"], float(r.get("duration_s") or 0), r["reference_text"])
        for r in rows
    ]


@lru_cache(maxsize=1)
def _normalizer():
    from whisper_normalizer.english import EnglishTextNormalizer

    return EnglishTextNormalizer()


def normalize(text: str) -> str:
    return " ".join(_normalizer()(text).split())


def corpus_wer(references: list[str], hypotheses: list[str]) -> float:
    import jiwer

    refs = [normalize(r) for r in references]
    hyps = [normalize(h) for h in hypotheses]
    # jiwer refuses empty references; an empty reference contributes only insertions, which we skip.
    pairs = [(r, h) for r, h in zip(refs, hyps) if r]
    return jiwer.wer([r for r, _ in pairs], [h for _, h in pairs])


def transcribe_all(model_dir: str | Path, utterances: list[Utterance], threads: int = 2,
                   progress: bool = True) -> tuple[list[str], float]:
    """Hypotheses for every utterance and the total transcription wall time (model load excluded)."""
    from tqdm import tqdm

    from edge_asr.transcriber import Transcriber

    transcriber = Transcriber(model_dir, threads=threads)
    hyps: list[str] = []
    elapsed = 0.0
    for u in tqdm(utterances, desc=f"evaluate {Path(model_dir).name}", unit="utt", disable=not progress,
                  leave=False):
        start = time.perf_counter()
        segments, _ = transcriber.transcribe(str(u.wav), **EVAL_OPTIONS)
        hyps.append(" ".join(s.text.strip() for s in segments))
        elapsed += time.perf_counter() - start
    return hyps, elapsed


def encoder_ms(model_dir: str | Path, threads: int = 2, runs: int = 5) -> float:
    """Median time of one 30 s encoder window (the part pruning makes faster)."""
    from edge_asr.engine import make_session
    from edge_asr.model_dir import ENCODER, ModelCard

    card = ModelCard.load(model_dir)
    session = make_session(Path(model_dir) / ENCODER, threads)
    mel = np.random.default_rng(0).standard_normal((1, card.dims.n_mels, 3000)).astype(np.float32) * 0.3
    session.run(None, {"mel": mel})
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        session.run(None, {"mel": mel})
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def evaluate(model_dir: str | Path, manifest: str | Path, threads: int = 2, limit: int | None = None,
             progress: bool = True) -> dict:
    """The card's `metrics` entry: WER (percent), real-time factor and encoder window time."""
    utterances = read_manifest(manifest)[:limit]
    hyps, elapsed = transcribe_all(model_dir, utterances, threads, progress)
    audio_s = sum(u.duration for u in utterances)
    return {
        "data": str(Path(manifest)),
        "utterances": len(utterances),
        "wer": round(100 * corpus_wer([u.reference for u in utterances], hyps), 2),
        "rtf": round(elapsed / audio_s, 4) if audio_s else None,
        "encoder_ms": round(encoder_ms(model_dir, threads), 1),
        "threads": threads,
    }
