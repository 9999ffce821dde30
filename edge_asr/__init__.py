"""edge-asr: offline speech recognition on ONNX Runtime (the device side never imports torch)."""

from edge_asr._version import __version__
from edge_asr.errors import AudioError, ConfigError, EdgeAsrError, ModelError
from edge_asr.types import Segment, TranscriptionInfo, Word

__all__ = ["__version__", "Transcriber", "Segment", "TranscriptionInfo", "Word", "EdgeAsrError", "AudioError",
           "ConfigError", "ModelError"]


def __getattr__(name: str):
    # Lazy: `import edge_asr` stays cheap (no onnxruntime until a Transcriber is made).
    if name == "Transcriber":
        from edge_asr.transcriber import Transcriber

        return Transcriber
    raise AttributeError(name)
