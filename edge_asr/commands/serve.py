"""`edge-asr serve`: the self-hosted cloud side of escalation (needs the `server` extra)."""

from __future__ import annotations

import argparse
import logging
import os

from edge_asr.errors import EdgeAsrError

API_KEY_ENV = "EDGE_ASR_API_KEY"


def register(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Serve POST /v1/audio/transcriptions (OpenAI-compatible), GET /v1/models and GET /health. "
        f"Clients must send 'Authorization: Bearer ${API_KEY_ENV}'."
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1; "
                        "0.0.0.0 for every interface)")
    parser.add_argument("--port", type=int, default=8000, help="TCP port (default 8000)")
    parser.add_argument("--model", default="base",
                        help="model directory or built-in name (default: base, the multilingual Whisper base "
                             "from the bundled weights, built into the cache on first use)")
    parser.add_argument("--cache-dir", help="model cache (default: $EDGE_ASR_CACHE or ~/.cache/edge-asr)")
    parser.add_argument("--beam-size", type=int, default=5, help="beam width (default 5)")
    parser.add_argument("--threads", type=int, default=None, help="ONNX Runtime threads per transcriber")
    parser.add_argument("--workers", type=int, default=1,
                        help="transcribers working in parallel, each with its own model copy (default 1)")
    parser.add_argument("--max-queue", type=int, default=4,
                        help="requests that may wait for a free transcriber; more get 503 (default 4)")
    parser.add_argument("--max-upload-mb", type=float, default=25.0, help="upload size limit (default 25)")
    parser.add_argument("--max-audio-s", type=float, default=1800.0,
                        help="longest audio accepted, in seconds (default 1800)")
    parser.add_argument("--no-auth", action="store_true",
                        help=f"serve without a token even if ${API_KEY_ENV} is unset (trusted networks only)")
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        import uvicorn

        from edge_asr.server import ServerSettings, create_app
    except ImportError as e:
        raise EdgeAsrError(f"the server needs the 'server' extra: pip install 'edge-asr[server]' ({e.name} "
                           "is missing)") from None
    api_key = os.environ.get(API_KEY_ENV) or None
    if api_key is None and not args.no_auth:
        raise EdgeAsrError(f"set {API_KEY_ENV} to the bearer token clients must send (or pass --no-auth)")
    for name in ("workers", "beam_size", "port"):
        if getattr(args, name) < 1:
            raise EdgeAsrError(f"--{name.replace('_', '-')} must be at least 1")
    if args.max_queue < 0 or args.max_upload_mb <= 0 or args.max_audio_s <= 0:
        raise EdgeAsrError("--max-queue must be ≥ 0, --max-upload-mb and --max-audio-s positive")

    logging.basicConfig(level=args.log_level.upper(), format="%(levelname)s %(name)s: %(message)s")
    from edge_asr.transcriber import Transcriber

    transcribers = [Transcriber(args.model, threads=args.threads, cache_dir=args.cache_dir)
                    for _ in range(args.workers)]
    settings = ServerSettings(
        model_name=transcribers[0].card.name, api_key=api_key,
        max_upload_bytes=int(args.max_upload_mb * 1024 * 1024), max_queue=args.max_queue,
        beam_size=args.beam_size, max_audio_s=args.max_audio_s,
    )
    app = create_app(transcribers, settings)
    # No access log: request lines are noise at this rate and the audio itself is never logged anyway.
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level, access_log=False)
    return 0
