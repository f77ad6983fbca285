"""Deletion/insertion AUC, pointing game, sensitivity, rank correlation, model randomisation."""

import numpy as np
import onnx
import pytest
from onnx import numpy_helper
from scipy.stats import spearmanr

import daxjax
from blackbox_adapters import BlackBoxError, OnnxBlackBox, bundled_model_path, randomized_onnx
from daxjax.metrics import (_random_wrong_classes, deletion_auc, insertion_auc, model_randomisation,
                            pointing_game, rank_correlation, sensitivity)
from planted import red_and_distractor_scene, red_fraction_box

# The configuration of test_dax.SMALL: a full test run then compiles the DAX programs only once.
SMALL_DAX = daxjax.DAXConfig(num_samples=256, steps=14, minibatch_size=32, resolution=32, mask_cells=8,
                             segmentation="grid", restarts=1)
RED = 1  # red_fraction_box's class that the red square causes


def scenes(seeds, size=64):
    """Planted scenes stacked: (images [B, H, W, 3], red masks [B, H, W], blue masks [B, H, W])."""
    parts = [red_and_distractor_scene(s, size) for s in seeds]
    return tuple(np.stack(p) for p in zip(*parts))


def constant_box(x):
    """Two classes with fixed probabilities (0.7, 0.3), whatever the image."""
    return np.tile(np.float32([[0.7, 0.3]]), (len(x), 1))


def left_red_box(x):
    """P(class 1) = mean red intensity of the left half of the image: linear in what is removed."""
    left = x[:, :, : x.shape[2] // 2, 0].reshape(len(x), -1).mean(axis=1)
    return np.stack([1.0 - left, left], axis=1).astype(np.float32)


def colour_box():
    return OnnxBlackBox(bundled_model_path("colour_nchw"), layout="NCHW", output="logits")


def colour_scenes():
    """Two 32x32 textured images, one with a red and one with a green patch, and the patch masks."""
    rng = np.random.default_rng(0)
    images = rng.uniform(0.3, 0.7, (2, 32, 32, 3)).astype(np.float32)
    masks = np.zeros((2, 32, 32), bool)
    masks[0, 4:14, 4:14] = True
    masks[1, 16:26, 10:20] = True
    images[0][masks[0]] = (0.95, 0.05, 0.05)
    images[1][masks[1]] = (0.05, 0.95, 0.05)
    return images, masks


# ------------------------------------------------------------------ deletion and insertion


@pytest.mark.parametrize("fill, granularity", [("zero", None), ("blur", None), ("zero", 8), ("blur", 8)])
def test_ground_truth_map_beats_random_map(fill, granularity):
    images, red, _ = scenes(range(4))
    truth = red.astype(np.float32)
    random_map = np.random.default_rng(0).random(red.shape).astype(np.float32)
    kwargs = dict(steps=25, granularity=granularity)
    deletion_truth = deletion_auc(red_fraction_box, images, truth, RED, fill=fill, **kwargs)
    deletion_random = deletion_auc(red_fraction_box, images, random_map, RED, fill=fill, **kwargs)
    insertion_truth = insertion_auc(red_fraction_box, images, truth, RED, **kwargs)
    insertion_random = insertion_auc(red_fraction_box, images, random_map, RED, **kwargs)
    print(f"{fill}/{granularity}: deletion truth {deletion_truth.round(3)} random {deletion_random.round(3)}; "
          f"insertion truth {insertion_truth.round(3)} random {insertion_random.round(3)}")
    assert deletion_truth.dtype == np.float32 and deletion_truth.shape == (4,)
    assert np.all(deletion_truth < deletion_random - 0.05)
    assert np.all(insertion_truth > insertion_random + 0.05)


def test_constant_probability_gives_that_probability_for_any_map_and_units():
    images, _, _ = scenes(range(2), size=16)
    segments = np.repeat(np.arange(4), 64).reshape(1, 16, 16).repeat(2, axis=0)
    constant_map = np.zeros((2, 16, 16), np.float32)  # ties everywhere: order falls back to raster
    for granularity in (None, 5, segments):
        for auc in (deletion_auc, insertion_auc):
            result = auc(constant_box, images, constant_map, 1, steps=7, granularity=granularity)
            np.testing.assert_allclose(result, [0.3, 0.3], rtol=1e-6)
            normalised = auc(constant_box, images, constant_map, 1, steps=7, granularity=granularity,
                             normalize=True)
            np.testing.assert_allclose(normalised, [1.0, 1.0], rtol=1e-6)


def test_piecewise_linear_curve_is_integrated_exactly():
    """Each removed left pixel lowers the probability by the same amount: the curve is linear up
    to x = 0.5 and flat after; with a curve point at 0.5 the trapezoid rule is exact, whatever
    the other points or the segments' sizes."""
    white = np.ones((1, 16, 16, 3), np.float32)
    left_first = np.zeros((1, 16, 16), np.float32)
    left_first[:, :, :8] = np.random.default_rng(1).random((16, 8)) + 1.0
    uneven = np.zeros((1, 16, 16), np.int64)
    uneven[:, :, :3], uneven[:, :, 3:8] = 7, 2  # three segments of 48, 80 and 128 pixels
    for steps, granularity in ((2, None), (10, None), (6, uneven)):
        deletion = deletion_auc(left_red_box, white, left_first, 1, steps=steps, granularity=granularity)
        insertion = insertion_auc(left_red_box, white, left_first, 1, steps=steps, fill="zero",
                                  granularity=granularity)
        # Only the left half counts and goes first: the probability falls from 1 to 0 over x in [0, 0.5].
        np.testing.assert_allclose(deletion, [0.25], atol=1e-6)
        np.testing.assert_allclose(insertion, [0.75], atol=1e-6)


def test_whole_segments_are_ordered_by_mean_saliency():
    white = np.ones((2, 8, 8, 3), np.float32)
    halves = np.repeat([[0] * 4 + [1] * 4], 8, axis=0)[None].repeat(2, axis=0)
    maps = np.zeros((2, 8, 8), np.float32)
    maps[0, :, :4] = 1.0  # left half more salient on average: removed first
    maps[1, :, 4:] = 0.5
    maps[1, 0, 0] = 3.0  # the single highest pixel is on the left, but the right half's mean is higher
    deletion = deletion_auc(left_red_box, white, maps, 1, steps=4, granularity=halves)
    # Left first: 1 until x = 0, then 0 from x = 0.5 -> 0.25; right first: 1 until 0.5, then 0 at 1 -> 0.75.
    np.testing.assert_allclose(deletion, [0.25, 0.75], atol=1e-6)
    pixel_order = deletion_auc(left_red_box, white, maps, 1, steps=4)
    assert pixel_order[1] < 0.75  # pixel order removes the top pixel first


def test_patch_granularity_is_not_fooled_by_a_scattered_map():
    images, red, _ = scenes(range(3))
    rng = np.random.default_rng(2)
    scattered = np.where(red & (rng.random(red.shape) < 0.5), 1.0, 0.1 * rng.random(red.shape))
    by_pixel = deletion_auc(red_fraction_box, images, scattered, RED, steps=16)
    by_patch = deletion_auc(red_fraction_box, images, scattered, RED, steps=16, granularity=16)
    print("scattered half of the cause: pixel", by_pixel.round(3), "patch", by_patch.round(3))
    assert np.all(by_patch < by_pixel)


def test_patch_size_segment_map_and_relabelled_ids_agree():
    images, red, _ = scenes(range(2), size=32)
    maps = np.random.default_rng(3).random(red.shape).astype(np.float32)
    rows, cols = np.meshgrid(np.arange(32) // 8, np.arange(32) // 8, indexing="ij")
    patches = np.broadcast_to(rows * 4 + cols, (2, 32, 32))
    by_size = deletion_auc(red_fraction_box, images, maps, RED, steps=10, granularity=8)
    by_map = deletion_auc(red_fraction_box, images, maps, RED, steps=10, granularity=patches)
    sparse_ids = deletion_auc(red_fraction_box, images, maps, RED, steps=10, granularity=patches * 1000 + 5)
    np.testing.assert_array_equal(by_size, by_map)
    np.testing.assert_array_equal(by_size, sparse_ids)
    np.testing.assert_array_equal(deletion_auc(red_fraction_box, images, maps, RED, steps=10, granularity=1),
                                  deletion_auc(red_fraction_box, images, maps, RED, steps=10, granularity="pixel"))


def test_normalize_divides_by_the_unperturbed_probability():
    images, red, _ = scenes(range(3))
    maps = red.astype(np.float32)
    score = red_fraction_box(images)[:, RED]
    for auc in (deletion_auc, insertion_auc):
        raw = auc(red_fraction_box, images, maps, RED, steps=10)
        np.testing.assert_allclose(auc(red_fraction_box, images, maps, RED, steps=10, normalize=True),
                                   raw / score, rtol=1e-6)


def test_chunking_uint8_and_default_targets_do_not_change_the_result():
    images, red, _ = scenes(range(2), size=32)
    maps = np.random.default_rng(4).random(red.shape).astype(np.float32)
    as_uint8 = np.round(images * 255).astype(np.uint8)
    reference = deletion_auc(red_fraction_box, as_uint8.astype(np.float32) / 255, maps, RED, steps=10)
    np.testing.assert_array_equal(deletion_auc(red_fraction_box, as_uint8, maps, RED, steps=10, chunk=3),
                                  reference)
    top1 = red_fraction_box(images).argmax(axis=1)
    np.testing.assert_array_equal(deletion_auc(red_fraction_box, images, maps, None, steps=10),
                                  deletion_auc(red_fraction_box, images, maps, top1, steps=10))


# ------------------------------------------------------------------ pointing game


def test_pointing_game_hit_miss_ties_and_constant_maps():
    masks = np.zeros((4, 16, 16), bool)
    masks[:, 4:8, 4:8] = True
    maps = np.zeros((4, 16, 16), np.float32)
    maps[0, 5, 5] = 1.0  # inside
    maps[1, 12, 12] = 1.0  # outside
    maps[2, 5, 5] = maps[2, 12, 12] = 1.0  # a tie, one inside one outside
    result = pointing_game(maps, masks)  # maps[3] is constant
    np.testing.assert_allclose(result, [1.0, 0.0, 0.5, 16 / 256])
    assert result.dtype == np.float32


def test_pointing_game_tolerance_is_euclidean_distance_to_the_object():
    masks = np.zeros((2, 16, 16), bool)
    masks[:, 4:8, 4:8] = True
    maps = np.zeros((2, 16, 16), np.float32)
    maps[0, 5, 9] = 1.0  # two pixels right of the object
    maps[1, 9, 9] = 1.0  # two pixels down and two right of its corner: distance 2.83
    np.testing.assert_array_equal(pointing_game(maps, masks), [0.0, 0.0])
    np.testing.assert_array_equal(pointing_game(maps, masks, tolerance=1), [0.0, 0.0])
    np.testing.assert_array_equal(pointing_game(maps, masks, tolerance=2), [1.0, 0.0])
    np.testing.assert_array_equal(pointing_game(maps, masks, tolerance=3), [1.0, 1.0])


# ------------------------------------------------------------------ rank correlation, sanity check


def test_rank_correlation_matches_scipy_with_ties():
    rng = np.random.default_rng(5)
    maps_a = rng.random((4, 24, 20)).astype(np.float32)
    maps_b = (maps_a + rng.random((4, 24, 20))).astype(np.float32)
    maps_a[2] = np.round(maps_a[2] * 5)  # heavy ties
    maps_b[3] = np.round(maps_b[3] * 3)
    expected = [spearmanr(a.ravel(), b.ravel()).statistic for a, b in zip(maps_a, maps_b)]
    result = rank_correlation(maps_a, maps_b)
    print("Spearman per image:", result.round(4))
    np.testing.assert_allclose(result, expected, atol=1e-5)
    np.testing.assert_allclose(rank_correlation(maps_a, -maps_a), -1.0, atol=1e-6)


def test_rank_correlation_of_a_constant_map_is_zero():
    maps = np.random.default_rng(6).random((2, 8, 8)).astype(np.float32)
    constant = np.stack([np.full((8, 8), 0.5, np.float32), maps[1]])
    np.testing.assert_allclose(rank_correlation(constant, maps), [0.0, 1.0], atol=1e-6)


def test_randomized_onnx_redraws_float_weights_only(tmp_path):
    source = bundled_model_path("colour_nchw")
    weights = {i.name: numpy_helper.to_array(i) for i in onnx.load(str(source)).graph.initializer}

    def redrawn(layers, seed=0):
        path = randomized_onnx(source, tmp_path / f"{layers}_{seed}.onnx", seed, layers=layers)
        return {i.name: numpy_helper.to_array(i) for i in onnx.load(str(path)).graph.initializer}

    everything, top, again = redrawn("all"), redrawn("top-1"), redrawn("all")
    for name, trained in weights.items():
        assert everything[name].shape == trained.shape and everything[name].dtype == trained.dtype
        np.testing.assert_array_equal(again[name], everything[name])  # deterministic in the seed
    np.testing.assert_array_equal(everything["one_column"], weights["one_column"])  # int64: kept
    assert everything["purity_margin"] != weights["purity_margin"]
    # Cascading: top-1 is the last layer (the logit scale), drawn exactly as in the full copy.
    np.testing.assert_array_equal(top["purity_margin"], weights["purity_margin"])
    np.testing.assert_array_equal(top["logit_scale"], everything["logit_scale"])
    assert redrawn("all", seed=1)["logit_scale"] != everything["logit_scale"]
    with pytest.raises(BlackBoxError, match="only 2 layer"):
        redrawn("top-3")
    with pytest.raises(BlackBoxError, match="'all' or 'top-k'"):
        redrawn("bottom-1")


def test_model_randomisation_on_the_bundled_onnx_model(tmp_path):
    images, _ = colour_scenes()
    trained = colour_box()
    randomised = OnnxBlackBox(randomized_onnx(bundled_model_path("colour_nchw"), tmp_path / "r.onnx", seed=0),
                              layout="NCHW", output="logits")
    correlation = model_randomisation(trained, randomised, images, config=SMALL_DAX, seed=0)
    print("Spearman trained vs randomised:", correlation.round(3))
    assert correlation.shape == (2,) and correlation.dtype == np.float32
    assert np.all((correlation >= -1) & (correlation <= 1))
    # Same black box twice: same targets and seed give the same perturbations, hence the same map.
    np.testing.assert_allclose(model_randomisation(trained, trained, images, config=SMALL_DAX, seed=0), 1.0,
                               atol=1e-6)


# ------------------------------------------------------------------ sensitivity


def test_sensitivity_explains_a_wrong_class():
    images, masks = colour_scenes()
    bb = colour_box()
    result = sensitivity(bb, images, masks, config=SMALL_DAX, seed=0)
    print("IoU of the wrong-class explanation:", result.round(3))
    assert result.shape == (2,) and np.all((result >= 0) & (result <= 1))
    given = sensitivity(bb, images, masks, config=SMALL_DAX, seed=0, wrong_targets=[3, 3])
    assert given.shape == (2,)


def test_wrong_class_is_drawn_from_seed_and_image_alone():
    images, _ = colour_scenes()
    images = np.concatenate([images, images[::-1], images])
    top1 = np.array([0, 1, 1, 0, 0, 1], np.int32)
    drawn = _random_wrong_classes(images, top1, 4, seed=0)
    assert np.all(drawn != top1) and np.all((drawn >= 0) & (drawn < 4))
    np.testing.assert_array_equal(drawn[:2], drawn[3:1:-1])  # same image, same class, any position
    np.testing.assert_array_equal(_random_wrong_classes(images[1:2], top1[1:2], 4, seed=0), drawn[1:2])
    other_seeds = [_random_wrong_classes(images, top1, 4, seed=s) for s in range(1, 6)]
    assert any(np.any(o != drawn) for o in other_seeds)


# ------------------------------------------------------------------ bad input


def test_shape_mismatches_name_both_shapes():
    images, red, _ = scenes(range(2), size=16)
    with pytest.raises(ValueError, match=r"\(2, 8, 8\).*\(2, 16, 16, 3\)"):
        deletion_auc(red_fraction_box, images, np.zeros((2, 8, 8)), RED)
    with pytest.raises(ValueError, match=r"\(2, 16, 16\).*\(2, 8, 8\)"):
        pointing_game(red.astype(np.float32), np.ones((2, 8, 8), bool))
    with pytest.raises(ValueError, match=r"\(2, 16, 16\).*\(1, 16, 16\)"):
        rank_correlation(red, red[:1])
    with pytest.raises(ValueError, match=r"\(2, 8, 8\).*\(2, 16, 16\)"):
        sensitivity(red_fraction_box, images, np.ones((2, 8, 8), bool), config=SMALL_DAX)
    with pytest.raises(ValueError, match=r"segment map shape \(2, 8, 8\)"):
        deletion_auc(red_fraction_box, images, red, RED, granularity=np.zeros((2, 8, 8), int))


def test_nan_maps_name_the_image():
    images, red, _ = scenes(range(3), size=16)
    maps = red.astype(np.float32)
    maps[1, 2, 2] = np.nan
    with pytest.raises(ValueError, match=r"\[1\].*NaN"):
        deletion_auc(red_fraction_box, images, maps, RED)
    with pytest.raises(ValueError, match=r"\[1\].*NaN"):
        insertion_auc(red_fraction_box, images, maps, RED)
    with pytest.raises(ValueError, match=r"\[1\].*NaN"):
        pointing_game(maps, red)
    with pytest.raises(ValueError, match=r"\[1\].*NaN"):
        rank_correlation(red.astype(np.float32), maps)


def test_empty_masks_name_the_image():
    images, red, _ = scenes(range(3), size=16)
    red[2] = False
    with pytest.raises(ValueError, match=r"\[2\] is empty"):
        pointing_game(np.random.default_rng(0).random(red.shape), red)
    with pytest.raises(ValueError, match=r"\[2\] is empty"):
        sensitivity(red_fraction_box, images, red, config=SMALL_DAX)


def test_bad_options_are_rejected():
    images, red, _ = scenes(range(2), size=16)
    maps = red.astype(np.float32)
    for options, message in [(dict(steps=0), "steps"), (dict(chunk=-1), "chunk"),
                             (dict(fill="segment_mean"), "unknown fill"),
                             (dict(granularity="superpixel"), "granularity"),
                             (dict(granularity=0), "patch size"),
                             (dict(granularity=-np.ones((2, 16, 16), int)), r"\[0, 1\].*negative"),
                             (dict(granularity=np.zeros((2, 16, 16))), "integer")]:
        with pytest.raises(ValueError, match=message):
            deletion_auc(red_fraction_box, images, maps, RED, **options)
    with pytest.raises(ValueError, match="tolerance"):
        pointing_game(maps, red, tolerance=-1)
    with pytest.raises(ValueError, match=r"outside \[0, 2\)"):
        deletion_auc(red_fraction_box, images, maps, 5)


def test_zero_unperturbed_probability_cannot_be_normalised():
    images, red, _ = scenes(range(2), size=16)

    def certain_box(x):
        return np.tile(np.float32([[1.0, 0.0]]), (len(x), 1))

    with pytest.raises(ValueError, match=r"\[0, 1\].*normalised"):
        deletion_auc(certain_box, images, red.astype(np.float32), 1, normalize=True)
    np.testing.assert_array_equal(deletion_auc(certain_box, images, red.astype(np.float32), 1), [0.0, 0.0])


def test_wrong_target_equal_to_top1_is_rejected():
    images, masks = colour_scenes()
    with pytest.raises(ValueError, match=r"image\(s\) \[1\].*top-1"):
        sensitivity(colour_box(), images, masks, config=SMALL_DAX, wrong_targets=[3, 1])
