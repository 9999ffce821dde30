"""Audio and runners shared by the dictation tests."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import soundfile as sf

REPO = Path(__file__).resolve().parents[1]
SPEECH_DEV = REPO.parent / "shared" / "data" / "speech-dev"

# Two utterances with pauses: ~5.3 s of LJ Speech, then a 2.8 s command (about 12 s in all).
LONG = ("ljspeech_LJ001-0029.wav", "but though on the whole except in italy gothic letter was most often used")
SHORT = ("pocketsphinx_goforward.wav", "go forward ten meters")


def two_utterances_wav(path: Path) -> Path:
    from edge_asr.audio import load_audio

    rng = np.random.default_rng(0)

    def pause(seconds: float) -> np.ndarray:  # faint noise, as a microphone gives
        return rng.normal(0, 1e-3, int(seconds * 16000)).astype(np.float32)

    audio = np.concatenate([pause(0.8), load_audio(SPEECH_DEV / LONG[0]), pause(1.5),
                            load_audio(SPEECH_DEV / SHORT[0]), pause(1.2)])
    sf.write(path, audio, 16000)
    return path


def run_dictate(*args: str, input_bytes: bytes | None = None, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edge_asr.cli", "dictate", *args], input=input_bytes,
                          capture_output=True, timeout=timeout, cwd=REPO)


def json_events(stdout: bytes) -> list[dict]:
    return [json.loads(line) for line in stdout.decode().splitlines() if line.strip()]
