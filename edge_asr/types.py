"""What a transcription returns (faster-whisper's shape)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field


@dataclass
class Word:
    start: float
    end: float
    word: str
    probability: float


@dataclass
class Segment:
    id: int
    seek: int  # frame offset (10 ms) of the window this segment was decoded in
    start: float
    end: float
    text: str
    tokens: list[int]
    temperature: float
    avg_logprob: float
    compression_ratio: float
    no_speech_prob: float
    words: list[Word] | None = None
    # Filled by the escalation layer; "local" unless a cloud model produced the text.
    source: str = "local"
    extra: dict = field(default_factory=dict)
    # The window's encoder output (per-layer cross K/V), kept only when asked (`keep_encoder_output`), so
    # texts can be scored against the audio afterwards (`Transcriber.score_texts`) without encoding again.
    encoder_output: list | None = field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(dataclasses.replace(self, encoder_output=None))  # no copy of the arrays
        del d["encoder_output"]
        return d


@dataclass
class TranscriptionInfo:
    language: str
    duration: float  # seconds of audio (known up front for files, running total for streams)
    model: str
    options: dict = field(default_factory=dict)
