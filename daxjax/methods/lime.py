"""LIME for images: a proximity-weighted ridge regression in segment space (Ribeiro et al., 2016).

For each image: superpixels (quickshift by default, as LIME and DAX), N keep-vectors
z in {0, 1}^S with z[0] the original (`sampling.keep_vectors`, Bernoulli(0.5) as LIME), the
black box's target probability y on each perturbation (switched-off segments show the fill),
proximity weights pi = exp(-d^2 / 0.25^2) on the cosine distance to the original (the DAX
kernel, `sampling.proximity_weights`), and a weighted ridge regression y ~ b + z . w solved in
closed form in JAX, vmapped over images. The coefficients w, painted back onto their segments,
are the explanation.

`paint_segments` and `evidence_maps` here are shared with KernelSHAP, which differs only in how
it samples and regresses; segmenting and querying are shared with DAX too (`daxjax.segments`).
"""

from __future__ import annotations

import dataclasses
import functools
import time
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from daxjax.methods.dax.config import FillMethod, SegmentationMethod
from daxjax.perturbation.fills import FILL_METHODS
from daxjax.methods.base import GroupResult, Method, sample_bytes, normalise
from daxjax.device.querying import DeviceBlackBox, RenderedQueries, input_elements, query_chunk
from daxjax.perturbation.sampling import image_keys, proximity_weights
from daxjax.perturbation.segmentation import Segmenter, check_segmenter
from daxjax.perturbation.segments import HostSegments, segments_bound, draw_keep_vectors, query_segment_perturbations, segment_and_fill


@dataclasses.dataclass(frozen=True)
class LIMEConfig:
    """How LIME explains one image; the same for every image of a call.

    num_samples: N perturbations (= black-box queries) per image, sample 0 being the original
      (LIME's default for images is 1000).
    keep_prob: probability that a segment is kept (LIME draws each segment on/off with 0.5).
    segmentation, segmentation_options: the superpixels ("quickshift" with LIME's settings), or a
      callable segmenter as for `DAXConfig.segmentation`.
    fill: what a switched-off segment shows. "blur" is the default: measured the best fill for
      LIME (DESIGN.md: IoU 0.45 with blur vs 0.36 with LIME's own segment-mean fill).
    kernel_width: pi = exp(-d^2 / kernel_width^2), d the cosine distance of z to all-ones (the
      kernel DAX uses). The `lime` package takes the square root of this kernel, i.e. it equals
      ours at kernel_width * sqrt(2) ~= 0.354.
    ridge_alpha: L2 penalty of the ridge regression (the `lime` package: sklearn Ridge(alpha=1));
      the intercept is not penalised. Must be > 0, which also pins the coefficients of padded
      segments to exactly 0.
    positive_only: True: negative coefficients (evidence against the target) count as no
      evidence, so the map is max(w, 0) min-max scaled and shows where the target's support
      lies (the view LIME's `get_image_and_mask(positive_only=True)` gives). False: the signed
      w are min-max scaled, the most negative segment at 0 and neutral ones in between.
    query_chunk: perturbations per image in one black-box call; None: `querying.query_chunk`.
    image_batch: images explained side by side in one vmapped computation.
    """

    num_samples: int = 1000
    keep_prob: float = 0.5
    segmentation: SegmentationMethod | Segmenter = "quickshift"
    segmentation_options: Mapping[str, Any] | None = None
    fill: FillMethod = "blur"
    kernel_width: float = 0.25
    ridge_alpha: float = 1.0
    positive_only: bool = True
    query_chunk: int | None = None
    image_batch: int = 16

    def __post_init__(self):
        check_segment_options(self)
        if not 0.0 < self.keep_prob < 1.0:
            raise ValueError(f"LIMEConfig.keep_prob must be in (0, 1), got {self.keep_prob!r}")
        for name in ("kernel_width", "ridge_alpha"):
            if not getattr(self, name) > 0:
                raise ValueError(f"LIMEConfig.{name} must be > 0, got {getattr(self, name)!r}")


    def replace(self, **changes) -> "LIMEConfig":
        return dataclasses.replace(self, **changes)


def check_segment_options(config) -> None:
    """Validates the fields LIME and KernelSHAP configs share (a ValueError naming the field).

    Called from __post_init__; also stores segmentation_options as a plain dict copy, so that a
    mapping passed in cannot change under the frozen config.
    """
    name = type(config).__name__
    if config.segmentation_options is not None:
        object.__setattr__(config, "segmentation_options", dict(config.segmentation_options))
    check_segmenter(config.segmentation, name)
    if config.fill not in FILL_METHODS:
        raise ValueError(f"{name}.fill={config.fill!r} is not one of {FILL_METHODS}")
    for field in ("num_samples", "image_batch"):
        if int(getattr(config, field)) < 1:
            raise ValueError(f"{name}.{field} must be >= 1, got {getattr(config, field)!r}")
    if config.query_chunk is not None and int(config.query_chunk) < 1:
        raise ValueError(f"{name}.query_chunk must be None or >= 1, got {config.query_chunk!r}")


@jax.jit
def paint_segments(values: jax.Array, segments: jax.Array) -> jax.Array:
    """Each pixel takes its segment's value: values [B, S], segments int [B, H, W] -> [B, H, W]."""
    return jax.vmap(lambda v, s: v[s])(values, segments)


@functools.partial(jax.jit, static_argnames="positive_only")
def evidence_maps(values: jax.Array, segments: jax.Array, positive_only: bool) -> jax.Array:
    """Per-segment attributions [B, S] as maps [B, H, W] in [0, 1] (see `LIMEConfig.positive_only`)."""
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


@functools.partial(jax.jit, static_argnames=("kernel_width", "alpha"))
def lime_coefficients(z: jax.Array, y: jax.Array, num_segments: jax.Array, *, kernel_width: float,
                      alpha: float) -> jax.Array:
    """LIME's per-segment coefficients [B, S] from keep-vectors z bool [B, N, S] and answers y [B, N]."""
    def one(z, y, count):
        pi = proximity_weights(z, count, kernel_width)
        return weighted_ridge(z.astype(jnp.float32), y, pi, alpha)[0]
    return jax.vmap(one)(z, y, num_segments)


def explain_images(device_bb: DeviceBlackBox, images: np.ndarray, targets: np.ndarray,
                   digests: np.ndarray, config: LIMEConfig, seed: int,
                   image_ids: list, segmented: HostSegments | None = None,
                   queries: RenderedQueries | None = None) -> tuple[np.ndarray, dict]:
    """Explains one group of images side by side with LIME.

    images: float32 [B, H, W, C] in [0, 1]; targets: int32 [B]; digests: uint32 [B] image
    fingerprints; image_ids: the caller's names for the images.
    queries: None for images; `querying.RenderedQueries` when the black box takes other inputs
    (audio), which are then rendered from the masks on `images`' grid.
    Returns (maps float32 [B, H, W] in [0, 1], seconds per phase: "segmentation", "queries",
    "regression").
    """
    t0 = time.perf_counter()
    group = segment_and_fill(images, config, image_ids, segmented)
    timings = {"segmentation": time.perf_counter() - t0}

    t0 = time.perf_counter()
    z = draw_keep_vectors(image_keys(seed, digests), config.num_samples, group.num_segments,
                          group.max_segments, config.keep_prob)
    chunk = query_chunk(config.query_chunk, len(images), input_elements(images, queries))
    y = query_segment_perturbations(device_bb, group, z, targets, chunk, image_ids, queries)
    timings["queries"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    coefficients = lime_coefficients(z, y, group.num_segments, kernel_width=config.kernel_width,
                                     alpha=config.ridge_alpha)
    maps = np.asarray(evidence_maps(coefficients, group.segments, config.positive_only))
    timings["regression"] = time.perf_counter() - t0
    return GroupResult(maps, timings)


METHOD = Method("lime", LIMEConfig, explain_images, perturbs_segments=True, query_only=True,
                queries_per_image=lambda config, height, width: config.num_samples,
                working_bytes=lambda config, height, width, channels: sample_bytes(config.num_samples,
                                                                                    segments_bound(config)))
