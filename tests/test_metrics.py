"""IoU and binarisation (daxjax.metrics)."""

import numpy as np
import pytest

from daxjax.metrics import binarize, iou


def _masks() -> np.ndarray:
    """Two 16x16 ground-truth masks: a square and a bar."""
    masks = np.zeros((2, 16, 16), bool)
    masks[0, 4:8, 4:8] = True
    masks[1, :, 10:] = True
    return masks


def test_exact_mask_scores_one_and_complement_zero():
    masks = _masks()
    np.testing.assert_array_equal(iou(masks.astype(np.float32), masks), [1.0, 1.0])
    np.testing.assert_array_equal(iou((~masks).astype(np.float32), masks), [0.0, 0.0])
    assert iou(masks, masks).dtype == np.float32


def test_partial_overlap():
    masks = _masks()
    maps = np.zeros((2, 16, 16), np.float32)
    maps[0, 4:8, 6:10] = 1.0  # half of the square, plus 8 pixels outside: 8 / 24
    maps[1] = masks[1]
    np.testing.assert_allclose(iou(maps, masks), [8 / 24, 1.0], rtol=1e-6)


def test_constant_map_scores_zero_not_nan():
    masks = _masks()
    maps = np.stack([np.full((16, 16), 0.3, np.float32), masks[1].astype(np.float32)])
    result = iou(maps, masks)
    np.testing.assert_array_equal(result, [0.0, 1.0])
    assert not binarize(maps)[0].any()


def test_fixed_threshold():
    masks = _masks()
    maps = np.where(masks, 0.6, 0.4).astype(np.float32)
    maps[:, 0, 0] = 0.55  # one extra pixel above 0.5
    np.testing.assert_allclose(iou(maps, masks, threshold=0.5), [16 / 17, 96 / 97], rtol=1e-6)
    np.testing.assert_array_equal(binarize(maps, threshold=0.7), False)
    # A constant map is compared like any other under a fixed threshold.
    constant = np.full((2, 16, 16), 0.8, np.float32)
    np.testing.assert_allclose(iou(constant, masks, threshold=0.5), masks.mean(axis=(1, 2)))


def test_k_moves_the_statistical_threshold():
    ramp = np.tile(np.linspace(0, 1, 16, dtype=np.float32), (1, 16, 1))
    assert binarize(ramp, k=0.0).sum() > binarize(ramp, k=1.0).sum() > 0


def test_shape_mismatch_names_both_shapes():
    with pytest.raises(ValueError, match=r"\(2, 16, 16\).*\(2, 8, 8\)"):
        iou(np.zeros((2, 16, 16)), np.ones((2, 8, 8), bool))


def test_empty_mask_names_index():
    masks = _masks()
    masks[1] = False
    with pytest.raises(ValueError, match=r"\[1\]"):
        iou(np.random.default_rng(0).random((2, 16, 16)), masks)


def test_nan_map_names_index():
    maps = np.random.default_rng(0).random((3, 16, 16))
    maps[2, 3, 3] = np.nan
    with pytest.raises(ValueError, match=r"\[2\].*NaN"):
        iou(maps, np.ones((3, 16, 16), bool))
