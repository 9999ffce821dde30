"""openWakeWord's streaming front end (mel spectrogram -> Google speech embedding) on ONNX Runtime.

This mirrors `openwakeword.utils.AudioFeatures` for the one case the listener needs (80 ms frames)
so the idle loop runs three small ONNX sessions and nothing else; tests check its scores against
openwakeword.Model's on real clips.
"""

from __future__ import annotations

import numpy as np

from edge_asr.engine import make_session
from wakeword.models import resource_model

FRAME_SAMPLES = 1280  # the embedding model advances by 8 mel frames = 80 ms
_MEL_CONTEXT = 480  # 3 extra hops so the 25 ms mel windows of one frame are complete
_MEL_WINDOW = 76  # mel frames per embedding
_MAX_FEATURES = 120  # ~10 s of embeddings, enough for any bundled head (timer needs 34)


class SpeechEmbeddingStream:
    """Feed 1280-sample frames; keeps the last embeddings (96-d, one per frame) for wake-word heads."""

    def __init__(self, threads: int = 1) -> None:
        self._melspec = make_session(resource_model("melspectrogram.onnx"), threads)
        self._embedding = make_session(resource_model("embedding_model.onnx"), threads)
        # openWakeWord starts from a mel buffer of ones and embeddings of low noise; the same start
        # keeps scores identical to its Model once the first seconds have passed.
        noise = np.random.default_rng(0).integers(-1000, 1000, 16000 * 4).astype(np.float32)
        self._initial_features = self._embed_clip(noise)
        self.reset()

    def reset(self) -> None:
        self._raw = np.zeros(FRAME_SAMPLES + _MEL_CONTEXT, dtype=np.float32)
        self._mel = np.ones((_MEL_WINDOW, 32), dtype=np.float32)
        self.features = self._initial_features.copy()

    def _melspectrogram(self, pcm: np.ndarray) -> np.ndarray:
        spec = self._melspec.run(None, {"input": pcm[None, :]})[0]
        return np.squeeze(spec) / 10 + 2  # openWakeWord's fit to Google's TF front end

    def _embed_clip(self, pcm: np.ndarray) -> np.ndarray:
        spec = self._melspectrogram(pcm)
        windows = [spec[i:i + _MEL_WINDOW] for i in range(0, len(spec) - _MEL_WINDOW + 1, 8)]
        batch = np.stack(windows)[..., None].astype(np.float32)
        return self._embedding.run(None, {"input_1": batch})[0].reshape(len(windows), 96)

    def __call__(self, frame: np.ndarray) -> None:
        """Add one 80 ms frame (float32 in [-1, 1]) and compute its embedding."""
        if len(frame) != FRAME_SAMPLES:
            raise ValueError(f"wake-word frames must be {FRAME_SAMPLES} samples, got {len(frame)}")
        # The models were trained on int16-valued input.
        pcm = np.clip(frame * 32768.0, -32768, 32767).astype(np.int16).astype(np.float32)
        self._raw = np.concatenate((self._raw[FRAME_SAMPLES:], pcm))
        self._mel = np.vstack((self._mel, self._melspectrogram(self._raw)))[-_MEL_WINDOW:]
        window = self._mel[None, :, :, None]
        embedding = self._embedding.run(None, {"input_1": window})[0].reshape(1, 96)
        self.features = np.vstack((self.features, embedding))[-_MAX_FEATURES:]

    def last(self, n: int) -> np.ndarray:
        return self.features[-n:][None].astype(np.float32)
