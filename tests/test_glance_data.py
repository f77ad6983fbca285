"""MorphoSynth (planted SCM + renderer) and the re-implemented morphometrics (daxjax.glance)."""

import numpy as np
import pytest

from daxjax.glance import morphometrics as mm
from daxjax.glance import morphosynth as ms

# Measured-morphometric columns that observe each planted concept (CONCEPTS order).
OBSERVED = [mm.MEASURES.index(name) for name in ("thickness", "intensity", "slant", "inner_width")]


@pytest.fixture(scope="module")
def data():
    sample = ms.sample(300, seed=11)
    return sample, mm.measure_batch(sample.images)


def test_images_shape_range_and_determinism():
    a = ms.sample(40, seed=3)
    b = ms.sample(40, seed=3)
    assert a.images.shape == (40, 32, 32, 1) and a.images.dtype == np.float32
    assert a.images.min() >= 0.0 and a.images.max() <= 1.0
    np.testing.assert_array_equal(a.images, b.images)
    # An image depends only on its own row: chunking and batch composition change nothing.
    exo = a.exogenous
    small = ms.render(exo.digits, a.concepts, exo.nuisance, chunk=7)
    np.testing.assert_array_equal(small, a.images)
    np.testing.assert_array_equal(ms.render(exo.digits[5:6], a.concepts[5:6], exo.nuisance[5:6]), a.images[5:6])
    assert not np.array_equal(ms.sample(40, seed=4).images, a.images)


def test_planted_graph_in_the_concepts():
    concepts = ms.structural_equations(ms.sample_exogenous(20000, seed=0))
    corr = np.corrcoef(concepts.T)
    np.testing.assert_allclose(concepts.mean(0), 0.0, atol=0.05)
    np.testing.assert_allclose(concepts.std(0), 1.0, atol=0.05)
    assert abs(corr[0, 1] - 0.75) < 0.03 and abs(corr[2, 3] - 0.75) < 0.03
    for i, j in [(0, 2), (0, 3), (1, 2), (1, 3)]:
        assert abs(corr[i, j]) < 0.03
    # Thickness is skewed (a Gamma), the other noises symmetric: the SCM is non-Gaussian.
    t = concepts[:, 0]
    assert np.mean(t**3) > 0.5


def test_decorrelated_sample_keeps_marginals_and_cuts_the_cause():
    exo = ms.sample_exogenous(20000, seed=1, decorrelate=("intensity", "width"))
    concepts = ms.structural_equations(exo)
    corr = np.corrcoef(concepts.T)
    assert abs(corr[0, 1]) < 0.03 and abs(corr[2, 3]) < 0.03
    np.testing.assert_allclose(concepts.std(0), 1.0, atol=0.05)
    # The other variables are the same draws as without decorrelation.
    plain = ms.sample_exogenous(20000, seed=1)
    np.testing.assert_array_equal(plain.noise, exo.noise)
    with pytest.raises(ValueError, match="root"):
        ms.sample_exogenous(5, seed=1, decorrelate=("thickness",))
    with pytest.raises(ValueError, match="unknown concepts"):
        ms.sample_exogenous(5, seed=1, decorrelate=("colour",))


def test_morphometrics_recover_the_planted_concepts(data):
    sample, measured = data
    assert np.isfinite(measured).all()
    corr = [np.corrcoef(measured[:, col], sample.concepts[:, j])[0, 1] for j, col in enumerate(OBSERVED)]
    # Frozen at calibration (measured 0.97, 1.00, 0.94, 0.95 on these 300 images).
    assert min(corr) >= 0.9, corr
    # Absolute scale: thickness in pixels of stroke diameter, slant in radians of shear.
    params = ms.drawing_parameters(sample.concepts)
    assert np.median(np.abs(measured[:, 0] - params["diameter"])) < 0.25
    assert np.median(np.abs(measured[:, 2] - params["shear_angle"])) < 0.08


@pytest.mark.parametrize("concept", ms.CONCEPTS)
def test_interventions_move_the_measured_concept(data, concept):
    sample, measured = data
    sub = sample.exogenous.take(slice(0, 100))
    base = ms.Sample(sample.images[:100], sample.concepts[:100], sub)
    j = ms.CONCEPTS.index(concept)
    up = ms.intervene(base, concept, 1.0, mode="total")
    after = mm.measure_batch(up.images)
    delta = after[:, OBSERVED] - measured[:100][:, OBSERVED]
    assert np.mean(delta[:, j] > 0) >= 0.95, f"{concept}: moved up in {np.mean(delta[:, j] > 0):.2f}"
    # Non-descendants keep their planted values exactly and their measures nearly.
    child = {"thickness": "intensity", "slant": "width"}.get(concept)
    for k, other in enumerate(ms.CONCEPTS):
        if other in (concept, child):
            continue
        np.testing.assert_array_equal(up.concepts[:, k], base.concepts[:, k])
        spread = np.std(measured[:, OBSERVED[k]])
        assert np.median(np.abs(delta[:, k])) < 0.25 * spread, (concept, other)
    if child is not None:
        c = ms.CONCEPTS.index(child)
        np.testing.assert_allclose(up.concepts[:, c] - base.concepts[:, c], 0.75)
        assert np.mean(delta[:, c] > 0) >= 0.9
        direct = ms.intervene(base, concept, 1.0, mode="direct")
        np.testing.assert_array_equal(direct.concepts[:, c], base.concepts[:, c])


def test_labels():
    c = np.array([[1.0, -2.0, -0.5, 0.0], [-1.0, 2.0, 0.5, 0.0]])
    np.testing.assert_array_equal(ms.label_thickness_slant(c), [1, 0])
    np.testing.assert_array_equal(ms.label_intensity_slant(c), [0, 1])


def test_bad_inputs_name_the_problem():
    exo = ms.sample_exogenous(3, seed=0)
    concepts = ms.structural_equations(exo)
    with pytest.raises(ValueError, match="concepts"):
        ms.render(exo.digits, concepts[:, :3], exo.nuisance)
    with pytest.raises(ValueError, match="0..9"):
        ms.render(exo.digits + 10, concepts, exo.nuisance)
    with pytest.raises(ValueError, match="unknown concept"):
        ms.structural_equations(exo, do={"colour": 0.0})
    with pytest.raises(ValueError, match="unknown concept"):
        ms.intervene(ms.Sample(np.zeros((3, 32, 32, 1)), concepts, exo), "colour", 1.0)
    with pytest.raises(ValueError, match="constant"):
        mm.measure(np.zeros((32, 32)))
    rows = mm.measure_batch(np.concatenate([np.zeros((1, 32, 32, 1)), ms.sample(1, 0).images]))
    assert np.isnan(rows[0]).all() and np.isfinite(rows[1]).all()
