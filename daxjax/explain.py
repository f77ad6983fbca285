"""`daxjax.explain`: one entry point for every explainer, switched by `method`."""

from __future__ import annotations

import dataclasses
import time
import warnings
from typing import Any

import numpy as np

from blackbox_adapters import as_blackbox, check_probabilities
from daxjax import dax
from daxjax.config import DAXConfig
from daxjax.fills import fill_images
from daxjax.inputs import InputError, as_float_images, as_targets, image_digest
from daxjax.querying import device_blackbox
from daxjax.segmentation import segment_images

CONFIG_TYPES = {"dax": DAXConfig}
METHODS = tuple(CONFIG_TYPES)


@dataclasses.dataclass
class Explanation:
    """What `explain` returns for a batch of B images of H x W pixels.

    maps: float32 [B, H, W] in [0, 1], higher = more important for the target class.
    targets: int32 [B], the explained class of each image.
    scores: float32 [B], the black box's probability of the target on the unperturbed image.
    method, config: what produced the maps.
    timings: seconds spent per phase ("segmentation", "queries", "training", "total").
    """

    maps: np.ndarray
    targets: np.ndarray
    scores: np.ndarray
    method: str
    config: Any
    timings: dict = dataclasses.field(default_factory=dict)


def _resolve_config(method: str, config):
    if method not in CONFIG_TYPES:
        raise InputError(f"unknown method {method!r}; choose one of {METHODS}")
    expected = CONFIG_TYPES[method]
    if config is None:
        return expected()
    if not isinstance(config, expected):
        raise InputError(f"method={method!r} takes a {expected.__name__}; got {type(config).__name__}")
    return config


def explain(bb, images, targets=None, method: str = "dax", config=None, seed: int = 0) -> Explanation:
    """Explains the black box's decision on each image.

    Args:
      bb: a black box (`blackbox_adapters`) or any callable x [n, H, W, C] float32 in [0, 1]
        -> probabilities [n, K].
      images: float32 [B, H, W, C] in [0, 1] or uint8 [B, H, W, C]; C in {1, 3}.
      targets: int [B] classes to explain, a single int for all, or None for the top-1 class.
      method: one of METHODS.
      config: the method's config dataclass (e.g. `DAXConfig`); None takes its defaults.
      seed: with the image and target, fixes the explanation (the determinism contract).

    Returns:
      An `Explanation`.
    """
    config = _resolve_config(method, config)
    user_bb, bb = bb, as_blackbox(bb)
    start = time.perf_counter()
    x = as_float_images(images)
    batch = x.shape[0]
    probs = check_probabilities(bb(x), batch, what="black box on the unperturbed images")
    num_classes = probs.shape[1]
    targets = as_targets(targets, batch, num_classes, default=probs.argmax(axis=1))
    scores = probs[np.arange(batch), targets].astype(np.float32)

    maps = np.zeros(x.shape[:3], np.float32)
    timings = {"segmentation": 0.0, "queries": 0.0, "training": 0.0}
    device_bb = device_blackbox(user_bb, bb, num_classes)
    for lo in range(0, batch, config.image_batch):
        hi = min(batch, lo + config.image_batch)
        group_maps, group_timings = _explain_dax_group(device_bb, x[lo:hi], targets[lo:hi],
                                                       config, seed, list(range(lo, hi)))
        maps[lo:hi] = group_maps
        for phase, seconds in group_timings.items():
            timings[phase] += seconds
    timings["total"] = time.perf_counter() - start
    return Explanation(maps, targets, scores, method, config, timings)


def _explain_dax_group(device_bb, x, targets, config: DAXConfig, seed: int, image_ids: list):
    t0 = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        seg = segment_images(x, config.segmentation, options=config.segmentation_options)
    for w in caught:
        # The segmenter numbers images within this group; restate with the caller's indices.
        message = str(w.message)
        if np.any(seg.fell_back):
            fell = [image_ids[i] for i in np.flatnonzero(seg.fell_back)]
            message = (f"image(s) {fell} formed a single {config.segmentation} segment; "
                       "a regular grid was used instead")
        warnings.warn(message, w.category, stacklevel=3)
    fills = fill_images(x, seg.segments, config.fill)
    digests = np.array([image_digest(img, t) for img, t in zip(x, targets)], np.uint32)
    seg_time = time.perf_counter() - t0
    maps, timings = dax.explain_group(device_bb, x, seg.segments, seg.num_segments, seg.max_segments,
                                      fills, targets, digests, config, seed, image_ids)
    return maps, {"segmentation": seg_time, **timings}
