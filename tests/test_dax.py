"""DAX end to end: it finds a planted cause, obeys the determinism contract, and the API contract."""

import dataclasses
import hashlib

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import daxjax
from blackbox_adapters import COLOUR_CLASSES, CallableBlackBox, JaxBlackBox, OnnxBlackBox, bundled_model_path
from daxjax import DAXConfig
from planted import red_and_distractor_scene, red_fraction_box

SMALL = DAXConfig(num_samples=256, steps=60, minibatch_size=32, resolution=32, mask_cells=8,
                  segmentation="grid", restarts=1, validations=3)


def scenes(seeds, size=64):
    parts = [red_and_distractor_scene(s, size) for s in seeds]
    return tuple(np.stack(p) for p in zip(*parts))


def test_dax_localises_the_planted_cause_not_the_distractor():
    images, red, blue = scenes(range(6))
    ex = daxjax.explain(red_fraction_box, images, method="dax", config=DAXConfig(num_samples=1000))
    iou_red = daxjax.metrics.iou(ex.maps, red)
    iou_blue = daxjax.metrics.iou(ex.maps, blue)
    print("IoU with the cause:", iou_red.round(2), "with the distractor:", iou_blue.round(2))
    assert iou_red.mean() >= 0.5
    assert iou_red.mean() - iou_blue.mean() >= 0.3
    assert (iou_red > iou_blue).sum() >= 5


def test_explanation_contract():
    images, _, _ = scenes(range(3), size=40)
    ex = daxjax.explain(red_fraction_box, images, config=SMALL)
    chex.assert_shape(ex.maps, (3, 40, 40))
    chex.assert_type(ex.maps, np.float32)
    chex.assert_shape([ex.targets, ex.scores], (3,))
    assert ex.maps.min() >= 0.0 and ex.maps.max() <= 1.0
    np.testing.assert_array_equal(ex.targets, red_fraction_box(images).argmax(1))
    np.testing.assert_allclose(ex.scores, red_fraction_box(images)[np.arange(3), ex.targets], rtol=1e-6)
    assert set(ex.timings) >= {"segmentation", "queries", "training", "total"}


def test_map_depends_only_on_image_target_seed_config():
    # Other groupings and call sizes (Execution) are tests/test_execution.py's; here the batch around it.
    images, _, _ = scenes(range(4), size=32)
    alone = daxjax.explain(red_fraction_box, images[1:2], config=SMALL, seed=5).maps[0]
    batch = daxjax.explain(red_fraction_box, images, config=SMALL, seed=5).maps[1]
    reordered = daxjax.explain(red_fraction_box, images[::-1], config=SMALL, seed=5).maps[2]
    np.testing.assert_allclose(batch, alone, atol=1e-5)
    np.testing.assert_allclose(reordered, alone, atol=1e-5)
    other_seed = daxjax.explain(red_fraction_box, images[3:4], config=SMALL, seed=6).maps[0]
    assert np.abs(other_seed - alone).max() > 1e-3


def test_uint8_and_float_images_give_the_same_explanation():
    images, _, _ = scenes(range(2), size=32)
    as_uint8 = np.round(images * 255).astype(np.uint8)
    a = daxjax.explain(red_fraction_box, as_uint8, config=SMALL).maps
    b = daxjax.explain(red_fraction_box, as_uint8.astype(np.float32) / 255, config=SMALL).maps
    np.testing.assert_array_equal(a, b)


def test_batch_of_16_from_onnx_black_box():
    bb = OnnxBlackBox(bundled_model_path("colour_nchw"), layout="NCHW", output="logits")
    images, _, _ = scenes(range(16), size=32)
    ex = daxjax.explain(bb, images, targets=COLOUR_CLASSES.index("red"), config=SMALL)
    assert ex.maps.shape == (16, 32, 32)
    assert np.all(ex.targets == 0)
    assert np.all(np.isfinite(ex.maps)) and ex.maps.max() <= 1.0


def test_batch_of_16_from_plain_callable():
    images, _, _ = scenes(range(16), size=32)
    ex = daxjax.explain(red_fraction_box, images, config=SMALL)
    assert ex.maps.shape == (16, 32, 32)


def test_jax_black_box_is_queried_on_device_with_same_result_as_callback():
    def red_fraction_jax(x):
        red = (x[..., 0] > 0.8) & (x[..., 1] < 0.2) & (x[..., 2] < 0.2)
        logit = 40.0 * (red.reshape(x.shape[0], -1).mean(axis=1) - 0.03)
        p1 = jax.nn.sigmoid(logit)
        return jnp.stack([1 - p1, p1], axis=1)

    images, _, _ = scenes(range(2), size=32)
    on_device = daxjax.explain(JaxBlackBox(red_fraction_jax, 2), images, config=SMALL)
    via_host = daxjax.explain(red_fraction_box, images, config=SMALL)
    np.testing.assert_allclose(on_device.maps, via_host.maps, atol=1e-4)


@pytest.mark.parametrize("variant", ["v1", "v2"])
def test_paper_presets_run(variant):
    preset = getattr(DAXConfig, f"paper_{variant}")(num_samples=128, epochs=1, resolution=32,
                                                  mask_cells=8, segmentation="grid")
    images, _, _ = scenes(range(2), size=32)
    ex = daxjax.explain(red_fraction_box, images, config=preset)
    assert ex.maps.shape == (2, 32, 32) and np.all(np.isfinite(ex.maps))


def test_restarts_are_averaged_and_deterministic():
    images, _, _ = scenes(range(2), size=32)
    config = SMALL.replace(restarts=3)
    a = daxjax.explain(red_fraction_box, images, config=config).maps
    b = daxjax.explain(red_fraction_box, images[1:], config=config).maps
    np.testing.assert_allclose(a[1], b[0], atol=1e-5)
    single = daxjax.explain(red_fraction_box, images, config=SMALL).maps
    assert np.abs(a - single).max() > 1e-3


def _answers_without_pattern(x):
    """Two-class probabilities that hash the query: nothing a student can learn from the image."""
    seeds = [int.from_bytes(hashlib.blake2b(row.tobytes(), digest_size=4).digest(), "little") for row in x]
    p = np.array([np.random.default_rng(s).uniform(0.05, 0.95) for s in seeds], np.float32)
    return np.stack([p, 1 - p], axis=1)


def test_diagnostics_say_how_far_each_map_can_be_trusted():
    images, _, _ = scenes(range(3), size=32)
    ex = daxjax.explain(red_fraction_box, images, config=SMALL.replace(steps=200, num_samples=400))
    assert set(ex.diagnostics) == set(daxjax.dax.DIAGNOSTICS) | {"answer_spread", "informative"}
    for name, values in ex.diagnostics.items():
        assert values.shape == (3,), name
    assert ex.trusted.dtype == bool and ex.trusted.all()
    # The planted cause is a simple function of the segments: student and surrogate fit it.
    assert (ex.diagnostics["heldout_fit"] > 0.5).all() and (ex.diagnostics["surrogate_fit"] > 0.5).all()
    assert ((ex.diagnostics["mask_area"] > 0.005) & (ex.diagnostics["mask_area"] < 0.95)).all()
    # The other query-only methods can tell one thing only: whether the answers changed at all.
    rise = daxjax.explain(red_fraction_box, images, method="rise", config=daxjax.RISEConfig(num_samples=64))
    assert set(rise.diagnostics) == {"answer_spread", "informative"} and rise.trusted.all()


def test_answers_the_student_cannot_fit_are_flagged_untrustworthy():
    """Answers that hash the query carry no pattern: no held-out fit, and the map is flagged."""
    images, _, _ = scenes(range(3), size=32)
    noise = CallableBlackBox(_answers_without_pattern, num_classes=2)
    ex = daxjax.explain(noise, images, targets=np.zeros(3, np.int32), config=SMALL.replace(num_samples=400))
    print("held-out fit of hashed answers:", ex.diagnostics["heldout_fit"])
    assert (ex.diagnostics["heldout_fit"] < daxjax.dax.FIT_FLOOR).all()
    assert (ex.diagnostics["surrogate_fit"] < daxjax.dax.FIT_FLOOR).all()
    assert not ex.trusted.any()


def test_image_student_keeps_the_papers_path():
    """student='image' (the presets' CNN on masked pixels) still trains and reports diagnostics."""
    images, red, _ = scenes(range(2), size=32)
    ex = daxjax.explain(red_fraction_box, images, config=SMALL.replace(student="image", target="probability",
                                                                       gate="soft", steps=40))
    assert ex.maps.shape == (2, 32, 32) and np.all(np.isfinite(ex.maps))
    assert np.isfinite(ex.diagnostics["heldout_fit"]).all()


def test_every_config_field_is_declared_in_or_out_of_the_training_programs():
    fields = [field.name for field in dataclasses.fields(DAXConfig)]
    assert sorted(DAXConfig.PROGRAM_FIELDS + DAXConfig.OTHER_FIELDS) == sorted(fields)
    assert not set(DAXConfig.PROGRAM_FIELDS) & set(DAXConfig.OTHER_FIELDS)


def test_compiled_trainers_are_shared_by_configs_that_differ_only_outside_the_program_fields():
    from daxjax.methods.dax.train import compiled_trainer

    base = SMALL.replace(steps=7)
    trainer = compiled_trainer(base, 3, 32)
    outside = base.replace(segmentation="slic", fill="blur", target="probability", kernel_width=0.5,
                           segmentation_options={"n_segments": 20}, restarts=2, effect_power=1.0)
    assert compiled_trainer(outside, 3, 32) is trainer
    assert compiled_trainer(base.program_config(), 3, 32) is trainer
    for name, value in (("lambda_q", 0.25), ("minibatch_size", 16), ("steps", 8), ("student_hidden", 16)):
        assert compiled_trainer(base.replace(**{name: value}), 3, 32) is not trainer, name
    assert compiled_trainer(base, 3, 32, rows=1) is not trainer  # rows per step shape them too


def test_map_on_segments_is_the_masks_mean_over_each_segment():
    images, _, _ = scenes(range(2), size=32)
    labels = np.repeat(np.repeat(np.arange(16).reshape(4, 4), 8, axis=0), 8, axis=1)[None].repeat(2, axis=0)
    on = daxjax.explain(red_fraction_box, images, config=SMALL.replace(map_on_segments=True, effect_power=0.0),
                        segments=labels).maps
    grid = daxjax.explain(red_fraction_box, images, config=SMALL.replace(map_on_segments=False, effect_power=0.0),
                          segments=labels).maps
    for b in range(2):
        means = np.array([grid[b][labels[b] == j].mean() for j in range(16)])
        assert all(np.ptp(on[b][labels[b] == j]) < 1e-6 for j in range(16))  # one value per segment
        expected = (means - means.min()) / (means.max() - means.min())
        np.testing.assert_allclose(on[b], expected[labels[b]], atol=1e-5)


def check_auto_fill(black_box, images) -> np.ndarray:
    """fill="auto" on `images`: each image takes the candidate whose probe answers spread most, and
    its map is exactly the one that fill alone gives (the probe's answers are the first of its N).
    Returns the choices [B] (0 image mean, 1 blur)."""
    from daxjax.perturbation.fills import AUTO_FILLS

    # Probing every sample makes the spread the fixed fills' own answer_spread, known independently.
    config = SMALL.replace(fill="auto", fill_probe=SMALL.num_samples)
    auto = daxjax.explain(black_box, images, config=config, seed=3)
    fixed = [daxjax.explain(black_box, images, config=SMALL.replace(fill=f), seed=3) for f in AUTO_FILLS]
    choice = auto.diagnostics["fill_choice"]
    assert set(np.unique(choice)) <= {0.0, 1.0}
    spreads = np.stack([ex.diagnostics["answer_spread"] for ex in fixed])            # [F, B]
    clear = np.abs(spreads[1] - spreads[0]) > 0.01 * spreads.max(axis=0)
    assert clear.any()
    np.testing.assert_array_equal(choice[clear], spreads.argmax(axis=0)[clear])
    for b, c in enumerate(choice.astype(int)):
        np.testing.assert_allclose(auto.maps[b], fixed[c].maps[b], atol=1e-5)
    assert np.isnan(fixed[0].diagnostics["fill_choice"]).all()
    # A short probe: the same rule on the first fill_probe samples, still one fill's own map, and
    # its answer diagnostics those of that fill's N answers (not the probe's under the other fill).
    short = daxjax.explain(black_box, images, config=SMALL.replace(fill="auto", fill_probe=32), seed=3)
    for b, c in enumerate(short.diagnostics["fill_choice"].astype(int)):
        np.testing.assert_allclose(short.maps[b], fixed[c].maps[b], atol=1e-5)
        for name in ("answer_spread", "informative"):
            np.testing.assert_allclose(short.diagnostics[name][b], fixed[c].diagnostics[name][b], rtol=1e-6)
    return choice


def test_auto_fill_explains_each_image_with_the_fill_its_answers_spread_most_under():
    images, _, _ = scenes(range(4), size=32)
    assert (check_auto_fill(red_fraction_box, images) == 0).any()


def test_auto_fill_takes_the_blur_where_the_image_mean_changes_nothing_the_model_reads():
    """A model that reads only a centre square painted in the image's own mean colour: the
    image-mean fill leaves every answer as it was, the blur (bleeding the dark and light halves
    into the square's rim) does not, so every image must take the blur, with the blur's own map."""
    def centre_grey(x):
        centre = np.asarray(x)[:, 10:22, 10:22]
        p = 1.0 / (1.0 + np.exp(-40.0 * (0.1 - np.abs(centre - 0.5).mean(axis=(1, 2, 3)))))
        return np.stack([p, 1.0 - p], axis=1).astype(np.float32)

    images = np.zeros((3, 32, 32, 3), np.float32)
    for b, dark in enumerate((0.1, 0.2, 0.3)):
        images[b, :, :16], images[b, :, 16:] = dark, 1.0 - dark      # halves around the mean 0.5
    images[:, 10:22, 10:22] = 0.5                                     # symmetric: the mean stays 0.5
    black_box = CallableBlackBox(centre_grey, num_classes=2, output="probs")
    with pytest.warns(daxjax.UninformativeWarning, match="3 of 3"):  # the image-mean fill's own run
        assert (check_auto_fill(black_box, images) == 1).all()


def test_auto_fill_is_dax_only_and_its_probe_positive():
    with pytest.raises(ValueError, match="fill_probe"):
        DAXConfig(fill="auto", fill_probe=0)
    with pytest.raises(ValueError, match="fill"):
        daxjax.LIMEConfig(fill="auto")
