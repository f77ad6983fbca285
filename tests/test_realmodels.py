"""Real photos, a real ImageNet model: the benchmark's cases are exact, and DAX finds the object.

EfficientNet-Lite0 is bundled (ONNX, 224 px). Small N keeps these to seconds; the benchmark itself
(`python -m benchmarks.quality.realmodels`) measures at N = 1000 and 3000.
"""

import numpy as np
import pytest

import daxjax
from benchmarks.datasets.realmodels.cases import GREY, RestrictedView, draw_composite, draw_region, make_cases, objects
from blackbox_adapters import efficientnet_lite0


@pytest.fixture(scope="module")
def model():
    return efficientnet_lite0(threads=2)


@pytest.fixture(scope="module")
def composites(model):
    return make_cases(model, 224, composites=3, restricted=0, seed=11)


def test_composite_ground_truth_is_the_pasted_pixels():
    rng = np.random.default_rng(0)
    for _ in range(4):
        name, _, image, mask, background = draw_composite(rng, 96)
        assert name in objects()
        assert 0.05 < mask.mean() < 0.45
        np.testing.assert_array_equal(image[~mask], np.clip(background[~mask], 0, 1))
        assert (np.abs(image[mask] - background[mask]).sum(-1) > 0).mean() > 0.9


def test_restricted_view_cannot_see_outside_its_region(model):
    rng = np.random.default_rng(1)
    photo = rng.uniform(size=(224, 224, 3)).astype(np.float32)
    shape, region = draw_region(rng, photo)
    assert 0.09 <= region.mean() <= 0.41
    bb = RestrictedView(model, region)
    changed = np.where(region[..., None], photo, rng.uniform(size=photo.shape)).astype(np.float32)
    np.testing.assert_array_equal(bb(photo[None]), bb(changed[None]))
    np.testing.assert_array_equal(bb(photo[None]), model(np.where(region[..., None], photo, GREY)[None]))


def test_cases_are_deterministic_and_kept_only_when_the_model_sees_the_object(model, composites):
    again = make_cases(model, 224, composites=3, restricted=0, seed=11)
    np.testing.assert_array_equal(again.images, composites.images)
    np.testing.assert_array_equal(again.masks, composites.masks)
    assert len(composites) == 3
    assert (np.asarray(model(composites.images)).argmax(1) == composites.targets).all()


def test_dax_finds_the_pasted_object_on_real_photos(model, composites):
    """Small N (400) and 3 composites: DAX's maps are alive, trusted and beat a random map clearly."""
    config = daxjax.DAXConfig(num_samples=400)
    ex = daxjax.explain(model, composites.images, targets=composites.targets, config=config)
    iou = daxjax.metrics.iou(ex.maps, composites.masks)
    random_maps = np.random.default_rng(0).uniform(size=ex.maps.shape).astype(np.float32)
    random_iou = daxjax.metrics.iou(random_maps, composites.masks)
    print("DAX IoU", iou.round(3), "random", random_iou.round(3), ex.diagnostics)
    assert (ex.maps.std(axis=(1, 2)) > 0.05).all()          # not flat
    assert iou.mean() >= random_iou.mean() + 0.2
    assert ex.trusted.all()


def test_a_kept_dax_row_repainted_from_its_parts_is_the_engines_map():
    """The benchmark repaints a kept DAX row when only map_on_segments / effect_power differ
    (`benchmarks.quality.dax_map_rule.painted`): those maps must be the ones the engine paints."""
    from benchmarks.quality.dax_map_rule import painted, recorded_parts
    from planted import red_and_distractor_scene, red_fraction_box

    images = np.stack([red_and_distractor_scene(seed, 32)[0] for seed in range(2)])
    config = daxjax.DAXConfig(num_samples=200, steps=40, segmentation="grid", validations=2, map_on_segments=False)
    log: list = []
    with recorded_parts(log):
        before = daxjax.explain(red_fraction_box, images, config=config).maps
    parts = dict(zip(("masks", "effects", "shares"), (np.concatenate([entry[k] for entry in log]) for k in range(3))))
    np.testing.assert_allclose(painted(parts, 0.0, 0.1), before, atol=1e-6)
    after = daxjax.explain(red_fraction_box, images, config=config.replace(map_on_segments=True)).maps
    np.testing.assert_allclose(painted(parts, 1.0, 0.1), after, atol=1e-6)
    assert np.abs(after - before).max() > 1e-2  # the two paintings differ


def test_rows_are_kept_case_by_case_and_more_cases_explain_only_the_new_ones(tmp_path):
    """`explained` with a pool: a stopped run keeps its chunks, a larger selection of cases pays
    queries only for the cases not kept, and the maps equal those of one unpooled run."""
    from benchmarks.datasets.realmodels.cases import Cases
    from benchmarks.quality.realmodels import explained, run_rows
    from blackbox_adapters import CallableBlackBox

    rng = np.random.default_rng(0)
    n, side = 5, 32
    images = rng.uniform(size=(n, side, side, 3)).astype(np.float32)
    masks = np.zeros((n, side, side), bool)
    masks[:, 8:20, 8:20] = True
    cases = Cases(["composite"] * 3 + ["restricted"] * 2, [f"case {i}" for i in range(n)], images, masks,
                  np.zeros(n, np.int32), np.full(n, 0.5, np.float32), [None] * 3 + [masks[3], masks[4]])
    queried = []

    def answers(x):
        queried.append(len(x))
        p = 1.0 / (1.0 + np.exp(-4.0 * (x[:, 8:20, 8:20].mean((1, 2, 3)) - 0.5)))
        return np.stack([p, 1.0 - p], axis=1).astype(np.float32)

    model = CallableBlackBox(answers, num_classes=2, output="probs")
    config = daxjax.RISEConfig(num_samples=60)
    pool = tmp_path / "pool"

    def row(chosen, store, chunk=2, fresh=False, cfg=config):
        before = sum(queried)
        maps, seconds, _ = explained(model, chosen, "RISE", "rise", cfg, tmp_path / store, fresh, pool=pool,
                                     chunk=chunk)
        assert seconds > 0
        return maps, sum(queried) - before

    first, per_two = row(cases.select([0, 3]), "two", chunk=1)
    assert len(list((pool / "rise").glob("*.npz"))) == 2            # one chunk a case
    every, paid = row(cases, "five")
    assert paid * 2 == per_two * 3                                     # only the 3 new cases were queried
    assert len(list((pool / "rise").glob("*.npz"))) == 4            # 2 kept + the 3 new ones in chunks of 2
    np.testing.assert_allclose(every[[0, 3]], first, atol=1e-5)
    alone, _, _ = explained(model, cases, "RISE", "rise", config, tmp_path / "alone", False)
    np.testing.assert_allclose(every, alone, atol=1e-5)
    assert row(cases, "five again")[1] == 0                           # all kept: no query
    other, paid = row(cases, "other config", cfg=config.replace(num_samples=40))
    assert paid > 0
    # A row kept under one config is not handed out under another: "five" holds N = 60's maps.
    under_other, paid = row(cases, "five", cfg=config.replace(num_samples=40))
    assert paid == 0                                                   # N = 40's cases, from the pool
    np.testing.assert_allclose(under_other, other, atol=1e-6)
    assert np.abs(under_other - every).max() > 1e-3
    again, paid = row(cases.select([1, 2]), "fresh", fresh=True)
    assert paid > 0
    np.testing.assert_allclose(again, every[[1, 2]], atol=1e-5)
    # --kept-only tables a row whose cases are all in the pool, and says how far another one got.
    lines = []
    rows = {"RISE": ("rise", config), "RISE, N = 30": ("rise", config.replace(num_samples=30))}
    run_rows(model, cases, rows, tmp_path / "kept", False, lambda line, publish: lines.append(line), kept_only=True,
             pool=pool)
    assert lines[0].startswith("| RISE | 0.")
    assert lines[1] == "| RISE, N = 30 | not run yet (0 of 5 cases kept) | | | | | | | |"


def test_each_table_has_its_place_in_the_section_by_n_then_model():
    from benchmarks.datasets.realmodels import models as model_zoo
    from benchmarks.quality.realmodels import table_order

    lite0, lite2 = (f"### {model_zoo.NAMES[m]} ({model_zoo.SIDES[m]} px)" for m in ("lite0", "lite2"))
    titles = [f"{lite2}, N = 3000", "### How the rows were run", f"{lite0}, N = 3000", f"{lite2}, N = 1000",
              f"{lite0}, N = 1000"]
    keyed = sorted((t for t in titles if table_order(t) is not None), key=table_order)
    assert keyed == [f"{lite0}, N = 1000", f"{lite2}, N = 1000", f"{lite0}, N = 3000", f"{lite2}, N = 3000"]
    assert table_order("### How the rows were run") is None
    assert table_order("### Some other model (224 px), N = 1000") is None


def test_a_kept_row_is_reused_only_under_its_own_config_but_for_daxs_painting(tmp_path):
    from benchmarks.quality.realmodels import config_label, kept_under, painting

    config = daxjax.DAXConfig(num_samples=300)
    path = tmp_path / "dax-ours.npz"
    np.savez(path, maps=np.zeros((1, 4, 4)), config=np.array(config_label("dax", config)),
             painting=np.array(painting(config)))
    assert kept_under(path, "dax", config)
    assert kept_under(path, "dax", config.replace(effect_power=0.5, map_on_segments=not config.map_on_segments))
    assert not kept_under(path, "dax", config.replace(num_samples=301))
    assert not kept_under(path, "dax", config.replace(fill="blur"))
    np.savez(path, maps=np.zeros((1, 4, 4)))                            # kept before rows named their config
    assert kept_under(path, "dax", config.replace(num_samples=301))
