"""Every bad input ends in a clear error that names the offending image (or a warning + fallback)."""

import re
import warnings

import numpy as np
import pytest

import daxjax
from blackbox_adapters import BlackBoxError
from daxjax import DAXConfig, InputError
from planted import red_fraction_box

TINY = DAXConfig(num_samples=96, steps=3, minibatch_size=32, resolution=16, mask_cells=4,
                 segmentation="grid", restarts=1)


def images(n=3, size=16, seed=0):
    return np.random.default_rng(seed).uniform(0, 1, (n, size, size, 3)).astype(np.float32)


def run(x, bb=red_fraction_box, **kw):
    return daxjax.explain(bb, x, config=kw.pop("config", TINY), **kw)


@pytest.mark.parametrize("bad, pattern", [
    (np.zeros((16, 16, 3), np.float32), r"\[B, H, W, C\].*single image"),
    (np.zeros((2, 16, 16, 4), np.float32), r"1 or 3 channels.*got 4"),
    (np.zeros((0, 16, 16, 3), np.float32), r"empty batch"),
    (np.zeros((2, 16, 16, 3), np.int64), r"uint8 or floating"),
    (np.zeros((2, 4, 4, 3), np.float32), r"at least 8x8"),
])
def test_bad_shapes_and_dtypes(bad, pattern):
    with pytest.raises(InputError, match=pattern):
        run(bad)


def test_nan_and_inf_pixels_name_the_images():
    x = images(4)
    x[1, 3, 3, 0] = np.nan
    x[3, 0, 0, 2] = np.inf
    with pytest.raises(InputError, match=r"image\(s\) 1, 3 contain NaN or inf"):
        run(x)


def test_out_of_range_floats_are_not_clipped():
    x = images(3)
    x[2] *= 255.0
    with pytest.raises(InputError, match=r"image\(s\) 2 have float pixels outside \[0, 1\].*max"):
        run(x)


def test_target_outside_range_names_image():
    with pytest.raises(InputError, match=r"image\(s\) 1 are outside \[0, 2\).*target 5"):
        run(images(3), targets=[0, 5, 1])
    with pytest.raises(InputError, match=r"shape \[B\]"):
        run(images(3), targets=[0, 1])


def test_black_box_wrong_shape():
    with pytest.raises(BlackBoxError, match=r"shape"):
        run(images(2), bb=lambda x: np.ones((len(x), 2, 1), np.float32))


def test_black_box_nan_during_queries_names_the_image():
    x = images(3, seed=1)
    x[2, ..., 1] = 0.123  # a tag the black box recognises; it fails only on perturbed copies

    def box(batch):
        p = red_fraction_box(batch)
        tagged = (np.abs(batch[..., 1] - 0.123) < 1e-6).any(axis=(1, 2))
        perturbed = (batch == 0).all(axis=-1).any(axis=(1, 2))  # zero fill shows
        p[tagged & perturbed] = np.nan
        return p

    with pytest.raises(BlackBoxError, match=r"NaN.*image\(s\) \[2\]"):
        run(x, bb=box, config=TINY.replace(fill="zero"))


def test_rows_not_summing_to_one():
    with pytest.raises(BlackBoxError, match=r"sum"):
        run(images(2), bb=lambda x: np.full((len(x), 2), 0.7, np.float32))


def test_single_segment_image_falls_back_to_grid_with_warning():
    x = images(3)
    x[1] = 0.5  # one flat colour: felzenszwalb gives a single segment
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ex = run(x, config=TINY.replace(segmentation="felzenszwalb"))
    messages = [str(w.message) for w in caught]
    assert any(re.search(r"image\(s\) \[1\].*grid", m) for m in messages), messages
    assert ex.maps.shape == (3, 16, 16)


def test_unknown_method_and_wrong_config_type():
    with pytest.raises(InputError, match=r"unknown method 'gradcam'"):
        daxjax.explain(red_fraction_box, images(1), method="gradcam")
    with pytest.raises(InputError, match=r"takes a DAXConfig"):
        daxjax.explain(red_fraction_box, images(1), method="dax", config={"num_samples": 10})


def test_bad_config_values():
    with pytest.raises(ValueError, match=r"segmentation='sam'"):
        DAXConfig(segmentation="sam")
    with pytest.raises(ValueError, match=r"keep_prob"):
        DAXConfig(keep_prob=1.0)
    with pytest.raises(ValueError, match=r"student='mlp' is not one of"):
        DAXConfig(student="mlp")
    with pytest.raises(ValueError, match=r"gate_temperature must be > 0"):
        DAXConfig(gate_temperature=0)
    with pytest.raises(ValueError, match=r"mask_channels must be >= 1, or 0 with mask_grid_bias=True"):
        DAXConfig(mask_channels=0, mask_grid_bias=False)
    with pytest.raises(ValueError, match=r"mask_input='perturbed' needs student='image'"):
        DAXConfig(mask_input="perturbed")
    with pytest.raises(ValueError, match=r"num_samples must be >= 3"):
        DAXConfig(num_samples=2)
    # Fewer training samples than minibatch_size: every step takes all of them.
    assert DAXConfig(num_samples=40, minibatch_size=64).minibatch == 36
