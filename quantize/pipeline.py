"""Build a model directory: load weights, export to ONNX, apply a recipe's steps."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from quantize.export import export_model_dir
from quantize.weights import load_weights


def build(source: str | Path, recipe: str, out: Path) -> Path:
    """Write the model directory atomically: a half-built folder never looks like a model."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        weights = load_weights(source)
        if recipe != "fp32":
            raise NotImplementedError(recipe)
        export_model_dir(weights, tmp, name=out.name)
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return out
