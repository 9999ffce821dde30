"""A PyTorch Whisper (the openai-whisper architecture), written for export to ONNX.

The encoder returns the cross-attention keys/values of every decoder layer, so the device computes them
once per 30 s window; the decoder takes a self-attention KV cache in and gives the grown one back.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from edge_asr.model_dir import Dims

# One definition of the dimensions, shared with the model card (the device side's view of them).
ModelDims = Dims


class LayerNorm(nn.LayerNorm):
    def forward(self, x: Tensor) -> Tensor:
        return super().forward(x.float()).type(x.dtype)


class Linear(nn.Linear):
    pass


def attention(q: Tensor, k: Tensor, v: Tensor, n_head: int, causal: bool) -> tuple[Tensor, Tensor]:
    """Scaled dot-product attention over (batch, time, state) tensors; returns output and weights."""
    b, tq, d = q.shape
    hd = d // n_head
    k = k.view(k.shape[0], k.shape[1], n_head, hd).permute(0, 2, 3, 1)
    v = v.view(v.shape[0], v.shape[1], n_head, hd).transpose(1, 2)
    return heads_attention(q, k, v, n_head, causal)


def heads_attention(q: Tensor, k_t: Tensor, v: Tensor, n_head: int, causal: bool) -> tuple[Tensor, Tensor]:
    """Attention with keys already as (batch, heads, head_dim, time) and values as (batch, heads, time,
    head_dim). The scale is applied to the queries (time x state) rather than to the scores (time x time)."""
    b, tq, d = q.shape
    hd = d // n_head
    q = (q * hd**-0.5).view(b, tq, n_head, hd).transpose(1, 2)
    scores = q @ k_t
    if causal and tq > 1:
        tk = k_t.shape[3]
        # query i (at absolute position tk - tq + i) may see keys up to that position
        mask = torch.ones(tq, tk, dtype=torch.bool, device=scores.device).tril(tk - tq)
        scores = scores.masked_fill(~mask, float("-inf"))
    weights = scores.softmax(dim=-1)
    out = (weights @ v).transpose(1, 2).reshape(b, tq, d)
    return out, weights


class SelfAttention(nn.Module):
    def __init__(self, n_state: int, n_head: int):
        super().__init__()
        self.n_head = n_head
        self.query = Linear(n_state, n_state)
        self.key = Linear(n_state, n_state, bias=False)
        self.value = Linear(n_state, n_state)
        self.out = Linear(n_state, n_state)


# Encoder attention takes this many query positions at a time (see EncoderBlock.forward).
QUERY_CHUNK = 500


class EncoderBlock(nn.Module):
    def __init__(self, n_state: int, n_head: int, n_ctx: int = 1500):
        super().__init__()
        self.n_ctx = n_ctx
        self.attn = SelfAttention(n_state, n_head)
        self.attn_ln = LayerNorm(n_state)
        self.mlp = nn.Sequential(Linear(n_state, n_state * 4), nn.GELU(), Linear(n_state * 4, n_state))
        self.mlp_ln = LayerNorm(n_state)

    def forward(self, x: Tensor) -> Tensor:
        h = self.attn_ln(x)
        a = self.attn
        q, k, v = a.query(h), a.key(h), a.value(h)
        # A 30 s window's scores are heads x 1500 x 1500 floats (54 MB for tiny's 6 heads), held twice around
        # the softmax. One head and a third of the queries at a time, the peak is 1/18 of that, for the same
        # arithmetic (each score row is computed and normalized exactly as before: the same bits).
        # An exported graph has the chunks of the longest context; those past a shorter input are empty (written
        # out rather than through `attention`, whose head reshape cannot infer the size of an empty chunk).
        hd = q.shape[-1] // a.n_head
        n = self.n_ctx if torch.onnx.is_in_onnx_export() else x.shape[1]
        heads = []
        for i in range(a.n_head):
            k_t = k[..., i * hd:(i + 1) * hd].transpose(1, 2)
            v_i = v[..., i * hd:(i + 1) * hd]
            heads.append(torch.cat([((q[:, t:t + QUERY_CHUNK, i * hd:(i + 1) * hd] * hd**-0.5) @ k_t).softmax(-1) @ v_i
                                    for t in range(0, n, QUERY_CHUNK)], dim=1))
        out = torch.cat(heads, dim=-1)
        x = x + a.out(out)
        return x + self.mlp(self.mlp_ln(x))


class DecoderBlock(nn.Module):
    def __init__(self, n_state: int, n_head: int):
        super().__init__()
        self.attn = SelfAttention(n_state, n_head)
        self.attn_ln = LayerNorm(n_state)
        self.cross_attn = SelfAttention(n_state, n_head)
        self.cross_attn_ln = LayerNorm(n_state)
        self.mlp = nn.Sequential(Linear(n_state, n_state * 4), nn.GELU(), Linear(n_state * 4, n_state))
        self.mlp_ln = LayerNorm(n_state)

    def cross_kv(self, xa: Tensor) -> tuple[Tensor, Tensor]:
        """Cross-attention keys and values, laid out head-major inside the (batch, ctx, state) shape the model
        directory promises: keys as (heads, head_dim, ctx), values as (heads, ctx, head_dim). The decoder
        then attends without transposing 2 x ctx x state floats per layer on every token."""
        c = self.cross_attn
        b, t, _ = xa.shape
        k = c.key(xa).view(b, t, c.n_head, -1).permute(0, 2, 3, 1).reshape(b, t, -1)
        v = c.value(xa).view(b, t, c.n_head, -1).transpose(1, 2).reshape(b, t, -1)
        return k, v

    def forward(
        self, x: Tensor, past_k: Tensor, past_v: Tensor, cross_k: Tensor, cross_v: Tensor
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        a = self.attn
        h = self.attn_ln(x)
        k = torch.cat([past_k, a.key(h)], dim=1)
        v = torch.cat([past_v, a.value(h)], dim=1)
        out, _ = attention(a.query(h), k, v, a.n_head, causal=True)
        x = x + a.out(out)
        c = self.cross_attn
        b, t, _ = cross_k.shape
        k_t = cross_k.reshape(b, c.n_head, -1, t)
        v_h = cross_v.reshape(b, c.n_head, t, -1)
        out, weights = heads_attention(c.query(self.cross_attn_ln(x)), k_t, v_h, c.n_head, causal=False)
        x = x + c.out(out)
        x = x + self.mlp(self.mlp_ln(x))
        return x, k, v, weights


def sinusoids(length: int, channels: int, max_timescale: float = 10000) -> Tensor:
    inc = math.log(max_timescale) / (channels // 2 - 1)
    inv = torch.exp(-inc * torch.arange(channels // 2))
    t = torch.arange(length)[:, None] * inv[None, :]
    return torch.cat([torch.sin(t), torch.cos(t)], dim=1)


class AudioEncoder(nn.Module):
    def __init__(self, dims: ModelDims):
        super().__init__()
        self.conv1 = nn.Conv1d(dims.n_mels, dims.n_audio_state, kernel_size=3, padding=1)
        self.conv2 = nn.Conv1d(dims.n_audio_state, dims.n_audio_state, kernel_size=3, stride=2, padding=1)
        self.register_buffer("positional_embedding", sinusoids(dims.n_audio_ctx, dims.n_audio_state))
        self.blocks = nn.ModuleList(
            EncoderBlock(dims.n_audio_state, dims.n_audio_head, dims.n_audio_ctx) for _ in range(dims.n_audio_layer)
        )
        self.ln_post = LayerNorm(dims.n_audio_state)

    def forward(self, mel: Tensor) -> Tensor:
        x = F.gelu(self.conv1(mel))
        x = F.gelu(self.conv2(x)).permute(0, 2, 1)
        # Sliced, not asserted: shorter inputs give a shorter audio context (the short-utterance fast path).
        x = x + self.positional_embedding[: x.shape[1]]
        for block in self.blocks:
            x = block(x)
        return self.ln_post(x)


class TextDecoder(nn.Module):
    def __init__(self, dims: ModelDims):
        super().__init__()
        self.token_embedding = nn.Embedding(dims.n_vocab, dims.n_text_state)
        self.positional_embedding = nn.Parameter(torch.empty(dims.n_text_ctx, dims.n_text_state))
        self.blocks = nn.ModuleList(
            DecoderBlock(dims.n_text_state, dims.n_text_head) for _ in range(dims.n_text_layer)
        )
        self.ln = LayerNorm(dims.n_text_state)


class Whisper(nn.Module):
    def __init__(self, dims: ModelDims):
        super().__init__()
        self.dims = dims
        self.encoder = AudioEncoder(dims)
        self.decoder = TextDecoder(dims)

    def encode_layers(self, mel: Tensor) -> list[Tensor]:
        """mel (batch, n_mels, frames) -> each decoder layer's cross K and V, (batch, ctx, state) each."""
        xa = self.encoder(mel)
        kv = []
        for block in self.decoder.blocks:
            kv += block.cross_kv(xa)
        return kv

    def encode(self, mel: Tensor) -> Tensor:
        """The same, stacked as (2 * n_text_layer, batch, ctx, state)."""
        return torch.stack(self.encode_layers(mel))

    def decode(
        self, tokens: Tensor, self_kv: Tensor, cross_kv: Tensor
    ) -> tuple[Tensor, Tensor, Tensor]:
        """One decoder pass.

        tokens (batch, n); self_kv (2 * layers, batch, past, state); cross_kv (2 * layers, 1 or batch, ctx,
        state). Returns logits (batch, n, vocab), the grown self_kv, and the cross-attention weights of every
        layer and head (layers, batch, heads, n, ctx) for word alignment.
        """
        d = self.decoder
        offset = self_kv.shape[2]
        # The embedding is also the output projection. Both uses go through its transpose so the exported
        # graph stores one (state, vocab) matrix, not two.
        emb_t = d.token_embedding.weight.t()
        x = emb_t.index_select(1, tokens.flatten()).t().reshape(*tokens.shape, -1)
        x = x + d.positional_embedding[offset : offset + tokens.shape[1]]
        new_kv, weights = [], []
        for i, block in enumerate(d.blocks):
            x, k, v, w = block(x, self_kv[2 * i], self_kv[2 * i + 1], cross_kv[2 * i], cross_kv[2 * i + 1])
            new_kv += [k, v]
            weights.append(w)
        x = d.ln(x)
        logits = x @ emb_t
        return logits.float(), torch.stack(new_kv), torch.stack(weights)
