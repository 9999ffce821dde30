"""Streaming voice activity detection: Silero VAD (ONNX, the copy openWakeWord 0.5.1 ships) + endpointing.

`SileroVad` turns frames into speech probabilities; `Endpointer` turns probabilities into utterance
start/end events with a trailing-silence rule and a maximum utterance length. Wake-word command capture
and dictation both segment speech with these two.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

SAMPLE_RATE = 16000
CHUNK_SAMPLES = 512  # 32 ms; Silero v4 was trained on 512, 1024 and 1536-sample windows at 16 kHz


def silero_model_path() -> Path:
    from wakeword.models import resource_model

    return resource_model("silero_vad.onnx")


class SileroVad:
    """Speech probability per frame. Frames may be any length; the model runs on fixed chunks and a
    remainder carries over to the next frame, so results do not depend on how audio was framed.

    `chunk_samples`: 512 (32 ms) resolves speech ends finely; 1536 costs about half the CPU per second of
    audio (each call has a fixed cost) for a coarser answer, enough to tell whether anyone is speaking.
    """

    def __init__(self, model_path: str | Path | None = None, threads: int = 1,
                 chunk_samples: int = CHUNK_SAMPLES) -> None:
        from edge_asr.engine import make_session

        if chunk_samples not in (512, 1024, 1536):
            raise ValueError(f"chunk_samples must be 512, 1024 or 1536, got {chunk_samples}")
        self.chunk_samples = chunk_samples
        self._session = make_session(Path(model_path or silero_model_path()), threads)
        self.reset()

    def reset(self) -> None:
        self._h = np.zeros((2, 1, 64), dtype=np.float32)
        self._c = np.zeros((2, 1, 64), dtype=np.float32)
        self._pending = np.zeros(0, dtype=np.float32)
        self._last = 0.0

    def chunk_probability(self, chunk: np.ndarray) -> float:
        inputs = {"input": chunk[None, :].astype(np.float32, copy=False),
                  "sr": np.array(SAMPLE_RATE, dtype=np.int64), "h": self._h, "c": self._c}
        out, self._h, self._c = self._session.run(None, inputs)
        return float(out[0, 0])

    def __call__(self, frame: np.ndarray) -> float:
        """The highest speech probability among the chunks this frame completed (else the last one)."""
        size = self.chunk_samples
        audio = np.concatenate((self._pending, frame)) if len(self._pending) else frame
        n_chunks = len(audio) // size
        probs = [self.chunk_probability(audio[i * size:(i + 1) * size]) for i in range(n_chunks)]
        self._pending = audio[n_chunks * size:].copy()
        if probs:
            self._last = max(probs)
        return self._last


@dataclass
class VadEvent:
    kind: Literal["start", "end"]
    t: float  # stream seconds: where speech started, or where the last speech frame ended
    reason: Literal["silence", "max_length", "end_of_stream"] | None = None


class Endpointer:
    """Feed frames, get utterance start/end events.

    Speech starts after `min_speech_s` of frames at or above `threshold`; it ends once `trailing_silence_s`
    of frames fall below `threshold - 0.15` (hysteresis, as Silero's own segmenter does), or when an utterance
    reaches `max_speech_s` (a new one may start right away if the speaker goes on).
    """

    def __init__(self, vad: SileroVad | None = None, *, threshold: float = 0.5,
                 trailing_silence_s: float = 0.6, max_speech_s: float = 15.0,
                 min_speech_s: float = 0.16) -> None:
        self.vad = vad or SileroVad()
        self.threshold = threshold
        self.negative_threshold = max(0.01, threshold - 0.15)
        self.trailing_silence_s = trailing_silence_s
        self.max_speech_s = max_speech_s
        self.min_speech_s = min_speech_s
        self.reset()

    def reset(self, t: float = 0.0) -> None:
        self.vad.reset()
        self.t = t
        self.in_speech = False
        self.speech_start: float | None = None
        self.last_speech_end: float | None = None
        self._candidate_start: float | None = None
        self.probability = 0.0

    def feed(self, frame: np.ndarray) -> list[VadEvent]:
        start_t = self.t
        self.t += len(frame) / SAMPLE_RATE
        p = self.probability = self.vad(frame)
        events: list[VadEvent] = []
        if not self.in_speech:
            if p >= self.threshold:
                if self._candidate_start is None:
                    self._candidate_start = start_t
                if self.t - self._candidate_start >= self.min_speech_s - 1e-9:
                    self.in_speech = True
                    self.speech_start, self.last_speech_end = self._candidate_start, self.t
                    events.append(VadEvent("start", round(self.speech_start, 3)))
            else:
                self._candidate_start = None
            return events
        if p >= self.negative_threshold:
            self.last_speech_end = self.t
        if self.t - self.speech_start >= self.max_speech_s - 1e-9:
            events.append(self._end("max_length"))
        elif self.t - self.last_speech_end >= self.trailing_silence_s - 1e-9:
            events.append(self._end("silence"))
        return events

    def flush(self) -> list[VadEvent]:
        """End of stream: close an open utterance."""
        return [self._end("end_of_stream")] if self.in_speech else []

    def _end(self, reason) -> VadEvent:
        event = VadEvent("end", round(self.last_speech_end, 3), reason)
        self.in_speech = False
        self._candidate_start = None
        return event


def contains_speech(audio: np.ndarray, vad: SileroVad | None = None, threshold: float = 0.5,
                    min_speech_s: float = 0.16) -> bool:
    """Does `audio` (16 kHz mono) hold at least `min_speech_s` of speech by the endpointer's own rule?
    Stops at the first speech start, so a window that opens with speech costs a few chunks only."""
    endpointer = Endpointer(vad or SileroVad(), threshold=threshold, min_speech_s=min_speech_s)
    for i in range(0, len(audio), CHUNK_SAMPLES):
        if any(e.kind == "start" for e in endpointer.feed(audio[i:i + CHUNK_SAMPLES])):
            return True
    return False
