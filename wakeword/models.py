"""Where the wake-word ONNX files live: openWakeWord 0.5.1's bundled models, or a user's own .onnx.

The package directory is located without importing openwakeword (its __init__ pulls in scikit-learn
and scipy, which the device loop never needs).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from edge_asr.errors import ModelError

BUNDLED_WAKEWORDS = ("alexa", "hey_jarvis", "hey_mycroft", "hey_rhasspy", "timer", "weather")


def openwakeword_models_dir() -> Path:
    spec = importlib.util.find_spec("openwakeword")
    if spec is None or not spec.submodule_search_locations:
        raise ModelError("openwakeword 0.5.1 is not installed (pip install openwakeword==0.5.1)")
    return Path(next(iter(spec.submodule_search_locations))) / "resources" / "models"


def resource_model(filename: str) -> Path:
    """A model file shipped in openWakeWord's resources (melspectrogram, embedding, silero_vad)."""
    path = openwakeword_models_dir() / filename
    if not path.is_file():
        raise ModelError(f"{path} is missing: reinstall openwakeword==0.5.1 (0.6+ no longer ships models)")
    return path


def wakeword_model_path(name_or_path: str) -> Path:
    """Resolve a bundled name ("alexa", "hey jarvis") or a path to a custom openWakeWord .onnx head."""
    if name_or_path.endswith(".onnx") or "/" in name_or_path:
        path = Path(name_or_path).expanduser()
        if not path.is_file():
            raise ModelError(f"wake-word model {name_or_path} not found")
        return path
    name = name_or_path.strip().lower().replace(" ", "_").replace("-", "_")
    if name not in BUNDLED_WAKEWORDS:
        raise ModelError(f"unknown wake word '{name_or_path}': use one of {', '.join(BUNDLED_WAKEWORDS)} "
                         "or a path to an openWakeWord .onnx model")
    return resource_model(f"{name}_v0.1.onnx")


def wakeword_display_name(name_or_path: str) -> str:
    if name_or_path.endswith(".onnx") or "/" in name_or_path:
        return Path(name_or_path).stem
    return name_or_path.strip().lower().replace(" ", "_").replace("-", "_")
