"""`edge-asr <verb>`: each verb lives in its own module with `register(subparsers)`.

Verb modules are imported only when needed so `--help` and cold start stay fast.
"""

from __future__ import annotations

import argparse
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


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except EdgeAsrError as e:
        print(f"edge-asr: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
