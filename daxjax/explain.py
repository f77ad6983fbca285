"""`daxjax.explain`: one entry point for every explainer, switched by `method`."""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import numpy as np

from blackbox_adapters import as_blackbox, check_probabilities
from daxjax import dax, gradients, kernelshap, lime, occlusion, rise
from daxjax.config import DAXConfig
from daxjax.engine import gather_diagnostics
from daxjax.inputs import InputError, as_float_images, as_targets, check_field_types, check_seed, image_digest
from daxjax.querying import device_blackbox
from daxjax.segments import given_segments, select_segments

# method -> (config dataclass, explain_images). Every explain_images has the signature
#   (device_bb, images float32 [b, H, W, C], targets int32 [b], digests uint32 [b], config, seed,
#    image_ids) -> engine.GroupResult (maps float32 [b, H, W] in [0, 1], {phase: seconds},
#    per-image diagnostics)
# and every config has an `image_batch` field (images per group).
#   Query-only, through `querying.query_targets` (any black box):
#     "dax"          DAX, a mask net distilled from queries          (dax.py, DAXConfig)
#     "rise"         score-weighted random smooth masks              (rise.py, RISEConfig)
#     "lime"         weighted ridge regression on superpixels        (lime.py, LIMEConfig)
#     "kernelshap"   Shapley values of superpixels                   (kernelshap.py, KernelSHAPConfig)
#     "occlusion"    probability drop under a sliding window         (occlusion.py, OcclusionConfig)
#   Gradient references, a JaxBlackBox only (they differentiate jax_fn; gradients.py):
#     "gradient", "smoothgrad", "integrated_gradients", "input_x_gradient"
EXPLAINERS = {
    "dax": (DAXConfig, dax.explain_images),
    "rise": (rise.RISEConfig, rise.explain_images),
    "lime": (lime.LIMEConfig, lime.explain_images),
    "kernelshap": (kernelshap.KernelSHAPConfig, kernelshap.explain_images),
    "occlusion": (occlusion.OcclusionConfig, occlusion.explain_images),
    "gradient": (gradients.GradientConfig, gradients.explain_gradient),
    "smoothgrad": (gradients.SmoothGradConfig, gradients.explain_smoothgrad),
    "integrated_gradients": (gradients.IntegratedGradientsConfig, gradients.explain_integrated_gradients),
    "input_x_gradient": (gradients.InputXGradientConfig, gradients.explain_input_x_gradient),
}
METHODS = tuple(EXPLAINERS)
#: method -> the per-image diagnostics its engine reports (`Explanation.diagnostics`); others: none.
DIAGNOSTICS = {"dax": dax.DIAGNOSTICS}


@dataclasses.dataclass
class Explanation:
    """What `explain` returns for a batch of B images of H x W pixels.

    maps: float32 [B, H, W] in [0, 1], higher = more important for the target class.
    targets: int32 [B], the explained class of each image.
    scores: float32 [B], the black box's probability of the target on the unperturbed image.
    method, config: what produced the maps.
    timings: seconds spent per phase (for DAX "segmentation", "queries", "training"; all "total").
    diagnostics: per-image arrays [B] saying how far each map can be trusted, for explainers that
      can tell (DAX: `daxjax.dax.DIAGNOSTICS`: the student's held-out fit, a linear surrogate's,
      the mask's area and contrast, and `trusted`); empty for the others.
    """

    maps: np.ndarray
    targets: np.ndarray
    scores: np.ndarray
    method: str
    config: Any
    timings: dict = dataclasses.field(default_factory=dict)
    diagnostics: dict = dataclasses.field(default_factory=dict)

    @property
    def trusted(self) -> np.ndarray | None:
        """bool [B]: maps the explainer vouches for (DAX: fit and a living mask); None if it cannot tell."""
        return self.diagnostics.get("trusted")


def _resolve_config(method: str, config):
    if method not in EXPLAINERS:
        raise InputError(f"unknown method {method!r}; choose one of {METHODS}")
    expected = EXPLAINERS[method][0]
    if config is None:
        return expected()
    if not isinstance(config, expected):
        raise InputError(f"method={method!r} takes a {expected.__name__}; got {type(config).__name__}")
    check_field_types(config)
    return config


def explain(bb, images, targets=None, method: str = "dax", config=None, seed: int = 0,
            segments=None) -> Explanation:
    """Explains the black box's decision on each image.

    Args:
      bb: a black box (`blackbox_adapters`) or any callable x [n, H, W, C] float32 in [0, 1]
        -> probabilities [n, K].
      images: float32 [B, H, W, C] in [0, 1] or uint8 [B, H, W, C]; C in {1, 3}.
      targets: int [B] classes to explain, a single int for all, or None for the top-1 class.
      method: one of METHODS.
      config: the method's config dataclass (e.g. `DAXConfig`); None takes its defaults.
      seed: with the image and target, fixes the explanation (the determinism contract).
      segments: None, or label maps int [B, H, W] (one per image, segment ids >= 0) that replace
        the config's segmentation ("dax", "lime", "kernelshap" only); each map is checked
        (`segmentation.check_label_map`: shape, integer dtype, no negative ids, 2 to H*W/16
        segments) and its image's map then depends on it too.

    Returns:
      An `Explanation`.
    """
    config = _resolve_config(method, config)
    seed = check_seed(seed)
    user_bb, bb = bb, as_blackbox(bb)
    start = time.perf_counter()
    x = as_float_images(images)
    batch = x.shape[0]
    given = None if segments is None else given_segments(method, config, x, segments)
    probs = check_probabilities(bb(x), batch, what="black box on the unperturbed images")
    num_classes = probs.shape[1]
    targets = as_targets(targets, batch, num_classes, default=probs.argmax(axis=1))
    scores = probs[np.arange(batch), targets].astype(np.float32)

    digests = np.array([image_digest(img, t) for img, t in zip(x, targets)], np.uint32)

    maps = np.zeros(x.shape[:3], np.float32)
    timings: dict[str, float] = {}
    diagnostics: dict[str, np.ndarray] = {}
    device_bb = device_blackbox(user_bb, bb, num_classes)
    explain_images = EXPLAINERS[method][1]
    for lo in range(0, batch, config.image_batch):
        hi = min(batch, lo + config.image_batch)
        extra = {} if given is None else {"segmented": select_segments(given, slice(lo, hi))}
        result = explain_images(device_bb, x[lo:hi], targets[lo:hi], digests[lo:hi],
                                config, seed, list(range(lo, hi)), **extra)
        maps[lo:hi] = result.maps
        gather_diagnostics(diagnostics, result.diagnostics, slice(lo, hi), batch)
        for phase, seconds in result.timings.items():
            timings[phase] = timings.get(phase, 0.0) + seconds
    timings["total"] = time.perf_counter() - start
    return Explanation(maps, targets, scores, method, config, timings, diagnostics)
