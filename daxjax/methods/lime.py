"""LIME for images: a proximity-weighted ridge regression in segment space (Ribeiro et al., 2016).

For each image: superpixels (quickshift by default, as LIME and DAX), N keep-vectors
z in {0, 1}^S with z[0] the original (`sampling.keep_vectors`, Bernoulli(0.5) as LIME), the
black box's target probability y on each perturbation (switched-off segments show the fill),
proximity weights pi = exp(-d^2 / 0.25^2) on the cosine distance to the original (the DAX
kernel, `sampling.proximity_weights`), and a weighted ridge regression y ~ b + z . w solved in
closed form in JAX, vmapped over images. The coefficients w, painted back onto their segments,
are the explanation.

This module is LIME's sampler (`keep_vector_samples`) and solver (`lime_coefficients`); the
engine around them is the one KernelSHAP uses too (`methods.surrogate.SurrogateEngine`).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Mapping

import jax
import jax.numpy as jnp

from daxjax._checks import Replace, check_fields
from daxjax.device.execution import MovedExecutionFields
from daxjax.methods.base import Method, sample_bytes
# paint_segments, evidence_maps, weighted_ridge and check_segment_options lived here before the
# surrogate engine; they stay importable from this module.
from daxjax.methods.surrogate import (SurrogateEngine, check_segment_options, evidence_maps,  # noqa: F401
                                      weighted_ridge)
from daxjax.perturbation.fills import FillMethod
from daxjax.perturbation.sampling import proximity_weights
from daxjax.perturbation.segmentation import SegmentationMethod, Segmenter
from daxjax.perturbation.segments import draw_keep_vectors, paint_segments, segments_bound  # noqa: F401


@dataclasses.dataclass(frozen=True)
class LIMEConfig(Replace, MovedExecutionFields):
    """How LIME explains one image; the same for every image of a call.

    num_samples: N perturbations (= black-box queries) per image, sample 0 being the original
      (LIME's default for images is 1000).
    keep_prob: probability that a segment is kept (LIME draws each segment on/off with 0.5).
    segmentation, segmentation_options: the superpixels ("quickshift" with LIME's settings), or a
      callable segmenter as for `DAXConfig.segmentation`.
    fill: what a switched-off segment shows ("blur"; on the quality scenes "image_mean" localises
      better: benchmarks/RESULTS.md, "Explanation quality with exact ground truth").
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

    Execution settings (images per group, inputs per call) are not config fields: `explain(execution=)`.
    """

    num_samples: int = 1000
    keep_prob: float = 0.5
    segmentation: SegmentationMethod | Segmenter = "quickshift"
    segmentation_options: Mapping[str, Any] | None = None
    fill: FillMethod = "blur"
    kernel_width: float = 0.25
    ridge_alpha: float = 1.0
    positive_only: bool = True

    def _check(self) -> None:
        check_segment_options(self)
        check_fields(self, open_unit=("keep_prob",), greater_than_zero=("kernel_width", "ridge_alpha"))


@functools.partial(jax.jit, static_argnames=("kernel_width", "alpha"))
def lime_coefficients(z: jax.Array, y: jax.Array, num_segments: jax.Array, *, kernel_width: float,
                      alpha: float) -> jax.Array:
    """LIME's per-segment coefficients [B, S] from keep-vectors z bool [B, N, S] and answers y [B, N]."""
    def one(z, y, count):
        pi = proximity_weights(z, count, kernel_width)
        return weighted_ridge(z.astype(jnp.float32), y, pi, alpha)[0]
    return jax.vmap(one)(z, y, num_segments)


def keep_vector_samples(keys: jax.Array, config: LIMEConfig, num_segments: jax.Array, max_segments: int) -> jax.Array:
    """LIME's sampler: N keep-vectors per image, each segment kept with `config.keep_prob`, bool [B, N, S]."""
    return draw_keep_vectors(keys, config.num_samples, num_segments, max_segments, config.keep_prob)


def ridge_solution(z: jax.Array, y: jax.Array, num_segments: jax.Array, config: LIMEConfig) -> jax.Array:
    """LIME's solver: the proximity-weighted ridge coefficients [B, S] (`lime_coefficients`)."""
    return lime_coefficients(z, y, num_segments, kernel_width=config.kernel_width, alpha=config.ridge_alpha)


#: Explains one group of images side by side with LIME (`methods.base.ExplainGroup`; phases
#: "segmentation", "queries", "regression").
explain_images = SurrogateEngine(sample=keep_vector_samples, solve=ridge_solution)

METHOD = Method("lime", LIMEConfig, explain_images, perturbs_segments=True, query_only=True,
                queries_per_image=lambda config, height, width: config.num_samples,
                working_bytes=lambda config, height, width, channels: sample_bytes(config.num_samples,
                                                                                    segments_bound(config)))
