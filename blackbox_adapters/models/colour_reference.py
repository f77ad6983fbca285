"""Numpy reference of the bundled "colour-patch classifier" (the planted black box).

The model's decision depends only on how many pixels of a pure colour an image holds, so the
pixels that matter are known exactly: a planted red patch *is* the evidence for "red". Per pixel,

    score_red = relu(R - max(G, B) - PURITY_MARGIN)     (green and blue analogously)

and per image ``logit_k = LOGIT_SCALE * mean over pixels of score_k`` for the three colours,
plus a constant ``NONE_LOGIT`` for "none". The ONNX files next to this module compute exactly
this function (``tools/make_colour_models.py`` builds them from these constants).
"""

from __future__ import annotations

import numpy as np

from ..base import softmax

COLOUR_CLASSES = ("red", "green", "blue", "none")
# A pixel counts towards a colour only if that channel beats both others by more than this.
PURITY_MARGIN = 0.25
# Turns the mean score (a fraction of the image, weighted by purity) into a logit.
LOGIT_SCALE = 20.0
# "none" wins until roughly 0.5/20/0.75 = 3.3 % of the pixels are pure red, green or blue.
NONE_LOGIT = 0.5


def colour_pixel_scores(x: np.ndarray) -> np.ndarray:
    """x: float [n, H, W, 3] (RGB, nominally [0, 1]) -> float32 [n, H, W, 3] per-pixel purity scores."""
    x = np.asarray(x, dtype=np.float32)
    r, g, b = x[..., 0], x[..., 1], x[..., 2]
    scores = [r - np.maximum(g, b), g - np.maximum(r, b), b - np.maximum(r, g)]
    return np.maximum(np.stack(scores, axis=-1) - np.float32(PURITY_MARGIN), 0.0).astype(np.float32)


def colour_logits(x: np.ndarray) -> np.ndarray:
    """x: float [n, H, W, 3] -> float32 [n, 4] logits in the order of COLOUR_CLASSES."""
    colour = np.float32(LOGIT_SCALE) * colour_pixel_scores(x).mean(axis=(1, 2), dtype=np.float32)
    none = np.full((colour.shape[0], 1), NONE_LOGIT, dtype=np.float32)
    return np.concatenate([colour, none], axis=1)


def colour_probs(x: np.ndarray) -> np.ndarray:
    """x: float [n, H, W, 3] -> float32 [n, 4] class probabilities (softmax of colour_logits)."""
    return softmax(colour_logits(x))
