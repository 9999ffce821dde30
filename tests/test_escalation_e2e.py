"""Escalation end to end: the real Transcriber on the device side, the real `edge-asr serve` (tiny.en, for
speed) on 127.0.0.1 as the cloud."""

from __future__ import annotations

import copy
import json
import math
import subprocess
import sys
import threading
import time

import httpx
import numpy as np
import pytest
import soundfile as sf
from escalation_helpers import (
    DATA,
    REPO,
    TOKEN,
    WRITE_HOOK,
    free_port,
    post,
    read_speech,
    start_server,
    wav_bytes,
)

from edge_asr.cloud import CloudClient
from edge_asr.escalation import EscalationPolicy, cloud_confirms_wake

SHORT = "ljspeech_LJ001-0001"
# Three utterances back to back (30.5 s): two decoding windows, so two separate escalations.
LONG = ["ls-test-other_1688-142285-0000", "ls-test-other_1688-142285-0001", "ls-test-other_1688-142285-0002"]


@pytest.fixture(scope="module")
def local(transcriber):
    return transcriber  # conftest's: the default model (tiny.en int8)


@pytest.fixture(scope="module")
def long_case(local):
    """The long recording and its local transcript, decoded once for the tests that route it."""
    audio = np.concatenate([read_speech(u) for u in LONG])
    return audio, transcribe(local, audio)


def transcribe(local, audio, policy=None):
    segments, info = local.transcribe(audio, word_timestamps=True)
    if policy is not None:
        segments = policy.route(segments, audio, language=info.language)
    return list(segments)


def route(policy, local_segments, audio):
    return list(policy.route(copy.deepcopy(local_segments), audio, language="en"))


def test_escalated_transcript_comes_back_from_the_server(long_case, cloud):
    audio, local_segments = long_case
    decisions = []
    client = CloudClient(cloud.endpoint, TOKEN, timeout_s=60)
    # Forced: every window goes up and the cloud's answer is taken (the same model on both sides here, so
    # arbitration by confidence would be a coin toss).
    policy = EscalationPolicy(client, min_confidence=1.0, min_benefit=-math.inf, max_share=1.0, arbitrate=False,
                              on_decision=decisions.append)
    segments = route(policy, local_segments, audio)
    assert [d.status for d in decisions] == ["escalated", "escalated"]
    assert decisions[0].end == pytest.approx(decisions[1].start)  # the windows tile the audio
    assert all(s.source == "cloud" for s in segments)
    marks = [s.extra["escalation"] for s in segments]
    assert all(0 <= m["local_confidence"] <= 1 and 0 <= m["cloud_confidence"] <= 1 for m in marks)
    assert all(m["latency_s"] > 0 for m in marks)
    assert [s.id for s in segments] == list(range(len(segments)))
    assert segments[-1].end > 30  # second-window times are offset back into the whole recording
    text = "".join(s.text for s in segments).lower()
    assert "iron" in text and "margaret" in text and "silly" in text
    json.dumps([s.to_dict() for s in segments])  # what --format json writes


def test_confident_clean_speech_stays_local(local, cloud):
    decisions = []
    policy = EscalationPolicy(CloudClient(cloud.endpoint, TOKEN), on_decision=decisions.append)
    segments = transcribe(local, read_speech(SHORT), policy)
    assert [d.status for d in decisions] == ["accepted"]
    assert all(s.source == "local" and s.extra["escalation"]["latency_s"] is None for s in segments)


def test_wrong_token_gives_401_and_the_local_transcript_stands(local, cloud):
    audio = read_speech(SHORT)
    local_only = transcribe(local, audio)
    policy = EscalationPolicy(CloudClient(cloud.endpoint, "wrong-token"), min_confidence=1.0,
                              min_benefit=-math.inf)
    routed = route(policy, local_only, audio)
    assert [s.text for s in routed] == [s.text for s in local_only]
    assert {s.source for s in routed} == {"local"}
    assert {s.extra["escalation"]["reason"] for s in routed} == {"http_401"}
    assert {s.extra["escalation"]["status"] for s in routed} == {"failed"}


def test_cli_transcribe_escalates_per_config(tmp_path, cloud):
    config = tmp_path / "edge.yaml"
    config.write_text(f"escalation:\n  endpoint: {cloud.endpoint}\n  api_key_env: TEST_CLOUD_KEY\n"
                      "  min_confidence: 1.0\n  min_benefit: -.inf\n  arbitrate: false\n  timeout_s: 60\n")
    wav = DATA / "speech-dev" / f"{SHORT}.wav"
    code = WRITE_HOOK + "import sys; from edge_asr.cli import main; sys.exit(main(sys.argv[1:]))"
    run = subprocess.run([sys.executable, "-c", code, "transcribe", str(wav), "--config", str(config),
                          "--format", "json", "--threads", "1"],
                         cwd=REPO, capture_output=True, text=True, env={**_env(), "TEST_CLOUD_KEY": TOKEN})
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout)
    assert out["segments"] and {s["source"] for s in out["segments"]} == {"cloud"}
    assert "printing" in out["text"].lower()
    assert "WRITE-OPEN" not in run.stderr  # the device side keeps audio in memory too


def test_cli_dictate_sends_unsure_finals_up_and_keeps_them_when_the_cloud_is_dead(tmp_path, cloud):
    wav = DATA / "speech-dev" / f"{SHORT}.wav"
    code = WRITE_HOOK + "import sys; from edge_asr.cli import main; sys.exit(main(sys.argv[1:]))"
    finals = {}
    for name, endpoint in (("up", cloud.endpoint), ("dead", f"http://127.0.0.1:{free_port()}/v1/audio/transcriptions")):
        config = tmp_path / f"{name}.yaml"
        config.write_text(f"escalation:\n  endpoint: {endpoint}\n  api_key_env: TEST_CLOUD_KEY\n"
                          "  min_confidence: 1.0\n  min_benefit: -.inf\n  arbitrate: false\n  timeout_s: 60\n")
        run = subprocess.run([sys.executable, "-c", code, "dictate", "--input", str(wav), "--config", str(config),
                              "--format", "json", "--threads", "1"],
                             cwd=REPO, capture_output=True, text=True, env={**_env(), "TEST_CLOUD_KEY": TOKEN})
        assert run.returncode == 0, run.stderr
        finals[name] = [e for e in map(json.loads, run.stdout.splitlines()) if e["event"] == "final"]
        assert finals[name] and "WRITE-OPEN" not in run.stderr
    up, dead = finals["up"], finals["dead"]
    assert {e["source"] for e in up} == {"cloud"} and {e["escalation"]["status"] for e in up} == {"escalated"}
    assert "printing" in " ".join(e["text"] for e in up).lower()
    # A dead cloud: every final keeps the device's text, marked, and dictation goes on.
    assert {e["source"] for e in dead} == {"local"} and {e["escalation"]["reason"] for e in dead} <= {
        "refused", "breaker_open"}
    assert "printing" in " ".join(e["text"] for e in dead).lower()


def test_cloud_verifies_wake_words(cloud):
    client = CloudClient(cloud.endpoint, TOKEN, timeout_s=30)
    alexa, _ = sf.read(DATA / "wakeword-dev" / "wwb_alexa_0.wav", dtype="float32")
    snowboy, _ = sf.read(DATA / "wakeword-dev" / "wwb_neg-snowboy_00927c6f-0043-43d2-8b39-6174019c584f.wav",
                         dtype="float32")
    assert cloud_confirms_wake(alexa, "Alexa", client)
    assert not cloud_confirms_wake(snowboy, "Alexa", client)
    dead = CloudClient(f"http://127.0.0.1:{free_port()}/v1/audio/transcriptions", TOKEN, timeout_s=1)
    assert not cloud_confirms_wake(alexa, "Alexa", dead)
    assert cloud_confirms_wake(alexa, "Alexa", dead, on_failure=True)


def test_real_server_checks_language_and_audio(cloud):
    wav = wav_bytes(read_speech(SHORT))
    r = post(cloud, {"file": ("a.wav", wav)}, {"language": "fr"})  # tiny.en knows only English
    assert r.status_code == 400 and r.json()["error"]["param"] == "language"
    r = post(cloud, {"file": ("a.wav", b"RIFF0000WAVEjunk" * 50)})
    assert r.status_code == 400 and "bad audio" in r.json()["error"]["message"]
    srt = post(cloud, {"file": ("a.wav", wav)}, {"response_format": "srt"})
    assert srt.status_code == 200 and srt.text.startswith("1\n00:00:0") and "printing" in srt.text.lower()


def test_server_side_never_wrote_audio(cloud):
    # Last in the module: stop the server that served every test above and read its write log.
    log = cloud.stop()
    assert not cloud.write_opens(), log
    assert cloud.audio_left_in_tmpdir() == []


def test_server_killed_mid_request_leaves_the_local_transcript(long_case, model_dir, tmp_path):
    server = start_server(["--model", str(model_dir), "--beam-size", "1", "--threads", "1"], tmp_path,
                          env={"EDGE_ASR_API_KEY": TOKEN})
    killed = threading.Event()

    def kill_when_busy():
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if httpx.get(server.url + "/health", timeout=1).json()["running"]:
                    server.kill()
                    killed.set()
                    return
            except httpx.TransportError:
                return
            time.sleep(0.005)

    try:
        audio, local_only = long_case
        killer = threading.Thread(target=kill_when_busy, daemon=True)
        killer.start()
        policy = EscalationPolicy(CloudClient(server.endpoint, TOKEN, timeout_s=60), min_confidence=1.0,
                                  min_benefit=-math.inf, max_share=1.0)
        routed = route(policy, local_only, audio)
        killer.join(5)
        assert killed.is_set()
        assert [s.text for s in routed] == [s.text for s in local_only]
        assert {s.source for s in routed} == {"local"}
        reasons = [s.extra["escalation"]["reason"] for s in routed]
        assert set(reasons) <= {"disconnected", "refused", "breaker_open"} and "breaker_open" in reasons
    finally:
        server.kill()


def _env():
    import os

    return {k: v for k, v in os.environ.items() if k != "EDGE_ASR_API_KEY"}
