"""`edge-asr dictate`: speech to text as you speak, from the microphone, a file or stdin.

Text: one line per utterance (on a terminal the growing partial is shown on stderr first).
JSON lines: a `ready` event, then `partial` and `final` events (see edge_asr/dictation.py for the shapes).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path


def register(p: argparse.ArgumentParser) -> None:
    p.add_argument("--input", metavar="FILE|-", default=None,
                   help="audio file (any format/rate) or - for raw 16 kHz mono s16le PCM on stdin; "
                        "default: the microphone")
    p.add_argument("--realtime", action="store_true", help="pace a file at real-time speed, like a microphone")
    p.add_argument("--output", type=Path, metavar="FILE", help="write here instead of stdout")
    p.add_argument("--format", choices=("text", "json"), default="text",
                   help="text: final lines; json: partial and final events as JSON lines (default: text)")
    p.add_argument("--config", type=Path, metavar="FILE.yaml",
                   help="edge-asr config (its 'dictate:' and 'escalation:' sections)")
    p.add_argument("--model", help="model directory or built-in name (default: config, else the built-in one)")
    p.add_argument("--threads", type=int, help="transcriber threads (default: config, else 2)")
    p.add_argument("--language", help="language code for multilingual models (default: config, else detect)")
    p.add_argument("--fast-path", action=argparse.BooleanOptionalAction, default=None,
                   help="encode only the audio present, not a 30 s window (default: as the model card says)")
    p.add_argument("--device", default=None, help="sounddevice input device (name or index)")
    p.add_argument("--cache-dir", type=Path, help="model cache (default: $EDGE_ASR_CACHE or ~/.cache/edge-asr)")
    p.set_defaults(func=run)


def process_age_s() -> float | None:
    """Seconds since this process started (Linux), for the `ready` event: the cold start."""
    try:
        with open("/proc/self/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        with open("/proc/uptime") as f:
            uptime = float(f.read().split()[0])
        return round(uptime - int(fields[19]) / os.sysconf("SC_CLK_TCK"), 3)
    except (OSError, ValueError, IndexError):
        return None


class _TextOut:
    """Final lines to `out`; on a terminal, the live partial is redrawn in place on stderr."""

    def __init__(self, out) -> None:
        self.out = out
        self.live = sys.stderr.isatty()

    def __call__(self, event: dict) -> None:
        if event["event"] == "partial" and self.live:
            tentative = f"\x1b[2m{event['tentative']}\x1b[0m" if event["tentative"] else ""
            sys.stderr.write(f"\r\x1b[K{event['committed']} {tentative}".rstrip())
            sys.stderr.flush()
        elif event["event"] == "final":
            if self.live:
                sys.stderr.write("\r\x1b[K")
                sys.stderr.flush()
            if event["text"]:
                self.out.write(event["text"] + "\n")
                self.out.flush()


def run(args: argparse.Namespace) -> int:
    from edge_asr.config import load_config
    from edge_asr.dictation import Dictation
    from edge_asr.escalation import EscalationPolicy
    from edge_asr.stream import MICROPHONE, open_stream
    from edge_asr.transcriber import Transcriber

    config = load_config(args.config)
    section = config.dictate.check(str(args.config or "command line"))  # before the model loads
    if args.fast_path is not None:
        section.fast_path = args.fast_path
    if args.language:
        section.language = args.language
    policy = EscalationPolicy.from_config(config.escalation, str(args.config))  # None: no endpoint
    threads = args.threads or section.threads or config.transcribe.threads or 2
    transcriber = Transcriber(args.model or section.model or config.transcribe.model, threads=threads,
                              cache_dir=args.cache_dir)
    # A file read as fast as possible is not live: every partial is computed, however long it takes.
    live = args.realtime or args.input in (None, MICROPHONE, "-")
    dictation = Dictation(transcriber, section, live=live, policy=policy)
    device = int(args.device) if args.device and args.device.isdigit() else args.device
    out = args.output.open("w", encoding="utf-8") if args.output else sys.stdout
    try:
        with open_stream(args.input or MICROPHONE, realtime=args.realtime, device=device) as stream:
            if args.format == "json":
                def emit(event: dict) -> None:
                    out.write(json.dumps(event, ensure_ascii=False) + "\n")
                    out.flush()
            else:
                emit = _TextOut(out)
            ready = {"event": "ready", "model": transcriber.card.name, "input": stream.description,
                     "startup_s": process_age_s()}
            if args.format == "json":
                emit(ready)
            elif stream.description == "microphone" and sys.stderr.isatty():
                print("edge-asr: listening (Ctrl-C to stop)", file=sys.stderr)
            try:
                for frame in stream:
                    for event in dictation.feed(frame):
                        emit(event)
            except KeyboardInterrupt:  # Ctrl-C: the sentence being spoken still gets its final line
                pass
            for event in dictation.finish():
                emit(event)
    finally:
        if args.output:
            out.close()
    return 0
