"""Structured pruning: remove whole attention heads, FFN channels and encoder layers from a torch Whisper.

Unlike zeroing weights (unstructured/magnitude pruning, which saves nothing on a CPU without sparse
kernels), every removal here makes a matrix smaller, so the exported graph does less work.

Importance is first-order (Taylor): |activation x gradient| summed over a head's or a channel's outputs,
measured on calibration audio with the model's own transcripts as targets (no labels needed). Encoder layers
are ranked by how much skipping each one changes the output distribution.

The model directory contract stays: d_model, the decoder's self-attention and cross-attention widths (hence
the shapes of self_kv and cross_kv) are untouched; encoder heads shrink only the inner q/k/v/out width.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch
from torch import nn

from quantize.calibration import CalibrationSet
from quantize.model import Linear, Whisper


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def teacher_forced_logits(model: Whisper, mel: torch.Tensor, tokens: list[int]) -> torch.Tensor:
    """Logits for every position of `tokens` (minus the last) given the audio, in one decoder pass."""
    cross = model.encode(mel[None])
    n_kv, state = cross.shape[0], model.dims.n_text_state
    empty = torch.zeros(n_kv, 1, 0, state)
    logits, _, _ = model.decode(torch.tensor([tokens[:-1]]), empty, cross)
    return logits[0]


class _Taylor:
    """Accumulates |sum(activation * grad)| per unit (head or channel) at a Linear's input."""

    def __init__(self, linear: nn.Module, unit: int):
        self.unit, self.score, self.act = unit, None, None
        self.handle = linear.register_forward_hook(self._hook)

    def _hook(self, module, inputs, output):
        act = inputs[0]
        if act.requires_grad:
            act.register_hook(lambda grad, act=act: self._accumulate(act, grad))

    def _accumulate(self, act: torch.Tensor, grad: torch.Tensor) -> None:
        contrib = (act * grad).detach().sum(dim=tuple(range(act.dim() - 1)))  # per input feature
        per_unit = contrib.view(-1, self.unit).sum(dim=1).abs()
        self.score = per_unit if self.score is None else self.score + per_unit

    def remove(self) -> None:
        self.handle.remove()


def importance(model: Whisper, calibration: CalibrationSet, tokens: dict[Path, list[int]],
               progress: bool = True) -> dict[str, list[torch.Tensor]]:
    from tqdm import tqdm

    enc = model.encoder.blocks
    head_dim = model.dims.n_audio_state // model.dims.n_audio_head
    trackers = {
        "encoder_heads": [_Taylor(b.attn.out, head_dim) for b in enc],
        "encoder_ffn": [_Taylor(b.mlp[2], 1) for b in enc],
        "decoder_ffn": [_Taylor(b.mlp[2], 1) for b in model.decoder.blocks],
    }
    model.eval()
    params = [p for p in model.parameters()]
    for p in params:
        p.requires_grad_(True)
    try:
        for path, seq in tqdm(tokens.items(), desc="prune: importance", unit="clip", disable=not progress,
                              leave=False):
            mel = torch.from_numpy(calibration.mel(path, model.dims.n_mels))
            logits = teacher_forced_logits(model, mel, seq)
            loss = nn.functional.cross_entropy(logits, torch.tensor(seq[1:]))
            model.zero_grad(set_to_none=True)
            loss.backward()
    finally:
        for group in trackers.values():
            for t in group:
                t.remove()
        model.zero_grad(set_to_none=True)
        for p in params:
            p.requires_grad_(False)
    return {k: [t.score for t in v] for k, v in trackers.items()}


@torch.no_grad()
def layer_importance(model: Whisper, calibration: CalibrationSet, tokens: dict[Path, list[int]]) -> list[float]:
    """Mean KL(full || without layer i) of the next-token distributions, per encoder layer."""
    ref = {p: teacher_forced_logits(model, torch.from_numpy(calibration.mel(p)), s).log_softmax(-1)
           for p, s in tokens.items()}
    blocks = model.encoder.blocks
    scores = []
    for i in range(len(blocks)):
        model.encoder.blocks = nn.ModuleList(b for j, b in enumerate(blocks) if j != i)
        kl = 0.0
        for p, s in tokens.items():
            lp = teacher_forced_logits(model, torch.from_numpy(calibration.mel(p)), s).log_softmax(-1)
            kl += float((ref[p].exp() * (ref[p] - lp)).sum(-1).mean())
        scores.append(kl / len(tokens))
    model.encoder.blocks = blocks
    return scores


def _keep_rows(linear: nn.Linear, idx: torch.Tensor) -> Linear:
    new = Linear(linear.in_features, len(idx), bias=linear.bias is not None)
    new.weight.data = linear.weight.data[idx].clone()
    if linear.bias is not None:
        new.bias.data = linear.bias.data[idx].clone()
    return new


def _keep_cols(linear: nn.Linear, idx: torch.Tensor) -> Linear:
    new = Linear(len(idx), linear.out_features, bias=linear.bias is not None)
    new.weight.data = linear.weight.data[:, idx].clone()
    if linear.bias is not None:
        new.bias.data = linear.bias.data.clone()
    return new


def _top(scores: torch.Tensor, keep: int) -> torch.Tensor:
    return scores.topk(keep).indices.sort().values


def prune_heads(attn: nn.Module, scores: torch.Tensor, remove: int) -> list[int]:
    head_dim = attn.query.out_features // attn.n_head
    heads = _top(scores, attn.n_head - remove)
    idx = (heads[:, None] * head_dim + torch.arange(head_dim)).flatten()
    attn.query, attn.key, attn.value = (_keep_rows(m, idx) for m in (attn.query, attn.key, attn.value))
    attn.out = _keep_cols(attn.out, idx)
    attn.n_head = len(heads)
    return heads.tolist()


def prune_ffn(mlp: nn.Sequential, scores: torch.Tensor, fraction: float, multiple: int = 32) -> int:
    width = mlp[0].out_features
    keep = max(multiple, int(round(width * (1 - fraction) / multiple)) * multiple)
    if keep >= width:
        return width
    idx = _top(scores, keep)
    mlp[0] = _keep_rows(mlp[0], idx)
    mlp[2] = _keep_cols(mlp[2], idx)
    return keep


def prune_model(model: Whisper, calibration: CalibrationSet, tokens: dict[Path, list[int]], params,
                progress: bool = True) -> dict:
    """Prune in place as `params` (a recipe PruneStep) asks; returns the report for the model card."""
    before = count_parameters(model)
    report: dict = {"parameters_before": before}
    if params.encoder_layers:
        scores = layer_importance(model, calibration, tokens)
        drop = sorted(range(len(scores)), key=scores.__getitem__)[: params.encoder_layers]
        model.encoder.blocks = nn.ModuleList(b for i, b in enumerate(model.encoder.blocks) if i not in drop)
        report["encoder_layers_removed"] = sorted(drop)
        report["encoder_layer_kl"] = [round(s, 5) for s in scores]
    if params.encoder_heads or params.encoder_ffn or params.decoder_ffn:
        scores = importance(model, calibration, tokens, progress)
        if params.encoder_heads:
            report["encoder_heads_kept"] = [
                prune_heads(b.attn, s, params.encoder_heads)
                for b, s in zip(model.encoder.blocks, scores["encoder_heads"])
            ]
        if params.encoder_ffn:
            report["encoder_ffn_width"] = [
                prune_ffn(b.mlp, s, params.encoder_ffn) for b, s in zip(model.encoder.blocks, scores["encoder_ffn"])
            ]
        if params.decoder_ffn:
            report["decoder_ffn_width"] = [
                prune_ffn(b.mlp, s, params.decoder_ffn) for b, s in zip(model.decoder.blocks, scores["decoder_ffn"])
            ]
    heads = {b.attn.n_head for b in model.encoder.blocks}
    model.dims = dataclasses.replace(
        model.dims, n_audio_layer=len(model.encoder.blocks),
        n_audio_head=heads.pop() if len(heads) == 1 else model.dims.n_audio_head,
    )
    report["parameters_after"] = count_parameters(model)
    report["parameters_removed"] = before - report["parameters_after"]
    return report
