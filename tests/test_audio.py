"""The one audio loader: formats, rates, channels, broken input, streaming."""

import subprocess
import tracemalloc

import numpy as np
import pytest
import soundfile as sf
from conftest import SPEECH_DEV

from edge_asr.audio import load_audio, stream_audio
from edge_asr.errors import AudioError

CLIP = SPEECH_DEV / "ljspeech_LJ001-0001.wav"


@pytest.fixture(scope="module")
def speech() -> np.ndarray:
    return load_audio(CLIP)


def test_wav_is_16k_mono_float(speech):
    assert speech.dtype == np.float32 and speech.ndim == 1
    assert abs(len(speech) / 16000 - sf.info(CLIP).duration) < 0.01


@pytest.mark.parametrize("rate,channels", [(8000, 1), (48000, 2), (44100, 1)])
def test_any_rate_and_channels_resampled(tmp_path, speech, rate, channels):
    path = tmp_path / f"x_{rate}_{channels}.flac"
    subprocess.run(["sox", str(CLIP), "-r", str(rate), "-c", str(channels), str(path)], check=True)
    out = load_audio(path)
    assert abs(len(out) - len(speech)) < 16000 * 0.01
    if rate >= 16000:  # band-limited resampling keeps the signal
        n = min(len(out), len(speech))
        assert np.corrcoef(out[:n], speech[:n])[0, 1] > 0.95


@pytest.mark.parametrize(
    "content,message",
    [
        (b"", "empty file"),
        (b"this is not audio at all" * 10, "not a readable audio file"),
        (b"RIFF\x24\x00\x00\x00WAVEfmt \x10\x00\x00\x00\x01\x00\x01\x00", "not a readable audio file"),
    ],
)
def test_broken_files_give_one_line_errors(tmp_path, content, message):
    path = tmp_path / "bad.wav"
    path.write_bytes(content)
    with pytest.raises(AudioError, match=message) as e:
        load_audio(path)
    assert "\n" not in str(e.value) and "bad.wav" in str(e.value)


def test_missing_file(tmp_path):
    with pytest.raises(AudioError, match="no such file"):
        load_audio(tmp_path / "nope.wav")


def test_nan_samples_rejected(tmp_path):
    x = np.zeros(16000, dtype=np.float32)
    x[8000] = np.nan
    path = tmp_path / "nan.wav"
    sf.write(path, x, 16000, subtype="FLOAT")
    with pytest.raises(AudioError, match=r"NaN or infinite samples \(first at 0.50 s\)"):
        load_audio(path)


def test_long_file_streams_in_flat_memory(tmp_path):
    path = tmp_path / "long.wav"
    # 20 minutes of low noise, written with sox so the test itself holds no big array.
    subprocess.run(["sox", "-n", "-r", "16000", "-c", "1", "-b", "16", str(path), "synth", "1200", "whitenoise",
                    "vol", "0.01"], check=True)
    tracemalloc.start()
    total = sum(len(b) for b in stream_audio(path))
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert total == 1200 * 16000
    assert peak < 8e6  # a few 10 s blocks, never the 77 MB file
