"""Pictures of GLANCE-lite explanations (matplotlib) and a small HTML report section.

- `plot_graph`: the global causal graph (nodes by causal depth, edges with their weights);
- `plot_importances`: one image's signed total and direct concept effects as bars;
- `plot_counterfactuals`: one image, its reconstruction and G's drawings of -/+ interventions;
- `write_glance_report`: those pictures as PNG files plus an HTML page (`glance.html`).

Functions that draw take an axes (or a figure) so that callers can compose them; without one they
draw on a new pyplot figure (the caller's backend, e.g. a notebook's). `write_glance_report` uses
matplotlib's `Figure` alone, so writing files never touches pyplot or its backend.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Sequence

import numpy as np
from matplotlib.figure import Figure

from daxjax.glance.discovery import CausalGraph
from daxjax.glance.local import LocalExplanation


def _pyplot():
    """pyplot, imported when a plot is asked for without an axes (never at import: it picks a backend)."""
    import matplotlib.pyplot

    return matplotlib.pyplot


def _counterfactual_size(concepts: int) -> tuple[float, float]:
    """Inches of `plot_counterfactuals`' strip: the image, its reconstruction and two per concept."""
    return 1.1 * (2 + 2 * concepts), 1.5


def _depths(adj: np.ndarray) -> np.ndarray:
    """Longest-path depth of each node of a DAG (undirected pairs ignored)."""
    directed = adj & ~adj.T
    depth = np.zeros(len(adj), int)
    for _ in range(len(adj)):
        for i, j in zip(*np.nonzero(directed)):
            depth[j] = max(depth[j], depth[i] + 1)
    return depth


def plot_graph(graph: CausalGraph, ax=None, *, title: str = "", truth: np.ndarray | None = None):
    """Draws graph (nodes left to right by causal depth; edge labels = standardised weights).

    truth: optional bool [d, d] planted adjacency; edges not in it are drawn red, planted edges
    the graph misses dashed grey.
    """
    ax = ax or _pyplot().subplots(figsize=(5, 3.2))[1]
    adj = np.asarray(graph.adjacency, bool)
    depth = _depths(adj)
    pos = {}
    for level in np.unique(depth):
        members = np.flatnonzero(depth == level)
        for r, i in enumerate(members):
            pos[i] = (float(level), (len(members) - 1) / 2.0 - r)
    for i, j in zip(*np.nonzero(adj)):
        undirected = adj[j, i]
        if undirected and i > j:
            continue
        wrong = truth is not None and not truth[i, j]
        ax.annotate("", xy=pos[j], xytext=pos[i],
                    arrowprops=dict(arrowstyle="-" if undirected else "-|>", color="tab:red" if wrong else "0.2",
                                    shrinkA=18, shrinkB=18, lw=1.5))
        # a third of the way along, so that crossing edges keep their labels apart
        mx, my = pos[i][0] + (pos[j][0] - pos[i][0]) / 3, pos[i][1] + (pos[j][1] - pos[i][1]) / 3
        ax.text(mx, my + 0.08, f"{graph.weights[i, j]:+.2f}", ha="center", fontsize=7, color="0.3")
    if truth is not None:
        for i, j in zip(*np.nonzero(truth & ~adj & ~adj.T)):
            ax.annotate("", xy=pos[j], xytext=pos[i], arrowprops=dict(arrowstyle="-|>", color="0.6", ls="--",
                                                                      shrinkA=18, shrinkB=18))
    for i, (x, y) in pos.items():
        ax.text(x, y, graph.names[i], ha="center", va="center", fontsize=8,
                bbox=dict(boxstyle="round", fc="white", ec="0.3"))
    xs = [p[0] for p in pos.values()]
    ys = [p[1] for p in pos.values()]
    ax.set_xlim(min(xs) - 0.6, max(xs) + 0.6)
    ax.set_ylim(min(ys) - 0.6, max(ys) + 0.6)
    ax.set_axis_off()
    if title:
        ax.set_title(title, fontsize=9)
    return ax


def plot_importances(explanation: LocalExplanation, index: int, ax=None, *, truth: np.ndarray | None = None):
    """Bars of image `index`'s total and direct effects (log-odds per sd) per concept; truth:
    optional ground-truth total effects [k] drawn as markers."""
    ax = ax or _pyplot().subplots(figsize=(4, 2.6))[1]
    k = len(explanation.concepts)
    pos = np.arange(k)
    ax.bar(pos - 0.2, explanation.total_effects[index], 0.4, label="total", color="tab:blue")
    ax.bar(pos + 0.2, explanation.direct_effects[index], 0.4, label="direct", color="tab:orange")
    if truth is not None:
        ax.plot(pos, truth, "k_", markersize=18, mew=2, label="ground truth")
    ax.axhline(0, color="0.3", lw=0.8)
    ax.set_xticks(pos, explanation.concepts, fontsize=8)
    ax.set_ylabel("log-odds per sd", fontsize=8)
    ax.legend(fontsize=7)
    return ax


def plot_counterfactuals(explanation: LocalExplanation, images: np.ndarray, index: int, fig=None):
    """A strip: the image, G(E(x)), then for each concept G's drawing at -shift and +shift
    (near the edge of the training codes, the pair slid inside them: `daxjax.glance.local`;
    titles give f's log-odds on each)."""
    k = len(explanation.concepts)
    fig = fig or _pyplot().figure(figsize=_counterfactual_size(k))
    axes = fig.subplots(1, 2 + 2 * k)
    panels = [(images[index], f"image\n{explanation.logits[index]:+.1f}"),
              (explanation.reconstructions[index], f"G(E(x))\n{explanation.reconstruction_logits[index]:+.1f}")]
    for c, name in enumerate(explanation.concepts):
        for s, sign in enumerate("-+"):
            panels.append((explanation.counterfactuals[index, c, s], f"{name} {sign}{explanation.shift:g}"))
    for ax, (img, title) in zip(axes, panels):
        ax.imshow(np.asarray(img)[..., 0] if img.shape[-1] == 1 else img, cmap="gray", vmin=0, vmax=1)
        ax.set_title(title, fontsize=6)
        ax.set_axis_off()
    return fig


def write_glance_report(out_dir, model, explanation: LocalExplanation, images: np.ndarray,
                        indices: Sequence[int] = (0, 1, 2), *, truth: np.ndarray | None = None,
                        true_effects: np.ndarray | None = None, title: str = "GLANCE-lite explanation") -> Path:
    """Writes graph.png, importances_<i>.png, counterfactuals_<i>.png and glance.html to out_dir.

    model: a fitted `GlanceModel`; explanation: `model.explain(images)`; truth: optional planted
    adjacency over model.concept_graph's nodes; true_effects: optional [B, k] ground-truth effects.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    fig = Figure(figsize=(5, 3.2))
    plot_graph(model.concept_graph, fig.subplots(), title="learned graph (concepts and f's log-odds)", truth=truth)
    fig.savefig(out / "graph.png", dpi=110, bbox_inches="tight")
    cards = []
    for i in indices:
        fig = Figure(figsize=(4, 2.6))
        plot_importances(explanation, i, fig.subplots(), truth=None if true_effects is None else true_effects[i])
        fig.savefig(out / f"importances_{i}.png", dpi=110, bbox_inches="tight")
        fig = plot_counterfactuals(explanation, images, i,
                                   Figure(figsize=_counterfactual_size(len(explanation.concepts))))
        fig.savefig(out / f"counterfactuals_{i}.png", dpi=110, bbox_inches="tight")
        ranking = ", ".join(explanation.concepts[c] for c in np.argsort(-explanation.importances[i]))
        cards.append(f'<div class="card"><h3>image {i}</h3><p>concepts by importance: {html.escape(ranking)}</p>'
                     f'<img src="importances_{i}.png" alt="concept effects of image {i}">'
                     f'<img src="counterfactuals_{i}.png" alt="counterfactual strip of image {i}"></div>')
    edges = ", ".join(f"{a} &rarr; {b}" for a, b in model.concept_graph.edges())
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:auto}} .card{{border:1px solid #ccc;margin:8px;padding:8px}}
img{{max-width:100%}}</style></head><body>
<h1>{html.escape(title)}</h1>
<p>GLANCE-inspired re-implementation (Kori, Glocker, Toni, arXiv 2207.01917): a surrogate encoder and
generator aligned to the concepts, a causal graph learned over concepts, free latents and the
classifier's log-odds, and local effects of interventions drawn by the generator and answered by the
classifier (+-{explanation.shift:g} sd; total = through the graph's descendants, direct = the concept alone).</p>
<h2>Global: learned graph</h2><p>edges: {edges}</p><img src="graph.png" alt="learned causal graph">
<h2>Local: concept effects and counterfactuals</h2>
{''.join(cards)}
</body></html>"""
    path = out / "glance.html"
    path.write_text(page)
    return path
