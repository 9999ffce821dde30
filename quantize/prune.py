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


# --- refitting: the kept units take over the work of the removed ones ---------------------------------------

def _lstsq(x: torch.Tensor, y: torch.Tensor, ridge: float = 1e-3,
           bias: bool = True) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Weight (out, in) and bias (out, or None without one) minimising |x W^T + b - y|^2 (+ a little ridge),
    solved in float64."""
    x = x.reshape(-1, x.shape[-1])
    if bias:
        x = torch.cat([x, torch.ones(len(x), 1)], dim=1)
    x, y = x.double(), y.reshape(-1, y.shape[-1]).double()
    gram = x.T @ x
    gram += ridge * gram.diagonal().mean() * torch.eye(gram.shape[0], dtype=gram.dtype)
    beta = torch.linalg.solve(gram, x.T @ y)  # (in [+ 1], out)
    if not bias:
        return beta.T.float().contiguous(), None
    return beta[:-1].T.float().contiguous(), beta[-1].float().contiguous()


def _attention_heads(block: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The attention sublayer's output before its out projection (what the kept heads produce)."""
    from quantize.model import attention

    a, h = block.attn, block.attn_ln(x)
    out, _ = attention(a.query(h), a.key(h), a.value(h), a.n_head, causal=False)
    return out


@torch.no_grad()
def refit_encoder(student: Whisper, teacher: Whisper, mels: torch.Tensor, ridge: float = 1e-3,
                  cross_kv: bool = True) -> list[float]:
    """Layer by layer, refit each pruned block's out projection and FFN output so its residual stream
    matches the unpruned teacher's on calibration audio — the student's own (already drifted) inputs go in,
    so each layer also corrects what the earlier ones lost. Returns the relative error left per layer."""
    import torch.nn.functional as F

    def stem(model: Whisper) -> torch.Tensor:
        x = F.gelu(model.encoder.conv1(mels))
        x = F.gelu(model.encoder.conv2(x)).permute(0, 2, 1)
        return x + model.encoder.positional_embedding[: x.shape[1]]

    x_t, x_s = stem(teacher), stem(student)
    errors = []
    for t_block, s_block in zip(teacher.encoder.blocks, student.encoder.blocks):
        h_t = x_t + t_block.attn.out(_attention_heads(t_block, x_t))
        heads = _attention_heads(s_block, x_s)
        s_block.attn.out.weight.data, s_block.attn.out.bias.data = _lstsq(heads, h_t - x_s, ridge)
        h_s = x_s + s_block.attn.out(heads)
        y_t = h_t + t_block.mlp(t_block.mlp_ln(h_t))
        hidden = s_block.mlp[1](s_block.mlp[0](s_block.mlp_ln(h_s)))
        s_block.mlp[2].weight.data, s_block.mlp[2].bias.data = _lstsq(hidden, y_t - h_s, ridge)
        x_s, x_t = h_s + s_block.mlp[2](hidden), y_t
        errors.append(float((x_s - x_t).pow(2).mean() / x_t.pow(2).mean()))
    # The decoder reads the encoder only through each layer's cross-attention keys and values: refit those
    # projections too, from the student's final features to the teacher's keys and values.
    if not cross_kv:
        return errors
    xa_s, xa_t = student.encoder.ln_post(x_s), teacher.encoder.ln_post(x_t)
    for t_block, s_block in zip(teacher.decoder.blocks, student.decoder.blocks):
        for name in ("key", "value"):
            target = getattr(t_block.cross_attn, name)(xa_t)
            layer = getattr(s_block.cross_attn, name)
            # Keys have no bias in Whisper: they are refit without one.
            weight, bias = _lstsq(xa_s, target, ridge, bias=layer.bias is not None)
            layer.weight.data = weight
            if bias is not None:
                layer.bias.data = bias
    return errors


def prune_model(model: Whisper, calibration: CalibrationSet, tokens: dict[Path, list[int]], params,
                progress: bool = True) -> dict:
    """Prune in place as `params` (a recipe PruneStep) asks; returns the report for the model card."""
    import copy

    before = count_parameters(model)
    report: dict = {"parameters_before": before}
    teacher = copy.deepcopy(model).eval() if params.refit else None
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
    if teacher is not None and (params.encoder_heads or params.encoder_ffn) and not params.encoder_layers:
        files = calibration.subset(params.refit_utterances)
        mels = torch.stack([torch.from_numpy(calibration.mel(f, model.dims.n_mels)) for f in files])
        report["encoder_refit_error"] = [round(e, 5) for e in refit_encoder(model, teacher, mels)]
    heads = {b.attn.n_head for b in model.encoder.blocks}
    model.dims = dataclasses.replace(
        model.dims, n_audio_layer=len(model.encoder.blocks),
        n_audio_head=heads.pop() if len(heads) == 1 else model.dims.n_audio_head,
    )
    report["parameters_after"] = count_parameters(model)
    report["parameters_removed"] = before - report["parameters_after"]
    return report
