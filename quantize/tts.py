"""Synthetic short utterances from the system's text-to-speech engines (espeak-ng, flite, festival).

Short commands are what the fast path is for, and no transcribed set of them is shipped: the benchmark
scores the fast path on synthesized commands (beside real short recordings), and the short-utterance
distillation trains on synthesized sentences, which need no transcript since the teacher labels them.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from edge_asr.audio import load_audio
from edge_asr.errors import EdgeAsrError

# (engine, voice): a spread of synthesizers, accents and pitches.
VOICES: tuple[tuple[str, str], ...] = (
    ("espeak-ng", "en-us"), ("flite", "slt"), ("espeak-ng", "en-gb"), ("flite", "awb"),
    ("festival", "kal_diphone"), ("espeak-ng", "en-us+f3"), ("flite", "rms"), ("espeak-ng", "en-gb-scotland"),
    ("flite", "kal16"), ("espeak-ng", "en-us+m4"),
)


class TtsError(EdgeAsrError):
    pass


def _command(engine: str, voice: str, text: str, out: Path) -> tuple[list[str], str | None]:
    if engine == "espeak-ng":
        return ["espeak-ng", "-v", voice, "-s", "160", "-w", str(out), text], None
    if engine == "flite":
        return ["flite", "-voice", voice, "-t", text, "-o", str(out)], None
    if engine == "festival":
        return ["text2wave", "-eval", f"(voice_{voice})", "-o", str(out)], text
    raise TtsError(f"unknown TTS engine '{engine}'")


def synthesize(text: str, voice: tuple[str, str], lead_s: float = 0.25, tail_s: float = 0.25,
               seed: int = 0) -> np.ndarray:
    """`text` spoken by `voice` as 16 kHz mono float32, with `lead_s`/`tail_s` of faint noise around it (what
    a voice-activity cut gives: never digital silence)."""
    engine, name = voice
    binary = "text2wave" if engine == "festival" else engine
    if shutil.which(binary) is None:
        raise TtsError(f"{binary} not found: install {engine} (apt-get install {engine})")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "tts.wav"
        argv, stdin = _command(engine, name, text, out)
        done = subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=60)
        if done.returncode != 0 or not out.exists():
            raise TtsError(f"{engine} ({name}) failed: {done.stderr.strip()[:200]}")
        speech = load_audio(out)
    peak = float(np.abs(speech).max()) or 1.0
    speech = speech * (0.5 / peak)  # engines differ a lot in level; a mic's AGC would even them out too
    rng = np.random.default_rng(seed)
    lead = rng.normal(0, 1e-3, int(lead_s * 16000)).astype(np.float32)
    tail = rng.normal(0, 1e-3, int(tail_s * 16000)).astype(np.float32)
    return np.concatenate([lead, speech.astype(np.float32), tail])


def synthesize_cached(text: str, voice: tuple[str, str], cache: Path, **kw) -> np.ndarray:
    """`synthesize` with a .npy cache keyed by text, voice and options (synthesis costs ~0.1 s per clip)."""
    key = hashlib.sha1(repr((text, voice, sorted(kw.items()))).encode()).hexdigest()[:16]
    path = Path(cache) / f"{key}.npy"
    if path.exists():
        return np.load(path)
    audio = synthesize(text, voice, **kw)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, audio)
    return audio


# Held-out spoken commands for scoring short utterances (1.5-5 s). Distillation never trains on these.
EVAL_COMMANDS: tuple[str, ...] = (
    "turn on the kitchen lights",
    "set a timer for five minutes",
    "what is the weather like tomorrow",
    "play some music in the living room",
    "stop the alarm",
    "call my mother",
    "turn the volume down a little",
    "what time is it",
    "remind me to buy milk on the way home",
    "open the garage door",
    "switch off the bedroom fan",
    "how far is the nearest gas station",
    "add eggs to the shopping list",
    "read me the latest news",
    "pause the movie",
    "make the lights a bit brighter",
    "lock the front door",
    "what is on my calendar today",
    "send a message to john saying i will be late",
    "skip this song",
    "is it going to rain this afternoon",
    "set the thermostat to twenty degrees",
    "cancel my next meeting",
    "turn off all the lights downstairs",
    "how many tablespoons are in a cup",
    "start the vacuum cleaner",
    "show me the camera at the back door",
    "wake me up at seven tomorrow morning",
    "what is the capital of australia",
    "close the curtains",
    "tell me a joke",
    "navigate to the train station",
    "increase the temperature by two degrees",
    "water the garden for ten minutes",
    "who won the football game last night",
    "turn on the television",
)
