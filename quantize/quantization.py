"""Quantize a model directory's ONNX graphs with ONNX Runtime's tools (no torch here).

- dynamic int8: per-channel int8 weights for MatMul, activations quantized on the fly;
- static int8 (QDQ): activation ranges calibrated on the user's audio;
- int4 weight-only: ONNX Runtime's blockwise 4-bit MatMulNBits;
- the token embedding, which is also the output projection and over half of tiny.en's parameters, is stored
  once in every mode: a quantized matrix read by both the token lookup and the logits MatMul;
- float leftovers (the conv front end, positional embeddings, excluded groups) are stored as fp16 and
  computed in fp32: the bundled weights are fp16 already, so this loses nothing.

Weights are addressed by layer group ("encoder.blocks.0.mlp", "decoder.token_embedding", ...): `name_weights`
renames the exporter's anonymous initializers after the torch parameters they came from.
"""

from __future__ import annotations

import fnmatch
import hashlib
import logging
import re
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from edge_asr.model_dir import DECODER, ENCODER, TOKEN_ROWS

EMBEDDING = "decoder.token_embedding"
FRONT_END = "encoder.conv"
_EMBEDDING_T = "decoder.token_embedding.weight.T"  # the (state, vocab) matrix the decoder graph stores


# --- naming -------------------------------------------------------------------------------------------------

def _digest(a: np.ndarray) -> str:
    return hashlib.sha1(np.ascontiguousarray(a, dtype=np.float32).tobytes()).hexdigest()


def name_weights(model_dir: Path, params: dict[str, np.ndarray]) -> None:
    """Rename each weight initializer after its torch parameter (`<name>` or `<name>.T` if transposed)."""
    by_digest: dict[tuple, str] = {}
    for name, p in params.items():
        if p.ndim == 2 and p.size >= 4096:
            by_digest[(p.shape, _digest(p))] = name
            by_digest[(p.T.shape, _digest(p.T))] = name + ".T"
    for file in (ENCODER, DECODER):
        model = onnx.load(str(model_dir / file))
        renames = {}
        for init in model.graph.initializer:
            if len(init.dims) == 2 and init.data_type == TensorProto.FLOAT:
                a = numpy_helper.to_array(init)
                new = by_digest.get((a.shape, _digest(a)))
                if new and new != init.name:
                    renames[init.name] = new
        _rename(model.graph, renames)
        onnx.save(model, str(model_dir / file))


def _rename(graph: onnx.GraphProto, renames: dict[str, str]) -> None:
    for init in graph.initializer:
        init.name = renames.get(init.name, init.name)
    for node in graph.node:
        for i, name in enumerate(node.input):
            if name in renames:
                node.input[i] = renames[name]


def group_of(weight: str) -> str | None:
    """Layer group of a named weight: encoder.blocks.N.{attn,mlp}, decoder.blocks.N.{attn,cross_attn,mlp},
    decoder.token_embedding or encoder.conv."""
    m = re.match(r"((?:encoder|decoder)\.blocks\.\d+\.(?:attn|cross_attn|mlp))\.", weight)
    if m:
        return m.group(1)
    if weight.startswith(EMBEDDING):
        return EMBEDDING
    if weight.startswith("encoder.conv"):
        return FRONT_END
    return None


def weight_groups(model_dir: Path) -> list[str]:
    """Every quantizable group in a model directory, in model order."""
    groups: list[str] = []
    for file in (ENCODER, DECODER):
        for node in onnx.load(str(model_dir / file), load_external_data=False).graph.node:
            if node.op_type == "MatMul" and len(node.input) > 1:
                g = group_of(node.input[1])
                if g and g not in groups:
                    groups.append(g)
    key = [(0 if g.startswith("encoder") else 1, int(m.group(1)) if (m := re.search(r"\.(\d+)\.", g)) else 99, g)
           for g in groups]
    return [g for *_, g in sorted(key)]


def matches(group: str, patterns: Iterable[str]) -> bool:
    """Whether a group is named by any of `patterns` (exact names or globs: 'encoder.blocks.*.mlp')."""
    return any(fnmatch.fnmatchcase(group, p) for p in patterns)


def _matmuls(model: onnx.ModelProto, exclude: Iterable[str]) -> tuple[list[str], list[str]]:
    """(MatMul nodes with a named weight to quantize, those to keep float) — the embedding is handled apart."""
    exclude = list(exclude)
    init = {i.name for i in model.graph.initializer}
    keep, skip = [], []
    for node in model.graph.node:
        if node.op_type != "MatMul" or len(node.input) < 2 or node.input[1] not in init:
            continue
        g = group_of(node.input[1])
        (skip if g is None or g == EMBEDDING or matches(g, exclude) else keep).append(node.name)
    return keep, skip


# --- dynamic int8 -------------------------------------------------------------------------------------------

def quantize_dynamic_int8(model_dir: Path, exclude: Iterable[str] = (), embedding: str = "int8",
                          embedding_block_size: int = 32, embedding_equalize: float = 1.0) -> None:
    """Per-channel int8 MatMul weights, dynamic uint8 activations; the conv front end stays float."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    exclude = set(exclude)
    for file in (ENCODER, DECODER):
        path = model_dir / file
        model = onnx.load(str(path))
        _, skip = _matmuls(model, exclude)
        with _quiet():
            quantize_dynamic(
                model, path, op_types_to_quantize=["MatMul"], per_channel=True, weight_type=QuantType.QInt8,
                nodes_to_exclude=skip, extra_options={"MatMulConstBOnly": True},
            )
    _embedding(model_dir, embedding, block_size=embedding_block_size, equalize=embedding_equalize)


# --- static int8 (QDQ) ---------------------------------------------------------------------------------------

def quantize_static_int8(model_dir: Path, calibration: list[tuple[np.ndarray, list[int]]],
                         exclude: Iterable[str] = (), embedding: str = "int8",
                         dynamic: Iterable[str] = ()) -> None:
    """QDQ int8 with activation ranges measured on calibration audio.

    `calibration` holds (log-mel window, reference token sequence) pairs. The encoder sees the mels; the
    decoder sees the sequences teacher-forced in one pass and, for the one-token shapes, the last token of
    each sequence with the rest as its cache. Groups in `dynamic` get dynamic int8 instead: one fixed range
    cannot hold activations whose outliers move with the input (Whisper's encoder FFNs).
    """
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    from edge_asr.engine import DecoderSession, encoder_outputs, make_session

    encoder_feeds = [{"mel": mel[None]} for mel, _ in calibration]
    ref_encoder = make_session(model_dir / ENCODER, threads=2)
    ref_decoder = DecoderSession(model_dir, threads=2)
    decoder_feeds = []
    for feed, (_, tokens) in zip(encoder_feeds, calibration):
        cross = encoder_outputs(ref_encoder, feed["mel"])
        empty = np.zeros((len(cross), 1, 0, cross[0].shape[-1]), np.float32)
        seq = np.array([tokens[:-1]], dtype=np.int64)
        decoder_feeds.append(ref_decoder.feed(seq, empty, cross))
        _, past, _ = ref_decoder.run(None, seq[:, :-1], empty, cross)
        decoder_feeds.append(ref_decoder.feed(seq[:, -1:], past, cross))
    del ref_encoder, ref_decoder

    for file, feeds in ((ENCODER, encoder_feeds), (DECODER, decoder_feeds)):
        path = model_dir / file
        model = onnx.load(str(path))
        keep, _ = _matmuls(model, [*exclude, *dynamic])
        if not keep:  # an empty list would mean "quantize everything" to quantize_static
            continue
        with _quiet():
            quantize_static(
                model, path, _Feeds(feeds), quant_format=QuantFormat.QDQ, op_types_to_quantize=["MatMul"],
                nodes_to_quantize=keep, per_channel=True, activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8, calibrate_method=CalibrationMethod.MinMax,
                extra_options={"MatMulConstBOnly": True},
            )
    # What static left float (its MatMuls still read a float initializer) and is not excluded goes dynamic.
    if list(dynamic):
        quantize_dynamic_int8(model_dir, exclude=exclude, embedding="float")
    _embedding(model_dir, embedding)


class _Feeds:
    """onnxruntime.quantization's CalibrationDataReader over a list of input dicts."""

    def __init__(self, feeds: list[dict[str, np.ndarray]]):
        self.feeds = iter(feeds)

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self.feeds, None)


# --- int4 weight-only -----------------------------------------------------------------------------------------

def quantize_int4(model_dir: Path, block_size: int = 32, exclude: Iterable[str] = (), int8: Iterable[str] = (),
                  embedding: str = "int4", embedding_block_size: int = 32, embedding_equalize: float = 1.0,
                  accuracy_level: int = 4, symmetric: bool = True) -> None:
    """Blockwise 4-bit MatMul weights (MatMulNBits), activations float; groups in `int8` get dynamic int8
    instead (the ones the sensitivity pass flags), groups in `exclude` stay float."""
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    exclude, int8 = list(exclude), list(int8)
    for file in (ENCODER, DECODER):
        path = model_dir / file
        model = onnx.load(str(path))
        _, skip = _matmuls(model, [*exclude, *int8])
        with _quiet():
            quantizer = MatMulNBitsQuantizer(
                model, bits=4, block_size=block_size, is_symmetric=symmetric, accuracy_level=accuracy_level,
                nodes_to_exclude=skip, op_types_to_quantize=("MatMul",),
            )
            quantizer.process()
        onnx.save(quantizer.model.model, str(path))
    if int8:  # MatMulNBits nodes no longer read a float initializer, so only the int8 groups are left to take
        quantize_dynamic_int8(model_dir, exclude=exclude, embedding="float")
    _embedding(model_dir, embedding, block_size=embedding_block_size, equalize=embedding_equalize)


# --- the shared embedding / output projection ----------------------------------------------------------------

def _embedding(model_dir: Path, mode: str, block_size: int = 32, equalize: float = 1.0) -> None:
    path = model_dir / DECODER
    model = onnx.load(str(path))
    if mode == "int8":
        share_embedding_int8(model, model_dir)
    elif mode == "int4":
        share_embedding_nbits(model, bits=4, block_size=block_size, equalize=equalize)
    elif mode != "float":
        raise ValueError(mode)
    onnx.save(model, str(path))


def _embedding_users(graph: onnx.GraphProto) -> tuple[onnx.TensorProto, onnx.NodeProto, onnx.NodeProto]:
    init = next((i for i in graph.initializer if i.name == _EMBEDDING_T), None)
    if init is None:
        raise ValueError(f"decoder has no '{_EMBEDDING_T}' initializer (run name_weights after export)")
    users = [n for n in graph.node if _EMBEDDING_T in n.input]
    gather = next(n for n in users if n.op_type == "Gather")
    matmul = next(n for n in users if n.op_type == "MatMul")
    if len(users) != 2 or helper.get_attribute_value(next(a for a in gather.attribute if a.name == "axis")) != 1:
        raise ValueError("unexpected use of the token embedding in the decoder graph")
    return init, gather, matmul


def _replace(graph: onnx.GraphProto, old: onnx.NodeProto, new: list[onnx.NodeProto]) -> None:
    at = list(graph.node).index(old)
    graph.node.remove(old)
    for k, node in enumerate(new):
        graph.node.insert(at + k, node)


def share_embedding_int8(model: onnx.ModelProto, model_dir: Path) -> None:
    """Store the (state, vocab) embedding once as int8 with one scale per token, its rows in `TOKEN_ROWS`.

    The logits MatMul becomes DynamicQuantizeLinear + MatMulInteger (ONNX Runtime fuses it into its int8
    GEMM), reading the rows as ONNX external data through a Transpose that ONNX Runtime folds at load. The
    token lookup happens outside the graph: the device feeds the int8 rows of its tokens (input "token_rows",
    memory-mapped from the same file: engine.DecoderSession) and the graph scales just those. A lookup inside
    the graph would keep the embedding in memory twice, as stored for the Gather and prepacked for the
    MatMul; ONNX Runtime frees an initializer whose only reader has prepacked it (-18 MB per session).
    """
    g = model.graph
    init, gather, matmul = _embedding_users(g)
    w = numpy_helper.to_array(init)  # (state, vocab)
    scale = np.maximum(np.abs(w).max(axis=0), 1e-8) / 127.0
    rows = np.ascontiguousarray(np.clip(np.round(w / scale), -127, 127).astype(np.int8).T)  # (vocab, state)
    path = model_dir / TOKEN_ROWS
    np.save(path, rows)
    name = EMBEDDING + ".int8"
    g.initializer.remove(init)
    g.initializer.append(_external(name + ".rows", rows, path))
    g.initializer.append(numpy_helper.from_array(scale.astype(np.float32), name + ".scale"))
    x, y = matmul.input[0], matmul.output[0]
    _replace(g, matmul, [
        helper.make_node("Transpose", [name + ".rows"], [name], name="logits/weight", perm=[1, 0]),
        helper.make_node("DynamicQuantizeLinear", [x], [x + "_q", x + "_qs", x + "_qz"], name="logits/quant"),
        helper.make_node("MatMulInteger", [x + "_q", name, x + "_qz"], ["logits/int32"], name="logits/MatMulInteger"),
        helper.make_node("Cast", ["logits/int32"], ["logits/float"], name="logits/cast", to=TensorProto.FLOAT),
        helper.make_node("Mul", [x + "_qs", name + ".scale"], ["logits/scale"], name="logits/scale_mul"),
        helper.make_node("Mul", ["logits/float", "logits/scale"], [y], name="logits/output_scale_mul"),
    ])
    # The exporter's lookup: Gather columns of the flattened tokens, Transpose, Reshape to (batch, n, state).
    transpose = _only_reader(g, gather.output[0], "Transpose")
    reshape = _only_reader(g, transpose.output[0], "Reshape")
    for node in (gather, transpose):
        g.node.remove(node)
    _replace(g, reshape, [
        helper.make_node("Cast", ["token_rows"], ["embed/float"], name="embed/cast", to=TensorProto.FLOAT),
        helper.make_node("Gather", [name + ".scale", "tokens"], ["embed/scale"], name="embed/gather_scale", axis=0),
        helper.make_node("Unsqueeze", ["embed/scale", "embed/last_axis"], ["embed/scale3"], name="embed/unsqueeze"),
        helper.make_node("Mul", ["embed/float", "embed/scale3"], [reshape.output[0]], name="embed/dequant"),
    ])
    g.initializer.append(numpy_helper.from_array(np.array([-1], np.int64), "embed/last_axis"))
    g.input.append(helper.make_tensor_value_info("token_rows", TensorProto.INT8, ["batch", "n", rows.shape[1]]))
    _drop_unused(g)


def _external(name: str, a: np.ndarray, npy: Path) -> onnx.TensorProto:
    """An initializer whose data is the array stored in the .npy file `npy` (after its header)."""
    t = onnx.TensorProto(name=name, dims=a.shape, data_type=helper.np_dtype_to_tensor_dtype(a.dtype),
                         data_location=TensorProto.EXTERNAL)
    offset = npy.stat().st_size - a.nbytes
    for key, value in (("location", npy.name), ("offset", str(offset)), ("length", str(a.nbytes))):
        t.external_data.add(key=key, value=value)
    return t


def _only_reader(graph: onnx.GraphProto, tensor: str, op_type: str) -> onnx.NodeProto:
    readers = [n for n in graph.node if tensor in n.input]
    if len(readers) != 1 or readers[0].op_type != op_type:
        raise ValueError(f"unexpected token lookup in the decoder graph: {tensor} read by "
                         f"{[n.op_type for n in readers]}, expected one {op_type}")
    return readers[0]


def _drop_unused(graph: onnx.GraphProto) -> None:
    """Remove what a rewrite left behind: nodes nothing reads, then their initializers and shape records."""
    outputs = {o.name for o in graph.output}
    while True:
        read = {i for n in graph.node for i in n.input} | outputs
        dead = [n for n in graph.node if not read.intersection(n.output)]
        if not dead:
            break
        for node in dead:
            graph.node.remove(node)
    read = {i for n in graph.node for i in n.input}
    for init in [i for i in graph.initializer if i.name not in read]:
        graph.initializer.remove(init)
    produced = {o for n in graph.node for o in n.output}
    for info in [v for v in graph.value_info if v.name not in produced]:
        graph.value_info.remove(info)


def share_embedding_nbits(model: onnx.ModelProto, bits: int = 4, block_size: int = 32,
                          equalize: float = 1.0) -> None:
    """Store the embedding once, blockwise-quantized (vocab-major, packed along the state axis).

    The same bytes feed ONNX Runtime's GatherBlockQuantized (lookup) and, reshaped, MatMulNBits (logits):
    both read unsigned codes with an implicit zero point of 2^(bits-1).

    A few state channels hold values ~10x the others and would set the scale of every block they sit in.
    They are divided by s_c = (range_c / median range)^equalize before quantizing, and s is multiplied back in
    — on the 384 inputs of the logits MatMul and on the looked-up rows — so the function is unchanged.
    """
    g = model.graph
    init, gather, matmul = _embedding_users(g)
    w = numpy_helper.to_array(init).T  # (vocab, state)
    vocab, state = w.shape
    col_range = np.abs(w).max(axis=0)
    channel_scale = np.maximum(col_range / np.median(col_range), 1.0) ** equalize
    w = w / channel_scale
    if state % block_size:
        raise ValueError(f"embedding width {state} is not a multiple of block_size {block_size}")
    codes, scales = _blockwise(w, bits, block_size)  # (vocab, state) uint8 codes, (vocab, blocks) scales
    per_byte = 8 // bits
    packed = np.zeros((vocab, state // per_byte), dtype=np.uint8)
    for k in range(per_byte):  # low-order bits first
        packed |= (codes[:, k::per_byte] << (bits * k)).astype(np.uint8)
    blocks = state // block_size
    name = f"{EMBEDDING}.int{bits}"
    g.initializer.remove(init)
    g.initializer.extend([
        numpy_helper.from_array(packed, name), numpy_helper.from_array(scales, name + ".scale"),
        numpy_helper.from_array(np.array([vocab, blocks, block_size * bits // 8], np.int64), name + ".shape3"),
        numpy_helper.from_array(np.array([vocab * blocks], np.int64), name + ".shape1"),
        numpy_helper.from_array(channel_scale.astype(np.float32), name + ".channel_scale"),
    ])
    ms = "com.microsoft"
    x, y = matmul.input[0], matmul.output[0]
    _replace(g, matmul, [
        helper.make_node("Mul", [x, name + ".channel_scale"], ["logits/x_scaled"], name="logits/equalize"),
        helper.make_node("Reshape", [name, name + ".shape3"], ["logits/B"], name="logits/B_view"),
        helper.make_node("Reshape", [name + ".scale", name + ".shape1"], ["logits/scales"], name="logits/s_view"),
        helper.make_node("MatMulNBits", ["logits/x_scaled", "logits/B", "logits/scales"], [y],
                         name="logits/MatMulNBits", domain=ms, K=state, N=vocab, bits=bits, block_size=block_size,
                         accuracy_level=4),
    ])
    ids, out = gather.input[1], gather.output[0]
    _replace(g, gather, [
        helper.make_node("GatherBlockQuantized", [name, ids, name + ".scale"], ["embed/rows"], name="embed/gather",
                         domain=ms, bits=bits, block_size=block_size, gather_axis=0, quantize_axis=1),
        helper.make_node("Mul", ["embed/rows", name + ".channel_scale"], ["embed/rows_scaled"],
                         name="embed/equalize"),
        helper.make_node("Transpose", ["embed/rows_scaled"], [out], name="embed/transpose", perm=[1, 0]),
    ])
    _use_domain(model, ms)


def _blockwise(w: np.ndarray, bits: int, block_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric blockwise codes in [0, 2^bits) around 2^(bits-1), and one fp32 scale per block.

    Each block's scale is the one, among a few clippings of its largest magnitude, with the least squared
    error: at 4 bits, clipping outliers a little beats spending the whole range on them.
    """
    rows, cols = w.shape
    blocks = w.reshape(rows, cols // block_size, block_size)
    half = 2 ** (bits - 1)
    # The largest magnitude maps to -half (the longer end of the signed range), as ONNX Runtime's quantizer does.
    amax = np.take_along_axis(blocks, np.abs(blocks).argmax(axis=2)[..., None], axis=2)[..., 0]
    base = np.where(amax == 0, 1.0, amax / -half)
    best_scale, best_err = base, np.full(base.shape, np.inf)
    for ratio in (1.0, 0.95, 0.9, 0.85, 0.8, 0.75) if bits <= 4 else (1.0,):
        scale = base * ratio
        q = np.clip(np.round(blocks / scale[..., None]), -half, half - 1)
        err = ((q * scale[..., None] - blocks) ** 2).sum(axis=2)
        better = err < best_err
        best_scale, best_err = np.where(better, scale, best_scale), np.where(better, err, best_err)
    q = np.clip(np.round(blocks / best_scale[..., None]) + half, 0, 2 * half - 1).astype(np.uint8)
    return q.reshape(rows, cols), best_scale.astype(np.float32)


def _use_domain(model: onnx.ModelProto, domain: str) -> None:
    if not any(o.domain == domain for o in model.opset_import):
        model.opset_import.append(helper.make_opsetid(domain, 1))


# --- float storage ------------------------------------------------------------------------------------------

def store_float_as_fp16(model_dir: Path, min_elements: int = 4096) -> None:
    """Store large fp32 initializers as fp16 with a Cast; ONNX Runtime folds the Cast when it loads the model,
    so computation stays fp32."""
    for file in (ENCODER, DECODER):
        path = model_dir / file
        model = onnx.load(str(path), load_external_data=False)  # token rows stay in their own file
        g = model.graph
        casts = []
        for init in list(g.initializer):
            if init.data_type != TensorProto.FLOAT or int(np.prod(init.dims)) < min_elements:
                continue
            a = numpy_helper.to_array(init)
            half = a.astype(np.float16)
            if not np.isfinite(half).all():
                continue
            g.initializer.remove(init)
            g.initializer.append(numpy_helper.from_array(half, init.name + ".fp16"))
            casts.append(helper.make_node("Cast", [init.name + ".fp16"], [init.name], name=init.name + "/cast",
                                          to=TensorProto.FLOAT))
        for k, node in enumerate(casts):
            g.node.insert(k, node)
        onnx.save(model, str(path))


class _quiet:
    """ONNX Runtime's quantizer logs a pre-processing hint at WARNING on every call."""

    def __enter__(self):
        self.level = logging.getLogger().level
        logging.getLogger().setLevel(logging.ERROR)

    def __exit__(self, *exc):
        logging.getLogger().setLevel(self.level)
