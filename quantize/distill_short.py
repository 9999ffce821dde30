"""Short-utterance distillation: teach a model to transcribe from a short encoder context.

Whisper was trained on 30 s windows, so a 3 s command pays for a 30 s encoder pass. The device's fast
path (edge_asr.transcriber.fast_path_frames) encodes only the seconds present plus `pad_s` of silence,
but an unadapted model, never having seen its context end so soon, then fails to stop: it repeats itself
or invents a "Thank you." (tiny.en int8 on 67 utterances of 1.5-5 s: 13.1 % WER on the full window, 25.1 %
on the fast path with 1 s of padding, 14.2 % with 10 s; 2026-11-27).

The fix is a short fine-tune with the full-window model as the teacher (sequence-level distillation):
the teacher transcribes each clip the normal way (30 s window), and the student learns to produce the
same tokens, timestamps and end-of-text from the short context, the teacher's token distribution, and its
encoder output where there is audio. No transcripts are needed, so the clips are synthesized sentences
(espeak-ng/flite/festival, never the held-out evaluation commands), real short recordings (the wake-word
set), their concatenations (continuous dictation) and truncations (what a dictation partial sees). Every
other clip is also shown as a full 30 s window, which keeps long audio where it was.

Status: the default model's encoder (quantize/recipes/tiny.en-fast-encoder.npz, recipe `int8-fast`) comes from
this method with the defaults below, run on one GPU (1348 steps of 32 clips, ~5 min on an H200; a step takes
~15 s on a 2-core CPU). On the 67 short utterances, int8: fast path 12.45 % against its own full window 13.32 %
(real 13.08 / 14.23, synthesized 11.62 / 12.12); on all 81 real speech-dev recordings its fast path 11.34 %
against the plain int8 model's full window 11.66 % (README, "Dictation"). Earlier CPU runs (300 steps of one
clip, 1-2 blocks, 560 clips) did not get there, nor did learned encoder positions appended after the input.

Then `measure_fast_path` scores a model directory with and without the fast path on short speech and
records in its card whether the fast path is safe (the device uses it by default only then).

    python -m quantize.distill_short --from tiny.en --save-encoder tiny.en-fast-encoder.npz    # train (GPU)
    edge-asr shrink --from tiny.en --recipe int8-fast --out models/fast                       # uses the file
    python -m quantize.distill_short --measure models/fast --encoder tiny.en-fast-encoder.npz  # verdict -> both
    python -m quantize.distill_short --from tiny.en --out models/tiny.en-short                # fp32 model dir

In a shrink recipe the same two parts are steps (`recipe_step`, `measure_step` below):
    steps:
      - distill_short: {steps: 1348, batch: 32}                     # torch step, before export
      - export: {opset: 17}
      - quantize_int8: {embedding: int8}
      - measure_fast_path: {pad_s: 1.0}                             # last: scores the final ONNX model
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import random
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge_asr.frontend import HOP, N_FRAMES, log_mel
from quantize.tts import VOICES, synthesize_cached

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"


@dataclass
class DistillShortOptions:
    # Defaults: the run that made the shipped tiny.en-fast-encoder.npz (1348 steps of 32 on one GPU, ~5 min).
    steps: int = 1348  # optimizer steps
    batch: int = 32  # clips per step, all of one encoder length
    lr: float = 5e-5
    pad_s: float = 1.0  # the fast path's padding the student is trained (and the card is written) for
    full_window_every: int = 2  # every Nth clip is also shown as a full 30 s window (keeps long audio right)
    kl_weight: float = 2.0  # weight of matching the teacher's token distribution (beside its greedy tokens)
    kv_weight: float = 3.0  # weight of matching the teacher's encoder output where there is audio (relative MSE)
    train_blocks: int = 4  # the last encoder blocks that learn (with the final norm); the decoder stays as it was
    n_tts: int = 1100  # synthesized sentences
    n_real: int = 1000  # real short recordings from the wake-word set (at most what it has: 436)
    truncated: float = 0.25  # share of clips added again cut at a random point (dictation partials)
    seed: int = 7
    threads: int = 2
    device: str = "auto"  # torch device; auto: cuda when there is one (on a 2-core CPU a step takes ~15 s)


# --- training audio -----------------------------------------------------------------------------------------

_SLOTS = {
    "room": ["kitchen", "bedroom", "bathroom", "hallway", "office", "garage", "porch", "attic", "basement",
             "dining room", "nursery", "study"],
    "device": ["heater", "radio", "coffee machine", "dishwasher", "printer", "air purifier", "lamp", "speaker",
               "kettle", "projector", "washing machine", "sprinkler"],
    "number": ["one", "two", "three", "four", "six", "eight", "twelve", "fifteen", "thirty", "forty five",
               "ninety", "a hundred"],
    "unit": ["seconds", "minutes", "hours", "percent", "degrees", "pages", "kilometers", "miles"],
    "name": ["Anna", "Peter", "Sarah", "David", "Maria", "Tom", "Lisa", "James", "Emma", "Oliver", "Sophie"],
    "day": ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday", "the weekend"],
    "thing": ["bread", "batteries", "tomatoes", "a birthday card", "dog food", "light bulbs", "coffee beans",
              "paper towels", "rice", "oranges"],
    "city": ["Paris", "Berlin", "Chicago", "Tokyo", "Madrid", "Toronto", "Dublin", "Lisbon", "Denver", "Oslo"],
    "topic": ["the budget", "the new design", "our travel plans", "the garden", "the quarterly report",
              "the school trip", "the kitchen renovation", "the football match", "the book club"],
}
_TEMPLATES = [
    "switch on the {device}", "turn off the {device} in the {room}", "dim the {room} lights to {number} percent",
    "set an alarm for {day} morning", "start a timer for {number} {unit}", "remind me to call {name} on {day}",
    "put {thing} on my shopping list", "how warm will it be in {city} on {day}",
    "send {name} a message that I am on my way", "what is the distance to {city}",
    "open the blinds in the {room}", "play the radio in the {room}", "is the {device} still running",
    "move my meeting with {name} to {day}", "how long does it take to drive to {city}",
    "let's talk about {topic} on {day}", "{name} asked me to bring {thing}", "we need {number} more {thing}",
    "the {device} in the {room} is broken again", "please write down that {name} will handle {topic}",
    "I think {topic} needs more time", "note that the train to {city} leaves at {number}",
    "call {name}", "mute the {device}", "{name} will arrive on {day}", "yes please", "no thanks",
    "good morning", "what did {name} say about {topic}", "turn the {device} up by {number}",
]

# Free-form dictation, so the student does not only hear commands.
_PROSE = [
    "the weather was cold but the sky was clear all afternoon",
    "she opened the window and listened to the rain",
    "our team finished the project two weeks early",
    "please send me the slides before the meeting starts",
    "the old bridge was closed for repairs last winter",
    "he forgot his umbrella at the station again",
    "we could take the bus or walk through the park",
    "the results look promising but we need more data",
    "dinner will be ready in about twenty minutes",
    "the children built a castle out of cardboard boxes",
    "I would like to book a table for four people",
    "the library opens at nine and closes at six",
    "thank you for your patience while we fix the problem",
    "the museum has a new exhibition about ancient maps",
    "my phone battery is almost empty",
    "the package should arrive by the end of the week",
    "they painted the fence a bright shade of green",
    "the concert was louder than I expected",
    "can you explain that again a little more slowly",
    "the river rose quickly after the storm",
    "let me check my notes and get back to you",
    "the first chapter describes a small fishing village",
    "we planted tulips along the side of the house",
    "the engine made a strange noise on the highway",
    "nobody knew where the key had gone",
    "the price of apples went up this month",
    "our neighbours are moving to a smaller apartment",
    "the teacher asked everyone to read the next page",
    "it took three hours to clear the snow from the driveway",
    "the software update fixed most of the bugs",
]


def training_sentences(n: int, seed: int = 0) -> list[str]:
    """Varied command and dictation sentences from templates, never one of the held-out eval commands."""
    from quantize.tts import EVAL_COMMANDS

    rng = random.Random(seed)
    held_out = {c.lower() for c in EVAL_COMMANDS}
    out: list[str] = []
    seen: set[str] = set()
    for text in _PROSE[:n]:
        seen.add(text)
        out.append(text)
    while len(out) < n:
        text = rng.choice(_TEMPLATES)
        for slot, values in _SLOTS.items():
            while "{" + slot + "}" in text:
                text = text.replace("{" + slot + "}", rng.choice(values), 1)
        if text.lower() not in held_out and text not in seen:
            seen.add(text)
            out.append(text)
    return out


def real_short_clips(n: int, seed: int = 0) -> list[np.ndarray]:
    """Real microphone speech: the wake-word dev set (alexa / jarvis / others), untranscribed is fine."""
    import csv

    from edge_asr.audio import load_audio

    manifest = DATA / "wakeword-dev" / "manifest.tsv"
    if not manifest.exists():
        return []
    with manifest.open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    random.Random(seed).shuffle(rows)
    return [load_audio(manifest.parent / r["wav"]) for r in rows[:n]]


# Training voices: the evaluation's engines and voices plus more espeak-ng variants (the sentences, not the
# voices, are what the evaluation holds out).
TRAINING_VOICES = (*VOICES, *[("espeak-ng", v) for v in (
    "en-us+f1", "en-us+f2", "en-us+f4", "en-us+m1", "en-us+m2", "en-us+m3", "en-us+m7", "en-gb-x-rp", "en-029",
    "en-gb-x-gbclan", "en-gb-x-gbcwmd", "en-us+klatt", "en-gb+f2", "en-us+croak")], ("flite", "kal"))


def _brown_noise(n: int, rng: np.random.Generator) -> np.ndarray:
    x = np.cumsum(rng.normal(0, 1, n))
    x -= np.convolve(x, np.ones(1601) / 1601, mode="same")  # no drift: a rumble, not an offset
    return (x / (x.std() + 1e-9)).astype(np.float32)


def training_clips(opts: DistillShortOptions, cache: Path) -> list[np.ndarray]:
    """Synthesized sentences and real short recordings, with level, white or brown noise; then concatenations
    (continuous dictation) and truncated copies (what a dictation partial sees)."""
    rng = random.Random(opts.seed)
    noise = np.random.default_rng(opts.seed)
    base = []
    for i, text in enumerate(training_sentences(opts.n_tts, opts.seed)):
        voice = TRAINING_VOICES[rng.randrange(len(TRAINING_VOICES))]
        base.append(synthesize_cached(text, voice, cache, lead_s=rng.uniform(0.05, 0.6),
                                      tail_s=rng.uniform(0.05, 0.8), seed=i))
    base += real_short_clips(opts.n_real, opts.seed)
    clips = []
    for clip in base:
        clip = clip * 10 ** (rng.uniform(-12, 3) / 20)
        r = rng.random()
        if r < 0.3:  # synthetic speech is too clean: a little mic hiss
            clip = clip + noise.normal(0, 10 ** (rng.uniform(-60, -35) / 20), len(clip))
        elif r < 0.6:  # room rumble or a fan at 15-35 dB SNR
            clip = clip + _brown_noise(len(clip), noise) * np.sqrt(np.mean(clip**2)) * 10 ** (-rng.uniform(15, 35) / 20)
        clips.append(np.clip(clip, -1, 1).astype(np.float32))
    for _ in range(len(base) // 5):
        clips.append(np.concatenate(rng.sample(clips[: len(base)], rng.choice((2, 3)))))
    for clip in rng.sample(clips, int(len(clips) * opts.truncated)):
        if len(clip) > 16000:
            clips.append(clip[: rng.randrange(8000, len(clip))])
    return clips


# --- teacher ------------------------------------------------------------------------------------------------

def audio_positions(n_samples: int) -> int:
    """Audio-context positions that cover `n_samples` of audio (two mel frames each)."""
    return max(1, -(-n_samples // HOP // 2))


def teacher_tokens(teacher_dir: Path, clips: list[np.ndarray], threads: int, cache: Path) -> list[list[int]]:
    """Start-of-transcript ... end-of-text, as the full-window teacher decodes each clip greedily; cached on
    disk by clip and teacher files (labelling is the slow part)."""
    import hashlib

    from edge_asr.decoding import DecodingOptions
    from edge_asr.model_dir import DECODER, ENCODER
    from edge_asr.transcriber import Transcriber

    teacher = Transcriber(teacher_dir, threads=threads)
    tok = teacher.tokenizer
    sot_seq = tok.sot_sequence("en", timestamps=True)
    key = hashlib.sha1()
    for name in (ENCODER, DECODER):
        key.update((Path(teacher_dir) / name).read_bytes())
    labels = []
    for clip in clips:
        path = cache / "labels" / f"{hashlib.sha1(clip.tobytes()).hexdigest()[:20]}-{key.hexdigest()[:12]}.npy"
        if path.exists():
            labels.append(np.load(path).tolist())
            continue
        cross_kv = teacher.engine.encode(log_mel(clip, teacher.card.dims.n_mels))
        result = teacher.window_decoder.decode(
            cross_kv, DecodingOptions(temperature=0.0, language="en", max_timestamp=len(clip) / 16000))
        tokens = sot_seq + result.tokens + [tok.special.eot]
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, np.array(tokens))
        labels.append(tokens)
    return labels


# --- student ------------------------------------------------------------------------------------------------

def _cross_kv(model, xa):
    """Whisper.encode's last part, in whatever layout the model's decoder expects."""
    import torch

    kv = []
    for block in model.decoder.blocks:
        kv += block.cross_kv(xa)
    return torch.stack(kv)


def _logits(model, tokens, xa):
    """Teacher-forced decoder logits for a batch of token sequences over encoder output `xa`."""
    import torch

    d = model.dims
    empty = torch.zeros(2 * d.n_text_layer, tokens.shape[0], 0, d.n_text_state, device=xa.device)
    logits, _, _ = model.decode(tokens, empty, _cross_kv(model, xa))
    return logits


def distill_short_model(model, teacher_dir: Path, opts: DistillShortOptions | None = None,
                        cache: Path | None = None, log=print) -> dict:
    """Fine-tune a torch Whisper (quantize.model.Whisper) in place for the fast path; returns a report.

    The student is the model's last `train_blocks` encoder blocks and final norm, fed the fast path's short
    context (the audio plus `pad_s`, whole seconds), every `full_window_every`-th clip also the full window;
    the teacher is the model as it was, on the full window. Batches hold clips of one encoder length (the
    fast path's lengths are whole seconds, so there are few). The decoder never changes: it is most of the
    model and all of its language model. The state with the lowest held-out loss (5 % of the clips) is kept.
    """
    import torch
    import torch.nn.functional as F

    from edge_asr.transcriber import fast_path_frames

    opts = opts or DistillShortOptions()
    device = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if opts.device == "auto" else opts.device)
    torch.manual_seed(opts.seed)
    torch.set_num_threads(opts.threads)
    cache = Path(cache or Path(tempfile.gettempdir()) / "edge-asr-tts")
    began = time.monotonic()
    clips = training_clips(opts, cache)
    labels = teacher_tokens(teacher_dir, clips, opts.threads, cache)
    log(f"distill_short: {len(clips)} clips labelled by the full-window teacher in {time.monotonic() - began:.0f} s")

    d = model.dims
    was_training, home = model.training, next(model.parameters()).device
    model.to(device).eval().requires_grad_(False)
    mels = [torch.from_numpy(log_mel(c, d.n_mels, pad_to=None)) for c in clips]
    n_frames = [len(c) // HOP for c in clips]
    n_pos = [min(d.n_audio_ctx, audio_positions(len(c))) for c in clips]

    def mel_batch(idx: list[int], frames: int):
        x = torch.zeros(len(idx), d.n_mels, frames)
        for row, i in enumerate(idx):
            m = mels[i][:, :frames]
            x[row, :, : m.shape[1]] = m
        return x.to(device)

    def token_batch(idx: list[int]):
        t = max(len(labels[i]) for i in idx) - 1
        inputs = torch.full((len(idx), t), labels[idx[0]][-1], dtype=torch.long)  # padded with end-of-text
        targets = torch.full((len(idx), t), -100, dtype=torch.long)
        for row, i in enumerate(idx):
            seq = torch.tensor(labels[i])
            inputs[row, : len(seq) - 1], targets[row, : len(seq) - 1] = seq[:-1], seq[1:]
        return inputs.to(device), targets.to(device)

    # The teacher, once: its encoder output on the audio and its token log-probabilities, full window.
    teacher_xa, teacher_logp = {}, {}
    with torch.no_grad():
        for b in range(0, len(clips), 64):
            idx = list(range(b, min(b + 64, len(clips))))
            xa = model.encoder(mel_batch(idx, N_FRAMES))
            logp = _logits(model, token_batch(idx)[0], xa).log_softmax(-1)
            for row, i in enumerate(idx):
                teacher_xa[i] = xa[row, : n_pos[i]].clone()
                teacher_logp[i] = logp[row, : len(labels[i]) - 1].to(torch.bfloat16)

    rng = random.Random(opts.seed)
    order = list(range(len(clips)))
    rng.shuffle(order)
    held_out, train = order[: max(2, len(order) // 20)], order[max(2, len(order) // 20):]
    by_length: dict[int, list[int]] = {}
    for i in train:
        by_length.setdefault(fast_path_frames(n_frames[i], opts.pad_s), []).append(i)
    for i in train[:: max(1, opts.full_window_every)]:
        by_length.setdefault(N_FRAMES, []).append(i)

    n_frozen = d.n_audio_layer - opts.train_blocks
    params = [p for block in model.encoder.blocks[n_frozen:] for p in block.parameters()]
    params += list(model.encoder.ln_post.parameters())
    for p in params:
        p.requires_grad_(True)
    optim = torch.optim.AdamW(params, lr=opts.lr, weight_decay=0.0)

    def losses(idx: list[int], frames: int):
        xa = model.encoder(mel_batch(idx, frames))
        inputs, targets = token_batch(idx)
        logits = _logits(model, inputs, xa)
        tokens = F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=-100)
        logp = logits.log_softmax(-1)
        kl = kv = 0.0
        for row, i in enumerate(idx):
            t = teacher_logp[i].float()
            kl = kl + (t.exp() * (t - logp[row, : len(t)])).sum()
            # Where there is audio, keep what the encoder says about it as the teacher has it: the tokens alone
            # let the trained blocks forget acoustics the synthetic training speech never exercises.
            kv = kv + F.mse_loss(xa[row, : n_pos[i]], teacher_xa[i]) / teacher_xa[i].pow(2).mean()
        return tokens, kl / (targets != -100).sum(), kv / len(idx)

    def held_out_loss() -> float:
        with torch.no_grad():
            total = 0.0
            for i in held_out:
                tokens, kl, _ = losses([i], fast_path_frames(n_frames[i], opts.pad_s))
                total += float(tokens + opts.kl_weight * kl)
            return total / len(held_out)

    def batches():
        while True:
            for members in by_length.values():
                rng.shuffle(members)
            todo = [(f, m[b:b + opts.batch]) for f, m in by_length.items() for b in range(0, len(m), opts.batch)]
            rng.shuffle(todo)
            yield from todo

    best = held_out_loss()
    log(f"distill_short: {len(train)} clips to learn from, {len(held_out)} held out (loss {best:.4f}), on {device}")
    best_state, history, running, stream = None, [], [], batches()
    for step in range(opts.steps):
        for g in optim.param_groups:  # warm-up, then linear decay to a tenth
            g["lr"] = opts.lr * min(1.0, (step + 1) / 100) * (0.1 + 0.9 * (1 - step / opts.steps))
        frames, idx = next(stream)
        tokens, kl, kv = losses(idx, frames)
        optim.zero_grad(set_to_none=True)
        (tokens + opts.kl_weight * kl + opts.kv_weight * kv).backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optim.step()
        running.append((tokens.item(), kl.item(), kv.item()))
        if (step + 1) % 200 == 0 or step + 1 == opts.steps:
            loss = held_out_loss()
            if loss < best:
                best, best_state = loss, {k: v.detach().clone() for k, v in model.encoder.state_dict().items()}
            means = np.mean(running, axis=0).round(4).tolist()
            history.append({"step": step + 1, "token_kl_encoder": means, "held_out": round(loss, 4)})
            log(f"distill_short: step {step + 1}/{opts.steps} losses {means} held out {loss:.4f} "
                f"({time.monotonic() - began:.0f} s)")
            running = []
    if best_state is not None:
        model.encoder.load_state_dict(best_state)
    model.requires_grad_(False).to(home).train(was_training)
    return {"clips": len(clips), "history": history, "held_out_loss": round(best, 4), "device": str(device),
            "minutes": round((time.monotonic() - began) / 60, 1)}


def distill_short(weights, teacher_dir: Path, opts: DistillShortOptions | None = None, cache: Path | None = None,
                  log=print):
    """`distill_short_model` on SourceWeights (quantize.weights); returns new SourceWeights and the report."""
    from quantize.export import build_model

    model = build_model(weights)
    report = distill_short_model(model, teacher_dir, opts, cache, log)
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    return dataclasses.replace(weights, state_dict=state), report


# --- recipe steps (wired into quantize/pipeline.py's STEP_RUNNERS) ----------------------------------------

@dataclass
class MeasureFastPathOptions:
    # The padding measured and written to the card for the device to use. None: a distill_short step's pad_s
    # when the recipe has one (the student was trained for it), else the card's.
    pad_s: float | None = None
    tolerance_pt: float = 0.5  # WER points the fast path may cost and still be called safe


def recipe_step(ctx, opts: DistillShortOptions) -> None:
    """Recipe step `distill_short` (a torch step, before `export`): the teacher is the source's fp32 export.
    The pipeline writes its pad_s into the card (the student is trained for that padding)."""
    report = distill_short_model(ctx.torch_model(), ctx.reference_dir(), opts,
                                 log=print if ctx.progress else (lambda *_: None))
    ctx.report["distill_short"] = {"pad_s": opts.pad_s, **report}


def measure_step(ctx, opts: MeasureFastPathOptions) -> None:
    """Recipe step `measure_fast_path` (last, after any quantize step): scores the model being built and
    records in its card whether the fast path is safe."""
    from edge_asr.model_dir import ModelCard

    card = ModelCard.load(ctx.out)
    pad = opts.pad_s if opts.pad_s is not None else ctx.report.get("distill_short", {}).get("pad_s")
    if pad is not None:
        card.fast_path.pad_s = pad
    card.save(ctx.out)
    measure_fast_path(ctx.out, tolerance_pt=opts.tolerance_pt, log=print if ctx.progress else (lambda *_: None))


# --- shipping a distilled encoder ---------------------------------------------------------------------------

@dataclass
class DistilledEncoderOptions:
    # An encoder written by `python -m quantize.distill_short --save-encoder FILE`: a name beside the built-in
    # recipes (quantize/recipes/) or a path.
    file: str = ""


def save_encoder(state: dict, source_sha256: str, source_state: dict, path: Path, info: dict) -> None:
    """The encoder tensors of `state` (a distilled model's state dict) that differ from the source weights, as
    differences (int8 per row for matrices, float32 otherwise: they are small, so 8 bits lose nothing the int8
    model keeps), with the source's hash (they only make sense on those weights) and `info` (how it was trained
    and measured)."""
    arrays = {}
    for name, tensor in state.items():
        if not name.startswith("encoder."):
            continue
        delta = (tensor.float() - source_state[name].float()).numpy()
        if not np.any(delta):
            continue
        if delta.ndim == 2:
            scale = np.abs(delta).max(axis=1, keepdims=True) / 127
            scale[scale == 0] = 1.0
            arrays[f"{name}|q"] = np.round(delta / scale).astype(np.int8)
            arrays[f"{name}|scale"] = scale.astype(np.float32)
        else:
            arrays[f"{name}|delta"] = delta.astype(np.float32)
    _write_encoder(path, {"format": 1, "source_sha256": source_sha256, **info}, arrays)


def apply_encoder(model, source_sha256: str, path: Path) -> dict:
    """Add a saved encoder's differences to `model` (built from the same source weights); returns its info."""

    import torch

    from edge_asr.errors import ModelError

    if not path.exists():
        raise ModelError(f"{path}: no such distilled encoder file")
    meta, z = _read_encoder(path)
    if meta.get("source_sha256") != source_sha256:
        raise ModelError(f"{path.name} was distilled from other weights (sha256 {meta.get('source_sha256', '?')[:12]}, "
                         f"these are {source_sha256[:12]})")
    state = model.state_dict()
    with torch.no_grad():
        for key in z:
            name, kind = key.rsplit("|", 1)
            if kind == "q":
                delta = z[key].astype(np.float32) * z[f"{name}|scale"]
            elif kind == "delta":
                delta = z[key]
            else:
                continue
            state[name].add_(torch.from_numpy(delta))
    return meta


def _write_encoder(path: Path, meta: dict, arrays: dict[str, np.ndarray]) -> None:
    np.savez(path, meta=np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8), **arrays)


def _read_encoder(path: Path) -> tuple[dict, dict[str, np.ndarray]]:
    z = np.load(path)
    return json.loads(z["meta"].tobytes()), {k: z[k] for k in z.files if k != "meta"}


def record_verdict(path: Path, recipe: str, measured: dict) -> None:
    """Store a measurement of the fast path (measure_fast_path's result) in an encoder file: a recipe of that
    name that uses the file then writes it into its model's card."""
    meta, arrays = _read_encoder(path)
    meta["fast_path"] = {"recipe": recipe, "safe": measured["safe"], "pad_s": measured["pad_s"],
                         "measured": {k: v for k, v in measured.items() if k != "safe"}}
    _write_encoder(path, meta, arrays)


def encoder_step(ctx, opts: DistilledEncoderOptions) -> None:
    """Recipe step `distilled_encoder` (a torch step, before `export`). The file's fast-path verdict goes into
    the card only when this recipe is the one it was measured under (the int8 model, not an fp32 export)."""
    from quantize.recipe import RECIPES_DIR

    path = Path(opts.file).expanduser()
    if not path.is_absolute() and not path.exists():
        path = RECIPES_DIR / opts.file
    meta = apply_encoder(ctx.torch_model(), ctx.weights.sha256, path)
    ctx.report["distilled_encoder"] = {"file": path.name, **meta.get("training", {})}
    fast_path = meta.get("fast_path", {})
    if fast_path.get("recipe") == ctx.recipe.name:
        ctx.report["fast_path"] = {k: v for k, v in fast_path.items() if k != "recipe"}


# --- measuring the fast path --------------------------------------------------------------------------------

def short_eval_set(min_s: float = 1.5, max_s: float = 5.0, tts_cache: Path | None = None,
                   synthesized: bool = True) -> list[tuple[str, np.ndarray]]:
    """(reference, audio): real short recordings from speech-dev, then (`synthesized`) the held-out
    synthesized commands."""
    import csv

    from edge_asr.audio import load_audio
    from quantize.tts import EVAL_COMMANDS

    items = []
    manifest = DATA / "speech-dev" / "manifest.tsv"
    with manifest.open(newline="", encoding="utf-8") as f:
        for r in csv.DictReader(f, delimiter="\t"):
            if min_s <= float(r["duration_s"]) <= max_s:
                items.append((r["reference_text"], load_audio(manifest.parent / r["wav"])))
    if not synthesized:
        return items
    cache = Path(tts_cache or Path(tempfile.gettempdir()) / "edge-asr-tts")
    for i, text in enumerate(EVAL_COMMANDS):
        items.append((text, synthesize_cached(text, VOICES[i % len(VOICES)], cache, seed=i)))
    return items


def wer(references: list[str], hypotheses: list[str]) -> float:
    import jiwer
    from whisper_normalizer.english import EnglishTextNormalizer

    norm = EnglishTextNormalizer()
    return jiwer.wer([norm(r) for r in references], [norm(h) for h in hypotheses])


def measure_fast_path(model_dir: Path, tolerance_pt: float = 0.5, threads: int = 2, write: bool = True,
                      log=print) -> dict:
    """WER with and without the fast path on short speech; marks the card's fast path safe when it costs at
    most `tolerance_pt` WER points on the real recordings and on the synthesized commands alike (the two can
    move in opposite directions: tiny.en int8 lost 2.3 points on real speech while gaining 2.0 on synthesized
    commands, which looked like +0.4 pooled). Returns the measurement."""
    from edge_asr.model_dir import ModelCard
    from edge_asr.transcriber import Transcriber

    items = short_eval_set()
    n_real = len(short_eval_set(synthesized=False))
    transcriber = Transcriber(model_dir, threads=threads)
    refs = [r for r, _ in items]
    hyps = {}
    for fast in (False, True):
        hyps[fast] = ["".join(s.text for s in transcriber.transcribe(a, word_timestamps=False, fast_path=fast)[0])
                      for _, a in items]
    subsets = {"all": slice(None), "real": slice(0, n_real), "synthesized": slice(n_real, None)}
    scores = {name: {"wer_full": round(100 * wer(refs[sl], hyps[False][sl]), 2),
                     "wer_fast": round(100 * wer(refs[sl], hyps[True][sl]), 2)} for name, sl in subsets.items()}
    safe = all(v["wer_fast"] <= v["wer_full"] + tolerance_pt for v in scores.values())
    measured = {
        **scores.pop("all"), **scores, "tolerance_pt": tolerance_pt, "pad_s": transcriber.card.fast_path.pad_s,
        "set": f"{len(items)} short utterances (speech-dev 1.5-5 s: {n_real}; synthesized commands: "
               f"{len(items) - n_real})",
        "date": datetime.date.today().isoformat(),
    }
    log(f"fast path on {model_dir}: WER {measured['wer_full']} % full window, {measured['wer_fast']} % fast "
        f"(real {scores['real']['wer_full']} -> {scores['real']['wer_fast']}, synthesized "
        f"{scores['synthesized']['wer_full']} -> {scores['synthesized']['wer_fast']}) "
        f"-> {'safe' if safe else 'not safe'}")
    if write:
        card = ModelCard.load(model_dir)
        card.fast_path.safe = safe
        card.fast_path.measured = measured
        card.save(model_dir)
    return {**measured, "safe": safe}


# --- command line -------------------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    from quantize.export import export_model_dir
    from quantize.weights import load_weights

    p = argparse.ArgumentParser(prog="python -m quantize.distill_short", description=__doc__.split("\n")[0])
    p.add_argument("--from", dest="source", default="tiny.en", help="weights: bundled name or path")
    p.add_argument("--out", type=Path, help="model directory to write")
    p.add_argument("--teacher", type=Path, help="full-window teacher model dir (default: export --from)")
    p.add_argument("--no-measure", action="store_true", help="skip scoring the fast path into the card")
    p.add_argument("--measure", type=Path, metavar="MODEL_DIR",
                   help="only score the fast path of an existing model dir and write the verdict into its card")
    p.add_argument("--save-encoder", type=Path, metavar="FILE",
                   help="also write the distilled encoder as a file for a recipe's `distilled_encoder` step")
    p.add_argument("--encoder", type=Path, metavar="FILE",
                   help="with --measure: MODEL_DIR was built with this encoder file; record the verdict in it too")
    for f in dataclasses.fields(DistillShortOptions):
        p.add_argument(f"--{f.name.replace('_', '-')}", type=type(f.default), default=f.default)
    args = p.parse_args(argv)
    if args.measure:
        measured = measure_fast_path(args.measure, threads=args.threads)
        if args.encoder:
            from edge_asr.model_dir import ModelCard

            record_verdict(args.encoder, ModelCard.load(args.measure).recipe.get("name", ""), measured)
        return 0
    if args.out is None and args.save_encoder is None:
        p.error("--out or --save-encoder is required (or --measure MODEL_DIR)")
    opts = DistillShortOptions(**{f.name: getattr(args, f.name) for f in dataclasses.fields(DistillShortOptions)})
    weights = load_weights(args.source)
    work = Path(tempfile.mkdtemp(prefix="distill-short-"))
    try:
        teacher = args.teacher
        if teacher is None:
            teacher = work / "teacher"
            export_model_dir(weights, teacher, name="teacher")
        student, report = distill_short(weights, teacher, opts)
        if args.save_encoder:
            info = {"training": {**dataclasses.asdict(opts), **report}}
            save_encoder(student.state_dict, weights.sha256, weights.state_dict, args.save_encoder, info)
        if args.out is None:
            return 0
        recipe = {"name": "fp32+distill_short", "steps": [
            {"distill_short": {k: v for k, v in dataclasses.asdict(opts).items() if k != "threads"}},
            {"export": {"opset": 17}}], "distill_short": report}
        card = export_model_dir(student, args.out, name=args.out.name, recipe=recipe)
        card.fast_path.pad_s = opts.pad_s
        card.save(args.out)
        if not args.no_measure:
            measure_fast_path(args.out, threads=opts.threads)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
