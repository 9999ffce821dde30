"""`edge-asr shrink`: make a small model directory for the Pi from Whisper weights with a recipe
(quantization, structured pruning + distillation). Runs on a workstation: needs torch."""

from __future__ import annotations

import argparse
import datetime
import json
from pathlib import Path

from edge_asr.errors import ModelError
from edge_asr.model_dir import ModelCard, size_on_disk


def register(p: argparse.ArgumentParser) -> None:
    p.add_argument("--recipe", default="int8",
                   help="built-in recipe (fp32, int8, int8-static, int4, pruned-int8) or a recipe YAML file "
                        "(default: int8)")
    p.add_argument("--from", dest="source", default="tiny.en",
                   help="weights: tiny.en | base (bundled), a CTranslate2 dir, an openai .pt, or an HF dir")
    p.add_argument("--calibration", type=Path,
                   help="folder of unlabeled recordings (needed by static int8, sensitivity, pruning, distillation)")
    p.add_argument("--out", type=Path, required=True, help="model directory to write")
    p.add_argument("--evaluate", type=Path, metavar="DATA",
                   help="manifest.tsv (or its folder) with id, wav, reference_text: measure WER and speed and "
                        "write them into the card")
    p.add_argument("--threads", type=int, default=2, help="threads for --evaluate (default 2)")
    p.add_argument("--format", choices=("text", "json"), default="text", help="summary format")
    p.add_argument("--list-recipes", action="store_true", help="print the built-in recipes and exit")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from quantize.recipe import builtin_recipes, load_recipe

    if args.list_recipes:
        for name in builtin_recipes():
            print(f"{name:14} {load_recipe(name).description}")
        return 0
    try:
        import torch  # noqa: F401
    except ImportError:
        raise ModelError("shrinking needs the workstation extra: pip install 'edge-asr[build]'") from None
    from quantize.pipeline import build

    recipe = load_recipe(args.recipe)
    out = build(args.source, recipe, args.out, calibration=args.calibration)
    card = ModelCard.load(out)
    if args.evaluate:
        from quantize.evaluate import evaluate

        result = evaluate(out, args.evaluate, threads=args.threads)
        result["measured"] = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
        card.metrics[Path(args.evaluate).resolve().parent.name if Path(args.evaluate).is_file()
                     else Path(args.evaluate).resolve().name] = result
        card.save(out)
    summary = {"out": str(out), "recipe": card.recipe.get("name"), "bytes": size_on_disk(out), "files": card.files,
               "metrics": {k: v for k, v in card.metrics.items() if k != "sensitivity"}}
    if args.format == "json":
        print(json.dumps(summary, indent=2))
    else:
        print(f"{out}  recipe={summary['recipe']}  {summary['bytes'] / 1e6:.1f} MB")
        for name, m in summary["metrics"].items():
            print(f"  {name}: WER {m['wer']:.2f}%  RTF {m['rtf']}  encoder {m['encoder_ms']} ms "
                  f"({m['utterances']} utterances, {m['threads']} threads)")
    return 0
