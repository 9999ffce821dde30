"""Wake-word detection: openWakeWord heads over a shared embedding stream, with threshold, patience and
a refractory period, plus a pre-roll ring buffer so the audio around a detection is kept.

`WakeWordDetector.scores(frame)` is openWakeWord's `predict(frame) -> {name: score}`;
`WakeWordDetector.process(frame)` turns scores into `Detection`s.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edge_asr.audio import SAMPLE_RATE
from edge_asr.engine import make_session
from edge_asr.vad import SileroVad
from wakeword.features import FRAME_SAMPLES, SpeechEmbeddingStream
from wakeword.models import wakeword_display_name, wakeword_model_path

_WARMUP_FRAMES = 5  # like openWakeWord: the first scores come from the synthetic start-up buffer


@dataclass
class WakeWordSpec:
    """How one wake word triggers."""

    model: str  # bundled name or path to an .onnx head
    threshold: float = 0.5  # a run of scores at or above this is a candidate
    patience: int = 1  # consecutive frames at or above threshold before a detection
    refractory_s: float = 2.0  # no second detection of the same word this soon after one
    # None: report at the first frame that satisfies patience. Otherwise report as soon as the score
    # reaches this, or when the run has peaked (score falls, or `peak_frames` later) with the run's peak:
    # a two-stage listener then verifies only candidates that stayed below it.
    accept_threshold: float | None = None
    peak_frames: int = 3

    @property
    def name(self) -> str:
        return wakeword_display_name(self.model)


@dataclass
class Detection:
    wakeword: str
    score: float  # the highest score of the frames that made up the detection
    t: float  # stream time (s) at the end of the frame that completed the detection


class Trigger:
    """One word's scores -> detections: patience, waiting for the peak, refractory period.

    Pure logic over (score, time), shared by the live detector and `wakeword eval`'s threshold sweeps.
    """

    def __init__(self, spec: WakeWordSpec) -> None:
        self.spec = spec
        self.streak = 0
        self.last_fired = -1e9
        self._peak: float | None = None  # an open candidate's best score so far
        self._waited = 0

    def update(self, score: float, t: float) -> float | None:
        """Feed one frame's score at stream time t (end of frame); the detection's score if one fires."""
        spec = self.spec
        self.streak = self.streak + 1 if score >= spec.threshold else 0
        if self._peak is not None:
            self._peak, self._waited = max(self._peak, score), self._waited + 1
            if score >= spec.accept_threshold or score < spec.threshold or self._waited >= spec.peak_frames:
                return self._fire(t)
            return None
        # One detection per run of high scores (they stay high for several frames after the word).
        if self.streak != spec.patience or t - self.last_fired < spec.refractory_s:
            return None
        self._peak, self._waited = score, 0
        if spec.accept_threshold is None or score >= spec.accept_threshold:
            return self._fire(t)
        return None

    def _fire(self, t: float) -> float:
        peak, self._peak = self._peak, None
        self.last_fired = t
        return peak


class WakeWordHead:
    """One openWakeWord classifier over the last N embeddings."""

    def __init__(self, spec: WakeWordSpec, threads: int = 1) -> None:
        self.spec = spec
        self._session = make_session(wakeword_model_path(spec.model), threads)
        self._input = self._session.get_inputs()[0]
        self.n_features = int(self._input.shape[1])

    def __call__(self, embeddings: SpeechEmbeddingStream) -> float:
        out = self._session.run(None, {self._input.name: embeddings.last(self.n_features)})[0]
        # Multi-class heads (timer) put "no wake word" in class 0: score the best other class.
        return float(out[0, 0] if out.shape[1] == 1 else out[0, 1:].max())


class RingBuffer:
    """The last `seconds` of audio, for the pre-roll that precedes a detection."""

    def __init__(self, seconds: float, sample_rate: int = SAMPLE_RATE) -> None:
        self._data = np.zeros(max(1, int(seconds * sample_rate)), dtype=np.float32)
        self._filled = 0

    def append(self, frame: np.ndarray) -> None:
        n = len(frame)
        if n >= len(self._data):
            self._data[:] = frame[-len(self._data):]
        else:
            self._data = np.roll(self._data, -n)
            self._data[-n:] = frame
        self._filled = min(len(self._data), self._filled + n)

    def last(self, seconds: float | None = None) -> np.ndarray:
        n = self._filled if seconds is None else min(self._filled, int(seconds * SAMPLE_RATE))
        return self._data[len(self._data) - n:].copy()

    def clear(self) -> None:
        self._filled = 0


class WakeWordDetector:
    """Streams 80 ms frames through the shared front end and every wake-word head.

    `vad_gate`: the heads (and the embeddings they read) only run while Silero VAD has heard speech, at
    this probability or more, within a head's window; otherwise the scores are 0. A wake word is speech, so
    detections do not change, and a quiet room costs a third of the CPU. None runs the heads on every frame.
    """

    def __init__(self, specs: list[WakeWordSpec], threads: int = 1, vad_gate: float | None = 0.1) -> None:
        if not specs:
            raise ValueError("at least one wake word is needed")
        self.embeddings = SpeechEmbeddingStream(threads)
        self.heads = [WakeWordHead(spec, threads) for spec in specs]
        self.vad_gate = vad_gate
        self.vad = SileroVad(chunk_samples=1536) if vad_gate is not None else None
        self._window = max(h.n_features for h in self.heads)
        self.reset()

    def reset(self) -> None:
        self.embeddings.reset()
        if self.vad is not None:
            self.vad.reset()
        self.frames_seen = 0
        self._last_speech = -10**9  # frame number where the VAD last heard speech
        self.triggers = {h.spec.name: Trigger(h.spec) for h in self.heads}

    @property
    def t(self) -> float:
        return self.frames_seen * FRAME_SAMPLES / SAMPLE_RATE

    def scores(self, frame: np.ndarray) -> dict[str, float]:
        """Raw per-word scores for one frame (0 during the warm-up frames)."""
        self.embeddings(frame)
        self.frames_seen += 1
        if self.vad is not None and self.vad(frame) >= self.vad_gate:
            self._last_speech = self.frames_seen
        gate_closed = self.vad is not None and self.frames_seen - self._last_speech >= self._window
        if self.frames_seen <= _WARMUP_FRAMES or gate_closed:
            return {h.spec.name: 0.0 for h in self.heads}
        return {h.spec.name: h(self.embeddings) for h in self.heads}

    def process(self, frame: np.ndarray) -> list[Detection]:
        scores = self.scores(frame)
        detections = []
        for name, score in scores.items():
            fired = self.triggers[name].update(score, self.t)
            if fired is not None:
                detections.append(Detection(name, round(fired, 4), round(self.t, 3)))
        return detections
