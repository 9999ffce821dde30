"""Where models live: the user cache (XDG), the default model, and building one from bundled weights."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from edge_asr.errors import ModelError
from edge_asr.model_dir import CARD, EXPORT_FORMAT, ModelCard, check_model_dir

# Built-in model names -> (weights, recipe). The default is built on first use: tiny.en with the int8 recipe
# (a quarter of the fp32 size, WER within 0.4 points of fp32 on speech-dev; README "Shrinking models for the Pi")
# and an encoder distilled for the short-utterance fast path, which is then on by default (README "Dictation").
BUILTIN = {
    "tiny.en-int8": ("tiny.en", "int8-fast"),
    "tiny.en": ("tiny.en", "fp32"),
    "base": ("base", "fp32"),
}
DEFAULT_MODEL = "tiny.en-int8"


def cache_dir(override: str | Path | None = None) -> Path:
    """--cache-dir, else $EDGE_ASR_CACHE, else $XDG_CACHE_HOME/edge-asr (~/.cache/edge-asr)."""
    if override:
        return Path(override)
    if os.environ.get("EDGE_ASR_CACHE"):
        return Path(os.environ["EDGE_ASR_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "edge-asr"


def builtin_dir(name: str, cache: str | Path | None = None) -> Path:
    return cache_dir(cache) / "models" / name


def resolve_model(model: str | Path | None, cache: str | Path | None = None) -> Path:
    """A model directory for `model`: None (the default), a built-in name, or a path."""
    name = DEFAULT_MODEL if model is None else str(model)
    if name in BUILTIN:
        path = builtin_dir(name, cache)
        if not (path / CARD).exists():
            build_builtin(name, path)
        elif _can_build() and (reason := _outdated(ModelCard.load(path), name)):
            build_builtin(name, path, reason=reason)
        return path
    path = Path(name).expanduser()
    check_model_dir(path)
    return path


def _outdated(card: ModelCard, name: str) -> str | None:
    """Why a cached built-in model must be rebuilt by this edge-asr, if it must."""
    if card.export_format < EXPORT_FORMAT:
        return "exported by an older edge-asr; rebuilding"
    if card.recipe.get("name") != BUILTIN[name][1]:
        return f"built with recipe '{card.recipe.get('name')}', now '{BUILTIN[name][1]}'; rebuilding"
    return None


def _can_build() -> bool:
    import importlib.util

    return importlib.util.find_spec("torch") is not None


def build_builtin(name: str, out: Path, reason: str = "once") -> None:
    """Export bundled weights into `out` (needs the workstation extra: torch)."""
    if not _can_build():
        raise ModelError(
            f"model '{name}' is not built yet and building needs torch: run `edge-asr models build --name {name}` "
            "on a workstation (pip install 'edge-asr[build]') and copy the folder here, then pass --model DIR"
        )
    weights, recipe = BUILTIN[name]
    print(f"edge-asr: building model '{name}' from bundled {weights} weights into {out} ({reason})...",
          file=sys.stderr)
    from quantize.pipeline import build

    build(weights, recipe, out)


def list_models(cache: str | Path | None = None) -> list[tuple[str, Path | None, ModelCard | None]]:
    rows: list[tuple[str, Path | None, ModelCard | None]] = []
    for name in BUILTIN:
        path = builtin_dir(name, cache)
        rows.append((name, path if (path / CARD).exists() else None,
                     ModelCard.load(path) if (path / CARD).exists() else None))
    models_root = cache_dir(cache) / "models"
    if models_root.is_dir():
        for path in sorted(models_root.iterdir()):
            if path.name not in BUILTIN and (path / CARD).exists():
                rows.append((path.name, path, ModelCard.load(path)))
    return rows
