"""Unsure commands go to the escalation endpoint: the real `edge-asr serve` (default model) on 127.0.0.1 hears
them again, and a whole command it hears is taken; otherwise, and when the cloud is dead, the device's answer
stands; a command the device is sure of never leaves it. Through the CLI, on real "alexa" clips followed by TTS
commands with noise, and the arbitration on its own with real audio."""

import json

import numpy as np
import pytest
from escalation_helpers import TOKEN, free_port
from wakeword_helpers import clips, concat, edge_asr, tts, wake_and_command

from edge_asr.audio import load_audio
from edge_asr.cloud import CloudClient
from wakeword.capture import CapturedCommand
from wakeword.commands import plan_listen
from wakeword.config import CommandConfig, ListenSection
from wakeword.listener import Listener
from wakeword.verify import Heard, cloud_transcriber

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
        "listen": {"commands": COMMANDS, **({} if escalate else {"escalate": False})},  # on by default
        "escalation": {"endpoint": endpoint, "timeout_s": 60, "retries": 0}}))
    done = edge_asr("listen", "--model", model_dir, "--config", config, "--input", wav)
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    out = [json.loads(line) for line in done.stdout.decode().splitlines()]
    return [e for e in out if e["event"] in ("command", "no_match")]


def test_only_unsure_commands_go_up_and_a_cloud_without_a_whole_command_leaves_the_device_answer(
        tmp_path, three_requests, model_dir, cloud, monkeypatch):
    monkeypatch.setenv("EDGE_ASR_API_KEY", TOKEN)
    unsure, whole, unrelated = listen(tmp_path, three_requests, model_dir, cloud.endpoint)
    # The cloud hears "turn on the kitchen lights" too: no more whole than the device's, so the device's stands.
    assert unsure["event"] == "command" and unsure["slots"] == {"state": "on", "room": "kitchen"}, unsure
    assert unsure["source"] == "local" and unsure["escalation"]["status"] == "rejected"
    assert unsure["escalation"]["reason"] == "no_whole_command" and unsure["escalation"]["latency_s"] > 0
    assert "kitchen" in unsure["escalation"]["cloud_text"].lower()
    assert whole["event"] == "command" and whole["slots"] == {"minutes": 5}
    assert whole["source"] == "local" and "escalation" not in whole
    assert unrelated["event"] == "no_match" and unrelated["source"] == "local", unrelated
    assert "france" in unrelated["escalation"]["cloud_text"].lower()


def test_a_whole_command_the_cloud_hears_replaces_the_device_answer(tmp_path, model_dir, cloud):
    """The arbitration alone: a device transcript that matches only loosely (a mishearing written out here)
    against the real server hearing the spoken command whole: the cloud's command is taken, slots and all."""
    section = ListenSection(commands=[CommandConfig(c["name"], c["phrases"]) for c in COMMANDS])
    listener = Listener(plan_listen(section, "test"), lambda audio, prompt=None: Heard("", 0.0),
                        escalate=cloud_transcriber(CloudClient(cloud.endpoint, TOKEN, timeout_s=60)))
    audio = load_audio(tts("turn off the bedroom lights now", tmp_path / "cmd.wav"))
    captured = CapturedCommand(np.concatenate([np.zeros(8000, np.float32), audio]), "silence", 2.0, 2.5,
                               command_start=8000)
    heard = Heard("Turn of the bed lights.", 0.31)
    local = listener.grammar.match("Turn of the bed lights.")
    took, text, match, mark = listener._escalated(captured, heard, "Turn of the bed lights.", local)
    assert mark["status"] == "escalated" and mark["local_text"] == "Turn of the bed lights."
    assert match.command.name == "lights" and match.slots == {"state": "off", "room": "bedroom"}
    assert match.score >= 0.9 and "bedroom" in took.text.lower() and text == took.text


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
