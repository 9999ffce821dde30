"""Calibration audio: a folder of unlabeled recordings the user gives (no transcripts needed).

Used to rank what to prune, as the distillation data, for static quantization ranges and for the
sensitivity pass. Its hash goes into the model card so a build can be traced to the audio it saw.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edge_asr.audio import load_audio
from edge_asr.errors import ConfigError
from edge_asr.frontend import N_SAMPLES, log_mel
from edge_asr.model_dir import TOKENIZER, ModelCard
from edge_asr.tokenizer import Tokenizer

AUDIO_SUFFIXES = {".wav", ".flac", ".ogg", ".mp3", ".opus", ".aiff", ".aif"}


@dataclass
class CalibrationSet:
    root: Path
    files: list[Path]
    _audio: dict[Path, np.ndarray] = field(default_factory=dict, repr=False)

    @classmethod
    def from_dir(cls, root: str | Path) -> CalibrationSet:
        root = Path(root)
        files = sorted(p for p in root.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES and p.is_file())
        if not files:
            raise ConfigError(f"calibration: no audio files ({', '.join(sorted(AUDIO_SUFFIXES))}) under {root}")
        return cls(root, files)

    def sha256(self) -> str:
        """Hash of the names and bytes of every file, in order."""
        h = hashlib.sha256()
        for p in self.files:
            h.update(str(p.relative_to(self.root)).encode())
            h.update(p.read_bytes())
        return h.hexdigest()

    def card(self) -> dict:
        return {"path": str(self.root), "files": len(self.files), "sha256": self.sha256()}

    def subset(self, n: int) -> list[Path]:
        """n files spread evenly over the set (all of them for n <= 0 or n >= len)."""
        if n <= 0 or n >= len(self.files):
            return list(self.files)
        idx = np.linspace(0, len(self.files) - 1, n).round().astype(int)
        return [self.files[i] for i in sorted(set(idx))]

    def audio(self, path: Path) -> np.ndarray:
        """The first 30 s window of a file, 16 kHz mono."""
        if path not in self._audio:
            self._audio[path] = load_audio(path)[:N_SAMPLES]
        return self._audio[path]

    def mel(self, path: Path, n_mels: int = 80) -> np.ndarray:
        return log_mel(self.audio(path), n_mels)


def teacher_tokens(model_dir: Path, calibration: CalibrationSet, files: list[Path], threads: int = 2,
                   progress: bool = True) -> dict[Path, list[int]]:
    """What the reference model says on each clip, as a full decoder input: sot sequence + tokens (with
    timestamps) + eot. These are the distillation and calibration targets — no transcripts needed."""
    from tqdm import tqdm

    from edge_asr.transcriber import Transcriber

    transcriber = Transcriber(model_dir, threads=threads)
    card = ModelCard.load(model_dir)
    tok = Tokenizer(model_dir / TOKENIZER, card.tokens)
    out: dict[Path, list[int]] = {}
    for path in tqdm(files, desc="teacher transcripts", unit="clip", disable=not progress, leave=False):
        segments, _ = transcriber.transcribe(calibration.audio(path), beam_size=1, word_timestamps=False,
                                             condition_on_previous_text=False, temperature=0.0)
        tokens = [t for s in segments for t in s.tokens]
        seq = tok.sot_sequence("en") + tokens[: card.dims.n_text_ctx // 2 - 4] + [card.tokens.eot]
        out[path] = seq
    return out
