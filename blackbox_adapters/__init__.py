"""Black boxes behind one small protocol: ``bb(x [n, H, W, C] in [0, 1]) -> probabilities [n, K]``.

Adapters: ``OnnxBlackBox`` (ONNX Runtime), ``JaxBlackBox`` (a JAX function, queryable on device),
``CallableBlackBox`` (any numpy function), ``OnnxWaveformBlackBox`` (an ONNX audio model taking
waveforms [n, S], for ``daxjax.explain_audio``), ``TorchBlackBox`` (a PyTorch module; torch is
imported only when one is built), ``HttpBlackBox`` (a model behind a JSON endpoint).
``as_blackbox`` accepts any of them or a plain callable.
``efficientnet_lite0()``: the bundled real ImageNet classifier (224x224 RGB, 1000 classes named by
``imagenet_class_names()``), needing only onnxruntime.
"""

from pathlib import Path

from .base import BlackBox, BlackBoxError, check_probabilities, softmax
from .callable import CallableBlackBox, as_blackbox
from .efficientnet import EfficientNetLite0, efficientnet_lite0, imagenet_class_names, resize_images
from .http import HttpBlackBox
from .jax_bb import JaxBlackBox
from .models import COLOUR_CLASSES
from .onnx import OnnxBlackBox
from .randomize import randomized_onnx
from .torch_bb import TorchBlackBox
from .waveform import OnnxWaveformBlackBox

__all__ = ["COLOUR_CLASSES", "BlackBox", "BlackBoxError", "CallableBlackBox", "EfficientNetLite0", "HttpBlackBox",
           "JaxBlackBox", "OnnxBlackBox", "OnnxWaveformBlackBox", "TorchBlackBox", "as_blackbox", "bundled_model_path",
           "check_probabilities", "efficientnet_lite0", "imagenet_class_names", "randomized_onnx", "resize_images",
           "softmax"]

_MODELS_DIR = Path(__file__).resolve().parent / "models"


def bundled_model_path(name: str) -> Path:
    """Path of a model file shipped in ``blackbox_adapters/models/`` (".onnx" may be left off).

    Bundled: "colour_nchw.onnx" (NCHW, dynamic batch and size, logits) and "colour_nhwc_b8.onnx"
    (NHWC, fixed batch 8 and 32x32x3, probabilities); classes ``COLOUR_CLASSES``.
    """
    for candidate in (_MODELS_DIR / name, _MODELS_DIR / f"{name}.onnx"):
        if candidate.is_file():
            return candidate
    available = sorted(p.name for p in _MODELS_DIR.glob("*.onnx"))
    raise FileNotFoundError(f"no bundled model {name!r} in {_MODELS_DIR}; available: {available}")


__all__ = [
    "BlackBox",
    "BlackBoxError",
    "COLOUR_CLASSES",
    "CallableBlackBox",
    "EfficientNetLite0",
    "HttpBlackBox",
    "JaxBlackBox",
    "OnnxBlackBox",
    "OnnxWaveformBlackBox",
    "TorchBlackBox",
    "as_blackbox",
    "bundled_model_path",
    "check_probabilities",
    "efficientnet_lite0",
    "imagenet_class_names",
    "randomized_onnx",
    "resize_images",
    "softmax",
]
