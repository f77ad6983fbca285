#!/usr/bin/env bash
# Installs what the audio benchmark needs beyond the project itself. Idempotent.
#   - Debian's sonic-pi-samples (CC0 sounds), espeak-ng (speech synthesis) and
#     pocketsphinx-testdata (recorded speech); needs root or sudo
#   - soundfile (reads the samples' FLAC) and jax2onnx (only to regenerate sound_cnn.onnx)
# Usage: benchmarks/datasets/audio/setup.sh [python]   (default: .venv/bin/python if present, else python3)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
PYTHON="${1:-}"
if [ -z "$PYTHON" ]; then
    if [ -x "$ROOT/.venv/bin/python" ]; then PYTHON="$ROOT/.venv/bin/python"; else PYTHON=python3; fi
fi

missing=()
for package in sonic-pi-samples espeak-ng pocketsphinx-testdata; do
    if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$package")
    fi
done
if [ "${#missing[@]}" -gt 0 ]; then
    SUDO=""
    if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
    $SUDO apt-get update
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y "${missing[@]}"
else
    echo "sonic-pi-samples, espeak-ng, pocketsphinx-testdata: already installed"
fi

"$PYTHON" -c "import soundfile" 2>/dev/null || "$PYTHON" -m pip install "soundfile>=0.12"
"$PYTHON" -c "import jax2onnx" 2>/dev/null || "$PYTHON" -m pip install "jax2onnx==0.17.1"
"$PYTHON" -c "import onnxruntime, onnx" 2>/dev/null || "$PYTHON" -m pip install -e "$ROOT[onnx]"
echo "audio benchmark set-up done"
