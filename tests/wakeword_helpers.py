"""Real audio for the wake-word tests: crowd-sourced "alexa" clips from ../shared/data and TTS commands
synthesized at test time (espeak-ng, flite, festival), resampled and mixed with noise by sox."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / ".." / "shared" / "data"
WAKEWORD_DEV = DATA / "wakeword-dev"
SPEECH_DEV = DATA / "speech-dev"


def clips(label: str) -> list[Path]:
    with open(WAKEWORD_DEV / "manifest.tsv", encoding="utf-8") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    return [WAKEWORD_DEV / row["wav"] for row in rows if row["label"] == label]


FESTIVAL_VARIANTS = {
    "": None,
    "slow-high": "(begin (Parameter.set 'Duration_Stretch 1.2) (set! int_lr_params '((target_f0_mean 140) "
                 "(target_f0_std 25) (model_f0_mean 170) (model_f0_std 34))))",
    "slt-hts": "(voice_cmu_us_slt_arctic_hts)",  # Debian festvox-us-slt-hts: a statistical (HTS) voice
    "ked": "(voice_ked_diphone)",  # festvox-kdlpc16k
    "ked-fast": "(begin (voice_ked_diphone) (Parameter.set 'Duration_Stretch 0.9))",
    "kal-slow-low": "(begin (Parameter.set 'Duration_Stretch 1.1) (set! int_lr_params '((target_f0_mean 90) "
                    "(target_f0_std 15) (model_f0_mean 170) (model_f0_std 34))))",
}
FLITE_VARIANTS = {
    "slt-slow-high": ["-voice", "slt", "--setf", "duration_stretch=1.15", "--setf", "int_f0_target_mean=200"],
    "rms-fast": ["-voice", "rms", "--setf", "duration_stretch=0.9", "--setf", "int_f0_target_mean=130"],
    "awb-fast-high": ["-voice", "awb", "--setf", "duration_stretch=0.9", "--setf", "int_f0_target_mean=150"],
}


def tts(text: str, out: Path, voice: str = "espeak:en-us") -> Path:
    """Synthesize `text` to a 16 kHz mono 16-bit WAV. voice: espeak:<voice>, flite:<voice or FLITE_VARIANTS key>,
    festival (kal_diphone, festival's default) or festival:<FESTIVAL_VARIANTS key>."""
    engine, _, name = voice.partition(":")
    raw = out.with_suffix(".raw.wav")
    if engine == "espeak":
        subprocess.run(["espeak-ng", "-v", name or "en-us", "-s", "150", "-w", str(raw), text], check=True)
    elif engine == "flite":
        subprocess.run(["flite", *FLITE_VARIANTS.get(name, ["-voice", name or "slt"]), "-t", text, "-o", str(raw)],
                       check=True)
    elif engine == "festival":
        variant = FESTIVAL_VARIANTS[name]
        subprocess.run(["text2wave", *(["-eval", variant] if variant else []), "-o", str(raw)],
                       input=text.encode(), check=True)
    else:
        raise ValueError(voice)
    sox(raw, "-r", "16000", "-c", "1", "-b", "16", out)
    raw.unlink()
    return out


def sox(*args) -> None:
    # -R: repeatable. Without it sox seeds its dither (on every rate or bit-depth change) and its noise synth
    # from the clock, so the same clip differed run to run and so did borderline results built on it.
    subprocess.run(["sox", "-R", *map(str, args)], check=True, capture_output=True)


def silence(out: Path, seconds: float) -> Path:
    sox("-n", "-r", "16000", "-c", "1", "-b", "16", out, "trim", "0", f"{seconds}")
    return out


def concat(out: Path, *parts: Path) -> Path:
    normalized = []
    for i, part in enumerate(parts):  # every part to 16 kHz mono 16-bit so sox can join them
        p = out.with_name(f"{out.stem}.part{i}.wav")
        sox(part, "-r", "16000", "-c", "1", "-b", "16", p)
        normalized.append(p)
    sox(*normalized, out)
    for p in normalized:
        p.unlink()
    return out


def add_noise(src: Path, out: Path, volume: float = 0.02, kind: str = "pinknoise") -> Path:
    """Mix steady background noise (sox synth) under `src`."""
    noise = out.with_name(out.stem + ".noise.wav")
    duration = subprocess.run(["soxi", "-D", str(src)], capture_output=True, text=True, check=True).stdout
    sox("-n", "-r", "16000", "-c", "1", "-b", "16", noise, "synth", duration.strip(), kind, "vol", volume)
    sox("-m", src, noise, out)
    noise.unlink()
    return out


def wake_and_command(tmp: Path, command: str, name: str = "utterance", alexa: Path | None = None,
                     voice: str = "espeak:en-us", noise: float = 0.02, pause_s: float = 0.3) -> Path:
    """1 s silence, a real "alexa" clip, a pause, the TTS command, 1.5 s silence; noise under it all."""
    alexa = alexa or clips("alexa")[1]
    speech = concat(tmp / f"{name}.clean.wav", silence(tmp / "lead.wav", 1.0), alexa,
                    silence(tmp / "gap.wav", pause_s), tts(command, tmp / f"{name}.cmd.wav", voice),
                    silence(tmp / "tail.wav", 1.5))
    return add_noise(speech, tmp / f"{name}.wav", noise) if noise else speech


def edge_asr(*args: str, stdin: bytes | None = None, timeout: float = 240) -> subprocess.CompletedProcess:
    """Run the CLI as a user would: `python -m edge_asr.cli ...` from the repo root."""
    return subprocess.run([sys.executable, "-m", "edge_asr.cli", *map(str, args)], cwd=REPO, input=stdin,
                          capture_output=True, timeout=timeout)
