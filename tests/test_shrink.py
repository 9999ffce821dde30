"""`edge-asr shrink`: every built-in recipe gives a model directory that runs without torch and transcribes
real speech within a WER bound; pruning really removes parameters; bad recipes fail in one line.

Models are built once per module into a temporary folder. The distillation of pruned-int8 is cut to a few
steps here (the real run is the documented command in the README), so its WER bound is loose.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from conftest import SPEECH_DEV, speech_dev, wer

from edge_asr.cli import main
from edge_asr.engine import DecoderSession
from edge_asr.model_dir import TOKEN_ROWS, ModelCard, size_on_disk
from quantize.pipeline import build
from quantize.recipe import load_recipe

# Short real recordings (LibriSpeech, LJSpeech, LibriVox): quick to transcribe, enough words to score.
CLIPS = ["ljspeech_LJ001-0001", "ls-test-other_1688-142285-0001", "librivox-austen_0870", "ljspeech_LJ001-0005"]
CALIBRATION = ["ljspeech_LJ001-0003", "ls-test-other_1688-142285-0000", "librivox-austen_0880", "ljspeech_LJ001-0009",
               "ls-test-other_2033-164914-0000", "librivox-austen_0890", "ljspeech_LJ001-0011",
               "ls-test-other_367-130732-0000"]
# WER bounds on CLIPS (fp32 ONNX 5.6 %, int8 1.9 % on them). The test-depth pruned model, refit on 8 clips and
# barely distilled, scored 21 % and 38 % in two runs (its refit swings with the clips): its bound checks that
# the pipeline yields a model that transcribes, not the recipe's accuracy (that is bench_shrink's table).
BOUNDS = {"int8": 0.12, "int8-static": 0.15, "int4": 0.15, "pruned-int8": 0.5}


@pytest.fixture(scope="module")
def calibration_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("calibration")
    for name in CALIBRATION:
        (d / f"{name}.wav").symlink_to(SPEECH_DEV / f"{name}.wav")
    return d


def _fast(recipe_name: str):
    """The built-in recipe with its calibration-hungry steps cut down to test size. Pruning is made milder
    (1 head, a quarter of the FFN): the built-in depth needs its real distillation run to be usable, while
    this depth survives on the least-squares refit alone, so the test can still bound the WER."""
    recipe = load_recipe(recipe_name)
    for name, params in recipe.parsed():
        if hasattr(params, "utterances"):
            params.utterances = 3
        if name == "prune":
            params.encoder_heads, params.encoder_ffn = 1, 0.25
        if name == "distill":
            params.steps, params.batch = 2, 1
    return recipe


@pytest.fixture(scope="module")
def built(tmp_path_factory, calibration_dir) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("shrunk")
    out = {}
    for name in BOUNDS:
        out[name] = build("tiny.en", _fast(name), root / name, calibration=calibration_dir, progress=False)
    return out


_TRANSCRIBE_WITHOUT_TORCH = """
import json, sys
from edge_asr import Transcriber
dirs, wavs = json.loads(sys.argv[1]), json.loads(sys.argv[2])
out = {}
for name, d in dirs.items():
    t = Transcriber(d, threads=2)
    out[name] = [" ".join(s.text for s in t.transcribe(w, word_timestamps=False)[0]) for w in wavs]
out["torch_loaded"] = "torch" in sys.modules
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def hypotheses(built) -> dict:
    wavs = [str(SPEECH_DEV / f"{c}.wav") for c in CLIPS]
    dirs = {k: str(v) for k, v in built.items()}
    run = subprocess.run([sys.executable, "-c", _TRANSCRIBE_WITHOUT_TORCH, json.dumps(dirs), json.dumps(wavs)],
                         capture_output=True, text=True, timeout=600, check=True)
    return json.loads(run.stdout.strip().splitlines()[-1])


def test_models_run_without_torch(hypotheses):
    assert hypotheses["torch_loaded"] is False


@pytest.mark.parametrize("recipe", list(BOUNDS))
def test_recipe_transcribes_within_bound(recipe, hypotheses):
    refs = {u.id: u.reference for u in speech_dev()}
    score = wer([refs[c] for c in CLIPS], hypotheses[recipe])
    assert score <= BOUNDS[recipe], (recipe, score, hypotheses[recipe])


def test_quantized_models_are_small_and_carded(built, calibration_dir):
    sizes = {k: size_on_disk(v) / 1e6 for k, v in built.items()}
    # The 30 MB target is the built-in pruning depth's (README table); the milder test depth is checked to
    # shrink the int8 model by pruning plus the 4-bit embedding.
    assert sizes["int8"] <= 45 and sizes["int4"] <= 30 and sizes["pruned-int8"] < 0.8 * sizes["int8"], sizes
    card = ModelCard.load(built["int8-static"])
    assert card.recipe["name"] == "int8-static"
    assert card.recipe["steps"][1]["quantize_static"]["utterances"] == 3
    assert len(card.recipe["calibration"]["sha256"]) == 64 and card.recipe["calibration"]["files"] == len(CALIBRATION)
    assert len(card.source["sha256"]) == 64
    assert card.files["decoder.onnx"] == (built["int8-static"] / "decoder.onnx").stat().st_size


def test_embedding_is_stored_once(built):
    """The token embedding, half of tiny.en, is stored once. int4: one initializer read by both the lookup and
    the logits. int8: token_embedding.npy, the logits' weights (as ONNX external data) and the device's
    memory-mapped lookup table at once, so the decoder session holds it once, prepacked."""
    graph = onnx.load(str(built["int4"] / "decoder.onnx"), load_external_data=False).graph
    big = [i for i in graph.initializer if 51864 in i.dims and "scale" not in i.name]
    assert [i.name for i in big] == ["decoder.token_embedding.int4"]
    assert len([n for n in graph.node if big[0].name in n.input]) == 2

    graph = onnx.load(str(built["int8"] / "decoder.onnx"), load_external_data=False).graph
    big = [i for i in graph.initializer if 51864 in i.dims and "scale" not in i.name]
    assert [i.name for i in big] == ["decoder.token_embedding.int8.rows"]
    assert {e.key: e.value for e in big[0].external_data}["location"] == TOKEN_ROWS
    assert [n.op_type for n in graph.node if big[0].name in n.input] == ["Transpose"]  # -> the logits MatMul
    assert "token_rows" in [i.name for i in graph.input]
    assert (built["int8"] / "decoder.onnx").stat().st_size < 0.5 * (built["int8"] / TOKEN_ROWS).stat().st_size
    rows = DecoderSession(built["int8"], threads=1).token_rows
    assert isinstance(rows, np.memmap) and rows.shape == (51864, 384) and rows.dtype == np.int8


def test_pruning_removes_parameters(built):
    card = ModelCard.load(built["pruned-int8"])
    prune, step = card.recipe["prune"], _fast("pruned-int8").parsed()[0][1]
    assert prune["parameters_after"] == prune["parameters_before"] - prune["parameters_removed"]
    assert prune["parameters_removed"] > 0.03 * prune["parameters_before"]  # the embedding is half the model
    assert all(len(heads) == 6 - step.encoder_heads for heads in prune["encoder_heads_kept"])
    assert prune["encoder_ffn_width"] == [int(1536 * (1 - step.encoder_ffn))] * 4

    # ...and the exported encoder really is smaller: 2-D weight elements in the ONNX file, pruned vs not.
    def weight_elements(model_dir: Path) -> int:
        graph = onnx.load(str(model_dir / "encoder.onnx"), load_external_data=False).graph
        return sum(math.prod(i.dims) for i in graph.initializer if len(i.dims) == 2)

    # 1 of 6 heads and a quarter of the FFN: 0.79 of the weights (the positional embedding is not pruned).
    assert weight_elements(built["pruned-int8"]) < 0.85 * weight_elements(built["int8"])
    assert card.recipe["distill"]["steps"] == 2


def test_sensitivity_table_goes_in_the_card_and_flags_the_worst(tmp_path, calibration_dir):
    path = tmp_path / "sensitive.yaml"
    path.write_text(
        "name: sensitive\nsteps:\n"
        "  - sensitivity: {utterances: 1, groups: [decoder.blocks.3.mlp, decoder.token_embedding], exclude_worst: 1}\n"
        "  - quantize_int8: {}\n"
    )
    out = build("tiny.en", load_recipe(path), tmp_path / "m", calibration=calibration_dir, progress=False)
    card = ModelCard.load(out)
    table = card.metrics["sensitivity"]
    assert set(table) == {"decoder.blocks.3.mlp", "decoder.token_embedding"}
    assert all(v["kl"] >= 0 and 0 <= v["top1_changed"] <= 1 for v in table.values())
    worst = max(table, key=lambda g: table[g]["kl"])
    assert card.recipe["kept_float"] == [worst]


def _run_cli(argv: list[str], capsys) -> tuple[int, str]:
    rc = main(argv)
    return rc, capsys.readouterr().err.strip()


@pytest.mark.parametrize("yaml_text, key", [
    ("name: x\nsteps:\n  - quantize_int9: {}\n", "steps[0].quantize_int9"),
    ("name: x\nsteps:\n  - quantize_int4: {block_size: big}\n", "steps[0].quantize_int4.block_size"),
    ("name: x\nsteps:\n  - quantize_int8: {colour: red}\n", "steps[0].quantize_int8.colour"),
    ("name: x\nsteps:\n  - export: {}\n  - quantize_int8: {}\n  - prune: {}\n", "steps[2].prune"),
    ("steps: []\n", "name"),
])
def test_bad_recipe_is_one_line_error(tmp_path, capsys, yaml_text, key):
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml_text)
    rc, err = _run_cli(["shrink", "--recipe", str(path), "--out", str(tmp_path / "out")], capsys)
    assert rc == 2 and len(err.splitlines()) == 1 and key in err, err
    assert not (tmp_path / "out").exists()


def test_missing_calibration_names_the_key(tmp_path, capsys):
    rc, err = _run_cli(["shrink", "--recipe", "pruned-int8", "--out", str(tmp_path / "out")], capsys)
    assert rc == 2 and len(err.splitlines()) == 1 and "'calibration'" in err, err


def test_unknown_recipe_lists_builtins(tmp_path, capsys):
    rc, err = _run_cli(["shrink", "--recipe", "int3", "--out", str(tmp_path / "out")], capsys)
    assert rc == 2 and "int8" in err and "pruned-int8" in err, err
