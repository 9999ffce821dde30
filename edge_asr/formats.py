"""Transcript writers: text, json, srt, vtt (shared by the CLI and the server)."""

from __future__ import annotations

import json
from collections.abc import Iterable

from edge_asr.types import Segment, TranscriptionInfo

FORMATS = ("text", "json", "srt", "vtt")
EXTENSIONS = {"text": "txt", "json": "json", "srt": "srt", "vtt": "vtt"}


def timestamp(seconds: float, decimal: str = ".", always_hours: bool = True) -> str:
    ms = max(0, round(seconds * 1000))
    h, ms = divmod(ms, 3_600_000)
    m, ms = divmod(ms, 60_000)
    s, ms = divmod(ms, 1000)
    head = f"{h:02d}:" if always_hours or h else ""
    return f"{head}{m:02d}:{s:02d}{decimal}{ms:03d}"


def to_text(segments: Iterable[Segment]) -> str:
    return "".join(s.text for s in segments).strip()


def to_json(segments: list[Segment], info: TranscriptionInfo) -> dict:
    return {
        "text": to_text(segments),
        "segments": [s.to_dict() for s in segments],
        "language": info.language,
        "duration": info.duration,
    }


def to_srt(segments: Iterable[Segment]) -> str:
    blocks = [
        f"{i}\n{timestamp(s.start, ',')} --> {timestamp(s.end, ',')}\n{s.text.strip()}\n"
        for i, s in enumerate(segments, start=1)
    ]
    return "\n".join(blocks)


def to_vtt(segments: Iterable[Segment]) -> str:
    blocks = [f"{timestamp(s.start)} --> {timestamp(s.end)}\n{s.text.strip()}\n" for s in segments]
    return "WEBVTT\n\n" + "\n".join(blocks)


def render(fmt: str, segments: list[Segment], info: TranscriptionInfo) -> str:
    if fmt == "json":
        return json.dumps(to_json(segments, info), ensure_ascii=False, indent=2) + "\n"
    if fmt == "srt":
        return to_srt(segments)
    if fmt == "vtt":
        return to_vtt(segments)
    return to_text(segments) + "\n"
