"""ONNX Runtime sessions for a model directory: the encoder and the KV-cached decoder."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnxruntime as ort

from edge_asr.model_dir import DECODER, ENCODER, TOKEN_ROWS, ModelCard


def physical_cores() -> int:
    """Physical cores (hyperthreads slow ONNX Runtime's matmuls down); falls back to logical count."""
    try:
        cores = set()
        with open("/proc/cpuinfo") as f:
            phys = core = None
            for line in f:
                if line.startswith("physical id"):
                    phys = line.split(":")[1].strip()
                elif line.startswith("core id"):
                    core = line.split(":")[1].strip()
                    cores.add((phys, core))
        if cores:
            return len(cores)
    except OSError:
        pass
    return os.cpu_count() or 1


def make_session(path: Path, threads: int) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3
    # No arena: it keeps the largest activations ever seen (a 30 s window's attention) for the life of the
    # process. Without it dictate's peak RSS drops 16-120 MB on a Pi-sized budget; decoding speed is unchanged.
    opts.enable_cpu_mem_arena = False
    # Idle workers sleep instead of spinning: every session has its own pool (encoder, decoder), and a
    # worker spinning between runs takes a core from the other session, the Python between decoding steps and
    # numpy. Fast-path transcription of short utterances: 0.4x the time on a shared 2-core machine (load 5.6).
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


# Each decoder layer's cross-attention keys and values, (1, audio_ctx, state) each: the encoder's outputs, one
# per layer, computed once per window and fed unchanged to every decoding step.
CrossKV = list[np.ndarray]


def cross_kv_inputs(n_kv: int) -> list[str]:
    """The decoder's inputs for each layer's cross-attention keys and values (see quantize/export.py)."""
    return [f"cross_kv.{i}" for i in range(n_kv)]


def cross_kv_names(session: ort.InferenceSession) -> list[str] | None:
    """A decoder session's per-layer cross K/V input names, or None for a model directory exported before
    them (it takes the stacked tensor whole, as input "cross_kv"). Read once per session, not per step."""
    names = [i.name for i in session.get_inputs() if i.name.startswith("cross_kv")]
    return None if names == ["cross_kv"] else names


def encoder_outputs(session: ort.InferenceSession, mel: np.ndarray) -> CrossKV:
    """Run an encoder session on (1, n_mels, frames). A model directory exported before per-layer outputs
    gives one stacked (2 * layers, 1, ctx, state) tensor; its slices are views, so either way costs no copy."""
    outputs = session.run(None, {"mel": mel})
    return outputs if len(outputs) > 1 else list(outputs[0])


def token_rows_table(model_dir: Path, session: ort.InferenceSession) -> np.ndarray | None:
    """The (vocab, state) int8 embedding rows a decoder looks tokens up in outside its graph (input
    "token_rows"), memory-mapped: only the rows of tokens actually decoded are ever read into memory. None for
    a decoder that looks tokens up itself (float embeddings, models exported before format 4)."""
    if "token_rows" not in {i.name for i in session.get_inputs()}:
        return None
    return np.load(model_dir / TOKEN_ROWS, mmap_mode="r")


class DecoderSession:
    """A decoder graph and what its inputs need: the per-layer cross K/V names and, for an int8 embedding
    kept outside the graph, the rows of the fed tokens."""

    def __init__(self, model_dir: Path, threads: int):
        self.session = make_session(model_dir / DECODER, threads)
        self.cross_names = cross_kv_names(self.session)
        self.token_rows = token_rows_table(model_dir, self.session)

    def feed(self, tokens: np.ndarray, self_kv: np.ndarray, cross_kv: CrossKV) -> dict[str, np.ndarray]:
        tokens = tokens.astype(np.int64)
        feed = {"tokens": tokens, "self_kv": self_kv}
        if self.token_rows is not None:
            feed["token_rows"] = self.token_rows[tokens]
        if self.cross_names is None:
            return {**feed, "cross_kv": np.stack(cross_kv)}
        return {**feed, **dict(zip(self.cross_names, cross_kv, strict=True))}

    def run(self, outputs: list[str] | None, tokens: np.ndarray, self_kv: np.ndarray,
            cross_kv: CrossKV) -> list[np.ndarray]:
        return self.session.run(outputs, self.feed(tokens, self_kv, cross_kv))


class WhisperEngine:
    def __init__(self, model_dir: str | Path, card: ModelCard, threads: int | None = None):
        self.card = card
        self.threads = threads or physical_cores()
        self.encoder = make_session(Path(model_dir) / ENCODER, self.threads)
        self.decoder = DecoderSession(Path(model_dir), self.threads)
        dims = card.dims
        self.n_kv = 2 * dims.n_text_layer
        self.n_state = dims.n_text_state

    def encode(self, mel: np.ndarray) -> CrossKV:
        """(n_mels, frames) -> each decoder layer's cross K and V, once per window."""
        return encoder_outputs(self.encoder, mel[None])

    def empty_cache(self, batch: int) -> np.ndarray:
        return np.zeros((self.n_kv, batch, 0, self.n_state), dtype=np.float32)

    def decode(
        self, tokens: np.ndarray, self_kv: np.ndarray, cross_kv: CrossKV, want_attention: bool = False
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """tokens (batch, n) -> logits (batch, n, vocab), grown cache, cross-attention (if asked)."""
        outputs = ["logits", "new_self_kv"] + (["cross_attn"] if want_attention else [])
        result = self.decoder.run(outputs, tokens, self_kv, cross_kv)
        return result[0], result[1], (result[2] if want_attention else None)
