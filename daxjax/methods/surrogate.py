"""The engine LIME and KernelSHAP share: a linear surrogate in segment space (as Captum's `LimeBase`).

For a group of images: segments and fills (`perturbation.segments`), N samples z in {0, 1}^S per
image drawn by the method's `sample`, the black box's target probability y on each perturbation
(switched-off segments show the fill), and the method's `solve`: per-segment attributions from
(z, y). Painted back onto their segments and scaled to [0, 1] (`evidence_maps`), they are the
maps. LIME is (keep-vectors, proximity-weighted ridge regression), KernelSHAP (Shapley-kernel
coalitions, constrained least squares); everything else is this module.

`weighted_ridge` is also the linear surrogate of DAX's diagnostics.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from daxjax._checks import check_fields
from daxjax.device.execution import Execution, query_chunk
from daxjax.device.querying import DeviceBlackBox, RenderedQueries, input_elements
from daxjax.methods.base import GroupResult, normalise
from daxjax.perturbation.sampling import image_keys
from daxjax.perturbation.segmentation import check_segmenter
from daxjax.perturbation.segments import HostSegments, paint_segments, query_segment_perturbations, segment_and_fill


def check_segment_options(config) -> None:
    """Validates the fields LIME and KernelSHAP configs share (a ValueError naming the field).

    Called from __post_init__; also stores segmentation_options as a plain dict copy, so that a
    mapping passed in cannot change under the frozen config.
    """
    if config.segmentation_options is not None:
        object.__setattr__(config, "segmentation_options", dict(config.segmentation_options))
    check_segmenter(config.segmentation, type(config).__name__)
    check_fields(config, positive=("num_samples",))


@functools.partial(jax.jit, static_argnames="positive_only")
def evidence_maps(values: jax.Array, segments: jax.Array, positive_only: bool) -> jax.Array:
    """Per-segment attributions [B, S] as maps [B, H, W] in [0, 1].

    positive_only: negative values (evidence against the target) count as none, so the map shows
    where the target's support lies; else the signed values are min-max scaled.
    """
    if positive_only:
        values = jnp.maximum(values, 0.0)
    return normalise(paint_segments(values, segments))


def weighted_ridge(features: jax.Array, targets: jax.Array, weights: jax.Array,
                   alpha: float) -> tuple[jax.Array, jax.Array]:
    """argmin_{w, b} sum_n weights_n (targets_n - b - features_n . w)^2 + alpha |w|^2.

    features: [N, S]; targets, weights: [N]. Returns (w [S], b scalar). Closed form, as sklearn's
    Ridge with sample weights: centre by the weighted means (so b is not penalised), then solve
    (Xc^T W Xc + alpha I) w = Xc^T W yc. A feature column that is all zeros (a padded segment)
    decouples from the rest and gets w = 0 exactly.
    """
    total = jnp.sum(weights)
    feature_mean = weights @ features / total
    target_mean = weights @ targets / total
    centred = features - feature_mean
    gram = centred.T @ (weights[:, None] * centred) + alpha * jnp.eye(features.shape[1], dtype=features.dtype)
    coefficients = jax.scipy.linalg.solve(gram, centred.T @ (weights * (targets - target_mean)),
                                          assume_a="pos")
    return coefficients, target_mean - feature_mean @ coefficients


@dataclasses.dataclass(frozen=True)
class SurrogateEngine:
    """A segment-space surrogate explainer, the group function (`methods.base.ExplainGroup`) of LIME
    and KernelSHAP.

    sample: (keys [B], config, num_segments int32 [B], max_segments) -> samples z bool [B, N, S],
      padded columns (>= an image's segment count) False.
    solve: (z bool [B, N, S], y float32 [B, N], num_segments int32 [B], config) -> per-segment
      attributions float32 [B, S] (0 beyond an image's segments).
    The config needs num_samples, segmentation (+ _options), fill, positive_only.
    """

    sample: Callable[..., jax.Array]
    solve: Callable[..., jax.Array]

    def __call__(self, device_bb: DeviceBlackBox, images: np.ndarray, targets: np.ndarray, digests: np.ndarray,
                 config: Any, seed: int, image_ids: list, segmented: HostSegments | None = None,
                 queries: RenderedQueries | None = None, execution: Execution | None = None) -> GroupResult:
        """Explains one group of images side by side.

        images: float32 [B, H, W, C] in [0, 1]; targets: int32 [B]; digests: uint32 [B] image
        fingerprints; image_ids: the caller's names for the images. queries: None for images;
        `querying.RenderedQueries` when the black box takes other inputs (audio), which are then
        rendered from the masks on `images`' grid. execution: perturbations per black-box call
        (`device.execution.query_chunk`); never changes the maps. Returns maps float32 [B, H, W] in [0, 1] and
        seconds per phase: "segmentation", "queries", "regression".
        """
        t0 = time.perf_counter()
        group = segment_and_fill(images, config, image_ids, segmented)
        timings = {"segmentation": time.perf_counter() - t0}

        t0 = time.perf_counter()
        z = self.sample(image_keys(seed, digests), config, group.num_segments, group.max_segments)
        chunk = query_chunk(execution, len(images), input_elements(images, queries))
        y = query_segment_perturbations(device_bb, group, z, targets, chunk, image_ids, queries)
        timings["queries"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        values = self.solve(z, y, group.num_segments, config)
        maps = np.asarray(evidence_maps(values, group.segments, config.positive_only))
        timings["regression"] = time.perf_counter() - t0
        return GroupResult(maps, timings)
