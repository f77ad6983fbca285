"""Perturbations in segment space, drawn on the device, and their proximity weights."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def image_keys(seed: int, digests: np.ndarray) -> jax.Array:
    """One key per image from the seed and the image's own fingerprint (the determinism contract)."""
    base = jax.random.key(seed)
    return jax.vmap(lambda d: jax.random.fold_in(base, d))(jnp.asarray(digests, jnp.uint32))


def keep_vectors(key: jax.Array, num_samples: int, num_segments: jax.Array, max_segments: int,
                 keep_prob: float) -> jax.Array:
    """Draws N keep-vectors z in {0, 1}^S for one image; z[0] is the original (all ones).

    Args:
      key: this image's key.
      num_samples: N.
      num_segments: scalar S_b, the image's real number of segments.
      max_segments: S_max >= S_b, the padded width (static).
      keep_prob: Bernoulli probability of keeping a segment.

    Returns:
      bool [N, S_max]; columns >= S_b are False (padding, never referenced by the segment map).

    Column j is drawn from fold_in(key, j) alone, so the draws do not depend on S_max, i.e. on
    which other images share the batch.
    """
    columns = jnp.arange(max_segments)
    column_keys = jax.vmap(lambda j: jax.random.fold_in(key, j))(columns)
    z = jax.vmap(lambda k: jax.random.bernoulli(k, keep_prob, (num_samples,)))(column_keys).T
    z = z.at[0].set(True)
    return z & (columns < num_segments)[None, :]


def proximity_weights(z: jax.Array, num_segments: jax.Array, kernel_width: float) -> jax.Array:
    """pi = exp(-d^2 / width^2) with d the cosine distance of each z to all-ones.

    For binary z with k of the S_b real segments kept, d = 1 - sqrt(k / S_b). Returns float32 [N].
    """
    kept = jnp.sum(z, axis=-1).astype(jnp.float32)
    distance = 1.0 - jnp.sqrt(kept / num_segments.astype(jnp.float32))
    return jnp.exp(-(distance ** 2) / kernel_width ** 2)


def keep_masks(z: jax.Array, segments: jax.Array) -> jax.Array:
    """Keep-vectors painted on the segment map: z bool [n, S], segments int [H, W] -> float32 [n, H, W] in {0, 1}.

    A gather of float flags along the flattened map: on XLA CPU 2.8x faster than z[:, segments]
    (bool, 2-D index) for 24 perturbations of 224 x 224 (1.8 vs 5.1 ms), with the same values.
    """
    keep = jnp.take(z.astype(jnp.float32), segments.reshape(-1), axis=-1)
    return keep.reshape(z.shape[:-1] + segments.shape)


def perturb(image: jax.Array, segments: jax.Array, fill: jax.Array, z: jax.Array) -> jax.Array:
    """Rebuilds perturbed images from keep-vectors: kept segments show the image, others the fill.

    image, fill: [H, W, C]; segments: int [H, W]; z: bool [n, S]. Returns [n, H, W, C].
    """
    keep = keep_masks(z, segments)
    return jnp.where(keep[..., None] > 0, image[None], fill[None])


def segment_perturbations(image, segments, fill, z, start, size: int) -> jax.Array:
    """Perturbations [start, start + size) of one image from its keep-vectors z [N, S]."""
    return perturb(image, segments, fill, jax.lax.dynamic_slice_in_dim(z, start, size, axis=0))


def split_indices(key: jax.Array, num_samples: int, num_validation: int) -> tuple[jax.Array, jax.Array]:
    """Random train/validation split of sample indices; sample 0 (the original) always trains.

    Returns (train [N - V], validation [V]) int32 index vectors.
    """
    order = jax.random.permutation(key, num_samples - 1) + 1
    validation = order[:num_validation]
    train = jnp.concatenate([jnp.zeros((1,), order.dtype), order[num_validation:]])
    return train.astype(jnp.int32), validation.astype(jnp.int32)
