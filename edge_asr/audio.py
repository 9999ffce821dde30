"""The one audio loader: file (wav/flac/ogg/...), raw 16-bit PCM on stdin ('-'), or a numpy array,
at any rate and channel count, to 16 kHz mono float32 — streamed in blocks so long files use flat memory.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import numpy as np

from edge_asr.errors import AudioError
from edge_asr.frontend import SAMPLE_RATE

AudioSource = str | Path | np.ndarray | BinaryIO
BLOCK_SECONDS = 10.0


def describe(source: AudioSource) -> str:
    if isinstance(source, np.ndarray):
        return "audio array"
    if source == "-":
        return "stdin"
    return str(getattr(source, "name", source))


def _check_finite(block: np.ndarray, name: str, offset_s: float) -> np.ndarray:
    if not np.isfinite(block).all():
        at = offset_s + int(np.argmin(np.isfinite(block))) / SAMPLE_RATE
        raise AudioError(f"{name}: contains NaN or infinite samples (first at {at:.2f} s)")
    return block


def _to_mono(block: np.ndarray) -> np.ndarray:
    return block.mean(axis=1, dtype=np.float32) if block.ndim == 2 else block.astype(np.float32, copy=False)


class _Resampler:
    """Streaming resampler (soxr, high quality) that is a no-op at 16 kHz."""

    def __init__(self, rate: int):
        self.stream = None
        if rate != SAMPLE_RATE:
            import soxr

            self.stream = soxr.ResampleStream(rate, SAMPLE_RATE, 1, dtype="float32", quality="HQ")

    def __call__(self, block: np.ndarray, last: bool = False) -> np.ndarray:
        if self.stream is None:
            return block
        return self.stream.resample_chunk(block, last=last)


def audio_info(source: AudioSource) -> tuple[int, float]:
    """(sample rate, duration in seconds) of a file without decoding it; (16000, n/16000) for an array."""
    if isinstance(source, np.ndarray):
        return SAMPLE_RATE, len(source) / SAMPLE_RATE
    if source == "-":
        return SAMPLE_RATE, float("nan")
    info = _open_info(source)
    return info.samplerate, info.frames / info.samplerate if info.samplerate else 0.0


def _open_info(source):
    import soundfile as sf

    name = describe(source)
    if isinstance(source, (str, Path)):
        path = Path(source)
        if not path.exists():
            raise AudioError(f"{name}: no such file")
        if path.is_dir():
            raise AudioError(f"{name}: is a directory, not an audio file")
        if path.stat().st_size == 0:
            raise AudioError(f"{name}: empty file (0 bytes)")
    try:
        info = sf.info(source)
    except Exception as e:  # libsndfile's errors are terse; name the file and the reason
        reason = str(e).split(":")[-1].strip() or "unrecognised format"
        raise AudioError(f"{name}: not a readable audio file ({reason})") from None
    finally:
        if hasattr(source, "seek"):
            source.seek(0)
    if info.samplerate <= 0 or info.channels <= 0:
        raise AudioError(f"{name}: corrupt header (rate {info.samplerate}, channels {info.channels})")
    return info


def stream_audio(source: AudioSource, block_seconds: float = BLOCK_SECONDS) -> Iterator[np.ndarray]:
    """Yield consecutive 16 kHz mono float32 blocks of the source."""
    name = describe(source)
    if isinstance(source, np.ndarray):
        audio = np.asarray(source, dtype=np.float32)
        if audio.ndim != 1:
            raise AudioError(f"{name}: expected 1-D 16 kHz mono samples, got shape {audio.shape}")
        step = int(block_seconds * SAMPLE_RATE)
        for i in range(0, len(audio), step):
            yield _check_finite(audio[i : i + step], name, i / SAMPLE_RATE)
        return
    if source == "-":
        yield from _stream_raw_pcm(sys.stdin.buffer, block_seconds)
        return
    import soundfile as sf

    info = _open_info(source)
    resample = _Resampler(info.samplerate)
    block = max(1, int(block_seconds * info.samplerate))
    offset = 0.0
    try:
        with sf.SoundFile(source) as f:
            while True:
                data = f.read(block, dtype="float32", always_2d=True)
                last = len(data) < block
                out = resample(_to_mono(data), last=last)
                if len(out):
                    yield _check_finite(out, name, offset)
                    offset += len(out) / SAMPLE_RATE
                if last:
                    break
    except sf.LibsndfileError as e:
        raise AudioError(f"{name}: corrupt audio data after {offset:.1f} s ({e})") from None


def _stream_raw_pcm(stream: BinaryIO, block_seconds: float) -> Iterator[np.ndarray]:
    nbytes = int(block_seconds * SAMPLE_RATE) * 2
    pending = b""
    while True:
        chunk = stream.read(nbytes)
        if not chunk:
            break
        pending += chunk
        usable = len(pending) // 2 * 2
        if usable:
            yield np.frombuffer(pending[:usable], dtype="<i2").astype(np.float32) / 32768.0
        pending = pending[usable:]


def load_audio(source: AudioSource) -> np.ndarray:
    """The whole source as one 16 kHz mono float32 array."""
    blocks = list(stream_audio(source))
    return np.concatenate(blocks) if blocks else np.zeros(0, dtype=np.float32)
