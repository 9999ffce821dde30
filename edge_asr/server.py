"""The "cloud": an OpenAI-compatible transcription server for our model directories (FastAPI).

`POST /v1/audio/transcriptions` (multipart: file, model, response_format, language, temperature,
timestamp_granularities[]), `GET /v1/models`, `GET /health`. Bearer token, upload size limit (413), bad audio
(400 with the reason), and a bounded queue: when every transcriber is busy and the queue is full, 503 with
Retry-After. Uploaded audio lives only in memory: the multipart parser never spools to a temp file and the
audio is decoded from a BytesIO.
"""

from __future__ import annotations

import asyncio
import hmac
import io
import logging
import math
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser

from edge_asr import formats
from edge_asr.errors import EdgeAsrError

log = logging.getLogger(__name__)

RESPONSE_FORMATS = ("json", "verbose_json", "text", "srt", "vtt")
GRANULARITIES = ("segment", "word")
# Whisper's fallback schedule; a request's temperature t starts it at t (OpenAI: 0 means "automatic").
TEMPERATURE_STEPS = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
# The API's `prompt` primes the decoder, which keeps only its last 223 tokens; a longer text is a mistake
# (or a way to make the server tokenize megabytes), not a prompt.
MAX_PROMPT_CHARS = 4000


@dataclass
class ServerSettings:
    model_name: str
    api_key: str | None  # None: no authentication (only for loopback tests and trusted networks)
    max_upload_bytes: int = 25 * 1024 * 1024  # OpenAI's limit
    max_queue: int = 4  # requests allowed to wait for a free transcriber; beyond that, 503
    max_audio_s: float = 1800.0  # a few MB of low-bitrate Ogg can hold hours: bound the decoded size too
    beam_size: int = 5


class _TooLarge(Exception):
    pass


class _ApiError(Exception):
    def __init__(self, status: int, message: str, param: str | None = None, headers: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.param, self.headers = status, message, param, headers or {}


def _in_memory_parser(limit: int) -> type[MultiPartParser]:
    # Starlette spools uploads over 1 MB to a temp file; raising the spool size above the upload limit keeps
    # every upload in memory (the limit is enforced while reading, so memory stays bounded by it).
    return type("InMemoryMultiPartParser", (MultiPartParser,), {"spool_max_size": limit + 1})


class _Pool:
    """Transcribers handed out one request at a time, plus admission control for the wait queue."""

    def __init__(self, transcribers: Sequence[Any], max_queue: int):
        self.free: asyncio.Queue = asyncio.Queue()
        for t in transcribers:
            self.free.put_nowait(t)
        self.size = len(transcribers)
        self.max_queue = max_queue
        self.admitted = 0  # running + waiting; only touched from the event loop, so no lock
        self.mean_latency_s = 2.0  # running estimate for Retry-After

    def retry_after_s(self) -> int:
        waiting = max(self.admitted - self.size, 0)
        return max(1, math.ceil(self.mean_latency_s * (waiting + 1) / self.size))

    def observe(self, seconds: float) -> None:
        self.mean_latency_s = 0.8 * self.mean_latency_s + 0.2 * seconds


def create_app(transcribers: Sequence[Any], settings: ServerSettings) -> FastAPI:
    """An app serving `transcribers` (one request each at a time; objects with the Transcriber interface)."""
    if not transcribers:
        raise ValueError("need at least one transcriber")
    app = FastAPI(title="edge-asr", version="1", docs_url=None, redoc_url=None)
    pool: _Pool | None = None
    parser_cls = _in_memory_parser(settings.max_upload_bytes)
    languages = _languages(transcribers[0])

    def get_pool() -> _Pool:
        nonlocal pool
        if pool is None:  # created inside the running loop that serves requests
            pool = _Pool(transcribers, settings.max_queue)
        return pool

    def error(status: int, message: str, param: str | None = None, headers: dict | None = None):
        kind = "invalid_request_error" if status < 500 else "server_error"
        return JSONResponse({"error": {"message": message, "type": kind, "param": param, "code": status}},
                            status_code=status, headers=headers)

    def authorized(request: Request) -> bool:
        if settings.api_key is None:
            return True
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        expected = settings.api_key.encode()
        return scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(), expected)

    @app.exception_handler(_ApiError)
    async def _api_error(_request: Request, exc: _ApiError) -> JSONResponse:
        return error(exc.status, exc.message, exc.param, exc.headers)

    @app.middleware("http")
    async def _auth(request: Request, call_next):
        if request.url.path.startswith("/v1/") and not authorized(request):
            return error(401, "missing or wrong bearer token", headers={"WWW-Authenticate": "Bearer"})
        return await call_next(request)

    @app.get("/health")
    async def health() -> dict:
        p = get_pool()
        running = min(p.admitted, p.size)
        return {"status": "ok", "model": settings.model_name, "transcribers": p.size, "running": running,
                "queued": p.admitted - running, "max_queue": p.max_queue}

    @app.get("/v1/models")
    async def models() -> dict:
        model = {"id": settings.model_name, "object": "model", "created": 0, "owned_by": "edge-asr"}
        return {"object": "list", "data": [model]}

    @app.post("/v1/audio/transcriptions")
    async def transcriptions(request: Request) -> Response:
        p = get_pool()
        if p.admitted >= p.size + p.max_queue:
            retry = p.retry_after_s()
            raise _ApiError(503, f"server busy; retry in {retry} s", headers={"Retry-After": str(retry)})
        p.admitted += 1
        try:
            form = await _read_form(request, parser_cls, settings.max_upload_bytes)
            options = _parse_options(form)
            if languages is not None and options["language"] not in (None, *languages):
                known = ", ".join(sorted(languages)[:5]) + (", ..." if len(languages) > 5 else "")
                raise _ApiError(400, f"language {options['language']!r} is not one this model knows "
                                     f"(ISO-639-1 codes: {known})", "language")
            audio = await run_in_threadpool(_decode_audio, form["file"], settings.max_audio_s)
            transcriber = await p.free.get()
            t0 = time.perf_counter()
            try:
                segments, info = await run_in_threadpool(_transcribe, transcriber, audio, options, settings)
            finally:
                p.free.put_nowait(transcriber)
                p.observe(time.perf_counter() - t0)
        finally:
            p.admitted -= 1
        return _render(options["response_format"], segments, info, options["words"])

    return app


def _languages(transcriber) -> set[str] | None:
    """Language codes the model can be asked for (English-only models: just "en"); None if unknown."""
    card = getattr(transcriber, "card", None)
    if card is None:
        return None
    return set(card.tokens.languages) or {"en"}


async def _read_form(request: Request, parser_cls: type[MultiPartParser], limit: int) -> dict[str, Any]:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise _ApiError(413, f"upload is {int(declared)} bytes; the limit is {limit} bytes")
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise _ApiError(400, "expected a multipart/form-data body with a 'file' field")

    async def capped() -> AsyncIterator[bytes]:
        seen = 0
        async for chunk in request.stream():
            seen += len(chunk)
            if seen > limit:
                raise _TooLarge
            yield chunk

    try:
        form = await parser_cls(request.headers, capped(), max_files=1, max_fields=50).parse()
    except _TooLarge:
        raise _ApiError(413, f"upload exceeds the limit of {limit} bytes") from None
    except MultiPartException as e:
        raise _ApiError(400, f"malformed multipart body: {e.message}") from None
    items: dict[str, Any] = {}
    for key, value in form.multi_items():
        if key.endswith("[]"):
            items.setdefault(key, []).append(value)
        else:
            items[key] = value
    return items


def _parse_options(form: dict[str, Any]) -> dict[str, Any]:
    upload = form.get("file")
    if not isinstance(upload, UploadFile):
        raise _ApiError(400, "no audio: send the file in a multipart field named 'file'", "file")
    response_format = form.get("response_format") or "json"
    if response_format not in RESPONSE_FORMATS:
        allowed = ", ".join(RESPONSE_FORMATS)
        raise _ApiError(400, f"response_format must be one of {allowed}", "response_format")
    try:
        temperature = float(form.get("temperature") or 0.0)
    except ValueError:
        raise _ApiError(400, "temperature must be a number", "temperature") from None
    if not 0.0 <= temperature <= 1.0:
        raise _ApiError(400, "temperature must be between 0 and 1", "temperature")
    granularities = form.get("timestamp_granularities[]") or form.get("timestamp_granularities")
    granularities = granularities or ["segment"]
    granularities = [granularities] if isinstance(granularities, str) else granularities
    for g in granularities:
        if g not in GRANULARITIES:
            raise _ApiError(400, f"timestamp_granularities must be among {GRANULARITIES}",
                            "timestamp_granularities")
    language = form.get("language") or None
    prompt = form.get("prompt") or None
    if prompt is not None and not isinstance(prompt, str):
        raise _ApiError(400, "prompt must be text", "prompt")
    if prompt is not None and len(prompt) > MAX_PROMPT_CHARS:
        raise _ApiError(400, f"prompt is {len(prompt)} characters; the limit is {MAX_PROMPT_CHARS}", "prompt")
    temperatures = tuple(t for t in TEMPERATURE_STEPS if t >= temperature - 1e-9) or (temperature,)
    return {"response_format": response_format, "language": language, "temperature": temperatures,
            "words": "word" in granularities and response_format == "verbose_json", "prompt": prompt}


def _decode_audio(upload: UploadFile, max_audio_s: float):
    from edge_asr.audio import audio_info, load_audio

    upload.file.seek(0)
    buffer = io.BytesIO(upload.file.read())  # the spooled upload is already in memory; decode from there
    upload.file.close()
    buffer.name = upload.filename or "upload"
    try:
        _, duration = audio_info(buffer)
        if duration > max_audio_s:
            raise _ApiError(413, f"audio is {duration:.0f} s long; the limit is {max_audio_s:.0f} s", "file")
        audio = load_audio(buffer)
    except _ApiError:
        raise
    except EdgeAsrError as e:
        raise _ApiError(400, f"bad audio: {e}", "file") from None
    except Exception as e:  # a decoder failing mid-file on a hostile upload is still the upload's fault
        name = upload.filename or "file"
        raise _ApiError(400, f"bad audio: {name}: {type(e).__name__}: {e}", "file") from None
    if len(audio) == 0:
        raise _ApiError(400, "bad audio: the file holds no samples", "file")
    return audio


def _transcribe(transcriber, audio, options: dict, settings: ServerSettings):
    try:
        segments, info = transcriber.transcribe(
            audio, beam_size=settings.beam_size, word_timestamps=options["words"],
            language=options["language"], temperature=options["temperature"], initial_prompt=options["prompt"],
        )
        return list(segments), info
    except EdgeAsrError as e:  # e.g. an unsupported language
        raise _ApiError(400, str(e)) from None


def _render(response_format: str, segments: list, info, words: bool) -> Response:
    text = formats.to_text(segments)
    if response_format == "json":
        return JSONResponse({"text": text})
    if response_format in ("text", "srt", "vtt"):
        return PlainTextResponse(formats.render(response_format, segments, info))
    body: dict[str, Any] = {
        "task": "transcribe",
        "language": info.language,
        "duration": round(float(info.duration), 3),
        "text": text,
        "segments": [
            {"id": int(s.id), "seek": int(s.seek), "start": round(float(s.start), 3),
             "end": round(float(s.end), 3), "text": s.text, "tokens": [int(t) for t in s.tokens],
             "temperature": float(s.temperature), "avg_logprob": float(s.avg_logprob),
             "compression_ratio": float(s.compression_ratio), "no_speech_prob": float(s.no_speech_prob)}
            for s in segments
        ],
    }
    if words:
        # `probability` is our addition to OpenAI's word objects: the device uses it for cloud confidence.
        body["words"] = [{"word": w.word, "start": round(float(w.start), 3), "end": round(float(w.end), 3),
                          "probability": round(float(w.probability), 4)}
                         for s in segments for w in (s.words or [])]
    return JSONResponse(body)
