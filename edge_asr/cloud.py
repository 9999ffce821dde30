"""Client for an OpenAI-compatible `POST /v1/audio/transcriptions` endpoint (ours: `edge-asr serve`).

Three promises the escalation policy relies on:
- a request never takes longer than `timeout_s`, retries and backoff included (a deadline, not a per-try
  timeout);
- every failure is a `CloudError` with a short machine-readable `reason` ("timeout", "refused", "http_401");
- a circuit breaker: once a request has failed, further requests fail at once (reason "breaker_open") until
  `cooldown_s` has passed, so a dead cloud costs its latency once rather than once per utterance.
Audio is encoded to FLAC in memory; nothing is written to disk.
"""

from __future__ import annotations

import io
import logging
import random
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
import numpy as np

from edge_asr.errors import EdgeAsrError

log = logging.getLogger(__name__)

RESPONSE_FORMATS = ("json", "verbose_json", "text", "srt", "vtt")
SAMPLE_RATE = 16000
# Statuses worth another try: the server is busy or briefly broken. Other 4xx are final (bad token/audio).
_RETRYABLE_STATUS = {408, 429, 500, 502, 503, 504}
# Failures that say the cloud is unusable for everyone, not just for this audio: they open the breaker.
_NON_TRIPPING_STATUS = {400, 413, 415, 422}


class CloudError(EdgeAsrError):
    """A cloud request that produced no usable transcript; `reason` is short and stable (logs, JSON)."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"cloud transcription failed: {reason}" + (f" ({detail})" if detail else ""))
        self.reason = reason
        self.detail = detail


class CircuitBreaker:
    """closed -> (failure_threshold failures) -> open -> (cooldown_s) -> half-open: one trial decides."""

    def __init__(self, failure_threshold: int = 1, cooldown_s: float = 30.0, clock=time.monotonic):
        self.failure_threshold = failure_threshold
        self.cooldown_s = cooldown_s
        self._clock = clock
        self._lock = threading.Lock()
        self._failures = 0
        self._opened_at: float | None = None
        self._trial_in_flight = False

    @property
    def state(self) -> str:
        with self._lock:
            return self._state()

    def _state(self) -> str:
        if self._opened_at is None:
            return "closed"
        if self._clock() - self._opened_at >= self.cooldown_s:
            return "half-open"
        return "open"

    def allow(self) -> bool:
        with self._lock:
            state = self._state()
            if state == "closed":
                return True
            if state == "half-open" and not self._trial_in_flight:
                self._trial_in_flight = True
                return True
            return False

    def record_success(self) -> None:
        with self._lock:
            self._failures = 0
            self._opened_at = None
            self._trial_in_flight = False

    def record_failure(self) -> None:
        with self._lock:
            self._failures += 1
            self._trial_in_flight = False
            if self._failures >= self.failure_threshold:
                self._opened_at = self._clock()

    def release_trial(self) -> None:
        """A trial that neither failed nor succeeded on the cloud's account (e.g. our audio was refused)."""
        with self._lock:
            self._trial_in_flight = False


@dataclass
class CloudTranscript:
    text: str
    segments: list[dict[str, Any]]  # verbose_json segments: start, end, text, avg_logprob, ... (may be empty)
    words: list[dict[str, Any]] = field(default_factory=list)
    language: str | None = None
    duration: float | None = None
    latency_s: float = 0.0


def encode_flac(audio: np.ndarray, sample_rate: int = SAMPLE_RATE) -> bytes:
    """16-bit FLAC in memory: about half the bytes of WAV, lossless at the resolution microphones give."""
    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, np.clip(np.asarray(audio, dtype=np.float32), -1.0, 1.0), sample_rate, format="FLAC",
             subtype="PCM_16")
    return buf.getvalue()


class CloudClient:
    def __init__(
        self,
        endpoint: str,
        api_key: str | None = None,
        *,
        model: str = "whisper-1",
        timeout_s: float = 3.0,
        retries: int = 2,
        backoff_s: float = 0.2,
        breaker: CircuitBreaker | None = None,
    ):
        self.endpoint = endpoint
        self.model = model
        self.timeout_s = timeout_s
        self.retries = retries
        self.backoff_s = backoff_s
        self.breaker = breaker or CircuitBreaker()
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        # One pooled client: keep-alive saves a TCP (and TLS) handshake per utterance; it is thread-safe.
        self._http = httpx.Client(headers=headers, follow_redirects=False)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> CloudClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def transcribe(
        self,
        audio: np.ndarray,
        *,
        language: str | None = None,
        temperature: float | None = None,
        word_timestamps: bool = False,
        prompt: str | None = None,
    ) -> CloudTranscript:
        """Transcribe a float32 16 kHz mono array remotely (verbose_json); raises CloudError."""
        t0 = time.perf_counter()
        body = self.request(audio, response_format="verbose_json", language=language, temperature=temperature,
                            timestamp_granularities=("segment", "word") if word_timestamps else ("segment",),
                            prompt=prompt)
        try:
            result = parse_verbose_json(body)
        except CloudError:
            self.breaker.record_failure()  # a server that answers nonsense is as good as down
            raise
        result.latency_s = time.perf_counter() - t0
        return result

    def request(
        self,
        audio: np.ndarray,
        *,
        response_format: str = "json",
        language: str | None = None,
        temperature: float | None = None,
        timestamp_granularities: tuple[str, ...] = (),
        prompt: str | None = None,
    ) -> Any:
        """One API call under the deadline: parsed JSON for json/verbose_json, the text body otherwise.
        `prompt` is the API's text to prime the model with (vocabulary, spelling)."""
        if response_format not in RESPONSE_FORMATS:
            raise ValueError(f"response_format must be one of {RESPONSE_FORMATS}")
        deadline = time.monotonic() + self.timeout_s  # encoding the audio counts against it too
        if not self.breaker.allow():  # first, so an open breaker costs microseconds, not an encode
            raise CloudError("breaker_open", "an earlier request failed; waiting before trying again")
        try:
            files = {"file": ("audio.flac", encode_flac(audio), "audio/flac")}
        except Exception:
            self.breaker.release_trial()
            raise
        data: dict[str, str | list[str]] = {"model": self.model, "response_format": response_format}
        if language:
            data["language"] = language
        if temperature is not None:
            data["temperature"] = str(temperature)
        if prompt:
            data["prompt"] = prompt
        if timestamp_granularities:
            data["timestamp_granularities[]"] = list(timestamp_granularities)
        try:
            response = self._post_with_retries(data, files, deadline)
            body = response.json() if response_format.endswith("json") else response.text
        except CloudError as e:
            if e.reason.startswith("http_") and int(e.reason[5:]) in _NON_TRIPPING_STATUS:
                self.breaker.release_trial()
            else:
                self.breaker.record_failure()
            raise
        except ValueError:
            self.breaker.record_failure()
            raise CloudError("malformed", "response is not JSON") from None
        self.breaker.record_success()
        return body

    def _post_with_retries(self, data, files, deadline: float) -> httpx.Response:
        attempt = 0
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise CloudError("timeout", f"no answer within {self.timeout_s:g} s")
            retry_after: float | None = None
            try:
                # A little under the time left: httpx's timeouts fire a few ms late.
                response = self._http.post(self.endpoint, data=data, files=files,
                                           timeout=max(remaining - 0.02, 0.001))
            except httpx.TimeoutException:
                raise CloudError("timeout", f"no answer within {self.timeout_s:g} s") from None
            except httpx.ConnectError as e:
                error = CloudError("refused", str(e) or "connection failed")
            except httpx.TransportError as e:  # the connection broke mid-request (server died, proxy cut it)
                error = CloudError("disconnected", str(e) or type(e).__name__)
            else:
                if response.status_code < 300:
                    return response
                error = CloudError(f"http_{response.status_code}", _error_message(response))
                if response.status_code not in _RETRYABLE_STATUS:
                    raise error
                retry_after = _retry_after_s(response)
            attempt += 1
            if attempt > self.retries:
                raise error
            # Exponential backoff with jitter so a fleet of devices doesn't retry in lockstep.
            wait = retry_after if retry_after is not None else self.backoff_s * 2 ** (attempt - 1)
            wait *= random.uniform(1.0, 1.25)
            if time.monotonic() + wait >= deadline:
                raise error
            log.debug("cloud attempt %d failed (%s); retrying in %.2f s", attempt, error.reason, wait)
            time.sleep(wait)


def _retry_after_s(response: httpx.Response) -> float | None:
    try:
        return max(0.0, float(response.headers.get("retry-after", "")))
    except ValueError:
        return None


def _error_message(response: httpx.Response) -> str:
    try:
        return str(response.json()["error"]["message"])[:200]
    except Exception:
        return response.text[:200].strip()


def _number(obj: dict, key: str, default: float | None = None) -> float | None:
    value = obj.get(key, default)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise CloudError("malformed", f"'{key}' is not a number")
    return float(value)


def parse_verbose_json(body: Any) -> CloudTranscript:
    """Check an OpenAI verbose_json (or json) answer; anything unexpected is CloudError('malformed')."""
    if not isinstance(body, dict) or not isinstance(body.get("text"), str):
        raise CloudError("malformed", "answer has no 'text' string")
    segments = body.get("segments") or []
    words = body.get("words") or []
    if not isinstance(segments, list) or not isinstance(words, list):
        raise CloudError("malformed", "'segments' / 'words' is not a list")
    for seg in segments:
        if not isinstance(seg, dict) or not isinstance(seg.get("text"), str):
            raise CloudError("malformed", "a segment has no 'text'")
        if _number(seg, "start") is None or _number(seg, "end") is None:
            raise CloudError("malformed", "a segment has no 'start'/'end'")
    for word in words:
        if not isinstance(word, dict) or not isinstance(word.get("word"), str):
            raise CloudError("malformed", "a word has no 'word'")
    language = body.get("language")
    return CloudTranscript(
        text=body["text"],
        segments=segments,
        words=words,
        language=language if isinstance(language, str) else None,
        duration=_number(body, "duration"),
    )
