"""The model directory: the contract between the workstation and the device.

`encoder.onnx`, `decoder.onnx`, `tokenizer.json` and `model.yaml` (this card); with an int8 token
embedding also `token_embedding.npy`, read by both the decoder graph (as ONNX external data) and the
device's token lookup. This module is the one place that knows the layout.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from edge_asr.config import from_dict
from edge_asr.errors import ConfigError, ModelError

ENCODER = "encoder.onnx"
DECODER = "decoder.onnx"
TOKENIZER = "tokenizer.json"
CARD = "model.yaml"
TOKEN_ROWS = "token_embedding.npy"  # (vocab, state) int8 embedding rows, where the int8 embedding is shared
REQUIRED = (ENCODER, DECODER, TOKENIZER, CARD)


@dataclass
class Dims:
    n_mels: int
    n_audio_ctx: int
    n_audio_state: int
    n_audio_head: int
    n_audio_layer: int
    n_vocab: int
    n_text_ctx: int
    n_text_state: int
    n_text_head: int
    n_text_layer: int


@dataclass
class SpecialTokens:
    eot: int
    sot: int
    sot_prev: int
    no_timestamps: int
    timestamp_begin: int
    no_speech: int
    transcribe: int
    translate: int
    languages: dict[str, int] = field(default_factory=dict)  # empty for English-only models


@dataclass
class FastPath:
    """The short-utterance fast path: audio shorter than a window is encoded over only the seconds present
    (rounded up to whole seconds, plus `pad_s` of silence) instead of a padded 30 s window."""

    safe: bool = False  # measured not to cost accuracy on short utterances: then it is on by default
    pad_s: float = 1.0  # silence appended after the audio, as the model was measured (or distilled) with
    measured: dict[str, Any] = field(default_factory=dict)  # the evidence: WER full vs fast, set, date


# Revision of the exported ONNX layout. Any revision still loads; a built-in model cached under an older one
# is rebuilt where torch is at hand. 2: per-layer cross K/V decoder inputs; 3: per-layer encoder outputs and
# encoder attention head by head; 4: an int8 token embedding's rows outside the decoder graph (TOKEN_ROWS) and
# encoder attention a third of the queries at a time.
EXPORT_FORMAT = 4


@dataclass
class ModelCard:
    name: str
    dims: Dims
    tokens: SpecialTokens
    suppress_ids: list[int]
    suppress_ids_begin: list[int]
    alignment_heads: list[list[int]]  # [decoder layer, head] pairs whose cross-attention aligns words
    source: dict[str, Any] = field(default_factory=dict)  # weights name/format/sha256
    recipe: dict[str, Any] = field(default_factory=dict)  # how it was made (export, quantize, prune...)
    files: dict[str, int] = field(default_factory=dict)  # file -> bytes
    metrics: dict[str, Any] = field(default_factory=dict)  # measured WER / speed, by whoever measured
    fast_path: FastPath = field(default_factory=FastPath)
    created: str = ""
    edge_asr_version: str = ""
    export_format: int = 1  # the ONNX layout's revision (EXPORT_FORMAT when exported); 1: before it was recorded

    @property
    def multilingual(self) -> bool:
        return bool(self.tokens.languages)

    @classmethod
    def load(cls, model_dir: str | Path) -> ModelCard:
        model_dir = Path(model_dir)
        check_model_dir(model_dir)
        path = model_dir / CARD
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
            card = from_dict(cls, data, str(path))
        except (yaml.YAMLError, ConfigError) as e:
            raise ModelError(f"{path}: bad model card ({e})") from None
        missing = [f for f in card.files if not (model_dir / f).exists()]
        if missing:
            raise ModelError(f"{model_dir}: incomplete model directory (missing {', '.join(missing)}, "
                             f"listed in its {CARD})")
        return card

    def save(self, model_dir: str | Path) -> None:
        model_dir = Path(model_dir)
        self.files = {p.name: p.stat().st_size for p in sorted(model_dir.iterdir()) if p.name != CARD}
        text = yaml.safe_dump(dataclasses.asdict(self), sort_keys=False, default_flow_style=None, width=110)
        (model_dir / CARD).write_text(text, encoding="utf-8")


def check_model_dir(model_dir: Path) -> None:
    if not model_dir.is_dir():
        raise ModelError(f"{model_dir}: no such model directory")
    missing = [f for f in REQUIRED if not (model_dir / f).exists()]
    if missing:
        raise ModelError(f"{model_dir}: not a model directory (missing {', '.join(missing)})")


def size_on_disk(model_dir: str | Path) -> int:
    return sum(p.stat().st_size for p in Path(model_dir).iterdir() if p.is_file())
