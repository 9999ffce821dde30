"""`edge-asr transcribe FILE...`: print or write transcripts; one bad file never stops the batch."""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from edge_asr.config import load_config
from edge_asr.errors import EdgeAsrError
from edge_asr.formats import EXTENSIONS, FORMATS, render


def register(p: argparse.ArgumentParser) -> None:
    p.add_argument("audio", nargs="+", help="audio files (wav, flac, ogg, ...), or - for raw 16 kHz s16le PCM")
    p.add_argument("--model", help="model directory or built-in name (default: the bundled default model)")
    p.add_argument("--format", choices=FORMATS, default="text", help="output format (default: text)")
    p.add_argument("--output-dir", type=Path, help="write <name>.<ext> files here instead of printing")
    p.add_argument("--threads", type=int, help="ONNX Runtime intra-op threads (default: physical cores)")
    p.add_argument("--beam-size", type=int, help="beam size (default 1: greedy)")
    p.add_argument("--language", help="language code for multilingual models (default: detect)")
    p.add_argument("--no-word-timestamps", action="store_true", help="skip word alignment (a little faster)")
    p.add_argument("--config", type=Path, help="YAML config file")
    p.add_argument("--cache-dir", type=Path, help="model cache (default: $EDGE_ASR_CACHE or ~/.cache/edge-asr)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    section = config.transcribe
    from edge_asr.transcriber import Transcriber

    transcriber = Transcriber(args.model or section.model, threads=args.threads or section.threads,
                              cache_dir=args.cache_dir)
    from edge_asr.escalation import EscalatingTranscriber, EscalationPolicy

    policy = EscalationPolicy.from_config(config.escalation, str(args.config))
    if policy is not None:  # unsure windows go to the configured cloud (README: Escalation)
        transcriber = EscalatingTranscriber(transcriber, policy)
    options = {
        "beam_size": args.beam_size or section.beam_size,
        "word_timestamps": section.word_timestamps and not args.no_word_timestamps,
        "language": args.language,
    }
    if args.output_dir:
        args.output_dir.mkdir(parents=True, exist_ok=True)
    failures = 0
    for source in args.audio:
        try:
            segments, info = transcriber.transcribe(source, **options)
            segments = _with_progress(segments, info.duration, str(source))
            if args.output_dir:
                # Written as segments arrive would risk a half file; a transcript is small, so render at once.
                text = render(args.format, list(segments), info)
                stem = "stdin" if source == "-" else Path(source).stem
                out = args.output_dir / f"{stem}.{EXTENSIONS[args.format]}"
                out.write_text(text, encoding="utf-8")
                print(f"{source} -> {out}", file=sys.stderr)
            elif args.format == "text":
                for s in segments:  # stream: long files show progress line by line
                    print(s.text.strip(), flush=True)
            else:
                sys.stdout.write(render(args.format, list(segments), info))
                sys.stdout.flush()
        except EdgeAsrError as e:
            failures += 1
            print(f"edge-asr: error: {e}", file=sys.stderr)
    return 2 if failures else 0


def _with_progress(segments, duration: float, name: str):
    """A progress bar (audio seconds done) on an interactive terminal for files longer than a minute."""
    if not sys.stderr.isatty() or math.isnan(duration) or duration < 60:  # NaN: stdin, length unknown
        yield from segments
        return
    from tqdm import tqdm

    with tqdm(total=round(duration), unit="s", desc=Path(name).name, file=sys.stderr, leave=False) as bar:
        for s in segments:
            bar.update(max(0, round(s.end) - bar.n))
            yield s
