"""Command capture: after a wake word, record until the speaker stops (Silero VAD endpointing)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from edge_asr.vad import Endpointer, SileroVad
from wakeword.config import CaptureConfig

Outcome = Literal["silence", "max_length", "no_speech", "end_of_stream"]


@dataclass
class CapturedCommand:
    audio: np.ndarray  # pre-roll (holds the wake word) + everything recorded after the detection
    outcome: Outcome
    speech_end_t: float | None  # stream time where the last speech ended (None: no speech)
    t: float  # stream time when capture stopped


class CommandRecorder:
    def __init__(self, config: CaptureConfig, vad: SileroVad | None = None) -> None:
        self.config = config
        self.endpointer = Endpointer(vad, threshold=config.vad_threshold,
                                     trailing_silence_s=config.trailing_silence_s,
                                     max_speech_s=config.max_command_s)
        self.active = False
        self._chunks: list[np.ndarray] = []
        self._start_t = 0.0

    def start(self, pre_roll: np.ndarray, t: float) -> None:
        """Begin at stream time `t` (the detection). The VAD starts fresh there: the wake word itself, which
        ended just before, must not count as the start of the command."""
        self.endpointer.reset(t)
        self._chunks = [pre_roll]
        self._start_t = t
        self.active = True

    def feed(self, frame: np.ndarray) -> CapturedCommand | None:
        self._chunks.append(frame)
        for event in self.endpointer.feed(frame):
            if event.kind == "end":
                return self._stop(event.reason, event.t)
        if not self.endpointer.in_speech and self.endpointer.t - self._start_t >= self.config.start_timeout_s:
            return self._stop("no_speech", None)
        return None

    def finish(self) -> CapturedCommand | None:
        """The stream ended while recording."""
        if not self.active:
            return None
        events = self.endpointer.flush()
        if events:
            return self._stop("end_of_stream", events[0].t)
        return self._stop("no_speech", None)

    def _stop(self, outcome: Outcome, speech_end_t: float | None) -> CapturedCommand:
        self.active = False
        audio = np.concatenate(self._chunks)
        self._chunks = []
        return CapturedCommand(audio, outcome, speech_end_t, round(self.endpointer.t, 3))
