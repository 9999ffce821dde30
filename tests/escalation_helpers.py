"""Start the real server (uvicorn) on 127.0.0.1 in a subprocess, and small real audio helpers.

The subprocess carries a Python audit hook that reports, on stderr, every file opened for writing (apart from
bytecode caches): tests read it to prove uploaded audio never touches disk.
"""

from __future__ import annotations

import io
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
import soundfile as sf

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / ".." / "shared" / "data"
SPEECH = DATA / "speech-dev"
TOKEN = "test-token-123"

WRITE_HOOK = r"""
import os, sys
def _report_writes(event, args):
    if event != "open":
        return
    path, mode, flags = args
    if isinstance(mode, str):
        writing = any(c in mode for c in "wax+")
    else:
        writing = bool((flags or 0) & (os.O_WRONLY | os.O_RDWR | os.O_CREAT))
    if writing and "__pycache__" not in str(path) and str(path) != "/dev/null":
        os.write(2, ("WRITE-OPEN %r\n" % (path,)).encode())
sys.addaudithook(_report_writes)
"""

# A stand-in transcriber for plumbing tests only (auth, limits, queueing); transcripts are tested for real.
STANDIN = r"""
import sys, time, uvicorn
from edge_asr.server import ServerSettings, create_app
from edge_asr.types import Segment, TranscriptionInfo

class StandIn:
    def __init__(self, delay):
        self.delay = delay
    def transcribe(self, audio, **options):
        time.sleep(self.delay)
        seg = Segment(id=0, seek=0, start=0.0, end=len(audio) / 16000, text=" stand in", tokens=[1, 2],
                      temperature=0.0, avg_logprob=-0.1, compression_ratio=1.0, no_speech_prob=0.01)
        return iter([seg]), TranscriptionInfo(language="en", duration=len(audio) / 16000, model="stand-in")

port, delay, workers, queue, limit, token, max_audio_s = sys.argv[1:8]
settings = ServerSettings(model_name="stand-in", api_key=token or None, max_upload_bytes=int(limit),
                          max_queue=int(queue), max_audio_s=float(max_audio_s))
app = create_app([StandIn(float(delay)) for _ in range(int(workers))], settings)
uvicorn.run(app, host="127.0.0.1", port=int(port), log_level="warning", access_log=False)
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Server:
    process: subprocess.Popen
    port: int
    tmpdir: Path
    stderr_path: Path
    log: str = field(default="")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def endpoint(self) -> str:
        return self.url + "/v1/audio/transcriptions"

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> str:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()
        self.log = self.stderr_path.read_text(errors="replace")
        return self.log

    def audio_left_in_tmpdir(self) -> list[Path]:
        """Files left in the server's TMPDIR that hold audio (or could: anything over 4 KB).

        ONNX Runtime leaves a 51-byte session-id file (.ses) there; that is not audio."""
        left = []
        for path in self.tmpdir.rglob("*"):
            if path.is_file():
                try:
                    sf.info(path)
                    left.append(path)
                except Exception:
                    if path.stat().st_size > 4096:
                        left.append(path)
        return left

    def write_opens(self) -> list[str]:
        text = self.log or self.stderr_path.read_text(errors="replace")
        return [line for line in text.splitlines() if line.startswith("WRITE-OPEN")]


def start_server(args: list[str], tmp_path: Path, env: dict | None = None, code: str | None = None,
                 wait_s: float = 120.0) -> Server:
    """Run `python -c <hook + code> args...` (default: `edge-asr serve args`) and wait for /health."""
    port = free_port()
    tmpdir = tmp_path / f"server-tmp-{port}"
    tmpdir.mkdir()
    stderr_path = tmp_path / f"server-{port}.log"
    full_env = {**os.environ, "TMPDIR": str(tmpdir), "PYTHONDONTWRITEBYTECODE": "1", **(env or {})}
    if code is None:
        code = "import sys; from edge_asr.cli import main; sys.exit(main(sys.argv[1:]))"
        args = ["serve", "--host", "127.0.0.1", "--port", str(port), *args]
    else:
        args = [str(port), *args]
    with open(stderr_path, "wb") as err:
        process = subprocess.Popen([sys.executable, "-c", WRITE_HOOK + code, *args], cwd=REPO, env=full_env,
                                   stdout=subprocess.DEVNULL, stderr=err)
    server = Server(process, port, tmpdir, stderr_path)
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}:\n{stderr_path.read_text()}")
        try:
            if httpx.get(server.url + "/health", timeout=1.0).status_code == 200:
                return server
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    server.kill()
    raise RuntimeError(f"server did not come up in {wait_s} s:\n{stderr_path.read_text()}")


def start_standin(tmp_path: Path, delay: float = 0.0, workers: int = 1, queue: int = 4,
                  limit: int = 1_000_000, token: str = TOKEN, max_audio_s: float = 600.0) -> Server:
    args = [str(delay), str(workers), str(queue), str(limit), token, str(max_audio_s)]
    return start_server(args, tmp_path, code=STANDIN)


def read_speech(utt_id: str) -> np.ndarray:
    audio, rate = sf.read(SPEECH / f"{utt_id}.wav", dtype="float32")
    assert rate == 16000 and audio.ndim == 1
    return audio


def wav_bytes(audio: np.ndarray, rate: int = 16000) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, audio, rate, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def post(server: Server, files: dict, data: dict | None = None, token: str | None = TOKEN, timeout=60.0):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.post(server.endpoint, files=files, data=data or {}, headers=headers, timeout=timeout)
