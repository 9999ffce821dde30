"""The torch Whisper, its weight loaders and the ONNX export agree with each other."""

import json

import numpy as np
import onnxruntime as ort
import pytest
import torch
from conftest import SPEECH_DEV

from edge_asr.audio import load_audio
from edge_asr.engine import DecoderSession, encoder_outputs
from edge_asr.frontend import log_mel
from quantize.export import build_model, export_model_dir
from quantize.weights import load_weights


@pytest.fixture(scope="module")
def tiny():
    return load_weights("tiny.en")


@pytest.fixture(scope="module")
def exported(tiny, tmp_path_factory):
    out = tmp_path_factory.mktemp("m") / "tiny"
    export_model_dir(tiny, out)
    return out


def test_onnx_matches_torch_logits(tiny, exported):
    model = build_model(tiny)
    mel = log_mel(load_audio(SPEECH_DEV / "ljspeech_LJ001-0001.wav"))[None]
    enc = ort.InferenceSession(str(exported / "encoder.onnx"))
    dec = DecoderSession(exported, threads=2)
    cross = encoder_outputs(enc, mel)
    with torch.no_grad():
        cross_t = model.encode(torch.from_numpy(mel))
    assert np.abs(np.stack(cross) - cross_t.numpy()).max() < 1e-3
    prompt = np.array([[50257, 50362, 2773]])  # sot, notimestamps, " Print"
    empty = np.zeros((8, 1, 0, 384), np.float32)
    logits, kv, attn = dec.run(None, prompt, empty, cross)
    with torch.no_grad():
        ref_logits, ref_kv, _ = model.decode(torch.from_numpy(prompt), torch.from_numpy(empty), cross_t)
    assert np.abs(logits - ref_logits.numpy()).max() < 1e-2
    assert logits[0, -1].argmax() == ref_logits[0, -1].argmax()
    # One more step through the cache equals the full sequence without it.
    step, _, _ = dec.run(None, np.array([[278]]), kv, cross)
    full, _, _ = dec.run(None, np.array([[50257, 50362, 2773, 278]]), empty, cross)
    assert np.abs(step[0, -1] - full[0, -1]).max() < 1e-3
    assert attn.shape == (4, 1, 6, 3, 1500)
    # One input per layer's cross K/V, not one stacked tensor that every step would have to split (copy).
    # The encoder gives them as they are, so it need not concatenate a second copy of them either.
    assert [i.name for i in dec.session.get_inputs()][2:] == [f"cross_kv.{i}" for i in range(8)]
    assert [o.name for o in enc.get_outputs()] == [f"cross_kv.{i}" for i in range(8)]


def test_decoder_stores_the_embedding_once(exported):
    size = (exported / "decoder.onnx").stat().st_size
    assert size < 51864 * 384 * 4 * 1.5  # one vocab x state matrix, not two


def test_openai_and_hf_checkpoints_load_the_same(tiny, tmp_path):
    import dataclasses

    from safetensors.torch import save_file

    pt = tmp_path / "tiny.en.pt"
    torch.save({"dims": dataclasses.asdict(tiny.dims), "model_state_dict": tiny.state_dict}, pt)
    from_pt = load_weights(pt)
    assert from_pt.dims == tiny.dims
    assert all(torch.equal(from_pt.state_dict[k], v) for k, v in tiny.state_dict.items())

    hf = tmp_path / "hf"
    hf.mkdir()
    hf_names = [  # openai-whisper -> transformers, written out independently of the loader
        ("encoder.blocks.", "model.encoder.layers."), ("decoder.blocks.", "model.decoder.layers."),
        (".cross_attn.query.", ".encoder_attn.q_proj."), (".cross_attn.key.", ".encoder_attn.k_proj."),
        (".cross_attn.value.", ".encoder_attn.v_proj."), (".cross_attn.out.", ".encoder_attn.out_proj."),
        (".cross_attn_ln.", ".encoder_attn_layer_norm."), (".attn.query.", ".self_attn.q_proj."),
        (".attn.key.", ".self_attn.k_proj."), (".attn.value.", ".self_attn.v_proj."),
        (".attn.out.", ".self_attn.out_proj."), (".attn_ln.", ".self_attn_layer_norm."), (".mlp.0.", ".fc1."),
        (".mlp.2.", ".fc2."), (".mlp_ln.", ".final_layer_norm."),
        ("encoder.positional_embedding", "model.encoder.embed_positions.weight"),
        ("decoder.positional_embedding", "model.decoder.embed_positions.weight"),
        ("decoder.token_embedding.weight", "model.decoder.embed_tokens.weight"),
        ("encoder.conv", "model.encoder.conv"), ("encoder.ln_post.", "model.encoder.layer_norm."),
        ("decoder.ln.", "model.decoder.layer_norm."),
    ]
    inverse = {}
    for name, v in tiny.state_dict.items():
        for old, new in hf_names:
            name = name.replace(old, new)
        inverse[name] = v.contiguous()
    save_file(inverse, str(hf / "model.safetensors"))
    d = tiny.dims
    (hf / "config.json").write_text(json.dumps({
        "num_mel_bins": d.n_mels, "max_source_positions": d.n_audio_ctx, "d_model": d.n_audio_state,
        "encoder_attention_heads": d.n_audio_head, "encoder_layers": d.n_audio_layer, "vocab_size": d.n_vocab,
        "max_target_positions": d.n_text_ctx, "decoder_attention_heads": d.n_text_head,
        "decoder_layers": d.n_text_layer,
    }))
    from_hf = load_weights(hf)
    assert from_hf.dims == tiny.dims
    assert "model.decoder.layers.0.encoder_attn.k_proj.weight" in inverse
    assert set(from_hf.state_dict) == set(tiny.state_dict)
    assert all(torch.equal(from_hf.state_dict[k], v) for k, v in tiny.state_dict.items())


def test_base_weights_load():
    base = load_weights("base")
    assert base.dims.n_audio_layer == 6 and base.dims.n_text_state == 512 and base.dims.n_vocab == 51865
    assert len(base.alignment_heads) == 8
