"""The bundled EfficientNet-Lite0: real photos get their ImageNet classes, names come from the class file."""

from __future__ import annotations

import json

import numpy as np
import pytest
from skimage import data

from blackbox_adapters import (
    BlackBoxError,
    OnnxBlackBox,
    bundled_model_path,
    efficientnet_lite0,
    imagenet_class_names,
    resize_images,
)
from blackbox_adapters.efficientnet import CLASSES_FILE

# ImageNet-1k indices: 281 tabby, 282 tiger cat, 283 Persian, 284 Siamese, 285 Egyptian cat.
DOMESTIC_CATS = range(281, 286)
ESPRESSO = 967

pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def model():
    return efficientnet_lite0(threads=1)


@pytest.fixture(scope="module")
def photos() -> np.ndarray:
    """chelsea (a cat) and coffee (an espresso cup) resized to float32 [2, 224, 224, 3] in [0, 1]."""
    return np.concatenate([resize_images(data.chelsea()[None]), resize_images(data.coffee()[None])])


def test_photos_get_their_imagenet_classes(model, photos):
    probs = model(photos)
    assert probs.shape == (2, 1000) and probs.dtype == np.float32
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-4)
    cat, coffee = probs.argmax(axis=1)
    assert cat in DOMESTIC_CATS, f"chelsea classified as {cat} {model.class_names[cat]!r}"
    assert coffee == ESPRESSO, f"coffee classified as {coffee} {model.class_names[coffee]!r}"
    names_in_file = json.loads(CLASSES_FILE.read_text())["names"]
    assert model.class_names == tuple(names_in_file)
    assert model.class_names[coffee] == "espresso"


def test_answers_do_not_depend_on_batching(model, photos):
    """Row i depends only on image i: the chunk size and the batch composition change nothing."""
    batch = np.concatenate([photos, photos[::-1]])
    small_batches = efficientnet_lite0(threads=1, batch_size=3)
    together, chunked = model(batch), small_batches(batch)
    alone = np.concatenate([model(photos[i : i + 1]) for i in range(2)])
    np.testing.assert_allclose(together, chunked, atol=1e-6)
    np.testing.assert_allclose(together[:2], alone, atol=1e-6)
    np.testing.assert_allclose(together[2:], alone[::-1], atol=1e-6)


def test_class_names_file():
    names = imagenet_class_names()
    assert len(names) == 1000 and all(isinstance(n, str) and n for n in names)
    assert names[0] == "tench" and names[ESPRESSO] == "espresso"


def test_wrong_size_is_named(model):
    with pytest.raises(BlackBoxError, match=r"\(1, 100, 120, 3\).*resize_images"):
        model(np.zeros((1, 100, 120, 3), np.float32))
    with pytest.raises(BlackBoxError, match=r"\(1, 224, 224, 1\)"):
        model(np.zeros((1, 224, 224, 1), np.float32))


def test_plain_onnx_black_box_needs_no_normalisation(model, photos):
    """The normalisation is in the graph: a plain OnnxBlackBox on the file agrees with the loader."""
    plain = OnnxBlackBox(bundled_model_path("efficientnet_lite0"), layout="NCHW", output="logits")
    assert plain.num_classes == 1000
    np.testing.assert_allclose(plain(photos), model(photos), atol=1e-6)


def test_resize_images_checks_and_scales():
    uint8 = np.full((2, 50, 60, 3), 255, np.uint8)
    resized = resize_images(uint8, side=32)
    assert resized.shape == (2, 32, 32, 3) and resized.dtype == np.float32
    np.testing.assert_allclose(resized, 1.0, atol=1e-6)
    with pytest.raises(BlackBoxError, match=r"floats in \[0, 1\]; got float32 in \[255"):
        resize_images(uint8.astype(np.float32))
    with pytest.raises(BlackBoxError, match=r"shape \(50, 60, 3\)"):
        resize_images(uint8[0])
