"""Wake-word evaluation: recall on clips that say the word, false accepts per hour on audio that does not,
detection latency, over a sweep of thresholds; optionally with the second stage (a verifier).

Each clip is scored once (frame by frame, padded with silence as a live stream would be); thresholds are
then applied to the stored score traces with the detector's own patience and refractory rules.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from edge_asr.audio import load_audio
from edge_asr.errors import AudioError
from wakeword.detector import FRAME_SAMPLES, SAMPLE_RATE, Trigger, WakeWordDetector, WakeWordSpec

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3")
PAD_S = 1.0
FRAME_S = FRAME_SAMPLES / SAMPLE_RATE


def collect_audio_files(paths: Iterable[str | Path]) -> list[Path]:
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            files += sorted(f for f in p.rglob("*") if f.suffix.lower() in AUDIO_SUFFIXES)
        elif p.is_file():
            files.append(p)
        else:
            raise AudioError(f"{p}: no such file or directory")
    return files


@dataclass
class ClipTrace:
    path: str
    duration_s: float  # the clip itself, without padding
    audio: np.ndarray  # padded: PAD_S of silence on both sides
    scores: np.ndarray  # one score per 80 ms frame of `audio`
    word_end_s: float | None = None  # positives: where speech ends in `audio` (Silero VAD)


def score_clip(detector: WakeWordDetector, wakeword: str, audio: np.ndarray, path: str = "") -> ClipTrace:
    pad = np.zeros(int(PAD_S * SAMPLE_RATE), dtype=np.float32)
    padded = np.concatenate((pad, audio, pad))
    padded = np.pad(padded, (0, -len(padded) % FRAME_SAMPLES))
    detector.reset()
    scores = np.array([detector.scores(padded[i:i + FRAME_SAMPLES])[wakeword]
                       for i in range(0, len(padded), FRAME_SAMPLES)], dtype=np.float32)
    return ClipTrace(path, len(audio) / SAMPLE_RATE, padded, scores)


def speech_end_s(audio: np.ndarray, vad=None, threshold: float = 0.5) -> float | None:
    """End of the last speech in a clip, from Silero VAD's 32 ms chunk probabilities."""
    from edge_asr.vad import CHUNK_SAMPLES, SileroVad

    vad = vad or SileroVad()
    vad.reset()
    last = None
    for i in range(len(audio) // CHUNK_SAMPLES):
        if vad.chunk_probability(audio[i * CHUNK_SAMPLES:(i + 1) * CHUNK_SAMPLES]) >= threshold:
            last = (i + 1) * CHUNK_SAMPLES / SAMPLE_RATE
    return last


def detections(scores: np.ndarray, spec: WakeWordSpec) -> list[tuple[int, float]]:
    """(frame, score) where the live detector would fire on this score trace (the same Trigger rules)."""
    trigger = Trigger(spec)
    fired = ((i, trigger.update(float(s), (i + 1) * FRAME_S)) for i, s in enumerate(scores))
    return [(i, score) for i, score in fired if score is not None]


@dataclass
class ThresholdResult:
    threshold: float
    recall: float
    detected: int
    positives: int
    false_accepts: int
    negative_hours: float
    latency_median_s: float | None
    latency_p90_s: float | None
    verified_rejections: int = 0  # candidates the second stage turned down
    missed: list[str] = field(default_factory=list)
    false_accept_clips: list[str] = field(default_factory=list)

    @property
    def false_accepts_per_hour(self) -> float:
        return self.false_accepts / self.negative_hours if self.negative_hours else 0.0

    def to_dict(self) -> dict:
        d = {k: v for k, v in self.__dict__.items()}
        d["false_accepts_per_hour"] = round(self.false_accepts_per_hour, 3)
        return d


Verify = Callable[[np.ndarray], bool]


class Evaluation:
    """Score traces for positive and negative clips, then results per threshold.

    With `verify`, candidates whose peak stays below `spec.accept_threshold` go to the second stage, which
    hears the `pre_roll_s` of audio before the detection (as the listener does).
    """

    def __init__(self, spec: WakeWordSpec, positives: list[ClipTrace], negatives: list[ClipTrace], *,
                 verify: Verify | None = None, pre_roll_s: float = 2.0) -> None:
        self.spec = spec if verify is not None else replace(spec, accept_threshold=None)
        self.positives, self.negatives = positives, negatives
        self.verify, self.pre_roll_s = verify, pre_roll_s
        self._verified: dict[tuple[int, int], bool] = {}

    def _accepted(self, clip_key: int, trace: ClipTrace, frame: int, score: float) -> bool:
        if self.verify is None or score >= self.spec.accept_threshold:
            return True
        key = (clip_key, frame)
        if key not in self._verified:
            end = (frame + 1) * FRAME_SAMPLES
            start = max(0, end - int(self.pre_roll_s * SAMPLE_RATE))
            self._verified[key] = bool(self.verify(trace.audio[start:end]))
        return self._verified[key]

    def at(self, threshold: float) -> ThresholdResult:
        spec = replace(self.spec, threshold=threshold)
        detected, latencies, missed, rejections = 0, [], [], 0
        for n, trace in enumerate(self.positives):
            hits = []
            for frame, score in detections(trace.scores, spec):
                if self._accepted(n, trace, frame, score):
                    hits.append(frame)
                else:
                    rejections += 1
            if hits:
                detected += 1
                if trace.word_end_s is not None:
                    latencies.append((hits[0] + 1) * FRAME_S - trace.word_end_s)
            else:
                missed.append(trace.path)
        false_accepts, fa_clips = 0, []
        for n, trace in enumerate(self.negatives, start=len(self.positives)):
            for frame, score in detections(trace.scores, spec):
                if self._accepted(n, trace, frame, score):
                    false_accepts += 1
                    fa_clips.append(trace.path)
                else:
                    rejections += 1
        hours = sum(t.duration_s for t in self.negatives) / 3600
        lat = np.array(latencies)
        return ThresholdResult(
            threshold, round(detected / max(1, len(self.positives)), 4), detected, len(self.positives),
            false_accepts, round(hours, 4),
            round(float(np.median(lat)), 3) if len(lat) else None,
            round(float(np.percentile(lat, 90)), 3) if len(lat) else None,
            rejections, missed, fa_clips)


def score_files(files: list[Path], wakeword: str, *, threads: int = 1, with_word_end: bool = False,
                progress: str | None = None, vad_gate: float | None = 0.1) -> list[ClipTrace]:
    from tqdm import tqdm

    detector = WakeWordDetector([WakeWordSpec(wakeword)], threads=threads, vad_gate=vad_gate)
    name = detector.heads[0].spec.name
    vad = None
    if with_word_end:
        from edge_asr.vad import SileroVad

        vad = SileroVad()
    traces = []
    for f in tqdm(files, desc=progress, disable=progress is None or not sys.stderr.isatty(), leave=False):
        trace = score_clip(detector, name, load_audio(f), str(f))
        if vad is not None:
            trace.word_end_s = speech_end_s(trace.audio, vad)
        traces.append(trace)
    return traces
