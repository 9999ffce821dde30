"""The device install never imports torch: transcription and dictation, through the API and the CLI."""

import json
import subprocess
import sys

from conftest import REPO, SAMPLE
from dictate_helpers import two_utterances_wav

# Workstation or benchmark packages that must stay out of the device process.
HEAVY = ("torch", "scipy", "sklearn", "onnx", "openwakeword", "jiwer", "faster_whisper", "ctranslate2")

PROBE = """
import json, sys
import edge_asr
from edge_asr import Transcriber
from edge_asr.cli import main

t = Transcriber(sys.argv[1], threads=2)
text = "".join(s.text for s in t.transcribe(sys.argv[2])[0])
code = main(["dictate", "--input", sys.argv[3], "--model", sys.argv[1], "--format", "json",
             "--output", sys.argv[4]])
print(json.dumps({"text": text, "code": code, "heavy": [m for m in sys.argv[5].split(",") if m in sys.modules]}))
"""


def test_transcribe_and_dictate_never_import_torch(model_dir, tmp_path):
    wav = two_utterances_wav(tmp_path / "talk.wav")
    events = tmp_path / "events.jsonl"
    done = subprocess.run(
        [sys.executable, "-c", PROBE, str(model_dir), str(SAMPLE), str(wav), str(events), ",".join(HEAVY)],
        capture_output=True, text=True, timeout=240, cwd=REPO,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.splitlines()[-1])
    assert result["heavy"] == [], result
    assert result["code"] == 0 and result["text"].strip()
    finals = [e for e in map(json.loads, events.read_text().splitlines()) if e["event"] == "final"]
    assert len(finals) == 2
