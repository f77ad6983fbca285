"""KernelSHAP in segment space (Lundberg & Lee, 2017), batched over images in JAX.

The players are an image's M superpixels; a coalition z in {0, 1}^M shows the segments in it
and the fill elsewhere, and v(z) is the black box's target probability on that image. The
Shapley values are the solution of the weighted least squares

    min_phi  sum_z k(z) (v(z) - v(0) - z . phi)^2    subject to  sum_j phi_j = v(1) - v(0),

with the Shapley kernel k(z) = (M - 1) / (C(M, |z|) |z| (M - |z|)) (infinite at the empty and
full coalitions, which become the constraint). As in the `shap` package, the constraint is
enforced exactly by eliminating the last player: phi_last = v(1) - v(0) - sum of the others.

Sampling: queries 0 and 1 are the anchors v(1) (all segments) and v(0) (all fill). The other
coalitions come in complementary pairs (z, 1 - z) (the `shap` package's paired sampling): a
size k in 1 .. M-1 drawn with probability proportional to the kernel's total mass at that size,
C(M, k) k(z) = (M - 1) / (k (M - k)), then k segments uniformly at random. A coalition is then
drawn with probability proportional to its kernel weight, so every sampled coalition gets the
same regression weight 1 (importance sampling). Unlike `shap`, sizes are never enumerated
exhaustively, even when the budget would allow it.

This module is KernelSHAP's sampler (`coalition_samples`) and solver (`sampled_shapley_values`);
the engine around them is the one LIME uses too (`methods.surrogate.SurrogateEngine`).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from daxjax._checks import Replace
from daxjax.device.execution import MovedExecutionFields
from daxjax.methods.base import Method, sample_bytes
from daxjax.methods.surrogate import SurrogateEngine, check_segment_options
from daxjax.perturbation.fills import FillMethod
from daxjax.perturbation.segmentation import SegmentationMethod, Segmenter
from daxjax.perturbation.segments import segments_bound

# Coalitions 0 and 1 are v(all segments) and v(no segment).
NUM_ANCHORS = 2


@dataclasses.dataclass(frozen=True)
class KernelSHAPConfig(Replace, MovedExecutionFields):
    """How KernelSHAP explains one image; the same for every image of a call.

    num_samples: N coalitions (= black-box queries) per image, the two anchors included.
    segmentation, segmentation_options: the players ("quickshift" with LIME's settings, as LIME
      and DAX), or a callable segmenter as for `DAXConfig.segmentation`.
    fill: what a segment outside the coalition shows ("blur", as LIME here and the `shap`
      package's image maskers; on the quality scenes "image_mean" localises better:
      benchmarks/RESULTS.md, "Explanation quality with exact ground truth").
    positive_only: True: negative Shapley values count as no evidence (the map is
      max(phi, 0) min-max scaled); False: the signed values are min-max scaled.

    Execution settings (images per group, inputs per call) are not config fields: `explain(execution=)`.
    """

    num_samples: int = 1000
    segmentation: SegmentationMethod | Segmenter = "quickshift"
    segmentation_options: Mapping[str, Any] | None = None
    fill: FillMethod = "blur"
    positive_only: bool = True

    def _check(self) -> None:
        check_segment_options(self)
        if self.num_samples < NUM_ANCHORS + 2:
            raise ValueError(f"KernelSHAPConfig.num_samples must be >= {NUM_ANCHORS + 2} (two anchors "
                             f"and one sampled pair), got {self.num_samples!r}")


def _harmonic(n: jax.Array) -> jax.Array:
    """H_n = 1 + 1/2 + ... + 1/n (H_0 = 0), elementwise, as digamma(n + 1) + Euler's gamma."""
    return jax.scipy.special.digamma(n + 1.0) + np.euler_gamma


def size_cdf(num_segments: jax.Array, max_segments: int) -> jax.Array:
    """P(size <= k) for k = 0 .. max_segments - 1 under P(k) ~ 1 / (k (M - k)), k in 1 .. M - 1.

    In closed form, sum_{j<=k} 1 / (j (M - j)) = (H_k + H_{M-1} - H_{M-1-k}) / M, so every entry
    is computed on its own: the values for k < M do not depend on max_segments (i.e. on the
    other images of the batch), as a cumulative sum's round-off could. float32 [max_segments].
    """
    players = jnp.maximum(num_segments, 2).astype(jnp.float32)  # one player has no sizes to draw
    k = jnp.minimum(jnp.arange(max_segments, dtype=jnp.float32), players - 1.0)
    last = _harmonic(players - 1.0)
    return (_harmonic(k) + last - _harmonic(players - 1.0 - k)) / (2.0 * last)


def coalitions(key: jax.Array, num_samples: int, num_segments: jax.Array, max_segments: int) -> jax.Array:
    """Coalitions for one image: bool [N, max_segments]; padded columns (>= M) are False.

    Row 0 is all M segments, row 1 none; rows 2 + 2p and 3 + 2p are the p-th sampled coalition
    and its complement. Segment j's random priorities come from fold_in(order key, j) alone (as
    in `sampling.keep_vectors`), so the coalitions do not depend on max_segments, i.e. on which
    other images share the batch.
    """
    num_pairs = -(-(num_samples - NUM_ANCHORS) // 2)
    columns = jnp.arange(max_segments)
    real = columns < num_segments
    size_key, order_key = jax.random.split(key)
    # Smallest k with cdf(k) > u: cdf(0) = 0 <= u < 1 = cdf(M - 1) bounds it to 1 .. M - 1; the
    # clip only guards against round-off in cdf at the two ends.
    u = jax.random.uniform(size_key, (num_pairs,))
    sizes = jnp.sum((size_cdf(num_segments, max_segments)[None, :] <= u[:, None]) & real, axis=1)
    sizes = jnp.clip(sizes, 1, jnp.maximum(num_segments - 1, 1))
    # The `size` real segments of lowest priority join the coalition (a uniform random subset).
    def column_priorities(j):
        return jax.random.uniform(jax.random.fold_in(order_key, j), (num_pairs,))
    priority = jax.vmap(column_priorities)(columns).T
    priority = jnp.where(real, priority, 2.0)
    cutoff = jnp.take_along_axis(jnp.sort(priority, axis=1), sizes[:, None] - 1, axis=1)
    inside = priority <= cutoff
    sampled = jnp.stack([inside, real & ~inside], axis=1).reshape(2 * num_pairs, max_segments)
    anchors = jnp.stack([real, jnp.zeros_like(real)])
    return jnp.concatenate([anchors, sampled[:num_samples - NUM_ANCHORS]])


def shapley_values(z: jax.Array, values: jax.Array, weights: jax.Array, num_segments: jax.Array) -> jax.Array:
    """KernelSHAP's Shapley-value estimate for one image: float32 [S] (zeros beyond the M players).

    z: bool [N, S] coalitions with z[0] = all players and z[1] = none; values: [N] v(z);
    weights: [N] regression weight of each coalition (the Shapley kernel, or 1 for coalitions
    sampled in proportion to it; the anchors' weights do not matter); num_segments: M.

    With t = v(1) - v(0), the last player is eliminated (phi_last = t - sum of the others):
    v(z) - v(0) - z_last t = sum_{j < last} (z_j - z_last) phi_j, solved by least squares
    (minimum norm, so players never told apart by the samples share their value). Hence
    sum(phi) = t up to round-off, whatever the samples.
    """
    values = values.astype(jnp.float32)
    total = values[0] - values[1]
    last = num_segments - 1
    free = jnp.arange(z.shape[1]) < last
    z = z.astype(jnp.float32)
    z_last = z[:, last]
    design = (z - z_last[:, None]) * free
    residual = values - values[1] - z_last * total
    root = jnp.sqrt(weights)
    phi, *_ = jnp.linalg.lstsq(root[:, None] * design, root * residual)
    phi = jnp.where(free, phi, 0.0)
    return phi.at[last].set(total - jnp.sum(phi))


@functools.partial(jax.jit, static_argnums=(1, 3))
def _draw_coalitions(keys, num_samples, num_segments, max_segments):
    return jax.vmap(coalitions, in_axes=(0, None, 0, None))(keys, num_samples, num_segments, max_segments)


@jax.jit
def _sampled_shapley_values(z, values, num_segments):
    """Shapley values [B, S] from sampled coalitions [B, N, S]: every sampled one has weight 1."""
    weights = jnp.ones(z.shape[1], jnp.float32)
    return jax.vmap(shapley_values, in_axes=(0, 0, None, 0))(z, values, weights, num_segments)


def coalition_samples(keys: jax.Array, config: KernelSHAPConfig, num_segments: jax.Array,
                      max_segments: int) -> jax.Array:
    """KernelSHAP's sampler: the anchors and paired coalitions of each image, bool [B, N, S] (`coalitions`)."""
    return _draw_coalitions(keys, config.num_samples, num_segments, max_segments)


def sampled_shapley_values(z: jax.Array, y: jax.Array, num_segments: jax.Array, config: KernelSHAPConfig) -> jax.Array:
    """KernelSHAP's solver: Shapley values [B, S] from the sampled coalitions (`shapley_values`)."""
    return _sampled_shapley_values(z, y, num_segments)


#: Explains one group of images side by side with KernelSHAP (`methods.base.ExplainGroup`; phases
#: "segmentation", "queries", "regression").
explain_images = SurrogateEngine(sample=coalition_samples, solve=sampled_shapley_values)


METHOD = Method("kernelshap", KernelSHAPConfig, explain_images, perturbs_segments=True, query_only=True,
                queries_per_image=lambda config, height, width: config.num_samples,
                working_bytes=lambda config, height, width, channels: sample_bytes(config.num_samples,
                                                                                    segments_bound(config)))
