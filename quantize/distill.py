"""Knowledge distillation: fine-tune a pruned student to match the unpruned teacher on unlabeled audio.

Targets come from the teacher alone (its transcript of each clip, its next-token distributions and its
cross-attention keys/values), so any recordings of the target domain will do — no transcripts needed.
Loss per clip: T^2 * KL(teacher || student) over the teacher-forced positions at temperature T, plus
`encoder_weight` x the relative squared error of the student's cross K/V against the teacher's.
The token and positional embeddings stay frozen (they are shared with the unpruned parts and huge).
"""

from __future__ import annotations

import math
import random
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from quantize.calibration import CalibrationSet
from quantize.model import Whisper


def _forward(model: Whisper, mel: torch.Tensor, tokens: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    cross = model.encode(mel[None])
    empty = torch.zeros(cross.shape[0], 1, 0, model.dims.n_text_state)
    logits, _, _ = model.decode(torch.tensor([tokens[:-1]]), empty, cross)
    return logits[0], cross


def distill(student: Whisper, teacher: Whisper, calibration: CalibrationSet, tokens: dict[Path, list[int]],
            params, progress: bool = True, seed: int = 0) -> dict:
    """Train `student` in place; returns a report (steps run, losses, minutes) for the model card."""
    from tqdm import tqdm

    files = list(tokens)
    targets = {}
    teacher.eval()
    with torch.no_grad():
        for f in tqdm(files, desc="distill: teacher targets", unit="clip", disable=not progress, leave=False):
            mel = torch.from_numpy(calibration.mel(f, teacher.dims.n_mels))
            logits, cross = _forward(teacher, mel, tokens[f])
            targets[f] = (mel, (logits / params.temperature).log_softmax(-1), cross, cross.pow(2).mean())

    frozen = ("decoder.token_embedding", "decoder.positional_embedding", "encoder.positional_embedding")
    trainable = [p for n, p in student.named_parameters() if not n.startswith(frozen)]
    for n, p in student.named_parameters():
        p.requires_grad_(not n.startswith(frozen))
    opt = torch.optim.AdamW(trainable, lr=params.lr, weight_decay=0.0)
    # The schedule spans the steps that fit in max_minutes (re-estimated from the first steps' pace).
    plan = {"steps": params.steps}

    def lr_at(step: int) -> float:  # linear warm-up, cosine decay to zero at the planned end
        total = plan["steps"]
        # Adam's first steps move every weight by about lr whatever its gradient: from a refit student at
        # 1e-4 one such step raised the KD loss from 0.03 to 1.9, so never start at the full rate.
        warmup = max(5, total // 10)
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, total - warmup))))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_at)
    rng = random.Random(seed)
    order: list[Path] = []
    losses: list[float] = []
    start = time.monotonic()
    student.train()
    bar = tqdm(range(params.steps), desc="distill", unit="step", disable=not progress, leave=False)
    steps_run = 0
    for _ in bar:
        if time.monotonic() - start > params.max_minutes * 60:
            break
        opt.zero_grad(set_to_none=True)
        total = 0.0
        for _ in range(params.batch):
            if not order:
                order = files[:]
                rng.shuffle(order)
            f = order.pop()
            mel, t_logp, t_cross, t_power = targets[f]
            logits, cross = _forward(student, mel, tokens[f])
            s_logp = (logits / params.temperature).log_softmax(-1)
            kd = F.kl_div(s_logp, t_logp, log_target=True, reduction="batchmean") * params.temperature**2
            feat = (cross - t_cross).pow(2).mean() / t_power
            loss = (kd + params.encoder_weight * feat) / params.batch
            loss.backward()
            total += loss.item()
        torch.nn.utils.clip_grad_norm_(trainable, 1.0)
        opt.step()
        sched.step()
        losses.append(total)
        steps_run += 1
        if steps_run == 3:
            pace = (time.monotonic() - start) / 3
            plan["steps"] = max(3, min(params.steps, int(params.max_minutes * 60 / pace)))
        bar.set_postfix(loss=f"{total:.4f}")
    student.eval()
    for p in student.parameters():
        p.requires_grad_(False)
    head = losses[: max(1, len(losses) // 10)]
    tail = losses[-max(1, len(losses) // 10):]
    return {
        "steps": steps_run, "clips": len(files), "batch": params.batch, "lr": params.lr,
        "loss_start": round(sum(head) / len(head), 5) if losses else None,
        "loss_end": round(sum(tail) / len(tail), 5) if losses else None,
        "minutes": round((time.monotonic() - start) / 60, 2),
    }
