"""Linear NOTEARS (daxjax.glance.discovery) on the planted concepts and the classifiers' logits."""

import numpy as np
import pytest

from daxjax.glance import classifier as cl
from daxjax.glance import discovery as dc
from daxjax.glance import morphosynth as ms

NODES = ("thickness", "intensity", "slant", "width", "logit")


def planted(task):
    a, b = cl.CAUSES[task]
    return dc.adjacency_from_edges(NODES, [("thickness", "intensity"), ("slant", "width"), (a, "logit"), (b, "logit")])


@pytest.fixture(scope="module")
def sample():
    return ms.sample(2000, seed=303)


@pytest.mark.parametrize("task", sorted(cl.TASKS))
def test_exact_graph_on_true_concepts_and_real_logits(task, sample):
    p = cl.classifier_blackbox(task)(sample.images).astype(np.float64)
    logit = np.log(p[:, 1]) - np.log(p[:, 0])
    graph = dc.notears(np.c_[sample.concepts, logit], NODES, sinks=("logit",))
    assert dc.structural_hamming_distance(graph.adjacency, planted(task)) == 0, graph.edges()
    # Refitted weights: the planted 0.75 of the concept mechanisms.
    assert abs(graph.weights[0, 1] - 0.75) < 0.05 and abs(graph.weights[2, 3] - 0.75) < 0.05


def test_orientation_needs_non_gaussianity():
    """Without the likelihood-ratio step the concept edges' directions are a coin toss; with it
    they are right on every seed."""
    right = {True: 0, False: 0}
    for seed in range(4):
        c = ms.structural_equations(ms.sample_exogenous(2000, 500 + seed))
        logit = 3 * (c[:, 0] + c[:, 2]) + np.random.default_rng(seed).normal(0, 0.5, 2000)
        for orient in (True, False):
            g = dc.notears(np.c_[c, logit], NODES, sinks=("logit",), config=dc.NotearsConfig(orient=orient))
            right[orient] += dc.structural_hamming_distance(g.adjacency, planted("thickness_slant")) == 0
    assert right[True] == 4 and right[False] < 4, right


def test_pairwise_direction_and_negentropy():
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, 5000)
    y = 0.8 * x + 0.3 * rng.uniform(-1, 1, 5000)
    assert dc.pairwise_direction(x, y) > 0 > dc.pairwise_direction(y, x)
    assert dc.negentropy(rng.normal(size=20000)) < 1e-3 < dc.negentropy(x)


def test_sinks_forbidden_edges_and_helpers():
    rng = np.random.default_rng(1)
    y = rng.uniform(-1, 1, 3000)
    x = 0.9 * y + 0.3 * rng.uniform(-1, 1, 3000)  # data generated y -> x ...
    g = dc.notears(np.c_[x, y], ("x", "y"), sinks=("y",))  # ... but y is declared a sink
    assert g.edges() == [("x", "y")]
    g = dc.notears(np.c_[x, y], ("x", "y"), forbidden=[("x", "y"), ("y", "x")])
    assert g.edges() == []
    a = dc.adjacency_from_edges("abc", [("a", "b"), ("b", "c")])
    b = dc.adjacency_from_edges("abc", [("b", "a"), ("a", "c")])
    assert dc.structural_hamming_distance(a, b) == 3  # a reversal, a deletion, an insertion
    assert dc.structural_hamming_distance(a, a | a.T) == 2  # two edges left undirected
    chain = dc.CausalGraph(("a", "b", "c"), a, np.array([[0, 0.5, 0], [0, 0, 2.0], [0, 0, 0]]), np.zeros(3),
                           np.ones(3), "test")
    np.testing.assert_allclose(chain.total_effects()[0], [1.0, 0.5, 1.0])
    assert chain.restrict(["c", "a"]).names == ("c", "a")


def test_bad_data_is_named():
    good = np.random.default_rng(2).normal(size=(100, 3))
    with pytest.raises(ValueError, match=r"\[n, 3\]"):
        dc.notears(good[:, :2], "abc")
    bad = good.copy()
    bad[5, 1] = np.nan
    with pytest.raises(ValueError, match=r"\['b'\].*NaN"):
        dc.notears(bad, "abc")
    const = good.copy()
    const[:, 2] = 1.0
    with pytest.raises(ValueError, match=r"\['c'\] are constant"):
        dc.notears(const, "abc")
    with pytest.raises(ValueError, match="sink 'z'"):
        dc.notears(good, "abc", sinks=("z",))


def test_causal_learn_cross_check(sample):
    pytest.importorskip("causallearn")
    logit = 3 * (sample.concepts[:, 0] + sample.concepts[:, 2])
    logit = logit + np.random.default_rng(3).normal(0, 0.5, len(logit))
    g = dc.causal_learn_graph(np.c_[sample.concepts, logit], NODES, method="pc", sinks=("logit",))
    cpdag = planted("thickness_slant")
    cpdag[1, 0] = cpdag[3, 2] = True  # T - I and S - W are undirected in the equivalence class
    assert dc.structural_hamming_distance(g.adjacency, cpdag) == 0, g.edges()
