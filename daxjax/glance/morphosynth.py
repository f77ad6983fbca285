"""MorphoSynth: MNIST-like stroke digits drawn from a planted structural causal model.

The data set on which the GLANCE-inspired explainer is tested: every image is rendered from known
concepts, so the causal graph among them is known and any image can be re-drawn with one concept
intervened on (an exact ground-truth counterfactual: same digit, same exogenous noise, same
nuisance).

Planted SCM, in standardised units (every concept has mean 0 and variance 1 in the population):

    digit D        ~ uniform over 0..9                    (root; only picks the stroke template)
    thickness t    = u_t,  u_t a standardised Gamma(4)     (root, skewed: non-Gaussian)
    intensity i    = a t + sqrt(1 - a^2) u_i               (T -> I; u_i standardised uniform)
    slant s        = u_s,  u_s standardised uniform        (root)
    width w        = b s + sqrt(1 - b^2) u_w               (S -> W; u_w standardised uniform)
    nuisance       ~ uniform [-1, 1]^7                    (size, position, stroke jitter; image only)

with a = b = 0.75 by default. The mechanisms are linear (so linear causal discovery is well posed)
and the noises non-Gaussian (so directions inside a Markov equivalence class are identifiable).
Concepts map to drawing parameters affinely: stroke diameter in pixels, stroke brightness, shear
angle in radians and horizontal stretch of the template (`SCMConfig`).

Rendering is vectorised over images: each digit is a set of line segments; a pixel's value is
brightness x clip(T/2 - d + 1/2, 0, 1), d its distance to the nearest segment (an anti-aliased
stroke of diameter T).
"""

from __future__ import annotations

import dataclasses
from typing import Mapping

import numpy as np

CONCEPTS = ("thickness", "intensity", "slant", "width")
"""The planted concepts, in the column order used everywhere in `daxjax.glance`."""

PARENTS = {"thickness": None, "intensity": "thickness", "slant": None, "width": "slant"}
"""The planted graph among the concepts: each concept's single parent (None for a root)."""

NUISANCE_DIMS = 7


@dataclasses.dataclass(frozen=True)
class SCMConfig:
    """Planted mechanisms and their mapping to drawing parameters.

    Attributes:
        image_size: side of the square canvas in pixels.
        intensity_weight: a in i = a t + sqrt(1 - a^2) u_i (standardised T -> I effect).
        width_weight: b in w = b s + sqrt(1 - b^2) u_w (standardised S -> W effect).
        thickness_offset, thickness_shape, thickness_scale: stroke diameter in pixels is
            offset + Gamma(shape, scale); t is its standardised value.
        brightness_mean, brightness_per_sd: stroke brightness = mean + per_sd * i; values above 1
            (i > 4.75 with the defaults, probability < 1e-6) are drawn at 1.
        slant_per_sd: shear angle in radians per standard deviation of s (positive leans right).
        width_per_sd: relative horizontal stretch of the template per standard deviation of w.
        digit_height: template height in pixels (before the nuisance's size jitter).
        jitter: amplitude of the smooth stroke warp, in template units (height 2).
    """

    image_size: int = 32
    intensity_weight: float = 0.75
    width_weight: float = 0.75
    thickness_offset: float = 1.2
    thickness_shape: float = 4.0
    thickness_scale: float = 0.35
    brightness_mean: float = 0.62
    brightness_per_sd: float = 0.08
    slant_per_sd: float = 0.25
    width_per_sd: float = 0.2
    digit_height: float = 19.0
    jitter: float = 0.06


@dataclasses.dataclass(frozen=True)
class Exogenous:
    """The exogenous variables of n images: everything the SCM needs to produce them.

    Attributes:
        digits: int [n] in 0..9.
        noise: float [n, 4] standardised exogenous noises (u_t, u_i, u_s, u_w), in CONCEPTS order.
        nuisance: float [n, NUISANCE_DIMS] in [-1, 1] (size, shift x, shift y, four warp coefficients).
        parent_copy: float [n, 4]; for "decorrelated" samples, independent draws that stand in for
            each concept's parent (so the concept keeps its marginal but loses its cause); else NaN.
    """

    digits: np.ndarray
    noise: np.ndarray
    nuisance: np.ndarray
    parent_copy: np.ndarray

    def __len__(self) -> int:
        return len(self.digits)

    def take(self, index) -> "Exogenous":
        """The subset `index` (anything numpy indexing accepts)."""
        return Exogenous(self.digits[index], self.noise[index], self.nuisance[index], self.parent_copy[index])


@dataclasses.dataclass(frozen=True)
class Sample:
    """Rendered images with their planted causes.

    Attributes:
        images: float32 [n, H, W, 1] in [0, 1].
        concepts: float64 [n, 4] standardised planted concepts (CONCEPTS order).
        exogenous: the exogenous variables that produced them (for counterfactuals).
    """

    images: np.ndarray
    concepts: np.ndarray
    exogenous: Exogenous

    def __len__(self) -> int:
        return len(self.images)


def _standard_gamma(rng: np.random.Generator, shape: float, n: int) -> np.ndarray:
    return (rng.gamma(shape, 1.0, n) - shape) / np.sqrt(shape)


def _standard_uniform(rng: np.random.Generator, size) -> np.ndarray:
    return rng.uniform(-np.sqrt(3.0), np.sqrt(3.0), size)


def sample_exogenous(n: int, seed: int, config: SCMConfig = SCMConfig(), *,
                     decorrelate: tuple[str, ...] = ()) -> Exogenous:
    """Draws the exogenous variables of n images (deterministic in seed).

    decorrelate: concepts whose parent is replaced by an independent draw from the parent's
    marginal (an interventional data set in which those concepts keep their distribution but no
    longer follow their cause): how the classifiers are kept from using spurious correlates.
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    unknown = set(decorrelate) - set(CONCEPTS)
    if unknown:
        raise ValueError(f"decorrelate names unknown concepts {sorted(unknown)}; concepts are {CONCEPTS}")
    rng = np.random.default_rng(seed)
    digits = rng.integers(0, 10, n)
    noise = np.stack([_standard_gamma(rng, config.thickness_shape, n), _standard_uniform(rng, n),
                      _standard_uniform(rng, n), _standard_uniform(rng, n)], axis=1)
    nuisance = rng.uniform(-1.0, 1.0, (n, NUISANCE_DIMS))
    # Drawn even when unused so that the other variables do not depend on `decorrelate`.
    copies = np.stack([_standard_gamma(rng, config.thickness_shape, n), np.zeros(n),
                       _standard_uniform(rng, n), np.zeros(n)], axis=1)
    parent_copy = np.full((n, 4), np.nan)
    for name in decorrelate:
        parent = PARENTS[name]
        if parent is None:
            raise ValueError(f"{name!r} is a root of the planted graph: there is no cause to decorrelate it from")
        col = CONCEPTS.index(parent)
        parent_copy[:, CONCEPTS.index(name)] = copies[:, col]
    return Exogenous(digits, noise, nuisance, parent_copy)


def structural_equations(exogenous: Exogenous, config: SCMConfig = SCMConfig(),
                         do: Mapping[str, np.ndarray | float] | None = None) -> np.ndarray:
    """The standardised concepts float64 [n, 4] that the SCM assigns, under interventions `do`.

    do: concept -> value (scalar or [n]) set by intervention; its descendants follow through their
    mechanisms with their own exogenous noise unchanged (a counterfactual in the abduction sense:
    the noise is known exactly here).
    """
    do = dict(do or {})
    unknown = set(do) - set(CONCEPTS)
    if unknown:
        raise ValueError(f"do names unknown concepts {sorted(unknown)}; concepts are {CONCEPTS}")
    n = len(exogenous)
    u = exogenous.noise
    weights = {"intensity": config.intensity_weight, "width": config.width_weight}
    values: dict[str, np.ndarray] = {}
    for name in CONCEPTS:  # topological order: every parent precedes its child
        col = CONCEPTS.index(name)
        if name in do:
            values[name] = np.broadcast_to(np.asarray(do[name], np.float64), (n,)).copy()
            continue
        parent = PARENTS[name]
        if parent is None:
            values[name] = u[:, col].copy()
            continue
        copy = exogenous.parent_copy[:, col]
        cause = np.where(np.isnan(copy), values[parent], copy)
        a = weights[name]
        values[name] = a * cause + np.sqrt(1.0 - a * a) * u[:, col]
    return np.stack([values[name] for name in CONCEPTS], axis=1)


def drawing_parameters(concepts: np.ndarray, config: SCMConfig = SCMConfig()) -> dict[str, np.ndarray]:
    """Standardised concepts [n, 4] -> stroke diameter (px), brightness, shear angle (rad), stretch."""
    c = np.asarray(concepts, np.float64)
    k, theta = config.thickness_shape, config.thickness_scale
    return {
        "diameter": config.thickness_offset + k * theta + np.sqrt(k) * theta * c[:, 0],
        "brightness": np.minimum(config.brightness_mean + config.brightness_per_sd * c[:, 1], 1.0),
        "shear_angle": config.slant_per_sd * c[:, 2],
        "stretch": 1.0 + config.width_per_sd * c[:, 3],
    }


# --- digit templates: strokes in template units, x right in [-0.5, 0.5], y down in [-1, 1] ---

def _arc(cx, cy, rx, ry, start_deg, end_deg, points=10):
    angles = np.deg2rad(np.linspace(start_deg, end_deg, points))
    return np.stack([cx + rx * np.cos(angles), cy + ry * np.sin(angles)], axis=1)


def _line(*points):
    return np.asarray(points, np.float64)


def _templates() -> list[list[np.ndarray]]:
    return [
        [_arc(0.0, 0.0, 0.42, 0.95, 0, 360, 20)],
        [_line((0.0, -1.0), (0.0, 1.0)), _line((-0.3, -0.68), (0.0, -1.0)), _line((-0.32, 1.0), (0.32, 1.0))],
        [np.concatenate([_arc(0.0, -0.5, 0.4, 0.45, 190, 360, 8), _line((0.38, -0.3), (-0.42, 1.0), (0.45, 1.0))])],
        [_arc(0.0, -0.5, 0.38, 0.48, 200, 450, 10), _arc(0.0, 0.5, 0.42, 0.5, 270, 520, 10)],
        [_line((0.2, 1.0), (0.2, -1.0), (-0.45, 0.35), (0.45, 0.35))],
        [np.concatenate([_line((0.4, -1.0), (-0.3, -1.0), (-0.35, -0.1)), _arc(0.0, 0.42, 0.42, 0.55, 240, 490, 10)])],
        [np.concatenate([_line((0.3, -1.0), (-0.32, 0.2)), _arc(0.0, 0.5, 0.4, 0.48, 180, 540, 14)])],
        [_line((-0.45, -1.0), (0.45, -1.0), (-0.08, 1.0))],
        [_arc(0.0, -0.52, 0.34, 0.46, 0, 360, 14), _arc(0.0, 0.48, 0.42, 0.52, 0, 360, 14)],
        [_arc(0.0, -0.48, 0.38, 0.48, 0, 360, 14), _line((0.38, -0.48), (0.28, 1.0))],
    ]


TEMPLATE_WIDTH = 0.85
"""Horizontal extent of every template (height is 2), before the planted stretch."""


def _segments() -> np.ndarray:
    """float64 [10, S_max, 2 (ends), 2 (x, y)]; shorter digits padded by repeating a segment
    (a repeated segment leaves the distance to the stroke unchanged)."""
    per_digit = []
    for strokes in _templates():
        # Every template gets the same horizontal extent, centred: the digit's identity would
        # otherwise be the largest cause of measured width and drown the planted W.
        xs = np.concatenate(strokes)[:, 0]
        centre, extent = 0.5 * (xs.min() + xs.max()), xs.max() - xs.min()
        strokes = [np.c_[(st[:, 0] - centre) * TEMPLATE_WIDTH / extent, st[:, 1]] for st in strokes]
        segs = np.concatenate([np.stack([s[:-1], s[1:]], axis=1) for s in strokes])
        per_digit.append(segs)
    s_max = max(len(s) for s in per_digit)
    return np.stack([np.concatenate([s, np.repeat(s[:1], s_max - len(s), axis=0)]) for s in per_digit])


TEMPLATE_SEGMENTS = _segments()


def _warp(points: np.ndarray, nuisance: np.ndarray, params: dict, config: SCMConfig) -> np.ndarray:
    """Template points [n, P, 2] -> pixel coordinates (x = column, y = row) [n, P, 2]."""
    x, y = points[..., 0], points[..., 1]
    j = nuisance[:, :, None]
    # Smooth stroke jitter: even in y so that it bends strokes without adding a net slant.
    x = x + config.jitter * (j[:, 3] * np.cos(0.5 * np.pi * y) + j[:, 4] * np.cos(np.pi * x))
    y = y + config.jitter * (j[:, 5] * np.cos(np.pi * x) + j[:, 6] * np.cos(0.5 * np.pi * y))
    x = x * params["stretch"][:, None]
    scale = 0.5 * config.digit_height * (1.0 + 0.05 * j[:, 0])
    centre = 0.5 * (config.image_size - 1)
    col = centre + 1.0 * j[:, 1] + scale * (x - np.tan(params["shear_angle"])[:, None] * y)
    row = centre + 1.0 * j[:, 2] + scale * y
    return np.stack([col, row], axis=-1)


def render(digits: np.ndarray, concepts: np.ndarray, nuisance: np.ndarray,
           config: SCMConfig = SCMConfig(), chunk: int = 256) -> np.ndarray:
    """Draws digits with the given standardised concepts: float32 [n, H, W, 1] in [0, 1].

    digits: int [n] in 0..9; concepts: [n, 4] standardised (CONCEPTS order); nuisance: [n, 7].
    Each image depends only on its own row (chunking never changes a pixel).
    """
    digits = np.asarray(digits)
    concepts = np.asarray(concepts, np.float64)
    nuisance = np.asarray(nuisance, np.float64)
    n = len(digits)
    if concepts.shape != (n, 4) or nuisance.shape != (n, NUISANCE_DIMS):
        raise ValueError(f"render needs digits [n], concepts [n, 4] and nuisance [n, {NUISANCE_DIMS}]; "
                         f"got {digits.shape}, {concepts.shape}, {nuisance.shape}")
    if n and (digits.min() < 0 or digits.max() > 9):
        raise ValueError("digits must lie in 0..9")
    size = config.image_size
    rows, cols = np.mgrid[0:size, 0:size]
    pixels = np.stack([cols.ravel(), rows.ravel()], axis=1).astype(np.float32)  # [P, 2] (x, y)
    out = np.empty((n, size, size, 1), np.float32)
    for lo in range(0, n, chunk):
        sl = slice(lo, min(n, lo + chunk))
        params = drawing_parameters(concepts[sl], config)
        segs = TEMPLATE_SEGMENTS[digits[sl]]  # [m, S, 2, 2]
        m, s = segs.shape[:2]
        ends = _warp(segs.reshape(m, s * 2, 2), nuisance[sl], params, config).reshape(m, s, 2, 2)
        ends = ends.astype(np.float32)  # float32 halves the cost; error << 1e-3 px
        a, b = ends[:, :, 0], ends[:, :, 1]  # [m, S, 2]
        ab = b - a
        length2 = np.maximum(np.sum(ab * ab, axis=-1), 1e-12)  # [m, S]
        ap = pixels[None, :, None, :] - a[:, None, :, :]  # [m, P, S, 2]
        t = np.clip(np.sum(ap * ab[:, None], axis=-1) / length2[:, None], 0.0, 1.0)
        d = np.sqrt(np.min(np.sum((ap - t[..., None] * ab[:, None]) ** 2, axis=-1), axis=-1))  # [m, P]
        cover = np.clip(0.5 * params["diameter"][:, None] - d + 0.5, 0.0, 1.0).astype(np.float32)
        out[sl, :, :, 0] = (params["brightness"][:, None] * cover).reshape(-1, size, size)
    return out


def sample(n: int, seed: int, config: SCMConfig = SCMConfig(), *, decorrelate: tuple[str, ...] = ()) -> Sample:
    """n images from the planted SCM (deterministic in seed); see `sample_exogenous` for decorrelate."""
    exo = sample_exogenous(n, seed, config, decorrelate=decorrelate)
    concepts = structural_equations(exo, config)
    return Sample(render(exo.digits, concepts, exo.nuisance, config), concepts, exo)


def intervene(sample_: Sample, concept: str, shift: float, *, mode: str = "total",
              config: SCMConfig = SCMConfig()) -> Sample:
    """Exact counterfactuals: the same digits re-drawn with `concept` shifted by `shift` sd.

    mode "total": the concept's descendants follow through their mechanisms (same noise), as a
    real intervention would; "direct": every other concept keeps its factual value.
    """
    if concept not in CONCEPTS:
        raise ValueError(f"unknown concept {concept!r}; concepts are {CONCEPTS}")
    if mode not in ("total", "direct"):
        raise ValueError(f"mode must be 'total' or 'direct', got {mode!r}")
    col = CONCEPTS.index(concept)
    new_value = sample_.concepts[:, col] + shift
    if mode == "total":
        concepts = structural_equations(sample_.exogenous, config, do={concept: new_value})
    else:
        concepts = sample_.concepts.copy()
        concepts[:, col] = new_value
    exo = sample_.exogenous
    return Sample(render(exo.digits, concepts, exo.nuisance, config), concepts, exo)


def label_thickness_slant(concepts: np.ndarray) -> np.ndarray:
    """The classifier f's planted task: 1 where t + s > 0 (thickness and slant are its only causes)."""
    c = np.asarray(concepts)
    return (c[:, 0] + c[:, 2] > 0).astype(np.int32)


def label_intensity_slant(concepts: np.ndarray) -> np.ndarray:
    """The control classifier's task: 1 where i + s > 0 (intensity replaces thickness)."""
    c = np.asarray(concepts)
    return (c[:, 1] + c[:, 2] > 0).astype(np.int32)
