"""Confidence-gated escalation: unsure local transcripts are re-done by a cloud model.

`EscalationPolicy.route()` wraps a Transcriber's segment generator. Segments decoded in the same 30 s
window (same `seek`) form one utterance. It goes to the cloud when the device is unsure (confidence below
`min_confidence`) and asking is worth it (the word errors the cloud is expected to remove, a `BenefitModel`
estimate, at least `min_benefit`), within the cap on the share of audio sent; the cloud's segments then
replace the local ones. Whatever goes wrong up there (timeout, refused, 4xx/5xx, a malformed answer, breaker
open), the local segments stand, marked with the reason. Every segment leaves with `source` "local"/"cloud"
and `extra["escalation"]` = {status, reason, local_confidence, benefit, cloud_confidence, latency_s}.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from edge_asr.errors import ConfigError
from edge_asr.types import Segment, Word

if TYPE_CHECKING:  # kept out of the import path: the config imports this module for its section
    import numpy as np

    from edge_asr.cloud import CloudClient, CloudTranscript
    from edge_asr.confidence import BenefitModel, ConfidenceModel

log = logging.getLogger(__name__)

SAMPLE_RATE = 16000
FRAMES_PER_SECOND = 100  # `Segment.seek` counts 10 ms frames
WINDOW_S = 30.0


@dataclass
class EscalationSection:
    """The `escalation:` section of the config file. Escalation is off unless `endpoint` is set."""

    endpoint: str | None = None  # e.g. http://asr.local:8000/v1/audio/transcriptions
    api_key_env: str = "EDGE_ASR_API_KEY"  # name of the environment variable holding the bearer token
    model: str = "whisper-1"  # the `model` form field; our server accepts any name
    min_confidence: float | None = None  # None: the shipped calibration's default threshold
    # Word errors the cloud is expected to remove from the window; None: the shipped default; -.inf: gate off.
    min_benefit: float | None = None
    timeout_s: float = 3.0  # deadline per request, retries included
    # At most this share of the audio heard goes up... A ceiling for conditions worse than the calibration's,
    # not a second threshold: the shipped rule itself sends 31-34 % of the audio of speech in 0-20 dB noise
    # (its unsure windows are the long ones), and a cap below that sends whichever unsure windows come first.
    max_share: float = 0.4
    burst_s: float = 30.0  # ...plus this many seconds, so a first unsure utterance can go too
    retries: int = 2
    breaker_cooldown_s: float = 30.0  # after a failure, wait this long before trying the cloud again
    language: str | None = None  # sent to the cloud; None: the local model's language
    arbitrate: bool = True  # the cloud's answer replaces the local one only if at least as confident

    def validate(self, source: str = "config") -> None:
        def bad(key: str, why: str) -> ConfigError:
            return ConfigError(f"{source}: 'escalation.{key}' {why}")

        if self.endpoint is not None and not re.match(r"https?://", self.endpoint):
            raise bad("endpoint", f"must be an http:// or https:// URL, got {self.endpoint!r}")
        if self.min_confidence is not None and not 0.0 <= self.min_confidence <= 1.0:
            raise bad("min_confidence", f"must be between 0 and 1, got {self.min_confidence}")
        if not 0.0 <= self.max_share <= 1.0:
            raise bad("max_share", f"must be between 0 and 1, got {self.max_share}")
        for key in ("timeout_s", "breaker_cooldown_s"):
            if getattr(self, key) <= 0:
                raise bad(key, f"must be positive, got {getattr(self, key)}")
        if self.retries < 0 or self.burst_s < 0:
            raise bad("retries" if self.retries < 0 else "burst_s", "must not be negative")


@dataclass
class RoutingDecision:
    """What happened to one utterance (window); handed to `on_decision` for logs and benchmarks."""

    start: float
    end: float
    status: str  # accepted | escalated | rejected | failed | skipped
    local_confidence: float
    local_text: str
    reason: str | None = None
    benefit: float | None = None  # computed only for unsure windows with words
    cloud_confidence: float | None = None
    cloud_text: str | None = None
    latency_s: float | None = None


@dataclass
class EscalationStats:
    seen_s: float = 0.0
    sent_s: float = 0.0
    counts: dict = field(default_factory=lambda: dict.fromkeys(
        ("accepted", "escalated", "rejected", "failed", "skipped"), 0))


class EscalationPolicy:
    def __init__(
        self,
        client: CloudClient,
        *,
        min_confidence: float | None = None,
        min_benefit: float | None = None,
        max_share: float = EscalationSection.max_share,
        burst_s: float = EscalationSection.burst_s,
        language: str | None = None,
        arbitrate: bool = True,
        confidence_model: ConfidenceModel | None = None,
        benefit_model: BenefitModel | None = None,
        on_decision: Callable[[RoutingDecision], None] | None = None,
    ):
        from edge_asr.confidence import BenefitModel, ConfidenceModel

        self.client = client
        self.confidence_model = confidence_model or ConfidenceModel.load()
        self.min_confidence = (
            self.confidence_model.default_threshold if min_confidence is None else min_confidence
        )
        self.benefit_model = benefit_model or BenefitModel.load()
        if self.benefit_model is None:  # coefficients without a benefit model: the confidence alone decides
            self.min_benefit = None
        else:
            self.min_benefit = self.benefit_model.default_threshold if min_benefit is None else min_benefit
        self.max_share = max_share
        self.burst_s = burst_s
        self.language = language
        self.arbitrate = arbitrate
        self.on_decision = on_decision
        self.stats = EscalationStats()
        self._lock = threading.Lock()

    @classmethod
    def from_config(
        cls, section: EscalationSection, source: str = "config", **kwargs
    ) -> EscalationPolicy | None:
        """The policy a config asks for, or None when no endpoint is configured (escalation off)."""
        section.validate(source)
        if not section.endpoint:
            return None
        from edge_asr.cloud import CircuitBreaker, CloudClient

        api_key = os.environ.get(section.api_key_env)
        if not api_key:
            log.warning("escalation: $%s is not set; calling %s without a token", section.api_key_env,
                        section.endpoint)
        client = CloudClient(
            section.endpoint, api_key, model=section.model, timeout_s=section.timeout_s,
            retries=section.retries, breaker=CircuitBreaker(cooldown_s=section.breaker_cooldown_s),
        )
        return cls(client, min_confidence=section.min_confidence, min_benefit=section.min_benefit,
                   max_share=section.max_share, burst_s=section.burst_s, language=section.language,
                   arbitrate=section.arbitrate, **kwargs)

    def route(
        self, segments: Iterable[Segment], audio: np.ndarray | StreamedAudio, language: str | None = None
    ) -> Iterator[Segment]:
        """Yield `segments` (decoded from `audio`, float32 16 kHz) with unsure windows re-done remotely."""
        duration = audio.duration if isinstance(audio, StreamedAudio) else len(audio) / SAMPLE_RATE
        next_id = 0
        for start, end, group in _windows(segments, duration):
            for seg in self._route_window(group, audio, start, end, language or None):
                seg.id = next_id
                next_id += 1
                yield seg

    def _route_window(self, group: list[Segment], audio: np.ndarray | StreamedAudio, start: float, end: float,
                      language: str | None) -> list[Segment]:
        from edge_asr.confidence import benefit_inputs, has_words

        span_s = max(end - start, 0.0)
        confidence = self.confidence_model.score(group, span_s)
        decision = RoutingDecision(start, end, "accepted", confidence, "".join(s.text for s in group).strip())
        clip = None
        if self.min_benefit is not None and confidence < self.min_confidence and has_words(decision.local_text):
            if self.benefit_model.needs_audio:
                clip = _clip(audio, start, end)
            decision.benefit = self.benefit_model.expected_gain(benefit_inputs(group, span_s, confidence, clip))
        with self._lock:
            self.stats.seen_s += span_s
            if wants_cloud(decision.local_text, confidence, self.min_confidence, decision.benefit,
                           self.min_benefit):
                if not within_share(self.stats.sent_s, span_s, self.stats.seen_s, self.max_share, self.burst_s):
                    decision.status, decision.reason = "skipped", "share_cap"
                else:
                    decision.status = "escalated"
                    self.stats.sent_s += span_s
            elif decision.benefit is not None:  # unsure, but too little to gain from the cloud
                decision.reason = "low_benefit"
        result = group
        if decision.status == "escalated":
            clip = _clip(audio, start, end) if clip is None else clip
            result = self._escalate(group, clip, start, end, language, decision)
        with self._lock:
            self.stats.counts[decision.status] += 1
        if result is group:
            for seg in group:
                seg.source = "local"
                seg.extra["escalation"] = _mark(decision)
        if self.on_decision:
            self.on_decision(decision)
        return result

    def _escalate(self, group, clip, start, end, language, decision: RoutingDecision) -> list[Segment]:
        from edge_asr.cloud import CloudError

        want_words = any(s.words is not None for s in group)
        try:
            cloud = self.client.transcribe(clip, language=self.language or language,
                                           word_timestamps=want_words)
        except CloudError as e:
            decision.status, decision.reason = "failed", e.reason
            # An open breaker is the expected state after a failure; don't repeat the warning per utterance.
            (log.debug if e.reason == "breaker_open" else log.warning)(
                "escalation of %.1f-%.1f s failed (%s); keeping the local transcript", start, end, e)
            return group
        decision.latency_s = cloud.latency_s
        decision.cloud_text = cloud.text.strip()
        decision.cloud_confidence = self.confidence_model.score(cloud.segments or [{"text": cloud.text}],
                                                                end - start, cloud.words or None)
        if self.arbitrate and not takes_cloud(decision.local_confidence, decision.cloud_text,
                                              decision.cloud_confidence):
            decision.status, decision.reason = "rejected", "cloud_less_confident"
            log.info("cloud answer for %.1f-%.1f s is less sure (%.2f) than the device's (%.2f); keeping %r",
                     start, end, decision.cloud_confidence, decision.local_confidence, decision.local_text)
            return group
        if not decision.cloud_text:
            log.info("cloud heard no speech in %.1f-%.1f s where the device heard %r", start, end,
                     decision.local_text)
        segments = _cloud_segments(cloud, start, end, group[0].seek if group else 0)
        for seg in segments:
            seg.extra["escalation"] = _mark(decision)
        return segments


def wants_cloud(local_text: str, local_confidence: float, min_confidence: float,
                benefit: float | None = None, min_benefit: float | None = None) -> bool:
    """Is this window worth a round trip (budget aside)? The device must be unsure of it and, where a benefit
    gate is on (`min_benefit` set), the cloud must be expected to remove enough errors from it.

    A window without a word (Whisper's " ." where nobody spoke) has nothing to correct, and its audio is
    audio where nobody spoke: it never goes up."""
    from edge_asr.confidence import has_words

    worth_it = min_benefit is None or (benefit is not None and benefit >= min_benefit)
    return local_confidence < min_confidence and has_words(local_text) and worth_it


def within_share(sent_s: float, span_s: float, seen_s: float, max_share: float, burst_s: float) -> bool:
    """May a wanted window of `span_s` go up, with `sent_s` already sent of the `seen_s` heard (this window
    included)? A running budget: `max_share` of the audio heard so far plus `burst_s`, so a first unsure window
    can go. A window that does not fit is skipped for good, whatever comes later; unspent budget carries on.

    It ranks nothing: on the speech-dev benchmark, sorting the unsure windows with hindsight recovered little
    more inside the same share of audio (benchmarks/RESULTS.md, "Cross-fitted"). bench_escalation.py replays it
    as is."""
    return sent_s + span_s <= max_share * seen_s + burst_s


def _clip(audio: np.ndarray | StreamedAudio, start: float, end: float) -> np.ndarray:
    if isinstance(audio, StreamedAudio):
        return audio.clip(start, end)
    return audio[int(start * SAMPLE_RATE): int(end * SAMPLE_RATE)]


def takes_cloud(local_confidence: float, cloud_text: str, cloud_confidence: float) -> bool:
    """Does the cloud's answer replace the local one? Yes if it is at least as sure, or if it heard no words
    at all (the device's words were then most likely a hallucination on noise). A less sure answer,
    typically a repetition loop of the cloud model, is rejected and the local text stands."""
    from edge_asr.confidence import has_words

    return not has_words(cloud_text) or cloud_confidence >= local_confidence


def _mark(decision: RoutingDecision) -> dict:
    return {
        "status": decision.status,
        "reason": decision.reason,
        "local_confidence": _round(decision.local_confidence),
        "benefit": _round(decision.benefit),
        "cloud_confidence": _round(decision.cloud_confidence),
        "latency_s": _round(decision.latency_s),
    }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def _windows(segments: Iterable[Segment], duration: float) -> Iterator[tuple[float, float, list[Segment]]]:
    """Group consecutive segments by decoding window; a group spans [its seek, the next seek), at most 30 s.

    Whisper starts the next window where the last one's text ended, so these spans tile the audio; a window
    skipped as silence lies beyond the 30 s cap and is not sent anywhere.
    """
    group: list[Segment] = []
    for seg in segments:
        if group and seg.seek != group[0].seek:
            yield _span(group, seg.seek / FRAMES_PER_SECOND, duration)
            group = []
        group.append(seg)
    if group:
        yield _span(group, duration, duration)


def _span(group: list[Segment], next_start: float, duration: float) -> tuple[float, float, list[Segment]]:
    start = min(group[0].seek / FRAMES_PER_SECOND, group[0].start)
    end = min(next_start, start + WINDOW_S, duration)
    return start, max(end, min(group[-1].end, duration)), group


def _cloud_segments(cloud: CloudTranscript, start: float, end: float, seek: int) -> list[Segment]:
    raw = cloud.segments
    if not raw and cloud.text.strip():  # a plain-json server: one segment for the whole clip
        raw = [{"start": 0.0, "end": end - start, "text": cloud.text}]
    words = [Word(start=start + float(w.get("start", 0.0)), end=start + float(w.get("end", 0.0)),
                  word=w["word"], probability=float(w.get("probability", 1.0))) for w in cloud.words]
    out = []
    for i, s in enumerate(raw):
        if not str(s["text"]).strip():
            continue
        s_start, s_end = start + float(s["start"]), start + float(s["end"])
        last = i == len(raw) - 1
        seg_words = [w for w in words if s_start - 0.01 <= w.start and (last or w.start < s_end)]
        out.append(Segment(
            id=0, seek=seek, start=round(s_start, 3), end=round(min(s_end, end), 3), text=str(s["text"]),
            tokens=[int(t) for t in s.get("tokens") or []],
            temperature=float(s.get("temperature", 0.0) or 0.0),
            avg_logprob=float(s.get("avg_logprob", 0.0) or 0.0),
            compression_ratio=float(s.get("compression_ratio", 0.0) or 0.0),
            no_speech_prob=float(s.get("no_speech_prob", 0.0) or 0.0),
            words=seg_words if cloud.words else None,
            source="cloud",
        ))
    return out


class EscalatingTranscriber:
    """A Transcriber whose unsure windows are re-done by the cloud: `transcribe()` keeps the core's shape."""

    def __init__(self, transcriber, policy: EscalationPolicy):
        self.transcriber = transcriber
        self.policy = policy

    def transcribe(self, audio, **options):
        if isinstance(audio, (str, os.PathLike)) and str(audio) != "-":
            segments, info = self.transcriber.transcribe(audio, **options)
            clips = StreamedAudio(audio, info.duration)  # a second pass over the file, as windows need it
        else:  # an array, or stdin, which can't be read twice
            from edge_asr.audio import load_audio

            clips = load_audio(audio)
            segments, info = self.transcriber.transcribe(clips, **options)
        return self.policy.route(segments, clips, language=options.get("language") or info.language), info


class StreamedAudio:
    """Clips of an audio file for windows that come in time order, read block by block alongside the
    local decoder: only audio from the latest clip's start onwards is kept, so memory stays flat."""

    def __init__(self, source, duration: float):
        from edge_asr.audio import stream_audio

        self.duration = duration
        self._blocks = stream_audio(source)
        self._start = 0  # sample index of the first kept sample
        self._kept: list = []

    def clip(self, start_s: float, end_s: float):
        import numpy as np

        a, b = int(start_s * SAMPLE_RATE), int(end_s * SAMPLE_RATE)
        end = self._start + sum(len(x) for x in self._kept)
        while end < b:
            block = next(self._blocks, None)
            if block is None:
                break
            self._kept.append(block)
            end += len(block)
            while self._kept and self._start + len(self._kept[0]) <= a:  # wholly before this clip: drop
                self._start += len(self._kept.pop(0))
        data = np.concatenate(self._kept) if self._kept else np.zeros(0, np.float32)
        return data[max(a - self._start, 0): max(b - self._start, 0)]


_NORMALIZE = re.compile(r"[^a-z0-9 ]+")


def _normalize(text: str) -> str:
    return " ".join(_NORMALIZE.sub(" ", text.lower()).split())


def cloud_confirms_wake(audio: np.ndarray, phrase: str, client: CloudClient, *, on_failure: bool | None = False,
                        language: str | None = "en") -> bool | None:
    """Does the cloud hear `phrase` in this wake clip (float32 16 kHz, pre-roll included)?

    For detections in the borderline band only; case, punctuation and spacing are ignored ("Hey, Jarvis!"
    matches "hey jarvis"). If the cloud can't answer, `on_failure` is returned (default: not confirmed, since
    a borderline detection that can't be checked is more likely a false wake than a missed one).
    """
    from edge_asr.cloud import CloudError

    want = _normalize(phrase)
    if not want:
        raise ValueError("wake phrase is empty")
    try:
        heard = _normalize(client.transcribe(audio, language=language).text)
    except CloudError as e:
        log.warning("wake verification unavailable (%s); answering %r", e.reason, on_failure)
        return on_failure
    confirmed = f" {want} " in f" {heard} " or want.replace(" ", "") in heard.replace(" ", "")
    log.debug("wake verification: heard %r, want %r -> %s", heard, want, confirmed)
    return confirmed
