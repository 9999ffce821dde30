"""The second stage of wake-word detection, and the local transcription it (and command capture) use.

A verifier is anything with `verify(audio) -> bool`: the audio is the pre-roll that holds the candidate
wake word. `TranscriptVerifier` asks the local transcriber whether it hears the wake phrase; a cloud check
(escalation) can plug in with the same method.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from wakeword.grammar import find_phrase


@dataclass
class Heard:
    text: str
    confidence: float  # exp(mean segment avg_logprob): the transcriber's own certainty, 0..1


Transcribe = Callable[[np.ndarray], Heard]


def local_transcriber(transcriber, language: str | None = "en") -> Transcribe:
    """Adapt an edge_asr Transcriber to `audio -> Heard`, tuned for short commands (greedy, no fallback)."""

    def transcribe(audio: np.ndarray) -> Heard:
        segments, _ = transcriber.transcribe(audio, beam_size=1, word_timestamps=False, language=language,
                                             temperature=(0.0,), condition_on_previous_text=False)
        segments = list(segments)
        text = " ".join(s.text.strip() for s in segments).strip()
        if not segments:
            return Heard("", 0.0)
        mean_logprob = sum(s.avg_logprob for s in segments) / len(segments)
        return Heard(text, round(math.exp(min(0.0, mean_logprob)), 3))

    return transcribe


class Verifier(Protocol):
    def verify(self, audio: np.ndarray) -> bool: ...


class TranscriptVerifier:
    """Accept a candidate when the transcript of its pre-roll contains one of the wake phrases."""

    def __init__(self, transcribe: Transcribe, phrases: list[str], min_similarity: float = 0.7) -> None:
        self.transcribe = transcribe
        self.phrases = phrases
        self.min_similarity = min_similarity
        self.last_heard = ""

    def verify(self, audio: np.ndarray) -> bool:
        self.last_heard = self.transcribe(audio).text
        return any(find_phrase(self.last_heard, p, self.min_similarity) for p in self.phrases)
