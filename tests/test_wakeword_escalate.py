"""Unsure commands go to the escalation endpoint: the real `edge-asr serve` (default model) on 127.0.0.1 hears
them again and decides; a command the device is sure of never leaves it, and a dead cloud leaves the device's
answer standing. Through the CLI, on real "alexa" clips followed by TTS commands with noise."""

import json

import pytest
from escalation_helpers import TOKEN, free_port
from wakeword_helpers import clips, concat, edge_asr, wake_and_command

# "now" makes the spoken "turn on the kitchen lights" match with more than a slip: the device is unsure.
COMMANDS = [
    {"name": "lights", "phrases": ["turn {state:on|off} the {room:kitchen|bedroom} lights now"]},
    {"name": "timer", "phrases": ["set a timer for {minutes:int} minutes"]},
]


@pytest.fixture(scope="module")
def three_requests(tmp_path_factory):
    """An unsure command, a whole one and an unrelated request, each after its own "alexa"."""
    tmp = tmp_path_factory.mktemp("escalate")
    alexas = clips("alexa")
    parts = [wake_and_command(tmp, text, f"u{i}", alexa=alexas[i + 1])
             for i, text in enumerate(["turn on the kitchen lights", "set a timer for five minutes",
                                       "what is the capital of france"])]
    return concat(tmp / "three.wav", *parts)


def listen(tmp_path, wav, model_dir, endpoint: str, escalate: bool = True) -> list[dict]:
    config = tmp_path / "commands.yaml"
    config.write_text(json.dumps({  # JSON is YAML
        "listen": {"escalate": escalate, "commands": COMMANDS},
        "escalation": {"endpoint": endpoint, "timeout_s": 60, "retries": 0}}))
    done = edge_asr("listen", "--model", model_dir, "--config", config, "--input", wav)
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    out = [json.loads(line) for line in done.stdout.decode().splitlines()]
    return [e for e in out if e["event"] in ("command", "no_match")]


def test_the_cloud_decides_unsure_commands_only(tmp_path, three_requests, model_dir, cloud, monkeypatch):
    monkeypatch.setenv("EDGE_ASR_API_KEY", TOKEN)
    unsure, whole, unrelated = listen(tmp_path, three_requests, model_dir, cloud.endpoint)
    assert unsure["event"] == "command" and unsure["slots"] == {"state": "on", "room": "kitchen"}, unsure
    assert unsure["source"] == "cloud" and unsure["escalation"]["status"] == "escalated"
    assert unsure["escalation"]["local_command"] == "lights" and unsure["escalation"]["latency_s"] > 0
    assert whole["event"] == "command" and whole["slots"] == {"minutes": 5}
    assert whole["source"] == "local" and "escalation" not in whole
    assert unrelated["event"] == "no_match" and unrelated["source"] == "cloud", unrelated
    assert "france" in unrelated["text"].lower()


def test_a_dead_cloud_leaves_the_device_answer(tmp_path, three_requests, model_dir, monkeypatch):
    monkeypatch.setenv("EDGE_ASR_API_KEY", TOKEN)
    dead = f"http://127.0.0.1:{free_port()}/v1/audio/transcriptions"
    unsure, whole, unrelated = listen(tmp_path, three_requests, model_dir, dead)
    assert unsure["event"] == "command" and unsure["slots"] == {"state": "on", "room": "kitchen"}
    assert unsure["source"] == "local" and unsure["escalation"]["status"] == "failed"
    assert unsure["escalation"]["reason"] == "refused"
    assert whole["source"] == "local" and whole["slots"] == {"minutes": 5}
    # The breaker opened at the first failure: the next unsure request does not wait on the dead cloud.
    assert unrelated["event"] == "no_match" and unrelated["escalation"]["reason"] == "breaker_open"
    assert unrelated["escalation"]["latency_s"] < 0.05

    kept = listen(tmp_path, three_requests, model_dir, dead, escalate=False)
    assert [e["event"] for e in kept] == ["command", "command", "no_match"]
    assert all("source" not in e and "escalation" not in e for e in kept)
