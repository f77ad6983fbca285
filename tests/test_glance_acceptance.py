"""GLANCE-lite acceptance (issue 7): the explainer against MorphoSynth's planted ground truth.

Thresholds are the issue's targets, frozen. Two ways of running them:
- by default, on the committed explainers (`daxjax/glance/models/glance_<task>.npz`, written by
  `python -m benchmarks.glance.acceptance --save-models`), scored on freshly rendered held-out images whose
  seed neither training nor the benchmark uses;
- `-m slow`: fitting both explainers from scratch with the default configuration (the benchmark's
  fits, but on one core each, which XLA does not reproduce bit for bit) and scoring them on more
  held-out images; it fails on any missed target not listed
  in FROM_SCRATCH_SHORTFALLS. Measured on 2 CPU cores: 530 s (2026-12-04; 598 s on 2026-12-02;
  the issue's bar: 10 min).
"""

import multiprocessing
import os
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from daxjax import glance
from daxjax.glance import classifier as cl
from daxjax.glance import evaluation as ev
from daxjax.glance import morphosynth as ms

_ROOT = str(Path(__file__).resolve().parents[1])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from benchmarks.glance.acceptance import TRAIN_SEED, saved_model_path  # noqa: E402

HELD_OUT_SEED = 4242


def _outrank(scores: dict, task: str) -> float:
    # For the control, thickness is an indirect cause (T -> I -> label): its *direct* effect is
    # the one planted to be nil, so the flipped ranking is judged on direct effects.
    return scores["outrank_rate"] if task == "thickness_slant" else scores["outrank_direct"]


TARGETS = {
    "fidelity": lambda s, task: s["fidelity"] >= 0.90,
    "alignment_r2": lambda s, task: bool(np.all(s["alignment_r2"] >= 0.8)),
    "graph_shd": lambda s, task: s["graph_shd"] <= 1,
    "outrank": lambda s, task: _outrank(s, task) >= 0.90,
    "spearman": lambda s, task: s["spearman_total"] >= 0.8,
    "counterfactual_direction": lambda s, task: s["counterfactual_direction"] >= 0.90,
}
"""The issue's targets, frozen."""

SHORTFALLS: dict[tuple[str, str], str] = {}
"""(task, target) pairs the committed explainers do not meet, with the measured value: expected
failures (strict, so meeting one later turns the test red until it is removed from here). None since
the interventions stay inside the training codes and the surrogate trains 4000 steps (RESULTS.md)."""

FROM_SCRATCH_SHORTFALLS: dict[tuple[str, str], str] = {}
"""(task, target) pairs the from-scratch run misses on its larger held-out set (its fits use the committed
explainers' seed and data), with the measured value. None since local effects are averaged over codes
around E(x): control Spearman 0.812 on its 200 local images (0.788 before; 2 CPU cores, 2026-12-02)."""


def summary(scores: dict) -> dict:
    return {k: v for k, v in scores.items() if k not in ("explanation", "truth_total")}


@pytest.fixture(scope="module")
def held_out():
    return ms.sample(200, HELD_OUT_SEED)


_SCORES = {}


def committed_scores(task: str, held_out) -> dict:
    if task not in _SCORES:
        model = glance.load(saved_model_path(task), cl.classifier_blackbox(task))
        _SCORES[task] = ev.score(model, task, held_out, n_local=100)
    return _SCORES[task]


@pytest.mark.parametrize("task, target", [
    pytest.param(task, target, marks=pytest.mark.xfail(strict=True, reason=SHORTFALLS[(task, target)])
                 if (task, target) in SHORTFALLS else ())
    for task in sorted(cl.TASKS) for target in TARGETS])
def test_committed_explainer_meets_the_targets(task, target, held_out):
    scores = committed_scores(task, held_out)
    assert TARGETS[target](scores, task), summary(scores)


def test_control_flips_the_ranking(held_out):
    """f ranks thickness above intensity; the control (trained on intensity) the other way round
    (mean |direct effect| over images)."""
    mean_direct = {task: np.abs(committed_scores(task, held_out)["explanation"].direct_effects).mean(axis=0)
                   for task in cl.TASKS}
    t, i = ms.CONCEPTS.index("thickness"), ms.CONCEPTS.index("intensity")
    assert mean_direct["thickness_slant"][t] > 2 * mean_direct["thickness_slant"][i], mean_direct
    assert mean_direct["intensity_slant"][i] > 2 * mean_direct["intensity_slant"][t], mean_direct


def _fit_and_score(task: str) -> dict:
    """Fits the explainer of `task` from scratch with the default configuration and scores it on
    more held-out images than the default test."""
    from daxjax.glance.surrogate import keep_large_buffers_in_the_heap

    keep_large_buffers_in_the_heap()  # as the benchmark does (the package leaves it to the caller)
    train = ms.sample(4000, TRAIN_SEED)
    test = ms.sample(500, HELD_OUT_SEED)
    model = glance.fit(cl.classifier_blackbox(task), train.images, ev.context_features(train.images),
                       glance.GlanceConfig(surrogate=glance.SurrogateConfig(log_every=0)))
    return summary(ev.score(model, task, test, n_local=200))


def _cpu_shares(parts: int) -> list[set[int]] | None:
    """This process's CPUs split into `parts` disjoint sets, or None when there are too few."""
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    if len(cpus) < parts:
        return None
    return [set(cpus[i::parts]) for i in range(parts)]


@pytest.mark.slow
def test_fit_from_scratch_meets_the_targets():
    """The two fits are independent, so they run side by side, each in its own process pinned to its
    own share of the CPUs (measured on 2 cores: two pinned fits take 1.25-1.5x less time than one
    after the other; XLA's small convolutions keep two cores only ~75 % busy in one process)."""
    tasks = sorted(cl.TASKS)
    shares = _cpu_shares(len(tasks))
    if shares is None:
        results = {task: _fit_and_score(task) for task in tasks}
    else:
        spawn = multiprocessing.get_context("spawn")  # a forked JAX runtime is unsafe
        pools = [ProcessPoolExecutor(1, mp_context=spawn, initializer=os.sched_setaffinity, initargs=(0, share))
                 for share in shares]
        try:
            futures = {task: pool.submit(_fit_and_score, task) for task, pool in zip(tasks, pools)}
            results = {task: future.result() for task, future in futures.items()}
        finally:
            for pool in pools:
                pool.shutdown()
    for task, scores in results.items():
        print(task, {name: scores[name] for name in ("fidelity", "alignment_r2", "graph_shd", "outrank_rate",
                                                     "outrank_direct", "spearman_total", "counterfactual_direction")})
        missed = {name for name, ok in TARGETS.items() if not ok(scores, task)}
        assert missed <= {t for (k, t) in FROM_SCRATCH_SHORTFALLS if k == task}, (task, missed, scores)
