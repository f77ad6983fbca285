"""daxjax.glance.fit / GlanceModel: input checks, a tiny fit end to end, determinism, save/load."""

import ctypes
import dataclasses
import json
import sys

import numpy as np
import pytest

from daxjax import glance
from daxjax.glance import api as glance_api
from daxjax.glance import classifier as cl
from daxjax.glance import evaluation as ev
from daxjax.glance import morphosynth as ms
from daxjax.glance import plots
from daxjax.inputs import InputError

# Just enough training to exercise every part; quality is checked in test_glance_acceptance.py.
TINY = glance.GlanceConfig(surrogate=glance.SurrogateConfig(steps=6, batch=16, student_steps=4, log_every=0))


@pytest.fixture(scope="module")
def data():
    sample = ms.sample(96, seed=21)
    return sample, ev.context_features(sample.images)


@pytest.fixture(scope="module")
def bb():
    return cl.classifier_blackbox("thickness_slant")


@pytest.fixture(scope="module")
def model(bb, data):
    sample, context = data
    return glance.fit(bb, sample.images, context, TINY)


def test_context_with_nan_or_wrong_count_is_named(bb, data):
    sample, context = data
    bad = context.copy()
    bad[7, 2] = np.nan
    with pytest.raises(InputError, match=r"NaN or inf in row\(s\) 7 \(column\(s\) \['slant'\]\)"):
        glance.fit(bb, sample.images, bad, TINY)
    with pytest.raises(InputError, match="3 columns but config.concept_names names 4"):
        glance.fit(bb, sample.images, context[:, :3], TINY)
    with pytest.raises(InputError, match="95 rows but there are 96 images"):
        glance.fit(bb, sample.images, context[:95], TINY)
    with pytest.raises(InputError, match="shape"):
        glance.fit(bb, sample.images, context[:, 0], TINY)
    const = context.copy()
    const[:, 1] = 0.5
    with pytest.raises(InputError, match=r"\['intensity'\] are constant"):
        glance.fit(bb, sample.images, const, TINY)


def test_images_of_another_size_than_f_expects(bb, data):
    sample, context = data
    small = sample.images[:, 2:30, 2:30]
    with pytest.raises(InputError, match="28x28x1 .* but the black box expects 32x32x1"):
        glance.fit(bb, small, context, TINY)
    # A plain callable declares no size: the generator's own size is still enforced.
    with pytest.raises(InputError, match="draws 32x32 images"):
        glance.fit(lambda x: np.full((len(x), 2), 0.5, np.float32), small, context, TINY)
    with pytest.raises(InputError, match="NaN or inf"):
        glance.fit(bb, np.full_like(sample.images, np.nan), context, TINY)
    with pytest.raises(InputError, match=r"target_class 2 is outside \[0, 2\)"):
        glance.fit(bb, sample.images, context, glance.GlanceConfig(target_class=2))
    with pytest.raises(InputError, match="backend"):
        glance.fit(bb, sample.images, context, glance.GlanceConfig(backend="lingam"))


def test_fit_and_explain_shapes(model, data):
    sample, _ = data
    k = len(ms.CONCEPTS)
    latent = model.config.surrogate.latent_dim
    assert model.graph.names == ms.CONCEPTS + tuple(f"latent_{j}" for j in range(latent - k)) + ("logit",)
    assert not model.graph.adjacency[-1].any(), "the log-odds node must be a sink"
    assert model.concept_graph.names == ms.CONCEPTS + ("logit",)
    ex = model.explain(sample.images[:5])
    assert ex.concepts == ms.CONCEPTS
    assert ex.importances.shape == ex.total_effects.shape == ex.direct_effects.shape == (5, k)
    np.testing.assert_array_equal(ex.importances, np.abs(ex.total_effects))
    assert ex.counterfactuals.shape == (5, k, 2, 32, 32, 1)
    assert ex.reconstructions.shape == (5, 32, 32, 1) and ex.codes.shape == (5, latent)
    assert np.isfinite(ex.total_effects).all() and np.isfinite(ex.direct_effects).all()
    assert ex.counterfactuals.min() >= 0 and ex.counterfactuals.max() <= 1
    np.testing.assert_allclose(ex.logits, model.log_odds(sample.images[:5]), rtol=1e-6)
    with pytest.raises(InputError, match="black box expects 32x32x1"):
        model.explain(sample.images[:2, :28, :28])
    with pytest.raises(InputError, match="features were given"):
        model.explain(sample.images[:2], features=np.zeros((2, 3)))


def test_explanation_depends_only_on_the_image(model, data):
    sample, _ = data
    batch = model.explain(sample.images[:6])
    alone = model.explain(sample.images[4:5])
    np.testing.assert_allclose(alone.total_effects[0], batch.total_effects[4], atol=1e-4)
    np.testing.assert_allclose(alone.counterfactuals[0], batch.counterfactuals[4], atol=1e-5)


def test_interventions_follow_the_graph(model):
    """A total intervention moves exactly the concept's descendants; a direct one only the concept."""
    from daxjax.glance.local import interventions

    plan = interventions(model.graph, model.concepts, model.latent_names, 1.0)
    effects = model.graph.total_effects()
    for c, name in enumerate(model.concepts):
        direct = plan.deltas[plan.index("direct", c, +1)]
        assert np.flatnonzero(direct).tolist() == [c]
        np.testing.assert_allclose(plan.deltas[plan.index("direct", c, -1)], -direct)
        total = plan.deltas[plan.index("total", c, +1)]
        reach = effects[c, :-1] != 0
        assert np.array_equal(total != 0, reach), name


def test_interventions_stay_inside_the_training_codes(model):
    """Codes at and beyond the edges of the training range: every intervened concept coordinate
    stays inside the range, and each (-, +) pair keeps its width (the effect per sd is unchanged)."""
    from daxjax.glance.local import interventions, shifted_codes

    plan = interventions(model.graph, model.concepts, model.latent_names, 1.0)
    low, high = model.code_range
    codes = np.stack([low, high, 0.5 * (low + high), low - 3.0]).astype(np.float32)
    shifted = np.asarray(shifted_codes(codes, plan.deltas, plan.coordinates, low, high))  # [4, n_int, m]
    j = plan.coordinates
    inside = (shifted[:, np.arange(len(j)), j] >= low[j] - 1e-5) & (shifted[:, np.arange(len(j)), j] <= high[j] + 1e-5)
    narrow = (high - low)[j] < 2 * np.abs(plan.deltas[np.arange(len(j)), j])
    assert inside[:, ~narrow].all()
    for mode in ("total", "direct"):
        for c in range(len(model.concepts)):
            lo, hi = plan.index(mode, c, -1), plan.index(mode, c, +1)
            np.testing.assert_allclose(shifted[:, hi] - shifted[:, lo], np.broadcast_to(2 * plan.deltas[hi], (4,) +
                                       plan.deltas[hi].shape), atol=1e-5)
    # Far from the edges of a range, a code is shifted exactly as planned, centred on itself.
    wide = np.asarray(shifted_codes(codes, plan.deltas, plan.coordinates, low - 10.0, high + 10.0))
    np.testing.assert_allclose(wide, codes[:, None, :] + plan.deltas[None], atol=1e-5)


def test_fit_is_deterministic_and_save_load_round_trip(bb, model, data, tmp_path):
    sample, context = data
    again = glance.fit(bb, sample.images, context, TINY)
    np.testing.assert_array_equal(again.encode(sample.images[:8]), model.encode(sample.images[:8]))
    np.testing.assert_array_equal(again.graph.adjacency, model.graph.adjacency)
    path = model.save(tmp_path / "m.npz")
    loaded = glance.load(path, bb)
    assert loaded.config == model.config and loaded.graph.names == model.graph.names
    np.testing.assert_array_equal(loaded.code_range, model.code_range)
    a, b = model.explain(sample.images[:3]), loaded.explain(sample.images[:3])
    np.testing.assert_array_equal(a.total_effects, b.total_effects)
    np.testing.assert_array_equal(a.counterfactuals, b.counterfactuals)


def test_saved_config_missing_fields_take_defaults_and_unknown_fields_are_named():
    """Models saved before a config field existed load with its default; a field this version
    does not know is an error naming it, not silently dropped."""
    config = glance.GlanceConfig(shift=0.5, surrogate=glance.SurrogateConfig(steps=7, channels=(8, 8, 4)))
    stored = json.loads(json.dumps(dataclasses.asdict(config)))
    assert glance_api._config_from_dict(stored) == config
    del stored["smoothing_pairs"], stored["surrogate"]["whiten"]
    assert glance_api._config_from_dict(stored) == config
    stored["surrogate"]["warp"] = 1
    with pytest.raises(ValueError, match=r"config\.surrogate.*'warp'"):
        glance_api._config_from_dict(stored)


@pytest.mark.slow
def test_adversarial_mode_runs(bb, data):
    """The opt-in GAN mode (discriminator, lazy R1) trains and returns finite losses."""
    sample, context = data
    config = glance.GlanceConfig(surrogate=glance.SurrogateConfig(
        steps=3, batch=16, student_steps=2, adversarial=True, r1_every=2, log_every=0))
    m = glance.fit(bb, sample.images, context, config)
    assert len(m.surrogate.history["disc"]) == 3 and np.isfinite(m.surrogate.history["disc"]).all()
    assert np.isfinite(m.surrogate.history["adv"]).all()


def test_report_pictures(model, data, tmp_path):
    sample, _ = data
    ex = model.explain(sample.images[:2])
    page = plots.write_glance_report(tmp_path, model, ex, sample.images[:2], indices=(0, 1),
                                     truth=ev.planted_adjacency("thickness_slant")[1], true_effects=ex.total_effects)
    names = {p.name for p in tmp_path.iterdir()}
    assert {"glance.html", "graph.png", "importances_0.png", "counterfactuals_1.png"} <= names
    assert "counterfactuals_1.png" in page.read_text()


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                                       "fsmblks", "uordblks", "fordblks", "keepcost")]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt is Linux-only")
def test_surrogate_training_keeps_large_buffers_in_the_heap():
    """The allocator setting behind the surrogate's step time (`keep_large_buffers_in_the_heap`)
    takes effect on glibc: a 48 MB block (above glibc's default mmap threshold, 32 MB at most)
    then comes from the heap, not from a fresh mapping."""
    from daxjax.glance.surrogate import keep_large_buffers_in_the_heap

    libc = ctypes.CDLL("libc.so.6")
    libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    libc.mallinfo2.restype = _MallInfo2
    assert keep_large_buffers_in_the_heap()
    mapped = libc.mallinfo2().hblkhd
    block = libc.malloc(48 << 20)
    try:
        assert libc.mallinfo2().hblkhd - mapped < 48 << 20
    finally:
        libc.free(block)


def test_effects_are_the_mean_over_the_jittered_codes(model, data):
    """With offsets, each effect is the mean of the single-code effects at E(x) + offset; the
    counterfactual images come from E(x) itself; blocks of images do not change anything."""
    import dataclasses

    from daxjax.glance.local import code_jitter, explain_codes, interventions

    sample, _ = data
    x = sample.images[:5]
    codes = model.encode(x)
    plan = interventions(model.graph, model.concepts, model.latent_names, 1.0)
    jitter = code_jitter(2, 0.5, model.graph.std[:codes.shape[1]])
    assert jitter.shape == (5, codes.shape[1]) and not jitter[0].any()
    np.testing.assert_allclose(jitter[1:3], -jitter[3:5])
    logits = model.log_odds(x)

    def explain(c, **kw):
        return explain_codes(c, plan, model.code_range, model.surrogate.decode, model.log_odds, logits, **kw)

    averaged = explain(codes, jitter=jitter, max_drawn=2 * len(plan.deltas) * len(jitter))  # 2 images a block
    singles = [explain(codes + offset) for offset in jitter]
    np.testing.assert_allclose(averaged.total_effects, np.mean([s.total_effects for s in singles], axis=0), atol=1e-4)
    np.testing.assert_allclose(averaged.direct_effects, np.mean([s.direct_effects for s in singles], axis=0), atol=1e-4)
    np.testing.assert_allclose(averaged.counterfactuals, singles[0].counterfactuals, atol=1e-6)
    plain = dataclasses.replace(model.config, smoothing_pairs=0)
    alone = glance.GlanceModel(**{**model.__dict__, "config": plain}).explain(x)
    np.testing.assert_allclose(alone.total_effects, singles[0].total_effects, atol=1e-5)
    with pytest.raises(ValueError, match="zero first row"):
        explain(codes, jitter=jitter[1:])
