"""Amortised DAX (`daxjax.amortised`): one explainer fitted across planted scenes, judged on held-out ones."""

import jax
import numpy as np
import pytest

import daxjax
from daxjax import amortised
from daxjax.amortised.nets import init_nets
from daxjax.inputs import InputError
from planted import red_and_distractor_scene, red_fraction_box

SIDE = 32
FIT, HELD_OUT = 32, 12
SMALL = amortised.AmortisedConfig(
    teacher=amortised.Teacher(queries_per_image=128),
    nets=amortised.Nets(resolution=32, channels=(8, 16, 16)),
    training=amortised.Training(steps=150, validations=3))
# For the tests of plumbing and reproducibility, not of quality: a shorter fit.
# (The teacher's queries as SMALL's: the compiled DAX programs are shared.)
BRIEF = SMALL.replace(training=SMALL.training.replace(steps=30))
K = 128  # queries an image in refinement (as the teacher's: DAX's programs are shared)


def scenes(seeds):
    parts = [red_and_distractor_scene(s, SIDE) for s in seeds]
    return tuple(np.stack(p) for p in zip(*parts))


@pytest.fixture(scope="module")
def data():
    return scenes(range(FIT + HELD_OUT))


@pytest.fixture(scope="module")
def explainer(data):
    images, _, _ = data
    return amortised.fit(red_fraction_box, images[:FIT], SMALL, seed=0)


def test_fitted_explainer_finds_the_planted_region_on_held_out_images(data, explainer):
    images, red, blue = data
    ex = explainer.explain(images[FIT:])
    assert ex.maps.shape == (HELD_OUT, SIDE, SIDE) and ex.maps.dtype == np.float32
    assert ex.maps.min() >= 0.0 and ex.maps.max() <= 1.0 and ex.method == "dax-amortised"
    # No black box given: no query, so no targets or scores to report.
    assert (ex.targets == -1).all() and np.isnan(ex.scores).all()
    iou_red, iou_blue = daxjax.metrics.iou(ex.maps, red[FIT:]), daxjax.metrics.iou(ex.maps, blue[FIT:])
    random_maps = np.random.default_rng(0).uniform(size=ex.maps.shape).astype(np.float32)
    iou_random = daxjax.metrics.iou(random_maps, red[FIT:])
    print("held-out IoU with the cause:", iou_red.round(2), "distractor:", iou_blue.round(2),
          "random map:", iou_random.mean().round(3))
    assert iou_red.mean() >= 0.5 and iou_red.mean() >= iou_random.mean() + 0.3
    assert (iou_red > iou_blue).all()
    assert explainer.report["queries"] == FIT * (SMALL.teacher.queries_per_image + 1)
    assert explainer.report["trained_on"] == explainer.report["teacher_trusted"] >= FIT - 2


def test_explain_with_a_black_box_reports_targets_and_scores_and_the_same_maps(data, explainer):
    images, _, _ = data
    ex = explainer.explain(images[FIT:FIT + 3], bb=red_fraction_box)
    probs = red_fraction_box(images[FIT:FIT + 3])
    np.testing.assert_array_equal(ex.targets, probs.argmax(1))
    np.testing.assert_allclose(ex.scores, probs.max(1), rtol=1e-6)
    np.testing.assert_array_equal(ex.maps, explainer.explain(images[FIT:FIT + 3]).maps)


def test_refinement_never_makes_the_map_worse_on_the_planted_box(data, explainer):
    images, red, _ = data
    before = daxjax.metrics.iou(explainer.explain(images[FIT:]).maps, red[FIT:])
    ex = explainer.refine(red_fraction_box, images[FIT:], queries_per_image=K)
    after = daxjax.metrics.iou(ex.maps, red[FIT:])
    print("IoU before refinement:", before.round(2), "after:", after.round(2), "refined:", ex.diagnostics["refined"])
    assert (after >= before - 0.02).all()
    assert set(ex.diagnostics) == set(amortised.REFINE_DIAGNOSTICS)
    for name, values in ex.diagnostics.items():
        assert values.shape == (HELD_OUT,), name
    assert ex.trusted.all() and (ex.diagnostics["heldout_fit"] > 0.5).all()
    assert (ex.diagnostics["agreement"] > 0.3).all()  # the amortised map ranks pixels as DAX does
    np.testing.assert_array_equal(ex.targets, red_fraction_box(images[FIT:]).argmax(1))


def test_refinement_repairs_an_untrained_explainer(data, explainer):
    """Never trained (random weights), the amortised map is useless; K queries an image and
    refinement find the planted box."""
    images, red, _ = data
    _, params = init_nets(SMALL.nets, 3, jax.random.key(7))
    weak = amortised.AmortisedExplainer(SMALL, params, 3, 0, {})
    before = daxjax.metrics.iou(weak.explain(images[FIT:FIT + 4]).maps, red[FIT:FIT + 4])
    ex = weak.refine(red_fraction_box, images[FIT:FIT + 4], queries_per_image=K)
    after = daxjax.metrics.iou(ex.maps, red[FIT:FIT + 4])
    print("undertrained IoU:", before.round(2), "refined:", after.round(2), ex.diagnostics["refined"])
    assert after.mean() >= before.mean() + 0.3 and ex.diagnostics["refined"].all()


def test_save_and_load_give_the_same_maps(tmp_path, data, explainer):
    images, _, _ = data
    path = explainer.save(tmp_path / "explainer.npz")
    loaded = amortised.load(path)
    assert loaded.config == explainer.config and loaded.seed == explainer.seed
    np.testing.assert_array_equal(loaded.explain(images[FIT:]).maps, explainer.explain(images[FIT:]).maps)
    with np.load(path, allow_pickle=False) as archive:  # no pickled object inside
        assert all(archive[name].dtype != object for name in archive.files)


def test_an_image_map_does_not_depend_on_the_other_images(data, explainer):
    images, _, _ = data
    batch = images[FIT:]
    together = explainer.explain(batch).maps
    alone = explainer.explain(batch[5:6]).maps[0]
    reordered = explainer.explain(batch[::-1]).maps
    np.testing.assert_array_equal(together[5], alone)
    np.testing.assert_array_equal(reordered[::-1], together)
    refined_alone = explainer.refine(red_fraction_box, batch[2:3], queries_per_image=K).maps[0]
    refined_with = explainer.refine(red_fraction_box, batch[:4], queries_per_image=K).maps[2]
    np.testing.assert_array_equal(refined_alone, refined_with)


def test_same_data_seed_and_config_give_the_same_explainer_bit_for_bit(data):
    images, _, _ = data
    few = images[:10]  # bit-identity needs no more images (and the suite's time is short)
    a = amortised.fit(red_fraction_box, few, BRIEF, seed=3)
    b = amortised.fit(red_fraction_box, few[::-1], BRIEF, seed=3)  # the order does not matter
    c = amortised.fit(red_fraction_box, few, BRIEF, seed=4)
    leaves = lambda e: [np.asarray(x) for x in jax.tree.leaves(e.params)]  # noqa: E731
    for x, y in zip(leaves(a), leaves(b)):
        np.testing.assert_array_equal(x, y)
    assert any(np.abs(x - y).max() > 0 for x, y in zip(leaves(a), leaves(c)))


def test_bad_input_is_a_clear_error(tmp_path, data, explainer):
    images, _, _ = data
    with pytest.raises(InputError, match="images_or_source.*shape"):
        amortised.fit(red_fraction_box, images[0], SMALL)
    with pytest.raises(InputError, match="images_or_source.*at least 2"):
        amortised.fit(red_fraction_box, images[:1], SMALL)
    bad = images[:4].copy()
    bad[2, 0, 0, 0] = np.nan
    with pytest.raises(InputError, match=r"images_or_source.*image\(s\) 2"):
        amortised.fit(red_fraction_box, bad, SMALL)
    with pytest.raises(InputError, match="config"):
        amortised.fit(red_fraction_box, images[:4], config=daxjax.DAXConfig())
    with pytest.raises(InputError, match="images have 1 channel"):
        explainer.explain(images[:2, ..., :1])
    with pytest.raises(InputError, match="images.*outside"):
        explainer.explain(images[:2] * 2.0)
    with pytest.raises(InputError, match="queries_per_image"):
        explainer.refine(red_fraction_box, images[:2], queries_per_image=0)
    with pytest.raises(InputError, match="at least 8x8"):
        explainer.explain(images[:2, :4, :4])
    with pytest.raises(ValueError, match="Teacher.queries_per_image"):
        amortised.Teacher(queries_per_image=4)
    with pytest.raises(ValueError, match="Nets.resolution"):
        amortised.Nets(resolution=30)
    with pytest.raises(ValueError, match="Refine.agreement_floor"):
        amortised.Refine(agreement_floor=1.5)
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"not an archive")
    with pytest.raises(InputError, match="junk.npz"):
        amortised.load(junk)


def test_fit_reads_a_source_as_it_reads_an_array(tmp_path, data):
    images, _, _ = data
    as_uint8 = np.round(images[:8] * 255).astype(np.uint8)
    np.savez(tmp_path / "scenes.npz", images=as_uint8)
    from_file = amortised.fit(red_fraction_box, str(tmp_path / "scenes.npz"), BRIEF, seed=0)
    from_array = amortised.fit(red_fraction_box, as_uint8, BRIEF, seed=0)
    for x, y in zip(jax.tree.leaves(from_file.params), jax.tree.leaves(from_array.params)):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
