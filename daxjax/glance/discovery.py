"""Causal discovery over concepts, latents and the classifier's logit: linear NOTEARS in JAX.

`notears` fits a linear structural equation model X = X W + E on standardised data with the
NOTEARS programme (Zheng et al., 2018): least squares + l1, subject to the smooth acyclicity
constraint h(W) = tr(exp(W o W)) - d = 0 (its power series truncated after d terms), solved by an
augmented Lagrangian whose sub-problems are bound-constrained L-BFGS (scipy's L-BFGS-B, as in the
original) on the positive and negative parts of W, with the objective and its gradient jitted JAX
in float64. Deterministic. Background knowledge enters as a mask of allowed edges: the classifier's output
is declared a *sink* (it causes nothing), and any other edge can be forbidden.

Least squares on standardised data cannot tell the directions inside a Markov equivalence class
apart (T -> I and I -> T fit equally well). So after thresholding, every *covered* edge (one whose
reversal keeps the equivalence class) is oriented by the pairwise likelihood ratio of linear
non-Gaussian models (Hyvaerinen & Smith, 2013) with Hyvaerinen's (1998) negentropy approximation:
the direction whose cause and residual are jointly the most non-Gaussian wins. Edge weights are
then refitted by ordinary least squares on each node's parents (the l1 term shrinks them).

`causal_learn_graph` runs causal-learn's PC or GES instead (an optional cross-check; not a core
dependency: ``pip install causal-learn``).
"""

from __future__ import annotations

import contextlib
import dataclasses
from typing import Sequence

import numpy as np


@dataclasses.dataclass(frozen=True)
class NotearsConfig:
    """Linear NOTEARS settings (data are standardised first, so weights are in sd units).

    Attributes:
        lambda1: l1 weight on W.
        w_threshold: edges with |weight| below this are removed after optimisation.
        max_outer: augmented-Lagrangian dual updates at most.
        inner_steps: L-BFGS-B iterations per sub-problem at most.
        h_tol: acyclicity tolerance that ends the programme.
        rho_max: largest penalty weight.
        orient: orient covered edges by the non-Gaussian likelihood ratio (else keep NOTEARS's).
        seed: of the tiny asymmetric starting point.
    """

    lambda1: float = 0.02
    w_threshold: float = 0.3
    max_outer: int = 20
    inner_steps: int = 1000
    h_tol: float = 1e-8
    rho_max: float = 1e16
    orient: bool = True
    seed: int = 0


@dataclasses.dataclass(frozen=True)
class CausalGraph:
    """A linear causal graph over named nodes.

    Attributes:
        names: node names [d].
        adjacency: bool [d, d]; adjacency[i, j] means i -> j. A pair with both directions set is
            an undirected edge (only a PC/GES equivalence class has those).
        weights: float [d, d] linear effects in standardised units (x_j = sum_i x_i W_ij + e_j);
            zero where there is no edge.
        mean, std: float [d] the standardisation of each node.
        method: how it was found.
    """

    names: tuple[str, ...]
    adjacency: np.ndarray
    weights: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    method: str

    def edges(self) -> list[tuple[str, str]]:
        """Directed edges (i, j) for i -> j, in row-major order."""
        return [(self.names[i], self.names[j]) for i, j in zip(*np.nonzero(self.adjacency))]

    def restrict(self, names: Sequence[str]) -> "CausalGraph":
        """The subgraph induced on `names` (in that order)."""
        idx = [self.index(n) for n in names]
        sub = np.ix_(idx, idx)
        return CausalGraph(tuple(names), self.adjacency[sub], self.weights[sub], self.mean[idx], self.std[idx],
                           self.method)

    def index(self, name: str) -> int:
        if name not in self.names:
            raise KeyError(f"no node {name!r}; nodes are {self.names}")
        return self.names.index(name)

    def total_effects(self) -> np.ndarray:
        """float [d, d]: entry [i, j] is the change of x_j (sd) when x_i is shifted by 1 sd by
        intervention, summed over all directed paths: (I - W)^-1."""
        d = len(self.names)
        return np.linalg.inv(np.eye(d) - self.weights)


def structural_hamming_distance(a: np.ndarray, b: np.ndarray) -> int:
    """Edge insertions, deletions and reversals turning graph a into graph b (bool [d, d] each;
    an undirected edge is both directions set and differs from either single direction by 1)."""
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    if a.shape != b.shape or a.ndim != 2 or a.shape[0] != a.shape[1]:
        raise ValueError(f"adjacency matrices must be square and alike; got {a.shape} and {b.shape}")
    iu = np.triu_indices(a.shape[0], 1)
    pair_a = np.stack([a[iu], a.T[iu]], 1)
    pair_b = np.stack([b[iu], b.T[iu]], 1)
    return int(np.sum(np.any(pair_a != pair_b, axis=1)))


def adjacency_from_edges(names: Sequence[str], edges: Sequence[tuple[str, str]]) -> np.ndarray:
    """bool [d, d] with adjacency[i, j] for every (names[i], names[j]) in edges."""
    adj = np.zeros((len(names), len(names)), bool)
    for src, dst in edges:
        adj[list(names).index(src), list(names).index(dst)] = True
    return adj


def allowed_edges(names: Sequence[str], sinks: Sequence[str] = (), forbidden: Sequence[tuple[str, str]] = ()
                  ) -> np.ndarray:
    """bool [d, d] mask of edges the search may use: no self loops, nothing out of a sink."""
    names = list(names)
    mask = ~np.eye(len(names), dtype=bool)
    for name in sinks:
        if name not in names:
            raise ValueError(f"sink {name!r} is not a node; nodes are {names}")
        mask[names.index(name), :] = False
    for src, dst in forbidden:
        mask[names.index(src), names.index(dst)] = False
    return mask


def _standardise(data: np.ndarray, names: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    x = np.asarray(data, np.float64)
    if x.ndim != 2 or x.shape[1] != len(names):
        raise ValueError(f"data must be [n, {len(names)}] (one column per node {tuple(names)}); got {x.shape}")
    if x.shape[0] < 3 * len(names):
        raise ValueError(f"need at least {3 * len(names)} rows for {len(names)} nodes; got {x.shape[0]}")
    bad = ~np.isfinite(x).all(axis=0)
    if bad.any():
        raise ValueError(f"node(s) {[names[i] for i in np.flatnonzero(bad)]} have NaN or inf values")
    mean, std = x.mean(0), x.std(0)
    if np.any(std == 0):
        raise ValueError(f"node(s) {[names[i] for i in np.flatnonzero(std == 0)]} are constant")
    return (x - mean) / std, mean, std


def _acyclicity(w):
    """h(W) = tr(exp(W o W)) - d, summed as its series sum_{k>=1} tr(A^k) / k! truncated after d
    terms (cycles are at most d long, so it is still 0 exactly on DAGs); without the identity
    the small values keep their precision."""
    import jax.numpy as jnp

    a = w * w
    term, total = a, jnp.trace(a)
    for k in range(2, w.shape[0] + 1):
        term = term @ a / k
        total = total + jnp.trace(term)
    return total


_PROGRAMS: dict = {}


def _one_blas_thread():
    """L-BFGS-B's BLAS calls on 50-odd variables ran ~4x faster on one thread than on the default
    pool of this shared 2-core machine; threadpoolctl (if installed) pins it for the solve."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return contextlib.nullcontext()
    return threadpool_limits(1)


def _programs(d: int):
    """Jitted float64 (value, gradient) of the augmented Lagrangian and h, for d nodes."""
    if d in _PROGRAMS:
        return _PROGRAMS[d]
    import jax
    import jax.numpy as jnp

    def objective(flat, x, mask, lambda1, rho, alpha):
        wpm = flat.reshape(2, d, d)
        w = (wpm[0] - wpm[1]) * mask
        resid = x - x @ w
        h = _acyclicity(w)
        return 0.5 / x.shape[0] * jnp.sum(resid**2) + lambda1 * jnp.sum(wpm) + 0.5 * rho * h * h + alpha * h

    _PROGRAMS[d] = (jax.jit(jax.value_and_grad(objective)), jax.jit(_acyclicity))
    return _PROGRAMS[d]


def _is_acyclic(adj: np.ndarray) -> bool:
    remaining = adj.copy()
    alive = np.ones(len(adj), bool)
    while alive.any():
        roots = alive & ~remaining[alive].any(axis=0)
        if not roots.any():
            return False
        alive &= ~roots
        remaining[roots] = False
    return True


def _break_cycles(adj: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Removes the weakest edges until the graph is acyclic (thresholding usually suffices)."""
    adj = adj.copy()
    while not _is_acyclic(adj):
        strength = np.where(adj, np.abs(w), np.inf)
        i, j = np.unravel_index(np.argmin(strength), strength.shape)
        adj[i, j] = False
    return adj


def _ols_weights(x: np.ndarray, adj: np.ndarray) -> np.ndarray:
    w = np.zeros(adj.shape)
    for j in range(adj.shape[0]):
        parents = np.flatnonzero(adj[:, j])
        if parents.size:
            w[parents, j] = np.linalg.lstsq(x[:, parents], x[:, j], rcond=None)[0]
    return w


# Hyvaerinen (1998): J(u) ~ k1 E[u exp(-u^2/2)]^2 + k2 (E[exp(-u^2/2)] - 1/sqrt(2))^2 for standardised u.
_K1 = 36.0 / (8.0 * np.sqrt(3.0) - 9.0)
_K2 = 24.0 / (16.0 * np.sqrt(3.0) - 27.0)


def negentropy(u: np.ndarray) -> float:
    """Approximate negentropy of a sample (standardised inside): 0 for a Gaussian, > 0 otherwise."""
    u = (u - u.mean()) / u.std()
    g = np.exp(-0.5 * u * u)
    return float(_K1 * np.mean(u * g) ** 2 + _K2 * (np.mean(g) - np.sqrt(0.5)) ** 2)


def pairwise_direction(x: np.ndarray, y: np.ndarray) -> float:
    """Log-likelihood ratio (up to a positive factor) of x -> y against y -> x in a linear
    non-Gaussian model: > 0 favours x -> y. x, y: samples [n] of the two variables."""
    x = (x - x.mean()) / x.std()
    y = (y - y.mean()) / y.std()
    rho = float(np.mean(x * y))
    return negentropy(x) + negentropy(y - rho * x) - negentropy(y) - negentropy(x - rho * y)


def _residual(x: np.ndarray, j: int, parents: np.ndarray) -> np.ndarray:
    if parents.size == 0:
        return x[:, j]
    coef = np.linalg.lstsq(x[:, parents], x[:, j], rcond=None)[0]
    return x[:, j] - x[:, parents] @ coef


def orient_covered_edges(x: np.ndarray, adj: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Reverses covered edges that the non-Gaussian likelihood ratio says point the wrong way.

    An edge i -> j is covered when parents(j) = parents(i) + {i}; reversing it stays in the same
    Markov equivalence class, so least squares cannot choose. Both variables are residualised on
    the shared parents and compared pairwise; the most confident wrong edge is reversed first,
    until none is left (each reversal may change which edges are covered).
    """
    adj = adj.copy()
    for _ in range(adj.size):
        worst, worst_edge = 0.0, None
        for i, j in zip(*np.nonzero(adj)):
            if not mask[j, i]:
                continue
            pa_i, pa_j = set(np.flatnonzero(adj[:, i])), set(np.flatnonzero(adj[:, j]))
            if pa_j != pa_i | {i}:
                continue
            shared = np.array(sorted(pa_i), int)
            score = pairwise_direction(_residual(x, i, shared), _residual(x, j, shared))
            if score < worst:
                worst, worst_edge = score, (i, j)
        if worst_edge is None:
            return adj
        i, j = worst_edge
        adj[i, j], adj[j, i] = False, True
    return adj


def notears(data: np.ndarray, names: Sequence[str], *, sinks: Sequence[str] = (),
            forbidden: Sequence[tuple[str, str]] = (), config: NotearsConfig = NotearsConfig()) -> CausalGraph:
    """Learns a linear DAG over the columns of data [n, d] named `names`.

    sinks: nodes that may cause nothing (the classifier's logit); forbidden: other (src, dst)
    edges excluded by background knowledge. Returns weights refitted by least squares on the
    chosen parents, in standardised units.
    """
    import jax
    from scipy.optimize import minimize

    names = tuple(names)
    x, mean, std = _standardise(data, names)
    mask = allowed_edges(names, sinks, forbidden)
    d = len(names)
    value_and_grad, acyclicity = _programs(d)
    # W+ and W- are bounded to [0, inf) where an edge is allowed and pinned to 0 elsewhere.
    bounds = [(0.0, 0.0 if not allowed else None) for allowed in np.tile(mask.ravel(), 2)]
    with jax.enable_x64(True), _one_blas_thread():
        xj, maskj = jax.numpy.asarray(x), jax.numpy.asarray(mask, np.float64)

        def fun(flat, rho, alpha):
            value, grad = value_and_grad(flat, xj, maskj, config.lambda1, rho, alpha)
            return float(value), np.asarray(grad, np.float64)

        def h_of(flat):
            wpm = flat.reshape(2, d, d)
            return float(acyclicity(jax.numpy.asarray((wpm[0] - wpm[1]) * mask)))

        # On standardised data the gradient is symmetric in (W_ij, W_ji): started from exactly 0,
        # both directions grow alike and the acyclicity penalty then removes both. A tiny fixed
        # asymmetric start lets one direction win (the orientation step decides which is right).
        flat = np.random.default_rng(config.seed).uniform(0.0, 1e-3, 2 * d * d) * np.tile(mask.ravel(), 2)
        rho, alpha, h = 1.0, 0.0, np.inf
        for _ in range(config.max_outer):
            while rho < config.rho_max:
                candidate = minimize(fun, flat, args=(rho, alpha), jac=True, method="L-BFGS-B", bounds=bounds,
                                     options={"maxiter": config.inner_steps}).x
                h_new = h_of(candidate)
                if h_new > 0.25 * h:
                    rho *= 10.0
                else:
                    break
            flat, h = candidate, h_new
            alpha += rho * h
            if h <= config.h_tol or rho >= config.rho_max:
                break
    wpm = flat.reshape(2, d, d)
    w = (wpm[0] - wpm[1]) * mask
    adj = _break_cycles((np.abs(w) >= config.w_threshold) & mask, w)
    if config.orient:
        adj = orient_covered_edges(x, adj, mask)
    return CausalGraph(names, adj, _ols_weights(x, adj), mean, std, "notears")


def causal_learn_graph(data: np.ndarray, names: Sequence[str], *, method: str = "pc", alpha: float = 0.01,
                       sinks: Sequence[str] = ()) -> CausalGraph:
    """causal-learn's PC (Fisher-z test at level alpha) or GES (BIC) as an independent check.

    Returns the equivalence class: undirected edges have both directions set. Edges out of a
    sink are turned around (sinks cause nothing). Needs ``pip install causal-learn``.
    """
    try:
        if method == "pc":
            from causallearn.search.ConstraintBased.PC import pc
        elif method == "ges":
            from causallearn.search.ScoreBased.GES import ges
        else:
            raise ValueError(f"method must be 'pc' or 'ges', got {method!r}")
    except ImportError as err:
        raise ImportError("causal_learn_graph needs causal-learn: pip install causal-learn") from err
    names = tuple(names)
    x, mean, std = _standardise(data, names)
    if method == "pc":
        g = pc(x, alpha=alpha, indep_test="fisherz", show_progress=False).G.graph
    else:
        g = ges(x, score_func="local_score_BIC")["G"].graph
    # causal-learn's encoding: g[j, i] == 1 and g[i, j] == -1 means i -> j; -1/-1 is undirected.
    adj = ((g.T == 1) & (g == -1)) | ((g == -1) & (g.T == -1))
    for name in sinks:
        k = names.index(name)
        incoming = adj[k, :] | adj[:, k]
        adj[k, :] = False
        adj[:, k] = incoming
    directed = adj & ~adj.T
    return CausalGraph(names, adj, _ols_weights(x, directed), mean, std, method)
