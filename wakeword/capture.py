"""Command capture: after a wake word, record until the speaker stops (Silero VAD endpointing)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from edge_asr.vad import Endpointer, SileroVad
from wakeword.config import CaptureConfig

WAKE_TAIL_S = 0.5
Outcome = Literal["silence", "complete", "max_length", "no_speech", "end_of_stream"]


@dataclass
class CapturedCommand:
    audio: np.ndarray  # pre-roll (holds the wake word) + everything recorded after the detection
    outcome: Outcome
    speech_end_t: float | None  # stream time where the last speech ended (None: no speech)
    t: float  # stream time when capture stopped
    command_start: int = 0  # where the audio recorded after the detection begins (the pre-roll's length)


class CommandRecorder:
    def __init__(self, config: CaptureConfig, vad: SileroVad | None = None) -> None:
        self.config = config
        self.endpointer = Endpointer(vad, threshold=config.vad_threshold,
                                     trailing_silence_s=config.trailing_silence_s,
                                     max_speech_s=config.max_command_s)
        self.active = False
        self._chunks: list[np.ndarray] = []
        self._start_t = self._wait_from = 0.0
        self._pre_roll = 0

    def start(self, pre_roll: np.ndarray, t: float) -> None:
        """Begin at stream time `t` (the detection). The VAD starts fresh there: the wake word itself, which
        ended just before, must not count as the start of the command."""
        self.endpointer.reset(t)
        self._chunks = [pre_roll]
        self._pre_roll = len(pre_roll)
        self._start_t = self._wait_from = t
        self.active = True

    def feed(self, frame: np.ndarray) -> CapturedCommand | None:
        self._chunks.append(frame)
        for event in self.endpointer.feed(frame):
            if event.kind == "end" and self._is_wake_word_tail(event.t):
                self._wait_from = self.endpointer.t  # the user may pause after the wake word: keep waiting
            elif event.kind == "end":
                return self._stop(event.reason, event.t)
        waited = self.endpointer.t - self._wait_from
        if not self.endpointer.in_speech and waited >= self.config.start_timeout_s:
            return self._stop("no_speech", None)
        return None

    def _is_wake_word_tail(self, speech_end_t: float) -> bool:
        # openWakeWord fires during the word's last syllable, so speech that is already under way when
        # recording starts and stops soon after is the wake word itself, not the command.
        start = self.endpointer.speech_start
        # (A fresh Silero state may need a frame or two to hear speech that is already going.)
        under_way = start is not None and start <= self._start_t + 0.2
        return under_way and speech_end_t - start < WAKE_TAIL_S

    def pause_started_at(self) -> float | None:
        """Mid-command, while the speaker is silent: where the speech stopped (it may be the end)."""
        ep = self.endpointer
        if self.active and ep.in_speech and ep.t > ep.last_speech_end:
            return round(ep.last_speech_end, 3)
        return None

    def silence_s(self) -> float:
        """How long the speaker has been silent (0 while speaking or before the command starts)."""
        pause = self.pause_started_at()
        return 0.0 if pause is None else self.endpointer.t - pause

    def stop_complete(self) -> CapturedCommand:
        """End the command at the current pause: what was said is already a whole command."""
        return self._stop("complete", self.pause_started_at())

    def audio(self) -> np.ndarray:
        """Everything recorded so far, pre-roll included."""
        return np.concatenate(self._chunks)

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
        audio = self.audio()
        self._chunks = []
        return CapturedCommand(audio, outcome, speech_end_t, round(self.endpointer.t, 3), self._pre_roll)
