"""Server plumbing against the real uvicorn server on 127.0.0.1: auth, limits, bad input, queueing.

These use a stand-in transcriber (the only place one is used); transcripts are tested with the real model in
test_escalation_e2e.py.
"""

from __future__ import annotations

import concurrent.futures
import io
import subprocess
import sys

import httpx
import numpy as np
import pytest
import soundfile as sf
from escalation_helpers import TOKEN, WRITE_HOOK, post, read_speech, start_standin, wav_bytes

UTT = "ljspeech_LJ001-0001"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    s = start_standin(tmp_path_factory.mktemp("standin"), limit=1_000_000)
    yield s
    s.stop()


def test_health_is_open_and_models_need_the_token(server):
    health = httpx.get(server.url + "/health").json()
    assert health["status"] == "ok" and health["model"] == "stand-in"
    assert httpx.get(server.url + "/v1/models").status_code == 401
    models = httpx.get(server.url + "/v1/models", headers={"Authorization": f"Bearer {TOKEN}"}).json()
    assert [m["id"] for m in models["data"]] == ["stand-in"]


@pytest.mark.parametrize("token", [None, "wrong-token"])
def test_missing_or_wrong_token_is_401(server, token):
    r = post(server, {"file": ("a.wav", wav_bytes(np.zeros(1600, np.float32)), "audio/wav")}, token=token)
    assert r.status_code == 401
    assert r.headers["www-authenticate"] == "Bearer"
    assert "token" in r.json()["error"]["message"]


def test_transcription_formats(server):
    audio = wav_bytes(read_speech(UTT))
    assert post(server, {"file": ("a.wav", audio)}).json() == {"text": "stand in"}
    assert post(server, {"file": ("a.wav", audio)}, {"response_format": "text"}).text == "stand in\n"
    verbose = post(server, {"file": ("a.wav", audio)}, {"response_format": "verbose_json"}).json()
    assert verbose["text"] == "stand in" and verbose["language"] == "en"
    assert verbose["segments"][0]["avg_logprob"] == -0.1


def test_upload_over_the_limit_is_413(server):
    big = wav_bytes(np.zeros(16000 * 40, np.float32))  # 1.28 MB against a 1 MB limit
    r = post(server, {"file": ("big.wav", big)})
    assert r.status_code == 413
    assert "limit" in r.json()["error"]["message"]


def test_audio_over_the_duration_limit_is_413(tmp_path):
    server = start_standin(tmp_path, max_audio_s=10)
    try:
        # 20 s of silence is tiny as FLAC, but decoded it is 20 s: the duration limit catches it.
        flac = io.BytesIO()
        sf.write(flac, np.zeros(16000 * 20, np.float32), 16000, format="FLAC")
        r = post(server, {"file": ("long.flac", flac.getvalue())})
        assert r.status_code == 413
        assert "20 s long" in r.json()["error"]["message"]
    finally:
        server.stop()


def test_upload_over_the_limit_without_content_length_is_413(server):
    big = wav_bytes(np.zeros(16000 * 40, np.float32))
    boundary = "xyzzy"
    head = (f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\n'
            "Content-Type: audio/wav\r\n\r\n").encode()
    body = head + big + f"\r\n--{boundary}--\r\n".encode()

    def chunks():  # a generator body goes out chunked, so the server must count while it reads
        for i in range(0, len(body), 65536):
            yield body[i: i + 65536]

    r = httpx.post(server.endpoint, content=chunks(), headers={
        "Authorization": f"Bearer {TOKEN}", "Content-Type": f"multipart/form-data; boundary={boundary}"})
    assert r.status_code == 413


@pytest.mark.parametrize("payload, reason", [
    (b"this is not audio at all" * 100, "bad audio"),
    (b"RIFF\x24\x00\x00\x00WAVEfmt ", "bad audio"),  # a truncated header
    (wav_bytes(np.zeros(0, np.float32)), "bad audio"),
])
def test_garbage_audio_is_400_with_the_reason(server, payload, reason):
    r = post(server, {"file": ("clip.wav", payload)})
    assert r.status_code == 400
    assert reason in r.json()["error"]["message"]
    assert r.json()["error"]["param"] == "file"


@pytest.mark.parametrize("files, data, param", [
    ({"notfile": ("a.wav", b"x")}, {}, "file"),
    ({"file": ("a.wav", b"x")}, {"response_format": "mp3"}, "response_format"),
    ({"file": ("a.wav", b"x")}, {"temperature": "hot"}, "temperature"),
    ({"file": ("a.wav", b"x")}, {"temperature": "1.5"}, "temperature"),
    ({"file": ("a.wav", b"x")}, {"timestamp_granularities[]": "char"}, "timestamp_granularities"),
    ({"file": ("a.wav", b"x")}, {"prompt": "x" * 4001}, "prompt"),
])
def test_bad_fields_are_400_naming_the_field(server, files, data, param):
    r = post(server, files, data)
    assert r.status_code == 400
    assert r.json()["error"]["param"] == param


def test_no_upload_touches_disk(tmp_path):
    # 1.28 MB under a 2 MB limit: Starlette's default parser would have spooled this to a temp file.
    server = start_standin(tmp_path, limit=2_000_000)
    try:
        r = post(server, {"file": ("a.wav", wav_bytes(read_speech(UTT).repeat(4)[: 16000 * 40]))})
        assert r.status_code == 200
    finally:
        log = server.stop()
    assert not server.write_opens(), log
    assert server.audio_left_in_tmpdir() == []


def test_write_hook_sees_temp_files(tmp_path):
    # The hook the servers run under must catch a spooled upload if there were one.
    code = WRITE_HOOK + "import tempfile\nwith tempfile.TemporaryFile() as f: f.write(b'x')\n"
    err = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stderr
    assert "WRITE-OPEN" in err


def test_full_queue_answers_503_with_retry_after(tmp_path):
    server = start_standin(tmp_path, delay=1.5, workers=1, queue=0)
    try:
        audio = wav_bytes(np.zeros(16000, np.float32))
        with concurrent.futures.ThreadPoolExecutor(3) as pool:
            first = pool.submit(post, server, {"file": ("a.wav", audio)})
            # Wait until the first request holds the only transcriber, then knock twice.
            while httpx.get(server.url + "/health").json()["running"] == 0:
                pass
            others = [pool.submit(post, server, {"file": ("a.wav", audio)}) for _ in range(2)]
            busy = [f.result() for f in others]
            assert first.result().status_code == 200
        assert [r.status_code for r in busy] == [503, 503]
        assert all(int(r.headers["retry-after"]) >= 1 for r in busy)
        assert httpx.get(server.url + "/health").json()["running"] == 0
    finally:
        server.stop()
