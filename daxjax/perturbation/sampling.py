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

    A gather of float flags along the flattened map: the same values as z[:, segments] (bool,
    2-D index), several times faster on XLA CPU.
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


# Hard concrete (Louizos, Welling & Kingma, 2018): a logistic sample stretched to (GATE_LOW,
# GATE_HIGH) and clipped to [0, 1], so a gate is exactly 0 or 1 with positive probability.
GATE_LOW, GATE_HIGH = -0.1, 1.1


def hard_concrete_gates(probabilities: jax.Array, key: jax.Array | None, shape: tuple,
                        temperature: float) -> jax.Array:
    """Relaxed Bernoulli gates in [0, 1], differentiable in their opening probabilities.

    probabilities: [S] in [0, 1], how likely each gate is open (a segment's share of the mask).
    key: None gives the deterministic gate clip(p * (high - low) + low, 0, 1) (validation and
    explanation); else a sample of `shape` [..., S] (noise from `hashed_uniform`). Small
    temperatures make samples nearly 0/1.
    """
    p = jnp.clip(probabilities, 1e-6, 1.0 - 1e-6)
    if key is None:
        stretched = jnp.broadcast_to(p, shape)
    else:
        u = hashed_uniform(key, shape)
        logit = jnp.log(p) - jnp.log1p(-p)
        stretched = jax.nn.sigmoid((jnp.log(u) - jnp.log1p(-u) + logit) / temperature)
    return jnp.clip(stretched * (GATE_HIGH - GATE_LOW) + GATE_LOW, 0.0, 1.0)


def _fmix32(x: jax.Array) -> jax.Array:
    """MurmurHash3's 32-bit finaliser: every input bit flips each output bit with probability ~1/2."""
    x = x ^ (x >> 16)
    x = x * jnp.uint32(0x85EBCA6B)
    x = x ^ (x >> 13)
    x = x * jnp.uint32(0xC2B2AE35)
    return x ^ (x >> 16)


def hashed_uniform(key: jax.Array, shape: tuple) -> jax.Array:
    """Uniform floats in (0, 1) of `shape`, a hash of (key, index along each axis): float32.

    Noise for the gates of every training sample and segment at every step (tens of thousands of
    numbers per row and step): on CPU the threefry generator cost more than the rest of the step,
    a hash a few percent of it. Counter-based like
    threefry: the number at index (i, j, ...) depends only on the key and those indices, not on
    the shape's extent (a group padded to more segments draws the same noise for the segments it
    shares) nor on what is vmapped beside it. Not for cryptography; 24 bits of resolution.
    """
    words = jax.random.key_data(key).reshape(-1).astype(jnp.uint32)
    x = jnp.broadcast_to(words[0], ())
    for axis, size in enumerate(shape):
        index = jnp.arange(size, dtype=jnp.uint32) * jnp.uint32(0x9E3779B9) + jnp.uint32(axis)
        x = _fmix32(jnp.expand_dims(x, -1) ^ index ^ words[-1])
    return ((x >> 8).astype(jnp.float32) + 0.5) / jnp.float32(1 << 24)
