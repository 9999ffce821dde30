"""Benchmark data: speech utterances with reference text, and non-speech clips.

Three layouts are read: a TSV manifest with a header (`id`, `wav` relative to the manifest's folder,
`reference_text`; other columns ignored), JSON Lines, and a LibriSpeech-style folder (`*.trans.txt`).
A bad row never stops the run: it becomes a `problem` naming the file and line, and the rest is read.
A row whose reference text is empty is a non-speech clip (it measures hallucination, not WER).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from edge_asr.errors import EdgeAsrError

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3", ".opus")
# JSONL key spellings in common use (ours, NeMo's, Hugging Face's).
_JSONL_AUDIO_KEYS = ("wav", "audio", "audio_filepath", "path", "file")
_JSONL_TEXT_KEYS = ("reference_text", "text", "transcript", "sentence")


class DataError(EdgeAsrError):
    """The data set as a whole is unusable (not found, unknown layout, no usable rows)."""


@dataclass(frozen=True)
class Clip:
    id: str
    path: Path
    reference: str  # "" for a non-speech clip
    source: str  # "file:line" it came from, for messages


@dataclass
class Dataset:
    name: str
    speech: list[Clip] = field(default_factory=list)
    nonspeech: list[Clip] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def limit(self, n: int | None) -> Dataset:
        """The first `n` speech clips (non-speech clips and problems are kept)."""
        if n is None:
            return self
        return Dataset(self.name, self.speech[:n], list(self.nonspeech), list(self.problems))


def load_dataset(path: str | Path) -> Dataset:
    """Read a manifest (.tsv / .jsonl) or a folder (with manifest.tsv, or LibriSpeech layout)."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such data file or folder")
    if path.is_dir():
        if (path / "manifest.tsv").is_file():
            return load_dataset(path / "manifest.tsv")
        if (path / "manifest.jsonl").is_file():
            return load_dataset(path / "manifest.jsonl")
        transcripts = sorted(path.rglob("*.trans.txt"))
        if not transcripts:
            raise DataError(f"{path}: no manifest.tsv, manifest.jsonl or LibriSpeech *.trans.txt inside")
        rows = _read_librispeech(transcripts)
        name = path.name
    elif path.suffix.lower() == ".tsv":
        rows, name = _read_tsv(path), path.parent.name
    elif path.suffix.lower() in (".jsonl", ".json"):
        rows, name = _read_jsonl(path), path.parent.name
    else:
        raise DataError(f"{path}: unknown data format (expected .tsv, .jsonl or a folder)")
    dataset = Dataset(name=name or str(path))
    seen: set[str] = set()
    for item in rows:
        if isinstance(item, str):
            dataset.problems.append(item)
        elif item.id in seen:
            dataset.problems.append(f"{item.source}: duplicate id '{item.id}'; skipped")
        elif not item.path.is_file():
            dataset.problems.append(f"{item.source}: audio file not found: {item.path}")
        else:
            seen.add(item.id)
            (dataset.speech if item.reference.strip() else dataset.nonspeech).append(item)
    if not dataset.speech:
        problems = dataset.problems
        detail = f" ({len(problems)} problems, first: {problems[0]})" if problems else ""
        raise DataError(f"{path}: no usable speech utterances{detail}")
    return dataset


def _read_tsv(path: Path) -> Iterator[Clip | str]:
    lines = _read_lines(path)
    if not lines:
        raise DataError(f"{path}: empty manifest")
    header = lines[0].rstrip("\r\n").split("\t")
    missing = [c for c in ("id", "wav", "reference_text") if c not in header]
    if missing:
        raise DataError(f"{path}: header lacks column(s) {', '.join(missing)} (has: {', '.join(header)})")
    col = {name: header.index(name) for name in ("id", "wav", "reference_text")}
    for number, line in enumerate(lines[1:], start=2):
        line = line.rstrip("\r\n")
        if not line.strip():
            continue
        cells = line.split("\t")
        where = f"{path}:{number}"
        if len(cells) != len(header):
            yield f"{where}: malformed row: {len(cells)} columns, header has {len(header)}"
            continue
        clip_id, wav = cells[col["id"]].strip(), cells[col["wav"]].strip()
        if not clip_id or not wav:
            yield f"{where}: malformed row: empty id or wav"
            continue
        yield Clip(clip_id, path.parent / wav, cells[col["reference_text"]].strip(), where)


def _read_jsonl(path: Path) -> Iterator[Clip | str]:
    for number, line in enumerate(_read_lines(path), start=1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            yield f"{where}: malformed row: not JSON ({e.msg})"
            continue
        audio = next((row[k] for k in _JSONL_AUDIO_KEYS if isinstance(row, dict) and k in row), None)
        text = next((row[k] for k in _JSONL_TEXT_KEYS if isinstance(row, dict) and k in row), None)
        if not isinstance(audio, str) or not isinstance(text, str):
            yield f"{where}: malformed row: needs an audio path ({'/'.join(_JSONL_AUDIO_KEYS)}) and a text " \
                  f"({'/'.join(_JSONL_TEXT_KEYS)}) string"
            continue
        audio_path = path.parent / audio
        yield Clip(str(row.get("id") or audio_path.stem), audio_path, text.strip(), where)


def _read_librispeech(transcripts: list[Path]) -> Iterator[Clip | str]:
    for trans in transcripts:
        for number, line in enumerate(_read_lines(trans), start=1):
            if not line.strip():
                continue
            where = f"{trans}:{number}"
            clip_id, _, text = line.strip().partition(" ")
            if not text.strip():
                yield f"{where}: malformed row: expected '<utterance-id> <text>'"
                continue
            audio = next((trans.parent / (clip_id + s) for s in AUDIO_SUFFIXES
                          if (trans.parent / (clip_id + s)).is_file()), trans.parent / f"{clip_id}.flac")
            yield Clip(clip_id, audio, text.strip(), where)


def _read_lines(path: Path) -> list[str]:
    try:
        return path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: cannot read ({e})") from None


def clips_in_folder(folder: str | Path) -> list[Clip]:
    """Every audio file in a folder, as non-speech clips (for `--nonspeech DIR`)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder}: no such non-speech folder")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in AUDIO_SUFFIXES)
    if not files:
        raise DataError(f"{folder}: no audio files ({', '.join(AUDIO_SUFFIXES)}) in the non-speech folder")
    return [Clip(f"nonspeech/{p.stem}", p, "", str(p)) for p in files]
