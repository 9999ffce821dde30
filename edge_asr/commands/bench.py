"""`edge-asr bench`: WER, hallucination, speed, memory and size of models beside their peers."""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import tempfile

from edge_asr.errors import ConfigError, EdgeAsrError


def register(parser: argparse.ArgumentParser) -> None:
    from edge_asr.bench.systems import PEERS_HELP

    parser.add_argument("--data", required=True, metavar="PATH",
                        help="manifest.tsv (id, wav, reference_text), a .jsonl manifest, or a folder "
                             "(with manifest.tsv, or LibriSpeech *.trans.txt)")
    parser.add_argument("--models", nargs="*", metavar="DIR",
                        help="model directories to measure; 'default' is the built-in model "
                             "(the default when --models is absent; give --models alone for peers only)")
    parser.add_argument("--peers", default="", metavar="LIST", help=f"comma-separated peers: {PEERS_HELP}")
    parser.add_argument("--out", required=True, metavar="DIR",
                        help="folder for report.md, results.json and the PNG plots")
    parser.add_argument("--threads", type=int, default=2, help="compute threads for every system (default 2)")
    parser.add_argument("--repeat", type=int, default=1, help="timing runs per system; medians are reported")
    parser.add_argument("--limit", type=int, metavar="N", help="only the first N utterances (quick runs)")
    parser.add_argument("--baseline", metavar="NAME", help="system the ratios are against (default: first)")
    parser.add_argument("--nonspeech", metavar="DIR",
                        help="folder of non-speech audio for the hallucination rate "
                             "(default: the data's own empty-reference rows, else generated noise/tones)")
    parser.add_argument("--no-nonspeech", action="store_true", help="skip the hallucination measurement")
    parser.add_argument("--beam-size", type=int, default=1, help="beam size for whisper systems (default 1)")
    parser.add_argument("--short-max-s", type=float, default=10.0,
                        help="utterances up to this long measure latency (default 10)")
    parser.add_argument("--latency-clips", type=int, default=20,
                        help="measure latency on at most this many short utterances (default 20)")
    parser.add_argument("--long-min-s", type=float, default=60.0,
                        help="concatenate utterances to at least this long to measure RTF (default 60)")
    parser.add_argument("--openai-key-env", default="OPENAI_API_KEY", metavar="VAR",
                        help="environment variable with the bearer token for openai:URL peers")
    parser.add_argument("--openai-model", default="whisper-1", help="model name sent to openai:URL peers")
    parser.add_argument("--update-cards", action="store_true",
                        help="write the measured numbers into each model directory's model.yaml")
    parser.add_argument("--format", choices=("text", "json"), default="text",
                        help="what to print when done: the table, or the headline metrics as JSON")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from edge_asr.bench.card import update_cards
    from edge_asr.bench.data import clips_in_folder, load_dataset
    from edge_asr.bench.nonspeech import generate_nonspeech
    from edge_asr.bench.report import results_table, write_report
    from edge_asr.bench.runner import BenchOptions, run_bench
    from edge_asr.bench.systems import parse_systems

    for name in ("threads", "repeat", "beam_size", "latency_clips"):
        if getattr(args, name) < 1:
            raise ConfigError(f"--{name.replace('_', '-')} must be at least 1")
    if args.limit is not None and args.limit < 1:
        raise ConfigError("--limit must be at least 1")

    dataset = load_dataset(args.data).limit(args.limit)
    specs, problems = parse_systems(args.models, args.peers)
    if not specs:
        raise ConfigError("nothing to benchmark: give --models and/or --peers")
    names = [s.name for s in specs]
    if args.baseline and args.baseline not in names:
        raise ConfigError(f"--baseline '{args.baseline}' is not one of the systems: {', '.join(names)}")
    for problem in dataset.problems + problems:
        print(f"edge-asr bench: {problem}", file=sys.stderr)

    options = BenchOptions(
        threads=args.threads, repeat=args.repeat, beam_size=args.beam_size, short_max_s=args.short_max_s,
        latency_clips=args.latency_clips, long_min_s=args.long_min_s, baseline=args.baseline,
        openai_key_env=args.openai_key_env, openai_model=args.openai_model, progress=not args.no_progress)
    command = "edge-asr " + shlex.join(sys.argv[1:]) if sys.argv[1:2] == ["bench"] else ""
    with tempfile.TemporaryDirectory(prefix="edge-asr-nonspeech-") as tmp:
        if args.no_nonspeech:
            dataset.nonspeech = []
        elif args.nonspeech:
            dataset.nonspeech = clips_in_folder(args.nonspeech)
        elif not dataset.nonspeech:
            dataset.nonspeech = generate_nonspeech(tmp)
        results = run_bench(dataset, specs, options, problems, command)

    paths = write_report(results, args.out)
    if args.update_cards:
        for model_dir in update_cards(results):
            print(f"edge-asr bench: updated {model_dir}/model.yaml", file=sys.stderr)
    if args.format == "json":
        headline = {s["name"]: s.get("metrics") or {"error": s["error"]} for s in results["systems"]}
        print(json.dumps({"report": str(paths["report"]), "systems": headline}, indent=2))
    else:
        print(results_table(results))
        print(f"\nreport: {paths['report']}  results: {paths['results']}")
    if not any(s["status"] == "ok" for s in results["systems"]):
        raise EdgeAsrError(f"every system failed; see {paths['report']}")
    return 0
