"""One streaming audio source: microphone, file, stdin or array -> fixed 16 kHz mono float32 frames.

Wake-word listening and dictation both consume `open_stream(...)`. Every frame has exactly
`frame_samples` samples (the last one is zero-padded), so downstream models never see odd sizes.
"""

from __future__ import annotations

import queue
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from edge_asr.audio import SAMPLE_RATE
from edge_asr.errors import AudioError

FRAME_SAMPLES = 1280  # 80 ms: openWakeWord's hop, also a fine VAD/dictation granularity
STDIN = "-"
MICROPHONE = "mic"


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
                realtime: bool = False, device: int | str | None = None) -> AudioStream:
    """Open `source`: "mic"/None (sounddevice), "-" (raw s16le 16 kHz mono PCM on stdin), a path, or an array.

    Files, stdin and arrays are decoded by the core loader (edge_asr.audio: any format, rate and channel
    count). Files and arrays run as fast as possible unless `realtime` paces them at the audio's own speed,
    as a microphone would deliver them; the microphone and stdin are paced by their producer.
    """
    if frame_samples <= 0:
        raise ValueError("frame_samples must be positive")
    if source is None or (isinstance(source, str) and source == MICROPHONE):
        return _microphone(frame_samples, device)
    from edge_asr.audio import audio_info, describe, stream_audio

    live = isinstance(source, str) and source == STDIN
    if not live:
        audio_info(source)  # fail now, with the core loader's message, if the file cannot be read
    # Small blocks for stdin so a live pipe (arecord | edge-asr listen --input -) is not held back.
    blocks = stream_audio(source, block_seconds=frame_samples / SAMPLE_RATE if live else 10.0)
    frames = _reframe(blocks, frame_samples)
    if realtime and not live:
        frames = _paced(frames, frame_samples / SAMPLE_RATE)
    return AudioStream(frames, frame_samples, describe(source))


def _reframe(blocks: Iterator[np.ndarray], frame_samples: int) -> Iterator[np.ndarray]:
    """Blocks of any length -> frames of exactly `frame_samples` (the last one zero-padded)."""
    pending = np.zeros(0, dtype=np.float32)
    for block in blocks:
        pending = np.concatenate((pending, block)) if len(pending) else block
        n = len(pending) // frame_samples * frame_samples
        for start in range(0, n, frame_samples):
            yield pending[start:start + frame_samples]
        pending = pending[n:]
    if len(pending):
        yield np.pad(pending, (0, frame_samples - len(pending)))


def _paced(frames: Iterator[np.ndarray], frame_s: float) -> Iterator[np.ndarray]:
    # Deadline-based sleep: per-frame processing time does not accumulate as drift.
    start = time.monotonic()
    for i, frame in enumerate(frames):
        delay = start + i * frame_s - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        yield frame


def _microphone(frame_samples: int, device: int | str | None) -> AudioStream:
    try:
        import sounddevice  # lazy: needs PortAudio and a sound card, only for live input
    except OSError as e:  # PortAudio library missing
        raise AudioError(f"microphone unavailable: {e}") from None
    blocks: queue.Queue[np.ndarray] = queue.Queue()

    def on_audio(indata, n_frames, time_info, status) -> None:
        blocks.put(indata[:, 0].copy())

    def open_at(rate: int):
        block = round(frame_samples * rate / SAMPLE_RATE)
        stream = sounddevice.InputStream(samplerate=rate, channels=1, dtype="float32", device=device,
                                         blocksize=block, callback=on_audio)
        stream.start()
        return stream

    rate = SAMPLE_RATE
    try:
        try:
            stream = open_at(rate)
        except sounddevice.PortAudioError:  # many cards only record at 44.1/48 kHz: resample here
            rate = int(sounddevice.query_devices(device, "input")["default_samplerate"])
            stream = open_at(rate)
    except Exception as e:  # PortAudioError and friends: no device, no input channels
        raise AudioError(f"cannot open microphone: {str(e).splitlines()[0]}") from None

    def captured() -> Iterator[np.ndarray]:
        resampler = None
        if rate != SAMPLE_RATE:
            import soxr

            resampler = soxr.ResampleStream(rate, SAMPLE_RATE, 1, dtype="float32")
        while stream.active:
            try:
                block = blocks.get(timeout=1.0)
            except queue.Empty:
                continue
            yield resampler.resample_chunk(block) if resampler else block

    def close() -> None:
        stream.stop()
        stream.close()

    return AudioStream(_reframe(captured(), frame_samples), frame_samples, "microphone", close=close)
