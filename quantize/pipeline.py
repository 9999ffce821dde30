"""Build a model directory: load weights, run a recipe's steps (prune, distill, export, quantize), write the card.

The torch steps change the model in memory; `export` writes fp32 ONNX; the ONNX steps rewrite the graphs in
place. The card records the recipe as run, the source-weights hash, the calibration-set hash, file sizes and
whatever a step measured (pruning report, distillation losses, sensitivity table).
"""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge_asr.model_dir import TOKENIZER, FastPath, ModelCard
from quantize.calibration import CalibrationSet, teacher_tokens
from quantize.recipe import Recipe, load_recipe, require_calibration
from quantize.weights import SourceWeights, load_weights


@dataclass
class BuildContext:
    weights: SourceWeights  # the source, never modified (the teacher)
    recipe: Recipe
    out: Path  # the model directory being written (a temporary folder until the end)
    scratch: Path
    calibration: CalibrationSet | None
    progress: bool = True
    model: Any = None  # the torch Whisper, once a torch step or export asked for it
    flagged: list[str] = field(default_factory=list)  # groups the sensitivity pass says to keep float
    report: dict[str, Any] = field(default_factory=dict)  # per-step measurements for the card
    _reference_dir: Path | None = None
    _teacher: dict[Path, list[int]] = field(default_factory=dict)

    def torch_model(self):
        if self.model is None:
            from quantize.export import build_model

            self.model = build_model(self.weights)
        return self.model

    def reference_dir(self) -> Path:
        """An fp32 export of the unmodified source weights (the teacher for pruning and distillation)."""
        if self._reference_dir is None:
            from quantize.export import export_model_dir

            self._reference_dir = self.scratch / "reference"
            export_model_dir(self.weights, self._reference_dir, name="reference")
        return self._reference_dir

    def teacher(self, files: list[Path]) -> dict[Path, list[int]]:
        assert self.calibration is not None
        todo = [f for f in files if f not in self._teacher]
        if todo:
            self._teacher.update(teacher_tokens(self.reference_dir(), self.calibration, todo,
                                                progress=self.progress))
        return {f: self._teacher[f] for f in files}


def build(source: str | Path, recipe: str | Path | Recipe, out: Path, calibration: str | Path | None = None,
          progress: bool = True) -> Path:
    """Write the model directory atomically: a half-built folder never looks like a model."""
    recipe = recipe if isinstance(recipe, Recipe) else load_recipe(recipe)
    calib_dir = require_calibration(recipe, calibration)  # fail before any slow work
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    scratch = Path(tempfile.mkdtemp(prefix="edge-asr-shrink-"))
    try:
        ctx = BuildContext(
            weights=load_weights(source), recipe=recipe, out=tmp, scratch=scratch,
            calibration=CalibrationSet.from_dir(calib_dir) if calib_dir else None, progress=progress,
        )
        from tqdm import tqdm

        steps = tqdm(recipe.parsed(), desc=f"shrink {recipe.name}", unit="step", disable=not progress, leave=False)
        for name, params in steps:
            steps.set_postfix_str(name)
            STEP_RUNNERS[name](ctx, params)
        _finish_card(ctx, out.name)
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    finally:
        for path in (tmp, scratch):
            if path.exists():
                shutil.rmtree(path)
    return out


# --- steps ----------------------------------------------------------------------------------------------------

def _prune(ctx: BuildContext, p) -> None:
    from quantize.prune import prune_model

    assert ctx.calibration is not None
    files = ctx.calibration.subset(p.utterances)
    ctx.report["prune"] = prune_model(ctx.torch_model(), ctx.calibration, ctx.teacher(files), p,
                                      progress=ctx.progress)


def _distill(ctx: BuildContext, p) -> None:
    from quantize.distill import distill
    from quantize.export import build_model

    assert ctx.calibration is not None
    files = ctx.calibration.subset(p.utterances)
    teacher = build_model(ctx.weights)  # the unpruned source model
    ctx.report["distill"] = distill(ctx.torch_model(), teacher, ctx.calibration, ctx.teacher(files), p,
                                    progress=ctx.progress)


def _export(ctx: BuildContext, p) -> None:
    from quantize.export import export_model_dir
    from quantize.quantization import name_weights

    export_model_dir(ctx.weights, ctx.out, recipe={}, opset=p.opset, model=ctx.model)
    if any(n.startswith(("quantize_", "sensitivity")) for n, _ in ctx.recipe.parsed()):
        params = ctx.model.state_dict() if ctx.model is not None else ctx.weights.state_dict
        name_weights(ctx.out, {k: v.detach().numpy() for k, v in params.items()})
    _compact_tokenizer(ctx.out / TOKENIZER)


def _sensitivity(ctx: BuildContext, p) -> None:
    from quantize.quantization import matches, weight_groups
    from quantize.sensitivity import measure

    assert ctx.calibration is not None
    files = ctx.calibration.subset(p.utterances)
    tokens = teacher_tokens(ctx.out, ctx.calibration, files, progress=ctx.progress)
    groups = [g for g in weight_groups(ctx.out) if matches(g, p.groups)]
    table = measure(ctx.out, ctx.calibration, tokens, groups=groups, mode=p.mode, block_size=p.block_size,
                    progress=ctx.progress)
    ctx.report["sensitivity"] = table
    worst = sorted(table, key=lambda g: -table[g]["kl"])[: p.exclude_worst]
    ctx.flagged = sorted(set(ctx.flagged) | set(worst))


def _embedding_mode(requested: str, kept_out: list[str], fallback: str = "float") -> str:
    """The embedding is quantized by its own code path: honour an exclusion (or sensitivity flag) of it here."""
    from quantize.quantization import EMBEDDING, matches

    return fallback if matches(EMBEDDING, kept_out) and requested != "float" else requested


def _quantize_int8(ctx: BuildContext, p) -> None:
    from quantize.quantization import quantize_dynamic_int8, store_float_as_fp16

    kept = [*p.exclude, *ctx.flagged]
    quantize_dynamic_int8(ctx.out, exclude=kept, embedding=_embedding_mode(p.embedding, kept),
                          embedding_block_size=p.embedding_block_size, embedding_equalize=p.embedding_equalize)
    store_float_as_fp16(ctx.out)


def _quantize_static(ctx: BuildContext, p) -> None:
    from quantize.quantization import quantize_static_int8, store_float_as_fp16

    assert ctx.calibration is not None
    files = ctx.calibration.subset(p.utterances)
    tokens = teacher_tokens(ctx.out, ctx.calibration, files, progress=ctx.progress)
    kept = [*p.exclude, *ctx.flagged]
    quantize_static_int8(ctx.out, [(ctx.calibration.mel(f), tokens[f]) for f in files],
                         exclude=kept, embedding=_embedding_mode(p.embedding, kept), dynamic=p.dynamic)
    store_float_as_fp16(ctx.out)


def _quantize_int4(ctx: BuildContext, p) -> None:
    from quantize.quantization import quantize_int4, store_float_as_fp16

    # Groups the sensitivity pass flags get int8 here rather than float: still small, far less damage.
    int8 = [*p.int8, *ctx.flagged]
    embedding = _embedding_mode(_embedding_mode(p.embedding, int8, "int8"), p.exclude)
    quantize_int4(ctx.out, block_size=p.block_size, exclude=p.exclude, int8=int8,
                  embedding=embedding, embedding_block_size=p.embedding_block_size,
                  embedding_equalize=p.embedding_equalize, accuracy_level=p.accuracy_level)
    store_float_as_fp16(ctx.out)


def _distill_short(ctx: BuildContext, p) -> None:
    from quantize.distill_short import recipe_step

    recipe_step(ctx, p)


def _distilled_encoder(ctx: BuildContext, p) -> None:
    from quantize.distill_short import encoder_step

    encoder_step(ctx, p)


def _measure_fast_path(ctx: BuildContext, p) -> None:
    from quantize.distill_short import measure_step

    measure_step(ctx, p)


STEP_RUNNERS = {
    "prune": _prune,
    "distill": _distill,
    "export": _export,
    "sensitivity": _sensitivity,
    "quantize_int8": _quantize_int8,
    "quantize_static": _quantize_static,
    "quantize_int4": _quantize_int4,
    "distill_short": _distill_short,
    "measure_fast_path": _measure_fast_path,
    "distilled_encoder": _distilled_encoder,
}


# --- the card -----------------------------------------------------------------------------------------------

def _finish_card(ctx: BuildContext, name: str) -> None:
    card = ModelCard.load(ctx.out)
    card.name = name
    card.recipe = ctx.recipe.to_card()
    if ctx.flagged:
        card.recipe["kept_float"] = list(ctx.flagged)
    if ctx.calibration is not None:
        card.recipe["calibration"] = ctx.calibration.card()
    card.recipe.update({k: v for k, v in ctx.report.items() if k not in ("sensitivity", "fast_path")})
    if "sensitivity" in ctx.report:
        card.metrics["sensitivity"] = ctx.report["sensitivity"]
    if "distill_short" in ctx.report and not card.fast_path.measured:  # measure_fast_path sets its own pad
        card.fast_path.pad_s = ctx.report["distill_short"]["pad_s"]
    if "fast_path" in ctx.report:  # a distilled encoder's verdict, measured under this recipe
        card.fast_path = FastPath(**ctx.report["fast_path"])
    card.save(ctx.out)  # also records every file's size


def _compact_tokenizer(path: Path) -> None:
    """The exporter copies tokenizer.json pretty-printed; the same JSON without indentation is a third smaller."""
    data = json.loads(path.read_text(encoding="utf-8"))
    path.write_text(json.dumps(data, ensure_ascii=False, separators=(",", ":")), encoding="utf-8")
