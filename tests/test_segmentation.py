"""Segmentation (daxjax.segmentation) and baseline fills (daxjax.fills)."""

import warnings

import numpy as np
import pytest
from skimage import data, transform

import daxjax
from daxjax.fills import fill_images
from daxjax.segmentation import (
    SEGMENT_BUCKET,
    Segmentation,
    check_segmentation_cost,
    grid_segments,
    segment_images,
)
from planted import red_and_distractor_scene, red_fraction_box

METHODS = ["quickshift", "slic", "felzenszwalb", "grid"]


def _resized(image: np.ndarray, size: int) -> np.ndarray:
    """A bundled photo as float32 [size, size, C] in [0, 1]."""
    return transform.resize(image, (size, size), anti_aliasing=True).astype(np.float32)


@pytest.fixture(scope="module")
def astronaut64() -> np.ndarray:
    return _resized(data.astronaut(), 64)


@pytest.fixture(scope="module")
def camera64() -> np.ndarray:
    return _resized(data.camera(), 64)[..., None]


def _assert_well_formed(seg: Segmentation, batch: int, height: int, width: int) -> None:
    assert seg.segments.shape == (batch, height, width)
    assert seg.segments.dtype == np.int32 and seg.num_segments.dtype == np.int32
    for b in range(batch):
        ids = np.unique(seg.segments[b])
        np.testing.assert_array_equal(ids, np.arange(seg.num_segments[b]))
    assert seg.max_segments % SEGMENT_BUCKET == 0
    assert seg.num_segments.max() <= seg.max_segments < seg.num_segments.max() + SEGMENT_BUCKET


@pytest.mark.parametrize("method", METHODS)
def test_each_method_on_colour_and_grayscale(method, astronaut64, camera64):
    for image in (astronaut64, camera64):
        seg = segment_images(image[None], method)
        _assert_well_formed(seg, 1, 64, 64)
        assert seg.num_segments[0] > 1
        assert not seg.fell_back.any()


def test_uint8_and_unit_float_agree(astronaut64):
    as_uint8 = np.round(astronaut64 * 255).astype(np.uint8)
    from_float = segment_images(astronaut64[None], "slic").segments
    from_uint8 = segment_images(as_uint8[None], "slic").segments
    assert np.mean(from_float == from_uint8) > 0.95


def test_quickshift_lime_settings_segment_count():
    # Measured: chelsea 224x224 in [0, 1] -> 34 segments (uint8: 36); DESIGN.md expects 31-50.
    chelsea = _resized(data.chelsea(), 224)
    seg = segment_images(chelsea[None], "quickshift")
    assert 20 <= seg.num_segments[0] <= 80
    _assert_well_formed(seg, 1, 224, 224)


def test_quickshift_scales_with_image_size():
    # LIME's settings unscaled give 3 segments on chelsea at 64 px; scaled by 64/224 about as
    # many as at 224 px. Explicit options still win.
    counts = {side: segment_images(_resized(data.chelsea(), side)[None], "quickshift").num_segments[0]
              for side in (64, 224)}
    assert 0.5 * counts[224] <= counts[64] <= 2 * counts[224]
    unscaled = segment_images(_resized(data.chelsea(), 64)[None], "quickshift",
                              options=dict(kernel_size=4, max_dist=200))
    assert unscaled.num_segments[0] < 0.3 * counts[64]


def test_rejects_0_to_255_floats_and_bad_shapes(astronaut64):
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        segment_images(astronaut64[None] * 255, "quickshift")
    # The segmenters check images with inputs.as_float_images (the one image validator), so the
    # message is explain()'s (test_bad_input.py).
    with pytest.raises(ValueError, match=r"1 or 3 channels.*got 2"):
        segment_images(np.zeros((1, 8, 8, 2), np.float32), "grid")


def test_unknown_method_lists_valid_ones(astronaut64):
    with pytest.raises(ValueError, match="quickshift.*slic.*felzenszwalb.*grid"):
        segment_images(astronaut64[None], "watershed")


def test_options_override_defaults(astronaut64):
    coarse = segment_images(astronaut64[None], "slic", options={"n_segments": 10}).num_segments[0]
    fine = segment_images(astronaut64[None], "slic", options={"n_segments": 100}).num_segments[0]
    assert coarse < fine
    assert segment_images(astronaut64[None], "grid", options={"cells": 3}).num_segments[0] == 9


def test_constant_image_falls_back_to_grid_with_one_warning(astronaut64):
    # felzenszwalb leaves a constant image whole (quickshift's spatial term still splits it: 14 segments).
    batch = np.stack([astronaut64, np.full_like(astronaut64, 0.5), astronaut64, np.zeros_like(astronaut64)])
    with pytest.warns(UserWarning, match=r"felzenszwalb.*\[1, 3\]") as record:
        seg = segment_images(batch, "felzenszwalb", grid_cells=4)
    assert len(record) == 1
    np.testing.assert_array_equal(seg.fell_back, [False, True, False, True])
    np.testing.assert_array_equal(seg.segments[1], grid_segments(64, 64, 4))
    assert seg.num_segments[1] == 16
    _assert_well_formed(seg, 4, 64, 64)


@pytest.mark.parametrize("method", ["quickshift", "felzenszwalb"])
def test_segments_do_not_depend_on_batch(method, astronaut64, camera64):
    alone = segment_images(astronaut64[None], method, workers=1).segments[0]
    other = np.repeat(camera64, 3, axis=-1)
    batch = np.stack([other, astronaut64, other[::-1], astronaut64[:, ::-1]])
    together = segment_images(batch, method, workers=2).segments[1]
    np.testing.assert_array_equal(alone, together)


def test_grid_segments_any_size():
    grid = grid_segments(7, 10, 3)
    np.testing.assert_array_equal(np.unique(grid), np.arange(9))
    np.testing.assert_array_equal(grid[:, 0], [0, 0, 0, 3, 3, 6, 6])
    np.testing.assert_array_equal(grid[0], [0, 0, 0, 0, 1, 1, 1, 2, 2, 2])
    # Fewer pixels than cells: empty cells are dropped, ids stay contiguous.
    np.testing.assert_array_equal(grid_segments(2, 2, 8), [[0, 1], [2, 3]])


def test_bucket_for_many_segments():
    seg = segment_images(np.zeros((2, 40, 40, 1), np.float32), "grid", grid_cells=5)
    assert seg.max_segments == 32 and list(seg.num_segments) == [25, 25]


# --- fills ------------------------------------------------------------------------------

def _two_segment_image():
    """A 2x2 RGB image whose left column is segment 0 and right column segment 1."""
    image = np.array(
        [[[0.0, 0.2, 0.4], [1.0, 0.0, 0.5]],
         [[0.5, 0.6, 0.0], [0.0, 1.0, 0.5]]],
        np.float32,
    )[None]
    segments = np.array([[[0, 1], [0, 1]]], np.int32)
    return image, segments


def test_segment_mean_fill_exact():
    image, segments = _two_segment_image()
    fill = fill_images(image, segments, "segment_mean")
    expected_left, expected_right = [0.25, 0.4, 0.2], [0.5, 0.5, 0.5]
    np.testing.assert_allclose(fill[0, :, 0], [expected_left] * 2, atol=1e-7)
    np.testing.assert_allclose(fill[0, :, 1], [expected_right] * 2, atol=1e-7)
    assert fill.dtype == np.float32


def test_segment_grey_fill_exact():
    image, segments = _two_segment_image()
    fill = fill_images(image, segments, "segment_grey")
    np.testing.assert_allclose(fill[0, :, 0], np.full((2, 3), 1.7 / 6), atol=1e-7)
    np.testing.assert_allclose(fill[0, :, 1], np.full((2, 3), 0.5), atol=1e-7)


def test_segment_fills_keep_images_apart():
    image, segments = _two_segment_image()
    batch = np.concatenate([image, 1 - image])
    fill = fill_images(batch, np.concatenate([segments, segments]), "segment_mean")
    np.testing.assert_allclose(fill[1], 1 - fill[0], atol=1e-6)


def test_blur_fill_shape_and_range(astronaut64):
    batch = np.stack([astronaut64, np.zeros_like(astronaut64)])
    segments = np.zeros(batch.shape[:3], np.int32)
    fill = fill_images(batch, segments, "blur")
    assert fill.shape == batch.shape and fill.dtype == np.float32
    assert 0.0 <= fill.min() and fill.max() <= 1.0
    assert fill[0].std() < astronaut64.std()
    np.testing.assert_array_equal(fill[1], 0.0)  # no bleeding across images


def test_zero_and_image_mean_fills(astronaut64):
    segments = np.zeros((1, 64, 64), np.int32)
    np.testing.assert_array_equal(fill_images(astronaut64[None], segments, "zero"), 0.0)
    mean_fill = fill_images(astronaut64[None], segments, "image_mean")
    np.testing.assert_allclose(mean_fill[0, 10, 20], astronaut64.mean(axis=(0, 1)), rtol=1e-5)
    assert np.ptp(mean_fill[0], axis=(0, 1)).max() == 0


def test_fill_accepts_segmentation_and_rejects_bad_input(astronaut64):
    seg = segment_images(astronaut64[None], "grid", grid_cells=2)
    assert fill_images(astronaut64[None], seg, "segment_mean").shape == (1, 64, 64, 3)
    with pytest.raises(ValueError, match="segment_mean.*segment_grey.*blur.*zero.*image_mean"):
        fill_images(astronaut64[None], seg, "noise")
    with pytest.raises(ValueError, match="does not match"):
        fill_images(astronaut64[None], np.zeros((1, 32, 32), np.int32))


@pytest.mark.parametrize("side", [8, 16, 32, 55])
def test_quickshift_defaults_work_on_small_images(side):
    images = np.stack([red_and_distractor_scene(s, side)[0] for s in range(2)])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no single-segment fallback either
        seg = segment_images(images, "quickshift")
    assert seg.segments.shape == (2, side, side) and (seg.num_segments >= 2).all()


def test_dax_explains_8_pixel_images_with_the_default_segmentation():
    images = np.stack([red_and_distractor_scene(s, 8)[0] for s in range(2)])
    config = daxjax.DAXConfig(num_samples=64, steps=3, minibatch_size=16, restarts=1)
    assert daxjax.explain(red_fraction_box, images, method="dax", config=config).maps.shape == (2, 8, 8)


def test_quickshift_on_huge_images_is_refused_with_the_estimate_and_the_ways_out():
    with pytest.raises(ValueError, match=r"4096x4096 images would take about 5\d\d min per image.*size=.*"
                                         r"'slic' or 'grid'.*kernel_size"):
        check_segmentation_cost("quickshift", {}, 4096, 4096)
    image = np.zeros((1, 1100, 1100, 3), np.float32)
    with pytest.raises(ValueError, match="1100x1100 images would take about 3 min per image"):
        segment_images(image, "quickshift")
    check_segmentation_cost("quickshift", {}, 512, 512)  # about 8 s: allowed
    check_segmentation_cost("quickshift", {"kernel_size": 2}, 4096, 4096)  # the caller's choice
    check_segmentation_cost("slic", {}, 4096, 4096)
