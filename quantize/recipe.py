"""Shrink recipes: YAML files listing steps with their parameters.

```yaml
name: int8
description: dynamic int8 weights
steps:
  - export: {opset: 17}
  - quantize_int8: {exclude: [decoder.blocks.0.mlp], embedding: int8}
```

Steps run in order. `prune` and `distill` work on the torch model and come before `export`; the
quantization steps work on the exported ONNX graphs and come after it (a missing `export` is added after the
torch steps). Built-in recipes ship in `quantize/recipes/`; a recipe argument is a built-in name or a path.
An unknown step, an unknown or mistyped parameter, or a missing calibration set is a one-line ConfigError
that names the key.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from edge_asr.config import from_dict, read_yaml
from edge_asr.errors import ConfigError
from quantize.distill_short import DistilledEncoderOptions, DistillShortOptions, MeasureFastPathOptions

RECIPES_DIR = Path(__file__).parent / "recipes"


@dataclass
class ExportStep:
    opset: int = 17


@dataclass
class PruneStep:
    """Structured pruning, ranked by first-order (Taylor) importance on calibration audio."""

    encoder_heads: int = 0  # attention heads removed from every encoder layer
    encoder_ffn: float = 0.0  # fraction of FFN channels removed from every encoder layer
    encoder_layers: int = 0  # whole encoder layers removed (the least important)
    decoder_ffn: float = 0.0  # fraction of FFN channels removed from every decoder layer
    refit: bool = True  # least-squares refit of each pruned encoder layer's outputs to the unpruned model's
    utterances: int = 24  # calibration clips used to measure importance
    refit_utterances: int = 0  # calibration clips used to refit (0: all)


@dataclass
class DistillStep:
    """Knowledge distillation from the unpruned model (teacher) on unlabeled calibration audio."""

    steps: int = 300
    lr: float = 1e-5  # higher rates undo a refit student within a few Adam steps (measured)
    batch: int = 4
    temperature: float = 2.0
    encoder_weight: float = 1.0  # weight of the encoder-output (cross K/V) matching loss
    max_minutes: float = 15.0  # stop early when this wall time is spent
    utterances: int = 0  # 0: every calibration clip


@dataclass
class QuantizeInt8Step:
    """Dynamic int8: per-channel int8 weights, activations quantized on the fly."""

    exclude: list[str] = field(default_factory=list)  # groups kept float, names or globs (see `sensitivity`)
    embedding: Literal["int8", "int4", "float"] = "int8"
    embedding_block_size: int = 32  # for embedding: int4
    embedding_equalize: float = 1.0  # for embedding: int4 (see quantization.share_embedding_nbits)


@dataclass
class QuantizeStaticStep:
    """Static int8 (QDQ): activation ranges calibrated on the user's audio."""

    exclude: list[str] = field(default_factory=list)
    dynamic: list[str] = field(default_factory=list)  # groups quantized dynamically instead (e.g. encoder FFNs)
    embedding: Literal["int8", "int4", "float"] = "int8"
    utterances: int = 16


@dataclass
class QuantizeInt4Step:
    """Weight-only blockwise 4-bit (ONNX Runtime MatMulNBits)."""

    block_size: int = 32
    exclude: list[str] = field(default_factory=list)  # groups kept float
    int8: list[str] = field(default_factory=list)  # groups given dynamic int8 instead of 4 bits
    embedding: Literal["int4", "int8", "float"] = "int4"
    embedding_block_size: int = 32
    embedding_equalize: float = 1.0  # channel equalization strength for the 4-bit embedding (0: off)
    accuracy_level: int = 4  # 4: int8 compute inside MatMulNBits; 0: fp32 compute


@dataclass
class SensitivityStep:
    """Quantize one layer group at a time (dynamic int8), measure the damage on calibration audio."""

    utterances: int = 8
    groups: list[str] = field(default_factory=lambda: ["*"])  # which groups to measure (names or globs)
    mode: Literal["int8", "int4"] = "int8"  # quantize each group as dynamic int8 or as 4-bit blocks
    block_size: int = 32  # for mode int4
    exclude_worst: int = 0  # later quantize steps keep this many of the worst groups out (float, or int8 in int4)


STEPS: dict[str, type] = {
    "prune": PruneStep,
    "distill": DistillStep,
    "export": ExportStep,
    "sensitivity": SensitivityStep,
    "quantize_int8": QuantizeInt8Step,
    "quantize_static": QuantizeStaticStep,
    "quantize_int4": QuantizeInt4Step,
    "distill_short": DistillShortOptions,  # fine-tune for the short-utterance fast path (its own audio)
    "measure_fast_path": MeasureFastPathOptions,  # score the fast path on short speech, write the card's verdict
    "distilled_encoder": DistilledEncoderOptions,  # a shipped distill_short encoder (and its measured verdict)
}
TORCH_STEPS = ("prune", "distill", "distill_short", "distilled_encoder")
NEEDS_CALIBRATION = ("prune", "distill", "quantize_static", "sensitivity")


@dataclass
class Recipe:
    name: str
    steps: list[dict[str, Any]]
    description: str = ""
    calibration: str | None = None  # directory of audio; --calibration overrides it
    source: str = ""  # where the recipe came from (file path), filled in by load_recipe

    def parsed(self) -> list[tuple[str, Any]]:
        return [(name, params) for step in self.steps for name, params in step.items()]

    def to_card(self) -> dict[str, Any]:
        """What the model card records: the recipe as run, every parameter spelled out."""
        steps = [{name: dataclasses.asdict(params)} for name, params in self.parsed()]
        return {"name": self.name, "description": self.description, "steps": steps}


def builtin_recipes() -> list[str]:
    return sorted(p.stem for p in RECIPES_DIR.glob("*.yaml"))


def load_recipe(recipe: str | Path) -> Recipe:
    """A built-in name ('int8') or a YAML file path."""
    path = Path(recipe)
    if str(recipe) in builtin_recipes():
        path = RECIPES_DIR / f"{recipe}.yaml"
    elif not path.exists():
        raise ConfigError(f"unknown recipe '{recipe}' (built-in: {', '.join(builtin_recipes())}; or a YAML file)")
    return parse_recipe(read_yaml(path), str(path))


def parse_recipe(data: Any, source: str = "recipe") -> Recipe:
    raw = from_dict(Recipe, data, source)
    steps: list[dict[str, Any]] = []
    for i, step in enumerate(raw.steps):
        key = f"steps[{i}]"
        if not isinstance(step, dict) or len(step) != 1:
            raise ConfigError(f"{source}: '{key}' must be a mapping with one step name, e.g. '- quantize_int8: {{}}'")
        (name, params), = step.items()
        if name not in STEPS:
            raise ConfigError(f"{source}: unknown step '{key}.{name}' (known: {', '.join(STEPS)})")
        steps.append({name: from_dict(STEPS[name], params, source, prefix=f"{key}.{name}")})
    raw.steps = steps
    raw.source = source
    _check_order(raw, source)
    return raw


def _check_order(recipe: Recipe, source: str) -> None:
    names = [n for n, _ in recipe.parsed()]
    if names.count("export") > 1:
        raise ConfigError(f"{source}: 'steps' has more than one 'export'")
    if "export" not in names:  # the torch steps, then export, then the ONNX steps
        at = max((i + 1 for i, n in enumerate(names) if n in TORCH_STEPS), default=0)
        recipe.steps.insert(at, {"export": ExportStep()})
        names.insert(at, "export")
    at = names.index("export")
    for i, n in enumerate(names):
        if n in TORCH_STEPS and i > at:
            raise ConfigError(f"{source}: step 'steps[{i}].{n}' works on the torch model: put it before 'export'")
        if n not in TORCH_STEPS and n != "export" and i < at:
            raise ConfigError(f"{source}: step 'steps[{i}].{n}' works on the ONNX graphs: put it after 'export'")
    quantizers = [n for n in names if n.startswith("quantize_")]
    if len(quantizers) > 1:
        raise ConfigError(f"{source}: 'steps' has more than one quantize step ({', '.join(quantizers)})")


def require_calibration(recipe: Recipe, calibration: str | Path | None) -> Path | None:
    """The calibration directory the recipe needs, or None if none of its steps needs one."""
    needing = [n for n, _ in recipe.parsed() if n in NEEDS_CALIBRATION]
    chosen = calibration or recipe.calibration
    if not needing:
        return Path(chosen) if chosen else None
    if not chosen:
        raise ConfigError(
            f"{recipe.source}: missing key 'calibration': step '{needing[0]}' needs calibration audio "
            "(pass --calibration DIR or set 'calibration:' in the recipe)"
        )
    path = Path(chosen).expanduser()
    if not path.is_dir():
        raise ConfigError(f"{recipe.source}: 'calibration' is not a directory: {path}")
    return path
