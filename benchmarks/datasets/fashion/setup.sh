#!/usr/bin/env bash
# Installs what the Fashion-MNIST quality benchmark needs beyond the project itself.
# Idempotent: anything already present is left alone.
#   - Debian's dataset-fashion-mnist (the object images; needs root or sudo)
#   - jax2onnx (only to regenerate fashion_cnn.onnx with `python -m benchmarks.datasets.fashion.train`)
# Usage: benchmarks/datasets/fashion/setup.sh [python]   (default: .venv/bin/python if present, else python3)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
PYTHON="${1:-}"
if [ -z "$PYTHON" ]; then
    if [ -x "$ROOT/.venv/bin/python" ]; then PYTHON="$ROOT/.venv/bin/python"; else PYTHON=python3; fi
fi

if dpkg-query -W -f='${Status}' dataset-fashion-mnist 2>/dev/null | grep -q "install ok installed"; then
    echo "dataset-fashion-mnist: already installed"
else
    SUDO=""
    if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
    $SUDO apt-get update
    $SUDO apt-get install -y dataset-fashion-mnist
fi

if "$PYTHON" -c "import jax2onnx" 2>/dev/null; then
    echo "jax2onnx: already installed"
else
    "$PYTHON" -m pip install "jax2onnx==0.17.1"
fi

# The benchmark queries the model with ONNX Runtime (the project's [onnx] extra).
if ! "$PYTHON" -c "import onnxruntime, onnx" 2>/dev/null; then
    "$PYTHON" -m pip install -e "$ROOT[onnx]"
fi
echo "fashion benchmark set-up done"
