"""The Raspberry Pi kit: its config validates, its scripts parse, its units name real verbs and files."""

import configparser
import re
import subprocess

from conftest import REPO

from edge_asr.config import load_config

KIT = REPO / "examples" / "raspberry_pi"


def test_pi_config_is_valid():
    from wakeword.commands import plan_listen

    config = load_config(KIT / "config.yaml")
    assert config.dictate.check() is config.dictate
    assert config.transcribe.model == "/var/lib/edge-asr/models/default"
    plan = plan_listen(config.listen, str(KIT / "config.yaml"))  # wake words and command phrases compile
    assert plan.wakewords and plan.grammar.commands


def test_install_script_parses_and_never_installs_torch():
    subprocess.run(["bash", "-n", str(KIT / "install.sh")], check=True)
    text = (KIT / "install.sh").read_text()
    installs = [line for line in text.splitlines() if line.lstrip().startswith("$PIP")]
    extras = re.compile(r"\[(build|dev|server|bench)")
    assert installs and not any("torch" in line or extras.search(line) for line in installs)
    assert "libportaudio2" in text and "libsndfile1" in text


def test_units_run_edge_asr_with_the_kit_config():
    for verb in ("listen", "dictate"):
        unit = configparser.ConfigParser(interpolation=None, strict=False)
        unit.read(KIT / f"edge-asr-{verb}.service")
        start = unit["Service"]["ExecStart"]
        assert f"edge-asr {verb} --config /etc/edge-asr/config.yaml" in start
        assert unit["Service"]["User"] == "edge-asr" and unit["Install"]["WantedBy"] == "multi-user.target"
