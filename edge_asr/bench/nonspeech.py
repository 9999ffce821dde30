"""Non-speech clips (silence, noise, hum, tones) for the hallucination rate, made when the data has none.

A seeded generator, so every run and every system hears the same clips.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf

from edge_asr.bench.data import Clip

RATE = 16000


def _tone(freqs: list[float], seconds: float, t0: float = 0.0) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE + t0
    return sum(np.sin(2 * np.pi * f * t) / (i + 1) for i, f in enumerate(freqs))


def _music(seconds: float) -> np.ndarray:
    """Chords with harmonics and a decaying envelope: music-like, no voice."""
    chords = [[261.6, 329.6, 392.0], [220.0, 261.6, 329.6], [174.6, 220.0, 261.6], [196.0, 246.9, 293.7]]
    beat = 0.5
    parts = []
    for i in range(int(seconds / beat)):
        chord = chords[(i // 2) % len(chords)]
        note = sum(_tone([f, 2 * f, 3 * f], beat) for f in chord)
        parts.append(note * np.exp(-3 * np.arange(len(note)) / len(note)))
    return np.concatenate(parts)


def _colored_noise(rng: np.random.Generator, seconds: float, exponent: float) -> np.ndarray:
    """Noise with power ∝ 1/f**exponent (0 white, 1 pink, 2 brown)."""
    n = int(seconds * RATE)
    spectrum = rng.standard_normal(n // 2 + 1) + 1j * rng.standard_normal(n // 2 + 1)
    freqs = np.fft.rfftfreq(n, 1 / RATE)
    spectrum[1:] /= freqs[1:] ** (exponent / 2)
    spectrum[0] = 0
    return np.fft.irfft(spectrum, n)


def _at_dbfs(x: np.ndarray, dbfs: float) -> np.ndarray:
    rms = float(np.sqrt(np.mean(x**2))) or 1.0
    return (x / rms * 10 ** (dbfs / 20)).astype(np.float32)


def generate_nonspeech(folder: str | Path, seconds: float = 5.0, seed: int = 0) -> list[Clip]:
    """Write the standard non-speech set into `folder` and return it."""
    rng = np.random.default_rng(seed)
    n = int(seconds * RATE)
    signals = {
        "silence": np.zeros(n, np.float32),
        "room-tone": _at_dbfs(rng.standard_normal(n), -60),
        "white-noise": _at_dbfs(rng.standard_normal(n), -30),
        "pink-noise": _at_dbfs(_colored_noise(rng, seconds, 1.0), -30),
        "brown-noise": _at_dbfs(_colored_noise(rng, seconds, 2.0), -30),
        "mains-hum": _at_dbfs(_tone([50, 100, 150], seconds), -35),
        "tone-440hz": _at_dbfs(_tone([440], seconds), -20),
        "music-chords": _at_dbfs(_music(seconds), -20),
    }
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    clips = []
    for name, signal in signals.items():
        path = folder / f"nonspeech-{name}.wav"
        sf.write(path, np.clip(signal[:n], -1, 1), RATE, subtype="PCM_16")
        clips.append(Clip(f"nonspeech-{name}", path, "", "generated"))
    return clips
