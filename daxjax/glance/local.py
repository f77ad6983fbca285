"""Local explanations: interventions on an image's code, propagated through the learned graph,
drawn by the generator and answered by the classifier (forward queries of f only).

For each image x with code z = E(x) and each concept c, the code is shifted by +-`shift` standard
deviations of c, in two ways:

- **total** effect: the shift also reaches c's descendants in the learned graph, each moved by the
  graph's total effect of c on it ((I - W)^-1, the linear SEM's rule);
- **direct** effect: only c moves; every other node keeps its value.

Each shifted code is decoded by G and queried once from f; the effect on f's log-odds is the
central difference (f(G(z + D+)) - f(G(z + D-))) / (2 shift), in log-odds per sd. All
images x interventions are formed with one `vmap` over images of a `vmap` over interventions and
sent to the generator and to the black box in bounded chunks.

**The generator is only asked about codes it was trained on.** An image near the edge of the data
(a digit already slanted 1.4 sd to the left) would need G to draw a concept value beyond any training
image (1 sd further), where G was never taught and its drawings stop following the concept (measured
on the control classifier with a 2000-step surrogate: the explained slant effect fell to 45 % of the
true one on the fifth of images with the most negative slant, against 76 % in the middle). So the
pair (-shift, +shift) is slid, whole, along the intervention until the concept's coordinate stays
inside the range of the training codes (`code_range`: all but the `support` share at each end,
`GlanceConfig`); its width, and so the effect per sd, are unchanged. The effect is
then the concept's slope next to the image rather than centred on it: exact for a classifier
linear in the concept, a small bias otherwise.

**Effects are averaged over codes around E(x)** (`code_jitter`): E(x) is an uncertain inversion
(E's codes of exact re-rendered interventions moved a concept's coordinate 0.77-0.91 per sd, with a
per-image spread of 0.12-0.34 sd), so the effect at the single point E(x) carries G's local
idiosyncrasies. Every intervention is also made from E(x) + o for fixed antithetic offsets +-o
(normal, `smoothing_sd` times each coordinate's spread over the training codes) and the effects
are the mean over E(x) and those codes. Counterfactual images are drawn from E(x) itself.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from daxjax.glance.discovery import CausalGraph


@dataclasses.dataclass(frozen=True)
class Interventions:
    """The code shifts of every intervention, in code units.

    Attributes:
        deltas: float32 [n_int, latent_dim], rows in the order (mode, concept, sign) with modes
            ("total", "direct"), concepts in graph order, signs (-1, +1).
        coordinates: int [n_int], the code coordinate of each row's intervened concept.
        concepts: names of the intervened concepts [k].
        shift: the intervention size in sd.
    """

    deltas: np.ndarray
    coordinates: np.ndarray
    concepts: tuple[str, ...]
    shift: float

    def index(self, mode: str, concept: int, sign: int) -> int:
        return (("total", "direct").index(mode) * len(self.concepts) + concept) * 2 + (sign > 0)


def interventions(graph: CausalGraph, concepts: tuple[str, ...], latent_names: tuple[str, ...],
                  shift: float) -> Interventions:
    """Builds the code shifts for +-shift sd on each concept (total and direct), from the graph.

    graph: over latent_names (the code coordinates, concepts first) and the output node(s);
    graph.std converts sd shifts of a node into code units.
    """
    effects = graph.total_effects()
    latent = [graph.index(name) for name in latent_names]
    rows, coordinates = [], []
    for mode in ("total", "direct"):
        for name in concepts:
            c = graph.index(name)
            reach = effects[c, latent] if mode == "total" else (np.asarray(latent) == c).astype(float)
            delta = reach * graph.std[latent]
            rows += [-shift * delta, shift * delta]
            coordinates += [latent.index(c)] * 2
    return Interventions(np.asarray(rows, np.float32), np.asarray(coordinates), tuple(concepts), float(shift))


def _slid(z: jnp.ndarray, delta: jnp.ndarray, j: jnp.ndarray, low: jnp.ndarray, high: jnp.ndarray) -> jnp.ndarray:
    """One code z [m] under one intervention delta [m] on coordinate j, with the pair z -+ |delta|
    slid along delta until coordinate j of both ends lies in [low_j, high_j] (centred when the
    range is narrower than the pair) -> [m]."""
    step = jnp.abs(delta[j])
    centre = jnp.where(high[j] - low[j] < 2 * step, 0.5 * (low[j] + high[j]),
                       jnp.clip(z[j], low[j] + step, high[j] - step))
    return z + delta + (centre - z[j]) / delta[j] * delta  # the slide moves coordinate j to the centre


@jax.jit
def shifted_codes(codes: jnp.ndarray, deltas: jnp.ndarray, coordinates: jnp.ndarray, low: jnp.ndarray,
                  high: jnp.ndarray) -> jnp.ndarray:
    """codes [B, m], deltas [n_int, m] on coordinates [n_int], code range low, high [m] -> every
    image under every intervention, kept inside the range [B, n_int, m]."""
    per_image = jax.vmap(_slid, in_axes=(None, 0, 0, None, None))
    return jax.vmap(per_image, in_axes=(0, None, None, None, None))(codes, deltas, coordinates, low, high)


@dataclasses.dataclass(frozen=True)
class LocalExplanation:
    """Per-image concept explanations of the classifier's log-odds of the target class.

    Attributes:
        concepts: concept names [k] (the columns below).
        importances: float32 [B, k] |total effect|: how strongly each concept drives f's decision
            on this image (log-odds per sd).
        total_effects, direct_effects: float32 [B, k] signed effects (log-odds per sd).
        counterfactuals: float32 [B, k, 2, H, W, C] G's images of the total intervention
            (-shift, +shift) on each concept (slid into the training codes' range, see above).
        reconstructions: float32 [B, H, W, C] G(E(x)).
        logits: float32 [B] f's log-odds on the images; reconstruction_logits on G(E(x)).
        codes: float32 [B, m] E(x).
        shift: the intervention size in sd.
    """

    concepts: tuple[str, ...]
    importances: np.ndarray
    total_effects: np.ndarray
    direct_effects: np.ndarray
    counterfactuals: np.ndarray
    reconstructions: np.ndarray
    logits: np.ndarray
    reconstruction_logits: np.ndarray
    codes: np.ndarray
    shift: float


def code_jitter(pairs: int, scale: float, code_std: np.ndarray, seed: int = 0) -> np.ndarray:
    """Offsets around an image's code that its effects are averaged over: [1 + 2 * pairs, m].

    Row 0 is zero (the code itself); then `pairs` normal offsets o and their negatives -o (so the
    mean offset is exactly zero), o_j ~ N(0, (scale * code_std_j)^2). Fixed by `seed`, shared by
    every image: an image's explanation does not depend on the others in its batch.
    """
    std = np.asarray(code_std, np.float32)
    draws = np.random.default_rng(seed).normal(size=(pairs, std.size)).astype(np.float32) * (scale * std)
    return np.concatenate([np.zeros((1, std.size), np.float32), draws, -draws])


def explain_codes(codes: np.ndarray, plan: Interventions, code_range: np.ndarray,
                  decode: Callable[[np.ndarray], np.ndarray], log_odds: Callable[[np.ndarray], np.ndarray],
                  images_logits: np.ndarray, jitter: np.ndarray | None = None,
                  max_drawn: int = 8192) -> LocalExplanation:
    """Local explanations of B images from their codes [B, m].

    code_range: [2, m] low and high ends of the training codes (interventions stay inside);
    decode: codes [n, m] -> images [n, H, W, C]; log_odds: images -> f's log-odds [n] (queries);
    images_logits: f's log-odds on the original images [B];
    jitter: [J, m] offsets whose codes the effects are averaged over, row 0 zero (`code_jitter`);
    None: the code alone. max_drawn: generator images held at once (images are taken in blocks).
    """
    b, m = codes.shape
    jitter = np.zeros((1, m), np.float32) if jitter is None else np.asarray(jitter, np.float32)
    if jitter.ndim != 2 or jitter.shape[1] != m or np.any(jitter[0] != 0):
        raise ValueError(f"jitter must be [J, {m}] with a zero first row; got shape {jitter.shape}")
    n_int, n_jit = len(plan.deltas), len(jitter)
    low, high = (jnp.asarray(r, jnp.float32) for r in code_range)
    block = max(1, max_drawn // (n_int * n_jit))
    recon, recon_logits, answers, drawn = [], [], [], []
    for i in range(0, b, block):
        around = codes[i:i + block, None] + jitter[None]  # [b_i, J, m]
        rows = len(around)
        shifted = np.asarray(shifted_codes(jnp.asarray(around.reshape(rows * n_jit, m)), jnp.asarray(plan.deltas),
                                           jnp.asarray(plan.coordinates), low, high)).reshape(rows * n_jit * n_int, m)
        recon.append(decode(codes[i:i + block]))
        images = decode(shifted)
        out = log_odds(np.concatenate([recon[-1], images]))
        recon_logits.append(out[:rows])
        answers.append(out[rows:].reshape(rows, n_jit, n_int).mean(axis=1))
        drawn.append(images.reshape((rows, n_jit, n_int) + images.shape[1:])[:, 0])  # from the codes themselves
    recon, recon_logits, answers, drawn = map(np.concatenate, (recon, recon_logits, answers, drawn))
    k = len(plan.concepts)

    def effect(mode):
        lo = answers[:, [plan.index(mode, c, -1) for c in range(k)]]
        hi = answers[:, [plan.index(mode, c, +1) for c in range(k)]]
        return ((hi - lo) / (2.0 * plan.shift)).astype(np.float32)

    total, direct = effect("total"), effect("direct")
    order = [plan.index("total", c, s) for c in range(k) for s in (-1, 1)]
    counterfactuals = drawn[:, order].reshape((b, k, 2) + drawn.shape[2:])
    return LocalExplanation(plan.concepts, np.abs(total), total, direct, counterfactuals, recon,
                            np.asarray(images_logits, np.float32), recon_logits.astype(np.float32),
                            np.asarray(codes, np.float32), plan.shift)
