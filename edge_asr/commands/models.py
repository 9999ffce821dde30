"""`edge-asr models build|list`."""

from __future__ import annotations

import argparse
from pathlib import Path

from edge_asr.model_dir import size_on_disk


def register(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    b = sub.add_parser("build", help="export weights (fp32) to a model directory (needs torch)")
    b.add_argument("--from", dest="source", default="tiny.en",
                   help="weights: tiny.en | base (bundled), a CTranslate2 dir, an openai .pt, or an HF dir")
    b.add_argument("--out", type=Path, required=True, help="model directory to write")
    b.set_defaults(func=build)
    ls = sub.add_parser("list", help="list built-in and cached models")
    ls.add_argument("--cache-dir", type=Path)
    ls.set_defaults(func=list_)


def build(args: argparse.Namespace) -> int:
    from quantize.pipeline import build as build_dir

    out = build_dir(args.source, "fp32", args.out)
    print(f"{out} ({size_on_disk(out) / 1e6:.1f} MB)")
    return 0


def list_(args: argparse.Namespace) -> int:
    from edge_asr.models import list_models

    for name, path, card in list_models(args.cache_dir):
        where = f"{path} ({size_on_disk(path) / 1e6:.1f} MB)" if path else "not built yet (built on first use)"
        recipe = card.recipe.get("name", "?") if card else "-"
        print(f"{name:24} {recipe:10} {where}")
    return 0
