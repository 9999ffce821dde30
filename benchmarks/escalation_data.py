"""Data for fitting and benchmarking escalation: speech-dev mixed with sox-made noise at set SNRs, and
non-speech clips (silence, noise, hum, tones, chords, plucked-note melodies) synthesized with sox.

Everything is made in memory (sox writes raw float32 to a pipe) and is deterministic: the same id, SNR and
seed always give the same samples. Scoring uses Whisper's English normalizer and jiwer.
"""

from __future__ import annotations

import csv
import hashlib
import json
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

REPO = Path(__file__).resolve().parents[1]
SPEECH_DEV = REPO / ".." / "shared" / "data" / "speech-dev"
RATE = 16000
NOISE_COLOURS = ("white", "pink", "brown")


@dataclass
class Clip:
    id: str
    audio: np.ndarray
    reference: str  # "" for non-speech
    snr_db: float | None = None  # None: clean speech, or non-speech
    kind: str = "speech"  # speech | nonspeech

    @property
    def duration(self) -> float:
        return len(self.audio) / RATE


def sox(effects: list[str], seconds: float) -> np.ndarray:
    """`sox -n ... synth SECONDS <effects>`: float32 samples at 16 kHz mono, through a pipe.

    `-R`: sox seeds its noise generators from the clock unless told to repeat, so without it every run mixed
    different noise into the same clip id (the transcripts cached under one id were of different audio)."""
    cmd = ["sox", "-R", "-n", "-r", str(RATE), "-c", "1", "-t", "raw", "-e", "floating-point", "-b", "32", "-",
           "synth", f"{seconds:.3f}", *" ".join(effects).split()]
    out = subprocess.run(cmd, capture_output=True, check=True).stdout
    return np.frombuffer(out, dtype=np.float32).copy()


def _seed(*parts) -> int:
    return int.from_bytes(hashlib.sha256("|".join(map(str, parts)).encode()).digest()[:4], "little")


def split_of(clip_id: str) -> str:
    """"fit" or "heldout" for a clip: half the recordings each, by a hash of the recording's id, so all noisy
    copies of a recording fall on the same side and held-out numbers come from recordings the fit never saw."""
    return "fit" if _seed("split", clip_id.split("@")[0]) % 2 == 0 else "heldout"


def read_manifest(manifest: Path = SPEECH_DEV / "manifest.tsv") -> list[dict]:
    with open(manifest, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f, delimiter="\t"))


def speech_clips(snrs: list[float | None], limit: int | None = None, draw: int = 0) -> list[Clip]:
    """Speech-dev utterances at every SNR (None = clean), noise colour chosen per utterance; `draw` picks the
    noise (see mix_at_snr; the noisy clips of another draw have ids ending in "~<draw>").

    Utterances come in a fixed shuffled order, so `limit` takes a random sample across subsets rather than
    the manifest's first rows (which are all LibriSpeech)."""
    rows = read_manifest()
    rows = [rows[i] for i in np.random.default_rng(0).permutation(len(rows))][:limit]
    clips = []
    for row in rows:
        speech, rate = sf.read(SPEECH_DEV / row["wav"], dtype="float32")
        assert rate == RATE and speech.ndim == 1, row["wav"]
        for snr in snrs:
            audio = speech if snr is None else mix_at_snr(speech, row["id"], snr, draw)
            name = "clean" if snr is None else f"{snr:g}dB" + (f"~{draw}" if draw else "")
            clips.append(Clip(f"{row['id']}@{name}", audio, row["reference_text"], snr))
    return clips


def mix_at_snr(speech: np.ndarray, utt_id: str, snr_db: float, draw: int = 0) -> np.ndarray:
    """`speech` with sox noise at `snr_db`. Draw 0 is the benchmark's noise; another draw gives each utterance
    another colour and another stretch of noise, to check that a result is not one draw's luck."""
    key = (utt_id,) if draw == 0 else (utt_id, "draw", draw)
    colour = NOISE_COLOURS[_seed(*key) % len(NOISE_COLOURS)]
    lead = 0 if draw == 0 else _seed(*key, snr_db) % (5 * RATE)
    noise = sox([f"{colour}noise"], (lead + len(speech)) / RATE + 0.01)[lead: lead + len(speech)]
    # SNR against the speech's active level (frames above -40 dB of its peak), not its silence-diluted mean.
    frames = speech[: len(speech) // 400 * 400].reshape(-1, 400)
    energy = (frames ** 2).mean(axis=1)
    active = energy[energy > energy.max() * 1e-4]
    speech_power = float(active.mean()) if len(active) else float((speech ** 2).mean())
    noise_power = float((noise ** 2).mean()) or 1e-12
    mixed = speech + noise * np.sqrt(speech_power / noise_power / 10 ** (snr_db / 10))
    peak = float(np.abs(mixed).max())
    return (mixed / peak * 0.95 if peak > 0.95 else mixed).astype(np.float32)


def benchmark_clips(
    snrs: list[float | None], utterances: int | None = None, nonspeech: int = 60, draw: int = 0
) -> list[Clip]:
    """Speech clips (all SNRs of an utterance together) interleaved with non-speech clips, in a fixed order,
    so that the first `utterances` utterances come with a proportional share of the non-speech clips. Long
    runs are resumable and a run stopped early still leaves a uniform sample of both sets."""
    total = len(read_manifest())
    speech = speech_clips(snrs, utterances, draw)
    quiet = nonspeech_clips(nonspeech)
    keyed = [(i // len(snrs), c) for i, c in enumerate(speech)]
    keyed += [(i * total / max(nonspeech, 1), c) for i, c in enumerate(quiet)]
    limit = total if utterances is None else utterances
    return [c for k, c in sorted(keyed, key=lambda kc: kc[0]) if k < limit]


_NOTES = ("C3", "E3", "G3", "A3", "C4", "D4", "E4", "G4", "A4", "C5")


def nonspeech_clips(count: int = 60, seed: int = 0) -> list[Clip]:
    """Clips where nobody speaks: a mix of kinds, levels and lengths (1.5-12 s)."""
    rng = np.random.default_rng(seed)
    kinds = ("silence", "noise", "hum", "tone", "chord", "melody", "sweep", "tremolo")
    clips = []
    for i in range(count):
        kind = kinds[i % len(kinds)]
        seconds = float(rng.uniform(1.5, 12.0))
        level_db = float(rng.uniform(-45, -12))
        if kind == "silence":
            audio = sox(["whitenoise"], seconds) * 10 ** (-75 / 20)  # a quiet room's mic floor
            level_db = None
        elif kind == "noise":
            audio = sox([f"{rng.choice(NOISE_COLOURS)}noise"], seconds)
        elif kind == "hum":
            base = float(rng.choice([50, 60]))
            audio = sum(sox([f"sine {base * k:g}"], seconds) / k for k in (1, 2, 3))
        elif kind == "tone":
            audio = sox([f"sine {rng.uniform(200, 3000):.0f}"], seconds)
        elif kind == "chord":
            notes = rng.choice(_NOTES, 3, replace=False)
            audio = sum(sox([f"pluck {n}"], seconds) for n in notes)
        elif kind == "melody":
            step = 0.4
            notes = [rng.choice(_NOTES) for _ in range(max(1, int(seconds / step)))]
            audio = np.concatenate([sox([f"pluck {n}"], step) for n in notes])
        elif kind == "sweep":
            audio = sox([f"sine {rng.uniform(100, 400):.0f}-{rng.uniform(1000, 6000):.0f}"], seconds)
        else:
            wobble = f"tremolo {rng.uniform(2, 8):.1f} 90"
            audio = sox([f"{rng.choice(NOISE_COLOURS)}noise", wobble], seconds)
        if level_db is not None:
            rms = float(np.sqrt((audio ** 2).mean())) or 1.0
            audio = audio / rms * 10 ** (level_db / 20)
        clips.append(Clip(f"nonspeech-{i:02d}-{kind}", np.clip(audio, -1, 1).astype(np.float32), "",
                          kind="nonspeech"))
    return clips


def wav_bytes(audio: np.ndarray) -> bytes:
    import io

    buf = io.BytesIO()
    sf.write(buf, audio, RATE, format="WAV", subtype="PCM_16")
    return buf.getvalue()


_normalizer = None


def normalize(text: str) -> str:
    global _normalizer
    if _normalizer is None:
        from whisper_normalizer.english import EnglishTextNormalizer

        _normalizer = EnglishTextNormalizer()
    return " ".join(_normalizer(text).split())


def word_errors(reference: str, hypothesis: str) -> tuple[int, int]:
    """(errors, reference words) after normalization; an empty reference counts inserted words as errors."""
    import jiwer

    ref, hyp = normalize(reference), normalize(hypothesis)
    if not ref:
        return len(hyp.split()), 0
    if not hyp:
        return len(ref.split()), len(ref.split())
    out = jiwer.process_words(ref, hyp)
    return out.substitutions + out.deletions + out.insertions, len(ref.split())


def segment_record(seg) -> dict:
    """What fitting and benchmarks need from a local Segment, JSON-ready."""
    return {
        "seek": int(seg.seek), "start": float(seg.start), "end": float(seg.end), "text": seg.text,
        "tokens": [int(t) for t in seg.tokens], "avg_logprob": float(seg.avg_logprob),
        "no_speech_prob": float(seg.no_speech_prob), "compression_ratio": float(seg.compression_ratio),
        "temperature": float(seg.temperature),
        "words": [{"word": w.word, "start": float(w.start), "end": float(w.end),
                   "probability": float(w.probability)} for w in seg.words or []]
        if seg.words is not None else None,
    }


def read_cache(path: Path) -> dict[str, dict]:
    """Transcripts cached one JSON row per line, by clip id ({} before the first run)."""
    return {row["id"]: row for row in map(json.loads, path.read_text().splitlines())} if path.exists() else {}


def run_local(clips: list[Clip], model: str | None, cache: Path, threads: int = 2, beam_size: int = 1
              ) -> dict:
    """Transcribe clips with the local model; results are cached per clip id in a JSONL file (resumable)."""
    import time

    from tqdm import tqdm

    from edge_asr.transcriber import Transcriber

    done = read_cache(cache)
    todo = [c for c in clips if c.id not in done]
    if todo:
        transcriber = Transcriber(model, threads=threads)
        cache.parent.mkdir(parents=True, exist_ok=True)
        with open(cache, "a", encoding="utf-8") as out:
            for clip in tqdm(todo, desc=f"local {transcriber.card.name}", unit="clip"):
                t0 = time.perf_counter()
                segments, info = transcriber.transcribe(clip.audio, beam_size=beam_size, word_timestamps=True)
                segments = list(segments)
                row = {"id": clip.id, "model": transcriber.card.name, "duration": clip.duration,
                       "elapsed_s": time.perf_counter() - t0, "language": info.language,
                       "segments": [segment_record(s) for s in segments]}
                out.write(json.dumps(row) + "\n")
                out.flush()
                done[clip.id] = row
    return done
