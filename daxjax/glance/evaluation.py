"""Scoring a fitted GLANCE-lite model against MorphoSynth's planted ground truth.

Every score compares the explainer with something it never saw: the planted concepts, the planted
graph, and exact counterfactual images re-rendered from the SCM and answered by the classifier.

- `fidelity`: f's decision on G(E(x)) equals f's decision on x;
- `alignment_r2`: R^2 of a linear fit of each true concept on its aligned code;
- `graph_distance`: structural Hamming distance of the learned graph among the concepts and f's
  output to the planted one;
- `true_effects`: ground-truth total / direct effects of +-shift sd on f's log-odds;
- `outrank_rate`: share of images where every true cause is more important than every correlate
  (on total effects, or on direct effects: for the control classifier, thickness is a genuine
  *indirect* cause through intensity, so only its direct effect is planted to be nil);
- `pooled_spearman`: rank correlation of explained and true effects over all (image, concept) pairs;
- `counterfactual_direction`: share of (image, concept) pairs whose counterfactual images, measured
  with the morphometrics, move the intended concept the intended way.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from scipy.stats import spearmanr

from daxjax.glance import morphometrics as mm
from daxjax.glance import morphosynth as ms
from daxjax.glance.classifier import CAUSES
from daxjax.glance.discovery import adjacency_from_edges, structural_hamming_distance
from daxjax.glance.local import LocalExplanation

CONTEXT_MEASURES = ("thickness", "intensity", "slant", "inner_width")
"""The morphometrics that observe the planted concepts (CONCEPTS order): the context features."""


def context_features(images: np.ndarray) -> np.ndarray:
    """The observed context of MorphoSynth images: [n, 4] measured thickness, intensity, slant,
    inner width (NaN rows for images that cannot be measured)."""
    m = mm.measure_batch(images)
    return m[:, [mm.MEASURES.index(name) for name in CONTEXT_MEASURES]]


def planted_adjacency(task: str, output: str = "logit") -> tuple[tuple[str, ...], np.ndarray]:
    """Nodes (concepts + output) and the planted graph among them for the classifier of `task`."""
    nodes = ms.CONCEPTS + (output,)
    edges = [("thickness", "intensity"), ("slant", "width")] + [(c, output) for c in CAUSES[task]]
    return nodes, adjacency_from_edges(nodes, edges)


def graph_distance(model, task: str) -> int:
    """SHD between the model's graph among concepts and f's output, and the planted one."""
    nodes, truth = planted_adjacency(task)
    return structural_hamming_distance(model.graph.restrict(nodes).adjacency, truth)


def fidelity(model, images: np.ndarray) -> float:
    """Share of images on which f decides the same on G(E(x)) as on x."""
    x = np.asarray(images, np.float32)
    recon = model.surrogate.decode(model.encode(x))
    return float(np.mean((model.log_odds(recon) > 0) == (model.log_odds(x) > 0)))


def alignment_r2(model, images: np.ndarray, concepts: np.ndarray) -> np.ndarray:
    """[k] R^2 of each true concept regressed (linearly, with intercept) on its aligned code."""
    codes = model.encode(images)
    out = []
    for j in range(concepts.shape[1]):
        design = np.c_[codes[:, j], np.ones(len(codes))]
        coef = np.linalg.lstsq(design, concepts[:, j], rcond=None)[0]
        out.append(1.0 - np.var(concepts[:, j] - design @ coef) / np.var(concepts[:, j]))
    return np.asarray(out)


def free_code_correlation(model, images: np.ndarray, concepts: np.ndarray) -> float:
    """Largest |correlation| between a free (unaligned) code and a true concept."""
    codes = model.encode(images)[:, len(model.concepts):]
    corr = np.corrcoef(np.c_[codes, concepts].T)[:codes.shape[1], codes.shape[1]:]
    return float(np.max(np.abs(corr)))


def true_effects(sample: ms.Sample, log_odds, shift: float = 1.0, mode: str = "total") -> np.ndarray:
    """Ground-truth effects [n, 4] (log-odds per sd): each concept re-rendered at -+shift sd
    (descendants following for "total") and answered by f; central difference as in `local`."""
    out = np.empty((len(sample), len(ms.CONCEPTS)), np.float32)
    for j, concept in enumerate(ms.CONCEPTS):
        hi = log_odds(ms.intervene(sample, concept, shift, mode=mode).images)
        lo = log_odds(ms.intervene(sample, concept, -shift, mode=mode).images)
        out[:, j] = (hi - lo) / (2.0 * shift)
    return out


def outrank_rate(importances: np.ndarray, causes: Sequence[int], correlates: Sequence[int]) -> float:
    """Share of rows where min(importances[causes]) > max(importances[correlates])."""
    imp = np.asarray(importances)
    return float(np.mean(imp[:, list(causes)].min(axis=1) > imp[:, list(correlates)].max(axis=1)))


def pooled_spearman(explained: np.ndarray, truth: np.ndarray) -> float:
    """Spearman correlation over all (image, concept) pairs of two [B, k] effect arrays."""
    return float(spearmanr(np.ravel(explained), np.ravel(truth)).statistic)


def mean_image_spearman(explained: np.ndarray, truth: np.ndarray) -> float:
    """Mean over images of the Spearman correlation across concepts (NaN rows skipped)."""
    values = [spearmanr(a, b).statistic for a, b in zip(explained, truth)]
    return float(np.nanmean(values))


def counterfactual_direction(explanation: LocalExplanation) -> tuple[float, np.ndarray]:
    """Measures G's counterfactual images and returns (share of (image, concept) pairs where the
    intervened concept's measure is larger at +shift than at -shift, median |change| of every
    measure under each intervention in units of its spread across images [k (intervened), k])."""
    cf = explanation.counterfactuals  # [B, k, 2, H, W, C]
    b, k = cf.shape[:2]
    measured = context_features(cf.reshape((-1,) + cf.shape[3:])).reshape(b, k, 2, k)
    delta = measured[:, :, 1] - measured[:, :, 0]  # [B, intervened, measure]
    spread = np.nanstd(context_features(explanation.reconstructions), axis=0)
    moved = np.array([delta[:, c, c] > 0 for c in range(k)]).T  # [B, k]
    return float(np.mean(moved)), np.nanmedian(np.abs(delta), axis=0) / spread


def score(model, task: str, sample: ms.Sample, *, n_local: int | None = None) -> dict:
    """Every score of a model fitted to the classifier of `task`, on held-out MorphoSynth images."""
    n_local = len(sample) if n_local is None else n_local
    local = ms.Sample(sample.images[:n_local], sample.concepts[:n_local], sample.exogenous.take(slice(0, n_local)))
    names = ms.CONCEPTS
    causes = [names.index(c) for c in CAUSES[task]]
    correlates = [j for j in range(len(names)) if j not in causes]
    explanation = model.explain(local.images)
    truth_total = true_effects(local, model.log_odds, model.config.shift, "total")
    truth_direct = true_effects(local, model.log_odds, model.config.shift, "direct")
    direction, off_target = counterfactual_direction(explanation)
    return {
        "fidelity": fidelity(model, sample.images),
        "alignment_r2": alignment_r2(model, sample.images, sample.concepts),
        "free_code_correlation": free_code_correlation(model, sample.images, sample.concepts),
        "graph_shd": graph_distance(model, task),
        "concept_edges": model.concept_graph.edges(),
        "outrank_rate": outrank_rate(explanation.importances, causes, correlates),
        "true_outrank_rate": outrank_rate(np.abs(truth_total), causes, correlates),
        "outrank_direct": outrank_rate(np.abs(explanation.direct_effects), causes, correlates),
        "true_outrank_direct": outrank_rate(np.abs(truth_direct), causes, correlates),
        "spearman_total": pooled_spearman(explanation.total_effects, truth_total),
        "spearman_direct": pooled_spearman(explanation.direct_effects, truth_direct),
        "spearman_per_image": mean_image_spearman(explanation.importances, np.abs(truth_total)),
        "counterfactual_direction": direction,
        "counterfactual_off_target": off_target,
        "mean_importance": explanation.importances.mean(axis=0),
        "mean_true_importance": np.abs(truth_total).mean(axis=0),
        "explanation": explanation,
        "truth_total": truth_total,
    }
