"""What the numbers were measured on: CPU, cores, OS, Python and package versions."""

from __future__ import annotations

import os
import platform
from importlib.metadata import PackageNotFoundError, version

PACKAGES = ("edge-asr", "numpy", "onnxruntime", "faster-whisper", "ctranslate2", "pocketsphinx", "jiwer",
            "whisper-normalizer")


def cpu_model() -> str:
    fields: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                key, sep, value = line.partition(":")
                if sep:
                    fields.setdefault(key.strip().lower(), value.strip())
    except OSError:
        pass
    # x86: "model name"; a Raspberry Pi's arm64 kernel has no model name but "Model: Raspberry Pi 4 ...".
    for key in ("model name", "hardware"):
        if fields.get(key):
            return fields[key]
    if fields.get("model") and not fields["model"].isdigit():
        return fields["model"]
    return platform.processor() or platform.machine()


def machine_info() -> dict:
    versions = {}
    for package in PACKAGES:
        try:
            versions[package] = version(package)
        except PackageNotFoundError:
            versions[package] = "not installed"
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "python": platform.python_version(),
        "versions": versions,
    }
