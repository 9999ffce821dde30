"""Utterance confidence: a calibrated probability that the local transcript is right.

A logistic model over a few decoder statistics. Its coefficients are fitted on real speech mixed with noise
at several SNRs plus non-speech clips (benchmarks/fit_confidence.py) and ship as `confidence.json` beside
this module; "right" there means the utterance's WER is at most the file's `label_max_wer` (speech) or that
no words came out (non-speech). Works on our `Segment`s and on verbose_json segment dicts alike.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

DEFAULT_COEFFICIENTS = Path(__file__).with_name("confidence.json")

FEATURES = (
    "avg_logprob",        # token-weighted mean log-probability of the decoded text
    "no_speech_prob",     # the model's own belief that nobody spoke (mean over segments)
    "compression_ratio",  # gzip ratio, high when the decoder loops (max over segments)
    "log_min_word_prob",  # the weakest word: one garbled word spoils an utterance
    "repetition",         # share of repeated word bigrams (hallucination loops)
    "log_duration",       # seconds of audio, log scale: short clips carry less evidence
    "words_per_second",   # speech rate: far too few or too many words for the audio is suspicious
)

# What a BenefitModel may read besides the decoder statistics (FEATURES) and the audio estimates.
LOCAL_CONFIDENCE = "local_confidence"
DOUBTFUL_WORDS = "doubtful_words_per_second"  # sum of (1 - word probability) per second: errors to expect

# Features are clipped to these ranges so one wild value can't saturate the logistic.
_CLIP = {
    "avg_logprob": (-5.0, 0.0),
    "no_speech_prob": (0.0, 1.0),
    "compression_ratio": (0.0, 5.0),
    "log_min_word_prob": (-12.0, 0.0),
    "repetition": (0.0, 1.0),
    "log_duration": (math.log(0.1), math.log(60.0)),
    "words_per_second": (0.0, 8.0),
    DOUBTFUL_WORDS: (0.0, 8.0),
}
_WORD = re.compile(r"[\w']+")
# Whisper's own test for a failed decode (a repetition loop): text that gzip compresses more than this.
LOOP_COMPRESSION_RATIO = 2.4


# Mel bands that carry speech (centre 300-4000 Hz): hum below and hiss above say little about intelligibility.
_SPEECH_BAND_HZ = (300.0, 4000.0)
_NOISE_PERCENTILE, _LOUD_PERCENTILE = 10, 95
AUDIO_FEATURES = (
    "snr_db",           # blind SNR estimate: loud frames' speech-band energy over the noise floor's, in dB
    "speech_fraction",  # share of 10 ms frames more than 6 dB above the noise floor
)


def audio_features(audio: np.ndarray) -> dict[str, float]:
    """Cheap audio-quality estimates of one window of 16 kHz mono audio, no VAD or model needed.

    The noise floor is the 10th percentile of the per-frame speech-band energy, the speech level its 95th:
    utterances pause often enough that the quietest tenth is mostly noise. The estimate reads high on
    clean speech (a floor of room tone) and falls with the real SNR (correlation 0.82 over speech-dev at
    0/5/10/20 dB). A BenefitModel may use it; the shipped one does not (it added nothing beside the
    confidence on speech-dev, see README), so the policy reads no audio for it.
    """
    from edge_asr.frontend import mel_power

    if len(audio) < 400:  # shorter than one STFT frame: nothing to measure
        return {"snr_db": 0.0, "speech_fraction": 0.0}
    energy = mel_power(audio)[_speech_bands()].sum(axis=0) + 1e-10
    floor = float(np.percentile(energy, _NOISE_PERCENTILE))
    loud = float(np.percentile(energy, _LOUD_PERCENTILE))
    return {"snr_db": float(np.clip(10 * math.log10(loud / floor), 0.0, 60.0)),
            "speech_fraction": float(np.mean(energy > 4 * floor))}


@lru_cache(maxsize=1)
def _speech_bands() -> np.ndarray:
    from edge_asr.frontend import N_FFT, SAMPLE_RATE, mel_filters

    filters = mel_filters()
    centres = filters @ np.fft.rfftfreq(N_FFT, 1 / SAMPLE_RATE) / filters.sum(axis=1)
    return (centres > _SPEECH_BAND_HZ[0]) & (centres < _SPEECH_BAND_HZ[1])


def benefit_inputs(segments: Sequence[Any], duration_s: float, confidence: float, audio: np.ndarray | None = None
                   ) -> dict[str, float]:
    """The values a BenefitModel may use for one window: the local decoder's statistics, the local confidence
    and, when the window's audio is given, its audio-quality estimates."""
    audio_values = audio_features(audio) if audio is not None else {}
    return {**utterance_features(segments, duration_s), **audio_values, LOCAL_CONFIDENCE: confidence}


def has_words(text: str) -> bool:
    """Does a transcript say anything? Whisper often writes just " ." (or nothing) where nobody spoke."""
    return _WORD.search(text) is not None


def _get(obj: Any, key: str, default: Any = None) -> Any:
    if isinstance(obj, dict):
        return obj.get(key, default)
    return getattr(obj, key, default)


def utterance_features(
    segments: Sequence[Any], duration_s: float, words: Iterable[Any] | None = None
) -> dict[str, float]:
    """Feature values for one utterance made of `segments` (Segment objects or verbose_json dicts).

    `words` defaults to the segments' own words; a word without a probability is ignored and, with no
    probabilities at all, the weakest segment's mean token probability stands in.
    """
    text = " ".join(str(_get(s, "text", "")).strip() for s in segments)
    tokens = [w.lower() for w in _WORD.findall(text)]
    weights = [max(1, len(_get(s, "tokens", None) or ())) for s in segments]
    logprobs = [float(_get(s, "avg_logprob", 0.0) or 0.0) for s in segments]
    if words is None:
        words = [w for s in segments for w in (_get(s, "words", None) or ())]
    probs = [float(p) for w in words if (p := _get(w, "probability")) is not None]
    if probs:
        min_prob = min(probs)
        doubtful = sum(1.0 - p for p in probs)
    else:
        min_prob = math.exp(min(logprobs)) if logprobs else 1e-6
        doubtful = len(tokens) * (1.0 - math.exp(min(0.0, float(np.mean(logprobs))))) if logprobs else 0.0
    bigrams = list(zip(tokens, tokens[1:], strict=False))
    values = {
        "avg_logprob": float(np.average(logprobs, weights=weights)) if segments else -5.0,
        "no_speech_prob": float(np.mean([float(_get(s, "no_speech_prob", 0.0) or 0.0) for s in segments]))
        if segments else 1.0,
        "compression_ratio": max((float(_get(s, "compression_ratio", 1.0) or 1.0) for s in segments),
                                 default=1.0),
        "log_min_word_prob": math.log(max(min_prob, 1e-6)),
        "repetition": 1.0 - len(set(bigrams)) / len(bigrams) if len(bigrams) >= 2 else 0.0,
        "log_duration": math.log(max(duration_s, 0.1)),
        "words_per_second": len(tokens) / max(duration_s, 0.1),
        # A benefit input, not a confidence one: the errors the cloud can remove are errors the device made.
        DOUBTFUL_WORDS: doubtful / max(duration_s, 0.1),
    }
    return {k: float(min(max(v, _CLIP[k][0]), _CLIP[k][1])) for k, v in values.items()}


@dataclass(frozen=True)
class LinearModel:
    """bias + sum(weights * (x - mean) / scale) over named features: what both shipped models are."""

    features: tuple[str, ...]
    mean: tuple[float, ...]
    scale: tuple[float, ...]
    weights: tuple[float, ...]
    bias: float
    default_threshold: float = 0.5
    meta: dict | None = None

    def linear(self, values: dict[str, float]) -> float:
        x = np.array([values[f] for f in self.features])
        return self.bias + float(np.dot(self.weights, (x - np.array(self.mean)) / np.array(self.scale)))

    def to_dict(self) -> dict:
        return {
            "features": list(self.features),
            "mean": list(self.mean),
            "scale": list(self.scale),
            "weights": list(self.weights),
            "bias": self.bias,
            "default_threshold": self.default_threshold,
            "meta": self.meta or {},
        }

    @classmethod
    def from_dict(cls, data: dict):
        features = tuple(data["features"])
        unknown = set(features) - {*FEATURES, DOUBTFUL_WORDS, *AUDIO_FEATURES, LOCAL_CONFIDENCE}
        if unknown:
            raise ValueError(f"{cls.__name__} coefficients name unknown features: {sorted(unknown)}")
        return cls(
            features=features,
            mean=tuple(float(v) for v in data["mean"]),
            scale=tuple(float(v) for v in data["scale"]),
            weights=tuple(float(v) for v in data["weights"]),
            bias=float(data["bias"]),
            default_threshold=float(data.get("default_threshold", 0.5)),
            meta=data.get("meta") or {},
        )


class ConfidenceModel(LinearModel):
    """p(right) = sigmoid(linear): the probability that the local transcript is right."""

    def probability(self, values: dict[str, float]) -> float:
        if values["compression_ratio"] > LOOP_COMPRESSION_RATIO:
            return 0.0  # a loop is wrong whatever else the numbers say; few loops were there to fit on
        return float(1.0 / (1.0 + math.exp(-max(min(self.linear(values), 40.0), -40.0))))

    def score(self, segments: Sequence[Any], duration_s: float, words: Iterable[Any] | None = None) -> float:
        return self.probability(utterance_features(segments, duration_s, words))

    @classmethod
    def load(cls, path: str | Path | None = None) -> ConfidenceModel:
        return cls.from_dict(_load(str(path or DEFAULT_COEFFICIENTS)))


class BenefitModel(LinearModel):
    """The word errors that the cloud's transcript is expected to remove from a window's local one: a rate per
    second (a linear regression over a few of `benefit_inputs`) times the window's seconds.

    The confidence says whether the device is unsure; this says how much asking is worth: a short unsure
    window has few words to fix, a long one many. Shipped beside the confidence as the "benefit" entry of
    `confidence.json`."""

    @property
    def needs_audio(self) -> bool:
        """Does it read the audio-quality estimates (then the policy must look at every unsure window's audio)?"""
        return any(f in AUDIO_FEATURES for f in self.features)

    def rate(self, values: dict[str, float]) -> float:
        return self.linear(values)

    def expected_gain(self, values: dict[str, float]) -> float:
        return self.rate(values) * math.exp(values["log_duration"])

    @classmethod
    def load(cls, path: str | Path | None = None) -> BenefitModel | None:
        """The shipped benefit model, or None where the coefficients file has none (the gate is then off)."""
        data = _load(str(path or DEFAULT_COEFFICIENTS)).get("benefit")
        return cls.from_dict(data) if data else None


@lru_cache(maxsize=8)
def _load(path: str) -> dict:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def utterance_confidence(
    segments: Sequence[Any], duration_s: float, model: ConfidenceModel | None = None
) -> float:
    """Probability that the local transcript of this utterance is right, with the shipped calibration."""
    return (model or ConfidenceModel.load()).score(segments, duration_s)


def reliability_table(confidences: Sequence[float], correct: Sequence[bool], bins: int = 10) -> list[dict]:
    """Per confidence bin: count, mean confidence, observed accuracy (for reliability diagrams and ECE)."""
    conf = np.asarray(confidences, dtype=float)
    ok = np.asarray(correct, dtype=float)
    edges = np.linspace(0.0, 1.0, bins + 1)
    rows = []
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        mask = (conf >= lo) & ((conf < hi) if hi < 1.0 else (conf <= hi))
        if mask.any():
            rows.append({"lo": float(lo), "hi": float(hi), "count": int(mask.sum()),
                         "confidence": float(conf[mask].mean()), "accuracy": float(ok[mask].mean())})
    return rows


def expected_calibration_error(
    confidences: Sequence[float], correct: Sequence[bool], bins: int = 10
) -> float:
    n = max(len(confidences), 1)
    return sum(r["count"] / n * abs(r["confidence"] - r["accuracy"])
               for r in reliability_table(confidences, correct, bins))
