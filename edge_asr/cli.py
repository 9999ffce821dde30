"""`edge-asr <verb>`: each verb lives in its own module with `register(subparsers)`.

Verb modules are imported only when needed so `--help` and cold start stay fast.
"""

from __future__ import annotations

import argparse
import ctypes
import importlib
import sys

from edge_asr.errors import EdgeAsrError

# verb -> (module, one-line help). The module's `register(parser)` adds arguments and sets `func`.
VERBS: dict[str, tuple[str, str]] = {
    "transcribe": ("edge_asr.commands.transcribe", "transcribe audio files"),
    "models": ("edge_asr.commands.models", "build and list model directories"),
    "dictate": ("edge_asr.commands.dictate", "dictation: text as you speak (partial and final results)"),
    "listen": ("edge_asr.commands.listen", "wake word -> voice command -> action, as JSON lines"),
    "wakeword": ("edge_asr.commands.wakeword", "wake-word tools: eval (recall, false accepts/hour, latency)"),
    "serve": ("edge_asr.commands.serve", "serve the transcription API (the escalation cloud)"),
    "bench": ("edge_asr.commands.bench", "accuracy, speed, memory and size of models beside their peers"),
    "shrink": ("edge_asr.commands.shrink", "quantize / prune + distil weights into a small model directory"),
}


def build_parser(argv: list[str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="edge-asr", description="Offline speech recognition for the edge.")
    sub = parser.add_subparsers(dest="verb", metavar="VERB", required=True)
    for verb, (module, help_text) in VERBS.items():
        p = sub.add_parser(verb, help=help_text, description=help_text)
        # Only the chosen verb's module is imported (cheap --help, fast start).
        if verb in argv[:1] or not argv:
            importlib.import_module(module).register(p)
    return parser


def _big_blocks_from_mmap() -> None:
    """glibc: blocks of 1 MB and more come straight from mmap, so a 30 s window's activations go back to the
    system after each pass instead of lingering in a fragmented heap (dictate's peak RSS -35 MB, same speed).
    Set here, for the CLI's own process, not on import: a library does not retune its host's allocator."""
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL("libc.so.6").mallopt(-3, 1 << 20)  # -3: M_MMAP_THRESHOLD
        except (OSError, AttributeError):
            pass  # another libc: its own defaults


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    _big_blocks_from_mmap()
    try:
        return int(args.func(args) or 0)
    except EdgeAsrError as e:
        print(f"edge-asr: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
