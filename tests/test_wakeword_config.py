"""A malformed commands.yaml fails before any model loads: one line naming the key, exit status 2."""

import pytest
from wakeword_helpers import edge_asr

from edge_asr.config import Config, from_dict
from wakeword.commands import plan_listen
from wakeword.config import ListenSection

GOOD = """
listen:
  wakewords:
    - model: alexa
      threshold: 0.3
  capture: {trailing_silence_s: 0.5}
  commands:
    - name: lights
      phrases: ["turn {state:on|off} the {room} lights"]
      action: {run: [/usr/bin/true, "{room}"], env: {STATE: "{state}"}}
    - name: timer
      phrases: ["set a timer for {minutes:int} minutes"]
      action: {post: "http://127.0.0.1:8123/timer", json: {minutes: "{minutes}"}}
    - name: weather
      phrases: ["what's the weather"]
"""


def test_good_config_builds_a_plan():
    import yaml

    config = from_dict(Config, yaml.safe_load(GOOD), "commands.yaml")
    plan = plan_listen(config.listen, "commands.yaml")
    assert [w.spec.name for w in plan.wakewords] == ["alexa"] and plan.wakewords[0].phrases == ["alexa"]
    assert [c.action.kind for c in plan.grammar.commands] == ["run", "post", "emit"]
    assert plan_listen(ListenSection(), "defaults").grammar.commands == []
    # Bare names are the models with the default thresholds.
    short = from_dict(Config, yaml.safe_load("listen:\n  wakewords: [alexa, hey_jarvis]\n"), "commands.yaml")
    plan = plan_listen(short.listen, "commands.yaml")
    assert [(w.spec.name, w.spec.threshold) for w in plan.wakewords] == [("alexa", 0.2), ("hey_jarvis", 0.2)]


@pytest.mark.parametrize("broken, key", [
    ("listen:\n  commands:\n    - name: x\n      phrases: [hi]\n      action: {runn: [ls]}\n",
     "listen.commands[0].action.runn"),
    ("listen:\n  wakewords:\n    - model: alexa\n      threshold: high\n", "listen.wakewords[0].threshold"),
    ("listen:\n  wakewords:\n    - model: ok_google\n", "listen.wakewords[0].model"),
    ("listen:\n  commands:\n    - name: x\n      phrases: ['turn {state:on} it']\n",
     "listen.commands[0].phrases[0]"),
    ("listen:\n  commands:\n    - name: x\n      phrases: ['turn on {room}']\n"
     "      action: {run: [ls, '{rom}']}\n", "listen.commands[0].action.run"),
    ("listen:\n  commands:\n    - phrases: [hi]\n", "listen.commands[0].name"),
    ("listen:\n  capture: {max_command_s: -1}\n", "listen.capture.max_command_s"),
    ("listen:\n  verifier: cloudy\n", "listen.verifier"),
    ("listen:\n  rescore_max_drop: -1\n", "listen.rescore_max_drop"),
    ("listen:\n  rescore_max_drop: lots\n", "listen.rescore_max_drop"),
    ("listen:\n  beam_size: 0\n", "listen.beam_size"),
])
def test_malformed_config_names_the_key(tmp_path, broken, key):
    config = tmp_path / "commands.yaml"
    config.write_text(broken)
    done = edge_asr("listen", "--config", config, "--input", "-", stdin=b"")
    lines = done.stderr.decode().strip().splitlines()
    assert done.returncode == 2, done.stderr.decode()
    assert len(lines) == 1 and lines[0].startswith("edge-asr: error: ") and "Traceback" not in lines[0]
    assert f"'{key}'" in lines[0] and "commands.yaml" in lines[0]
    assert done.stdout == b""
