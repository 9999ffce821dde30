"""One streaming audio source: microphone, file, stdin or array -> fixed 16 kHz mono float32 frames.

Wake-word listening and dictation both consume `open_stream(...)`. Every frame has exactly
`frame_samples` samples (the last one is zero-padded), so downstream models never see odd sizes.
"""

from __future__ import annotations

import queue
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import numpy as np

from edge_asr.errors import AudioError

SAMPLE_RATE = 16000
FRAME_SAMPLES = 1280  # 80 ms: openWakeWord's hop, also a fine VAD/dictation granularity
STDIN = "-"
MICROPHONE = "mic"


def load_file_audio(path: str | Path) -> np.ndarray:
    """Decode any soundfile-readable file to 16 kHz mono float32 (the core loader's semantics)."""
    # Stand-in until the core's edge_asr.audio.load_audio lands; then this delegates to it.
    import soundfile
    import soxr

    try:
        audio, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    except (OSError, RuntimeError) as e:  # soundfile.LibsndfileError is a RuntimeError
        raise AudioError(f"{path}: cannot read audio ({str(e).splitlines()[0]})") from None
    audio = audio.mean(axis=1)
    if rate != SAMPLE_RATE:
        audio = soxr.resample(audio, rate, SAMPLE_RATE)
    return np.ascontiguousarray(audio, dtype=np.float32)


class AudioStream:
    """Iterate fixed-size float32 frames; `position_s` is the stream time after the last frame handed out."""

    def __init__(self, frames: Iterator[np.ndarray], frame_samples: int, description: str,
                 close=None) -> None:
        self._frames = frames
        self.frame_samples = frame_samples
        self.sample_rate = SAMPLE_RATE
        self.description = description
        self.samples_read = 0
        self._close = close

    @property
    def position_s(self) -> float:
        return self.samples_read / SAMPLE_RATE

    def __iter__(self) -> Iterator[np.ndarray]:
        for frame in self._frames:
            self.samples_read += len(frame)
            yield frame

    def close(self) -> None:
        if self._close is not None:
            self._close()
            self._close = None

    def __enter__(self) -> AudioStream:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def open_stream(source: str | Path | np.ndarray | None = MICROPHONE, *, frame_samples: int = FRAME_SAMPLES,
                realtime: bool = False, device: int | str | None = None,
                stdin: BinaryIO | None = None) -> AudioStream:
    """Open `source`: "mic"/None (sounddevice), "-" (raw s16le 16 kHz mono PCM on stdin), a path, or an array.

    Files and arrays run as fast as possible unless `realtime` paces them at the audio's own speed
    (what a live microphone would deliver); the microphone and stdin are paced by their producer.
    """
    if frame_samples <= 0:
        raise ValueError("frame_samples must be positive")
    if source is None or (isinstance(source, str) and source == MICROPHONE):
        return _microphone(frame_samples, device)
    if isinstance(source, str) and source == STDIN:
        pipe = stdin if stdin is not None else sys.stdin.buffer
        return AudioStream(_pcm_frames(pipe, frame_samples), frame_samples, "stdin")
    if isinstance(source, np.ndarray):
        audio, description = _as_mono_float32(source), "array"
    else:
        audio, description = load_file_audio(source), str(source)
    frames = _array_frames(audio, frame_samples)
    if realtime:
        frames = _paced(frames, frame_samples / SAMPLE_RATE)
    return AudioStream(frames, frame_samples, description)


def _as_mono_float32(audio: np.ndarray) -> np.ndarray:
    if audio.ndim != 1:
        raise AudioError(f"audio array must be 1-D 16 kHz mono, got shape {audio.shape}")
    if audio.dtype == np.int16:
        return audio.astype(np.float32) / 32768.0
    return audio.astype(np.float32, copy=False)


def _array_frames(audio: np.ndarray, frame_samples: int) -> Iterator[np.ndarray]:
    for start in range(0, len(audio), frame_samples):
        frame = audio[start:start + frame_samples]
        if len(frame) < frame_samples:
            frame = np.pad(frame, (0, frame_samples - len(frame)))
        yield frame


def _paced(frames: Iterator[np.ndarray], frame_s: float) -> Iterator[np.ndarray]:
    # Deadline-based sleep: per-frame processing time does not accumulate as drift.
    start = time.monotonic()
    for i, frame in enumerate(frames):
        delay = start + i * frame_s - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        yield frame


def _pcm_frames(pipe: BinaryIO, frame_samples: int) -> Iterator[np.ndarray]:
    frame_bytes = 2 * frame_samples
    pending = b""
    while True:
        chunk = pipe.read(frame_bytes - len(pending))
        if not chunk:
            break
        pending += chunk
        if len(pending) == frame_bytes:
            yield np.frombuffer(pending, dtype="<i2").astype(np.float32) / 32768.0
            pending = b""
    if len(pending) >= 2:
        tail = np.frombuffer(pending[: len(pending) // 2 * 2], dtype="<i2").astype(np.float32) / 32768.0
        yield np.pad(tail, (0, frame_samples - len(tail)))


def _microphone(frame_samples: int, device: int | str | None) -> AudioStream:
    try:
        import sounddevice  # lazy: needs PortAudio and a sound card, only for live input
    except OSError as e:  # PortAudio library missing
        raise AudioError(f"microphone unavailable: {e}") from None
    frames: queue.Queue[np.ndarray] = queue.Queue()

    def on_audio(indata, n_frames, time_info, status) -> None:
        frames.put(indata[:, 0].copy())

    try:
        stream = sounddevice.InputStream(samplerate=SAMPLE_RATE, channels=1, dtype="float32",
                                         blocksize=frame_samples, device=device, callback=on_audio)
        stream.start()
    except Exception as e:  # PortAudioError and friends: no device, unsupported rate
        raise AudioError(f"cannot open microphone: {str(e).splitlines()[0]}") from None

    def read() -> Iterator[np.ndarray]:
        while stream.active:
            try:
                yield frames.get(timeout=1.0)
            except queue.Empty:
                continue

    def close() -> None:
        stream.stop()
        stream.close()

    return AudioStream(read(), frame_samples, "microphone", close=close)
