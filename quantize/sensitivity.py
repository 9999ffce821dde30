"""Sensitivity pass: quantize one layer group at a time and measure what it does on calibration audio.

The measure needs no transcripts: the float model's own transcript of each clip is fed teacher-forced to the
float and to the one-group-quantized model, and we record the mean KL divergence of the next-token
distributions and how often the top token changes. Recipes can keep the worst groups float
(`sensitivity: {exclude_worst: N}`) or list them in `exclude:`.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import numpy as np

from edge_asr.engine import CrossKV, DecoderSession, encoder_outputs, make_session
from edge_asr.model_dir import ENCODER
from quantize.calibration import CalibrationSet
from quantize.quantization import EMBEDDING, quantize_dynamic_int8, quantize_int4, weight_groups


def _log_softmax(x: np.ndarray) -> np.ndarray:
    x = x - x.max(axis=-1, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=-1, keepdims=True))


class _Runner:
    """Teacher-forced decoder log-probabilities of every clip for one model directory."""

    def __init__(self, model_dir: Path, threads: int = 2):
        self.encoder = make_session(model_dir / ENCODER, threads)
        self.decoder = DecoderSession(model_dir, threads)

    def cross(self, mel: np.ndarray) -> CrossKV:
        return encoder_outputs(self.encoder, mel[None])

    def logprobs(self, tokens: list[int], cross: CrossKV) -> np.ndarray:
        empty = np.zeros((len(cross), 1, 0, cross[0].shape[-1]), np.float32)
        logits = self.decoder.run(["logits"], np.array([tokens[:-1]], np.int64), empty, cross)[0]
        return _log_softmax(logits[0])


def quantize_only(model_dir: Path, group: str, groups: list[str], mode: str = "int8", block_size: int = 32) -> None:
    """Quantize one group of an fp32 model directory in place, as recipe mode `mode` would."""
    others = [g for g in groups if g != group]
    if mode == "int8":
        quantize_dynamic_int8(model_dir, exclude=others, embedding="int8" if group == EMBEDDING else "float")
    else:
        quantize_int4(model_dir, block_size=block_size, exclude=others,
                      embedding="int4" if group == EMBEDDING else "float", embedding_block_size=block_size)


def measure(model_dir: Path, calibration: CalibrationSet, tokens: dict[Path, list[int]],
            groups: list[str] | None = None, mode: str = "int8", block_size: int = 32,
            progress: bool = True) -> dict[str, dict[str, float]]:
    """{group: {kl, top1_changed}} for every quantizable group of an fp32 model directory."""
    from tqdm import tqdm

    every = weight_groups(model_dir)
    groups = groups or every
    ref = _Runner(model_dir)
    files = list(tokens)
    mels = {f: calibration.mel(f) for f in files}
    ref_cross = {f: ref.cross(mels[f]) for f in files}
    ref_lp = {f: ref.logprobs(tokens[f], ref_cross[f]) for f in files}
    table: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="edge-asr-sensitivity-") as tmp:
        trial = Path(tmp) / "trial"
        for group in tqdm(groups, desc="sensitivity", unit="group", disable=not progress, leave=False):
            shutil.rmtree(trial, ignore_errors=True)
            shutil.copytree(model_dir, trial)
            quantize_only(trial, group, every, mode, block_size)
            run = _Runner(trial)
            kl, changed, count = 0.0, 0, 0
            for f in files:
                cross = run.cross(mels[f]) if not _decoder_only(group) else ref_cross[f]
                lp = run.logprobs(tokens[f], cross)
                p = np.exp(ref_lp[f])
                kl += float((p * (ref_lp[f] - lp)).sum())
                changed += int((lp.argmax(-1) != ref_lp[f].argmax(-1)).sum())
                count += lp.shape[0]
            table[group] = {"kl": round(kl / count, 6), "top1_changed": round(changed / count, 4)}
    return table


def _decoder_only(group: str) -> bool:
    # Cross-attention keys/values are computed in the encoder graph, so that group touches both.
    return group.startswith("decoder.") and not group.endswith("cross_attn")
