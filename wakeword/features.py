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
MAX_FEATURES = 40  # embeddings kept (3.2 s): any bundled head reads at most 34
_MEL_ROWS = _MEL_WINDOW + 8 * (MAX_FEATURES - 1)  # enough mel history to embed any kept frame later


class SpeechEmbeddingStream:
    """Feed 1280-sample frames; keeps one 96-d embedding per frame for the wake-word heads.

    Embeddings are computed when a head asks for them (`last`), from the mel history kept for that purpose:
    frames that nobody scores (silence, when the detector's VAD gate is closed) cost only their mel
    spectrogram, and the scores of frames that are scored do not change.
    """

    def __init__(self, threads: int = 1) -> None:
        self._melspec = make_session(resource_model("melspectrogram.onnx"), threads)
        self._embedding = make_session(resource_model("embedding_model.onnx"), threads)
        # openWakeWord starts from a mel buffer of ones and embeddings of low noise; the same start
        # keeps scores identical to its Model once the first seconds have passed.
        noise = np.random.default_rng(0).integers(-1000, 1000, 16000 * 4).astype(np.float32)
        self._initial_features = self._embed_windows(self._melspectrogram(noise))[-MAX_FEATURES:]
        self.reset()

    def reset(self) -> None:
        self._raw = np.zeros(FRAME_SAMPLES + _MEL_CONTEXT, dtype=np.float32)
        self._mel = np.ones((_MEL_WINDOW, 32), dtype=np.float32)
        self._features = self._initial_features.copy()
        self._have = np.ones(MAX_FEATURES, dtype=bool)  # which of the kept frames have their embedding

    def _melspectrogram(self, pcm: np.ndarray) -> np.ndarray:
        spec = self._melspec.run(None, {"input": pcm[None, :]})[0]
        return np.squeeze(spec) / 10 + 2  # openWakeWord's fit to Google's TF front end

    def _embed_windows(self, mel: np.ndarray, ends: list[int] | None = None) -> np.ndarray:
        """Embeddings of the 76-row mel windows ending at `ends` (default: every 8th row, as in a clip)."""
        if ends is None:
            ends = list(range(_MEL_WINDOW, len(mel) + 1, 8))
        batch = np.stack([mel[end - _MEL_WINDOW:end] for end in ends])[..., None].astype(np.float32)
        return self._embedding.run(None, {"input_1": batch})[0].reshape(len(ends), 96)

    def __call__(self, frame: np.ndarray) -> None:
        """Add one 80 ms frame (float32 in [-1, 1]): 8 new mel rows; its embedding waits until needed."""
        if len(frame) != FRAME_SAMPLES:
            raise ValueError(f"wake-word frames must be {FRAME_SAMPLES} samples, got {len(frame)}")
        # The models were trained on int16-valued input.
        pcm = np.clip(frame * 32768.0, -32768, 32767).astype(np.int16).astype(np.float32)
        self._raw = np.concatenate((self._raw[FRAME_SAMPLES:], pcm))
        self._mel = np.vstack((self._mel, self._melspectrogram(self._raw)))[-_MEL_ROWS:]
        self._features = np.roll(self._features, -1, axis=0)
        self._have = np.roll(self._have, -1)
        self._have[-1] = False

    def last(self, n: int) -> np.ndarray:
        """The embeddings of the last n frames, shape (1, n, 96); n <= MAX_FEATURES."""
        missing = [i for i in range(MAX_FEATURES - n, MAX_FEATURES) if not self._have[i]]
        if missing:
            # Frame i (of MAX_FEATURES kept) ends 8 mel rows per frame before the newest one.
            ends = [len(self._mel) - 8 * (MAX_FEATURES - 1 - i) for i in missing]
            self._features[missing] = self._embed_windows(self._mel, ends)
            self._have[missing] = True
        return self._features[-n:][None].astype(np.float32)
