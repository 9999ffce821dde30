"""Export a torch Whisper to a model directory (encoder.onnx, decoder.onnx with KV cache, tokenizer, card)."""

from __future__ import annotations

import dataclasses
import datetime
import json
import shutil
import warnings
from pathlib import Path

import torch
from torch import nn

from edge_asr.engine import cross_kv_inputs
from edge_asr.model_dir import CARD, DECODER, ENCODER, EXPORT_FORMAT, TOKENIZER, Dims, ModelCard, SpecialTokens
from quantize.model import Whisper
from quantize.weights import SourceWeights


class _Encoder(nn.Module):
    def __init__(self, model: Whisper):
        super().__init__()
        self.model = model

    def forward(self, mel: torch.Tensor) -> tuple[torch.Tensor, ...]:
        # One output per layer's cross K or V, the decoder's inputs as they are: stacked, they would be
        # concatenated into a second copy (18 MB for a 30 s window of tiny) while the parts are still alive.
        return tuple(self.model.encode_layers(mel))


class _Decoder(nn.Module):
    def __init__(self, model: Whisper):
        super().__init__()
        self.model = model

    def forward(self, tokens, self_kv, *cross_kv):
        # One input per layer's cross K or V: from a single stacked input ONNX Runtime copies every layer's
        # slice out (a Split over 2 x layers x 1500 x state floats) on every decoding step; that copy was 60 %
        # of a tiny.en decoder step. Separate inputs are fed as views of the encoder's one output.
        return self.model.decode(tokens, self_kv, cross_kv)


def build_model(weights: SourceWeights) -> Whisper:
    model = Whisper(weights.dims)
    model.load_state_dict(weights.state_dict, strict=True)
    return model.eval()


def special_tokens(tokenizer_json: Path, n_vocab: int) -> SpecialTokens:
    added = {t["content"]: t["id"] for t in json.loads(tokenizer_json.read_text())["added_tokens"]}
    no_ts = added["<|notimestamps|>"]
    langs = {
        name[2:-2]: i for name, i in added.items()
        if len(name) <= 9 and name[2:-2].isalpha() and name[2:-2].islower() and i > added["<|startoftranscript|>"]
        and name not in ("<|transcribe|>", "<|translate|>", "<|nocaptions|>", "<|nospeech|>")
    }
    english_only = n_vocab < 51865
    return SpecialTokens(
        eot=added["<|endoftext|>"], sot=added["<|startoftranscript|>"], sot_prev=added["<|startofprev|>"],
        no_timestamps=no_ts, timestamp_begin=no_ts + 1,
        no_speech=added.get("<|nocaptions|>", added.get("<|nospeech|>")),
        transcribe=added["<|transcribe|>"], translate=added["<|translate|>"],
        languages={} if english_only else langs,
    )


def export_model_dir(
    weights: SourceWeights, out: Path, name: str | None = None, recipe: dict | None = None, opset: int = 17,
    model: Whisper | None = None,
) -> ModelCard:
    """Write an fp32 model directory; quantization recipes start from here. `model` is a (pruned or
    fine-tuned) Whisper built from `weights` to export instead of the weights as they are."""
    model = (model or build_model(weights)).eval()
    d = model.dims
    out.mkdir(parents=True, exist_ok=True)
    mel = torch.randn(1, d.n_mels, 2 * d.n_audio_ctx)
    n_kv = 2 * d.n_text_layer
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cross_names = cross_kv_inputs(n_kv)
        torch.onnx.export(
            _Encoder(model), (mel,), str(out / ENCODER), input_names=["mel"], output_names=cross_names,
            dynamic_axes={"mel": {0: "batch", 2: "frames"}, **{n: {0: "batch", 1: "audio_ctx"} for n in cross_names}},
            opset_version=opset, dynamo=False,
        )
        cross = model.encode_layers(mel)
        tokens = torch.tensor([[weights_sot(weights), 1, 2]], dtype=torch.long).repeat(2, 1)
        self_kv = torch.randn(n_kv, 2, 4, d.n_text_state)
        torch.onnx.export(
            _Decoder(model), (tokens, self_kv, *cross), str(out / DECODER),
            input_names=["tokens", "self_kv", *cross_names], output_names=["logits", "new_self_kv", "cross_attn"],
            dynamic_axes={
                "tokens": {0: "batch", 1: "n"}, "self_kv": {1: "batch", 2: "past"},
                **{name: {0: "cross_batch", 1: "audio_ctx"} for name in cross_names},
                "logits": {0: "batch", 1: "n"}, "new_self_kv": {1: "batch", 2: "total"},
                "cross_attn": {1: "batch", 3: "n", 4: "audio_ctx"},
            },
            opset_version=opset, dynamo=False,
        )
    shutil.copyfile(weights.tokenizer_json, out / TOKENIZER)
    heads = weights.alignment_heads or [
        [layer, h] for layer in range(d.n_text_layer // 2, d.n_text_layer) for h in range(d.n_text_head)
    ]
    from edge_asr import __version__

    card = ModelCard(
        name=name or out.name,
        dims=Dims(**dataclasses.asdict(d)),
        tokens=special_tokens(weights.tokenizer_json, d.n_vocab),
        suppress_ids=list(weights.suppress_ids) or default_suppress_ids(weights.tokenizer_json),
        suppress_ids_begin=list(weights.suppress_ids_begin),
        alignment_heads=[list(map(int, h)) for h in heads],
        source={"name": weights.name, "sha256": weights.sha256},
        recipe=recipe or {"name": "fp32", "steps": [{"export": {"opset": opset}}]},
        created=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        edge_asr_version=__version__,
        export_format=EXPORT_FORMAT,
    )
    if not card.suppress_ids_begin:
        card.suppress_ids_begin = [_encode_space(weights.tokenizer_json), card.tokens.eot]
    card.save(out)
    assert (out / CARD).exists()
    return card


def weights_sot(weights: SourceWeights) -> int:
    added = {t["content"]: t["id"] for t in json.loads(weights.tokenizer_json.read_text())["added_tokens"]}
    return added["<|startoftranscript|>"]


def _encode_space(tokenizer_json: Path) -> int:
    from tokenizers import Tokenizer

    return Tokenizer.from_file(str(tokenizer_json)).encode(" ", add_special_tokens=False).ids[0]


# openai-whisper's list of symbols that are not speech (used where the weights carry no suppress list).
_NON_SPEECH = list('"#()*+/:;<=>@[\\]^_`{|}~「」『』') + [
    "<<", ">>", "<<<", ">>>", "--", "---", "-(", "-[", "('", '("', "((", "))", "(((", ")))", "[[", "]]",
    "{{", "}}", "♪♪", "♪♪♪",
]


def default_suppress_ids(tokenizer_json: Path) -> list[int]:
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(tokenizer_json))
    ids: set[int] = set()
    for sym in _NON_SPEECH + ["♩", "♪", "♫", "♬", "♭", "♮", "♯"]:
        for text in (sym, " " + sym):
            enc = tok.encode(text, add_special_tokens=False).ids
            if len(enc) == 1 or sym in "♩♪♫♬♭♮♯":
                ids.add(enc[0])
    ids.add(tok.encode(" -", add_special_tokens=False).ids[0])
    ids.add(tok.encode(" '", add_special_tokens=False).ids[0])
    return sorted(ids)
