"""Short-utterance distillation: teach a model to transcribe from a short encoder context.

Whisper was trained on 30 s windows, so a 3 s command pays for a 30 s encoder pass. The device's fast
path (edge_asr.transcriber.fast_path_frames) encodes only the seconds present plus `pad_s` of silence,
but an unadapted model, never having seen its context end so soon, then fails to stop: it repeats itself
or invents a "Thank you." (tiny.en int8 on 67 utterances of 1.5-5 s: 13.1 % WER on the full window, 25.1 %
on the fast path with 1 s of padding, 14.2 % with 10 s; 2026-11-27).

The fix is a short fine-tune with the full-window model as the teacher (sequence-level distillation):
the teacher transcribes each clip the normal way (30 s window), and the student learns to produce the
same tokens, timestamps and end-of-text from the short context. No transcripts are needed, so the
clips are synthesized sentences (espeak-ng/flite/festival, never the held-out evaluation commands),
truncated clips (what a dictation partial sees) and real short recordings (the wake-word set).
Every few steps a full 30 s window keeps long-audio behaviour where it was.

Status: a first run (fp32 student, 300 steps, last 2 blocks, token loss only, 57 min on the shared 2-core
machine) reached 15.5 % on the fast path against the teacher's 12.5 % on the full window, and its own
full-window WER rose to 18.1 %: not safe. The encoder-output matching (`kv_weight`) was added to stop
that drift; it has only been smoke-tested (a few steps through `edge-asr shrink`), not measured. Learned
encoder positions appended after the short input instead of trained blocks (README, "Dictation") stopped the
runaways but recognized no better than the fast path with its full-window re-decode: not kept.

Then `measure_fast_path` scores a model directory with and without the fast path on short speech and
records in its card whether the fast path is safe (the device uses it by default only then).

    python -m quantize.distill_short --from tiny.en --out models/tiny.en-short [--steps 300]
    python -m quantize.distill_short --measure models/tiny-en-int8      # only score an existing model dir

In a shrink recipe the same two parts are steps (`recipe_step`, `measure_step` below):
    steps:
      - distill_short: {steps: 300, train_blocks: 2, lr: 1.0e-4}   # torch step, before export
      - export: {opset: 17}
      - quantize_int8: {embedding: int8}
      - measure_fast_path: {pad_s: 1.0}                             # last: scores the final ONNX model
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import random
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge_asr.frontend import HOP, log_mel

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"


@dataclass
class DistillShortOptions:
    steps: int = 600  # optimizer steps
    accumulate: int = 4  # clips per step
    lr: float = 3e-5
    pad_s: float = 1.0  # the fast path's padding the student is trained (and the card is written) for
    full_window_every: int = 4  # every Nth clip is also shown as a full 30 s window (keeps long audio right)
    kv_weight: float = 10.0  # weight of matching the teacher's encoder output where there is audio (relative MSE)
    train_blocks: int = 1  # the last encoder blocks that learn; the rest of the model stays as it was
    n_tts: int = 360  # synthesized sentences
    n_real: int = 120  # real short recordings from the wake-word set
    truncated: float = 0.25  # share of clips cut at a random point (dictation partials)
    seed: int = 0
    threads: int = 2


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


def training_clips(opts: DistillShortOptions, cache: Path) -> list[np.ndarray]:
    from quantize.tts import VOICES, synthesize_cached

    rng = random.Random(opts.seed)
    clips = []
    for i, text in enumerate(training_sentences(opts.n_tts, opts.seed)):
        voice = VOICES[rng.randrange(len(VOICES))]
        clips.append(synthesize_cached(text, voice, cache, lead_s=rng.uniform(0.05, 0.6),
                                       tail_s=rng.uniform(0.05, 0.8), seed=i))
    clips += real_short_clips(opts.n_real, opts.seed)
    # Longer utterances: two or three clips in a row, as continuous dictation gives.
    for _ in range(len(clips) // 6):
        clips.append(np.concatenate(rng.sample(clips, rng.choice((2, 3)))))
    out = []
    noise = np.random.default_rng(opts.seed)
    for clip in clips:
        gain = 10 ** (rng.uniform(-12, 3) / 20)
        clip = clip * gain
        if rng.random() < 0.5:  # synthetic speech is too clean: a little room / mic noise
            clip = clip + noise.normal(0, 10 ** (rng.uniform(-60, -35) / 20), len(clip))
        clip = np.clip(clip, -1, 1).astype(np.float32)
        if rng.random() < opts.truncated and len(clip) > 16000:  # a partial: audio that stops mid-speech
            clip = clip[: rng.randrange(8000, len(clip))]
        out.append(clip)
    rng.shuffle(out)
    return out


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

def _frozen_prefix(model, mel, n_frozen: int):
    """The encoder up to its first trained block (AudioEncoder.forward's first part): computed once per clip."""
    import torch.nn.functional as F

    enc = model.encoder
    x = F.gelu(enc.conv1(mel))
    x = F.gelu(enc.conv2(x)).permute(0, 2, 1)
    x = x + enc.positional_embedding[: x.shape[1]]
    for block in enc.blocks[:n_frozen]:
        x = block(x)
    return x


def _encoder_tail(model, x, n_frozen: int):
    """The trained blocks and the final norm (AudioEncoder.forward's second part): the encoder output."""
    enc = model.encoder
    for block in enc.blocks[n_frozen:]:
        x = block(x)
    return enc.ln_post(x)


def _cross_kv(model, xa):
    """Whisper.encode's last part, in whatever layout the model's decoder expects."""
    import torch

    kv = []
    for block in model.decoder.blocks:
        k, v = block.cross_kv(xa)
        kv += [k, v]
    return torch.stack(kv)


def distill_short_model(model, teacher_dir: Path, opts: DistillShortOptions | None = None,
                        cache: Path | None = None, log=print) -> dict:
    """Fine-tune a torch Whisper (quantize.model.Whisper) in place for the fast path; returns a report.

    Only the last `train_blocks` encoder blocks and the encoder's final norm learn: the frozen blocks' output
    is computed once per clip (training is then cheap enough for a CPU), and the decoder, which is most of
    the model's size and all of its language model, stays exactly as it was.
    """
    import torch
    import torch.nn.functional as F

    from edge_asr.transcriber import fast_path_frames

    opts = opts or DistillShortOptions()
    torch.manual_seed(opts.seed)
    torch.set_num_threads(opts.threads)
    cache = Path(cache or Path(tempfile.gettempdir()) / "edge-asr-tts")
    began = time.monotonic()
    clips = training_clips(opts, cache)
    labels = teacher_tokens(teacher_dir, clips, opts.threads, cache)
    log(f"distill_short: {len(clips)} clips labelled by the full-window teacher in {time.monotonic() - began:.0f} s")

    d = model.dims
    n_frozen = d.n_audio_layer - opts.train_blocks
    was_training = model.training
    model.eval().requires_grad_(False)
    params = [p for b in model.encoder.blocks[n_frozen:] for p in b.parameters()]
    params += list(model.encoder.ln_post.parameters())
    for p in params:
        p.requires_grad_(True)

    # (frozen features, target tokens, the teacher's encoder output where there is audio): every clip on the
    # fast path, some as a full window too. The teacher's output is this model's, before training, on the
    # full window.
    samples = []
    with torch.no_grad():
        for i, (clip, tokens) in enumerate(zip(clips, labels)):
            seq = torch.tensor(tokens)[None]
            full = _frozen_prefix(model, torch.from_numpy(log_mel(clip, d.n_mels))[None], n_frozen)
            teacher_xa = _encoder_tail(model, full, n_frozen)[:, : audio_positions(len(clip))].clone()
            short_mel = log_mel(clip, d.n_mels, pad_to=fast_path_frames(len(clip) // HOP, opts.pad_s))
            samples.append((_frozen_prefix(model, torch.from_numpy(short_mel)[None], n_frozen), seq, teacher_xa))
            if opts.full_window_every and i % opts.full_window_every == 0:
                samples.append((full, seq, teacher_xa))
    log(f"distill_short: {len(samples)} samples ready ({time.monotonic() - began:.0f} s)")

    optim = torch.optim.AdamW(params, lr=opts.lr, weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optim, lambda s: min(1.0, (s + 1) / 20) * max(0.0, 1 - s / opts.steps))
    empty = torch.zeros(2 * d.n_text_layer, 1, 0, d.n_text_state)
    order = list(range(len(samples)))
    rng = random.Random(opts.seed)
    seen, running, losses = 0, [], []
    for step in range(opts.steps):
        optim.zero_grad()
        for _ in range(opts.accumulate):
            if seen % len(order) == 0:
                rng.shuffle(order)
            features, seq, teacher_xa = samples[order[seen % len(order)]]
            seen += 1
            xa = _encoder_tail(model, features, n_frozen)
            logits, _, _ = model.decode(seq[:, :-1], empty, _cross_kv(model, xa))
            tokens_loss = F.cross_entropy(logits[0], seq[0, 1:])
            # Where there is audio, keep what the encoder says about it as the teacher has it: the tokens alone
            # let the trained blocks forget acoustics the synthetic training speech never exercises.
            n = teacher_xa.shape[1]
            kv_loss = F.mse_loss(xa[:, :n], teacher_xa) / teacher_xa.pow(2).mean()
            loss = tokens_loss + opts.kv_weight * kv_loss
            (loss / opts.accumulate).backward()
            running.append((tokens_loss.item(), kv_loss.item()))
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optim.step()
        schedule.step()
        if (step + 1) % 25 == 0 or step + 1 == opts.steps:
            tokens_loss, kv_loss = np.mean(running, axis=0)
            log(f"distill_short: step {step + 1}/{opts.steps} token loss {tokens_loss:.3f} encoder loss {kv_loss:.4f} "
                f"({time.monotonic() - began:.0f} s)")
            losses.append([round(float(tokens_loss), 4), round(float(kv_loss), 5)])
            running = []
    model.requires_grad_(False).train(was_training)
    return {"clips": len(clips), "samples": len(samples), "token_and_encoder_loss_every_25_steps": losses,
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


def save_encoder(model, source_sha256: str, source_state: dict, path: Path, info: dict) -> None:
    """The encoder tensors that distillation changed, as differences from the source weights (int8 per row for
    matrices, float32 otherwise: the differences are small, so 8 bits lose nothing the int8 model keeps), with
    the source's hash (they only make sense on those weights) and `info` (how it was trained and measured)."""
    import json

    arrays = {}
    for name, tensor in model.state_dict().items():
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
    meta = {"format": 1, "source_sha256": source_sha256, **info}
    np.savez(path, meta=np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8), **arrays)


def apply_encoder(model, source_sha256: str, path: Path) -> dict:
    """Add a saved encoder's differences to `model` (built from the same source weights); returns its info."""
    import json

    import torch

    from edge_asr.errors import ModelError

    if not path.exists():
        raise ModelError(f"{path}: no such distilled encoder file")
    z = np.load(path)
    meta = json.loads(z["meta"].tobytes())
    if meta.get("source_sha256") != source_sha256:
        raise ModelError(f"{path.name} was distilled from other weights (sha256 {meta.get('source_sha256', '?')[:12]}, "
                         f"these are {source_sha256[:12]})")
    state = model.state_dict()
    with torch.no_grad():
        for key in z.files:
            name, kind = key.rsplit("|", 1) if "|" in key else (key, "")
            if kind == "q":
                delta = z[key].astype(np.float32) * z[f"{name}|scale"]
            elif kind == "delta":
                delta = z[key]
            else:
                continue
            state[name].add_(torch.from_numpy(delta))
    return meta


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
    from quantize.tts import EVAL_COMMANDS, VOICES, synthesize_cached

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
    for f in dataclasses.fields(DistillShortOptions):
        p.add_argument(f"--{f.name.replace('_', '-')}", type=type(f.default), default=f.default)
    args = p.parse_args(argv)
    if args.measure:
        measure_fast_path(args.measure, threads=args.threads)
        return 0
    if args.out is None:
        p.error("--out is required (or --measure MODEL_DIR)")
    opts = DistillShortOptions(**{f.name: getattr(args, f.name) for f in dataclasses.fields(DistillShortOptions)})
    weights = load_weights(args.source)
    work = Path(tempfile.mkdtemp(prefix="distill-short-"))
    try:
        teacher = args.teacher
        if teacher is None:
            teacher = work / "teacher"
            export_model_dir(weights, teacher, name="teacher")
        student, report = distill_short(weights, teacher, opts)
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
