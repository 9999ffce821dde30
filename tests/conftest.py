"""Shared fixtures: the real default model, the real speech-dev recordings, a WER scorer."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
SPEECH_DEV = DATA / "speech-dev"
SAMPLE = REPO / "edge_asr" / "samples" / "hello.flac"


@dataclass
class Utterance:
    id: str
    path: Path
    duration: float
    reference: str
    subset: str


def speech_dev() -> list[Utterance]:
    with (SPEECH_DEV / "manifest.tsv").open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    return [
        Utterance(r["id"], SPEECH_DEV / r["wav"], float(r["duration_s"]), r["reference_text"], r["subset"])
        for r in rows
    ]


def wer(references: list[str], hypotheses: list[str]) -> float:
    """Corpus WER after Whisper's English normalizer (the scoring the issues ask for)."""
    import jiwer
    from whisper_normalizer.english import EnglishTextNormalizer

    norm = EnglishTextNormalizer()
    return jiwer.wer([norm(r) for r in references], [norm(h) for h in hypotheses])


@pytest.fixture(scope="session")
def utterances() -> list[Utterance]:
    return speech_dev()


@pytest.fixture(scope="session")
def model_dir() -> Path:
    from edge_asr.models import resolve_model

    return resolve_model(None)  # the default model, built on first use like a user's


@pytest.fixture(scope="session")
def transcriber(model_dir):
    from edge_asr import Transcriber

    return Transcriber(model_dir, threads=2)


@pytest.fixture(scope="module")
def cloud(tmp_path_factory, model_dir):
    """`edge-asr serve` on loopback with the default model: the cloud of the escalation and wake-verification
    tests."""
    from escalation_helpers import TOKEN, start_server

    server = start_server(["--model", str(model_dir), "--beam-size", "1", "--threads", "1"],
                          tmp_path_factory.mktemp("cloud"), env={"EDGE_ASR_API_KEY": TOKEN})
    yield server
    server.stop()
