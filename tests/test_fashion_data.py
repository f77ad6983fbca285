"""Fashion-MNIST scenes (benchmarks/datasets/fashion) and the committed ONNX black box trained on them."""

import sys
from pathlib import Path

import numpy as np
import pytest

# `benchmarks` is not an installed package: import it from the repository root, also under a
# bare `pytest` (which puts only tests/ on the path).
_ROOT = str(Path(__file__).resolve().parents[1])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from benchmarks.datasets.fashion import data  # noqa: E402

if not data.dataset_available():
    pytest.skip(
        f"Fashion-MNIST is not installed in {data.data_dir()}: "
        "apt-get install dataset-fashion-mnist (or run benchmarks/datasets/fashion/setup.sh)",
        allow_module_level=True,
    )

MODEL = Path(data.__file__).with_name("fashion_cnn.onnx")


def test_load_fashion_shapes():
    images, labels = data.load_fashion("test")
    assert images.shape == (10000, 28, 28) and images.dtype == np.uint8
    assert labels.shape == (10000,) and set(np.unique(labels)) == set(range(10))


def test_missing_files_name_the_apt_package(monkeypatch, tmp_path):
    monkeypatch.setenv(data.ENV_DIR, str(tmp_path))
    assert not data.dataset_available()
    with pytest.raises(FileNotFoundError, match="apt-get install -y dataset-fashion-mnist"):
        data._read_idx("t10k-labels-idx1-ubyte")


def test_scenes_are_deterministic():
    a = data.make_scenes(6, seed=3, split="test")
    b = data.make_scenes(6, seed=3, split="test")
    for field in ("images", "masks", "labels", "distractor_masks", "distractor_labels"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
    prefix = data.make_scenes(3, seed=3, split="test")
    np.testing.assert_array_equal(prefix.images, a.images[:3])
    other = data.make_scenes(6, seed=4, split="test")
    assert not np.array_equal(other.images, a.images)
    train = data.make_scenes(6, seed=3, split="train")
    assert not np.array_equal(train.images, a.images)


def test_scene_types_ranges_and_masks():
    s = data.make_scenes(40, seed=5, split="test")
    assert s.images.shape == (40, 64, 64, 3) and s.images.dtype == np.float32
    assert s.images.min() >= 0.0 and s.images.max() <= 1.0
    assert s.masks.shape == s.distractor_masks.shape == (40, 64, 64)
    assert s.masks.dtype == s.distractor_masks.dtype == bool
    assert np.all((s.labels >= 0) & (s.labels < len(data.CLASS_NAMES)))
    target_area = s.masks.sum(axis=(1, 2))
    # 28-40 px objects: never empty, never (close to) the whole image.
    assert target_area.min() >= 60 and target_area.max() < 0.5 * 64 * 64
    has = s.distractor_labels >= 0
    assert 0 < has.sum() < 40  # distractor_prob=0.5
    assert np.all(s.distractor_masks[~has].sum(axis=(1, 2)) == 0)
    assert np.all(s.distractor_masks[has].sum(axis=(1, 2)) > 0)
    # The distractor is the small object: smaller longest extent (its pixel area may not be smaller:
    # a thin trouser next to a bag).
    for target, distractor in zip(s.masks[has], s.distractor_masks[has]):
        assert _extent(distractor) < _extent(target)


def _extent(mask):
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    return max(rows[-1] - rows[0], cols[-1] - cols[0]) + 1


def test_distractor_is_another_class_and_never_touches_the_target():
    from scipy import ndimage

    s = data.make_scenes(60, seed=6, split="test", distractor_prob=1.0)
    has = s.distractor_labels >= 0
    assert has.mean() > 0.9  # placement only gives up when there is no free room
    assert np.all(s.distractor_labels[has] != s.labels[has])
    assert not np.any(s.masks & s.distractor_masks)
    near = np.stack([ndimage.binary_dilation(m, np.ones((3, 3), bool), iterations=data.SEPARATION)
                     for m in s.masks])
    assert not np.any(near & s.distractor_masks)


def test_no_distractors_when_prob_is_zero():
    s = data.make_scenes(10, seed=7, split="test", distractor_prob=0.0)
    assert np.all(s.distractor_labels == -1) and not s.distractor_masks.any()


def test_committed_onnx_model_classifies_fresh_test_scenes():
    pytest.importorskip("onnxruntime")
    from blackbox_adapters import OnnxBlackBox

    bb = OnnxBlackBox(MODEL, layout="NHWC", output="probs", intra_op_threads=2)
    assert bb.num_classes == len(data.CLASS_NAMES)
    # Seed 99 is neither the training nor the evaluation seed of train.py.
    s = data.make_scenes(200, seed=99, split="test")
    probs = bb(s.images)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    accuracy = float(np.mean(probs.argmax(axis=1) == s.labels))
    assert accuracy >= 0.85, accuracy
