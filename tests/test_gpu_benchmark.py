"""The GPU throughput part on the CPU: its three EfficientNet-Lite0 black boxes agree, and one
adapter's process runs its measurements through the code a GPU run uses."""

from __future__ import annotations

import os
import sys
import time

import numpy as np

# `benchmarks` is not an installed package: import it from the repository root.
_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from benchmarks.throughput import gpu, lite0  # noqa: E402
from benchmarks.throughput.common import photos  # noqa: E402


def test_the_three_lite0_black_boxes_agree():
    x = photos(3)
    onnx = lite0.onnx_lite0(on_gpu=False)
    torch_bb = lite0.torch_lite0("cpu")
    jax_bb = lite0.jax_lite0(torch_bb.module)
    reference = onnx(x)
    assert reference.max(axis=1).min() > 0.2  # confident answers: a wrong network would not match them
    np.testing.assert_allclose(torch_bb(x), reference, atol=1e-4)
    np.testing.assert_allclose(jax_bb(x), reference, atol=1e-4)


def test_an_adapter_process_measures_rates_methods_and_paths():
    spec = {"adapter": "onnx", "images": 1, "num_samples": 32, "image_batch": 16, "call_sizes": [4],
            "rate_queries": 8, "path_images": 1, "path_runs": ["dlpack", "host"], "loop_images": 1,
            "loop_adapter": "none", "methods": {"onnx": ["rise"]}, "deadline": time.time() + 300}
    result = gpu.measure(spec)
    assert result["platform"] == "cpu" and result["rates"]["4"] > 0
    assert result["methods"]["rise"]["path"] == "host"  # the CPU default for ONNX Runtime
    assert set(result["paths"]) == {"dlpack", "host"} and result["skipped"] == {}
    assert result["paths_max_map_difference"] < 1e-5
