"""Metrics that judge explanation maps.

Maps are float [B, H, W] (higher = more important); ground-truth masks are bool or 0/1
[B, H, W] (nonzero = the object). Input checks run on the host and name the offending image;
the arithmetic is vectorised, jitted JAX.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np


def binarize(maps: Any, k: float = 1.0, threshold: float | None = None) -> np.ndarray:
    """The "explained" region of each map, bool [B, H, W].

    A pixel is in the region when its value is strictly above the map's threshold:
    mean + k·std of that map, or the fixed `threshold` when given. A constant map has no
    meaningful statistical threshold and yields an empty region (with a fixed threshold it is
    compared like any other map).
    """
    checked = _check_maps(maps)
    return np.asarray(_binarize(jnp.asarray(checked), k, threshold))


def iou(maps: Any, masks: Any, k: float = 1.0, *, threshold: float | None = None) -> np.ndarray:
    """Intersection over union of each binarised map with its ground-truth mask, float32 [B].

    IoU = |E ∧ G| / |E ∨ G| with E = `binarize(maps, k, threshold)` and G = masks ≠ 0.
    A constant map (std 0, so mean + k·std is undefined as a cut) scores 0.0 under the
    statistical threshold; the result never contains NaN.

    Raises:
        ValueError: shapes differ or are not [B, H, W] (message names both shapes), a map
            contains NaN/inf, or a mask is empty (IoU undefined); messages name the image index.
    """
    map_array, mask_array = np.asarray(maps), np.asarray(masks)
    if map_array.shape != mask_array.shape:
        raise ValueError(f"maps shape {map_array.shape} does not match masks shape {mask_array.shape}")
    checked_maps = _check_maps(map_array)
    truth = mask_array != 0
    empty = np.flatnonzero(~truth.any(axis=(1, 2)))
    if empty.size:
        raise ValueError(f"ground-truth mask of image(s) {empty.tolist()} is empty; IoU is undefined")
    explained = _binarize(jnp.asarray(checked_maps), k, threshold)
    return np.asarray(_iou_of_regions(explained, jnp.asarray(truth)), dtype=np.float32)


def _check_maps(maps: Any) -> np.ndarray:
    """Maps as float32 [B, H, W]; ValueError for another rank or for non-finite values (naming the images)."""
    array = np.asarray(maps, dtype=np.float32)
    if array.ndim != 3:
        raise ValueError(f"maps must have shape [B, H, W], got {array.shape}")
    bad = np.flatnonzero(~np.isfinite(array).all(axis=(1, 2)))
    if bad.size:
        raise ValueError(f"map(s) of image(s) {bad.tolist()} contain NaN or infinite values")
    return array


def _binarize(maps: jax.Array, k: float, threshold: float | None) -> jax.Array:
    if threshold is None:
        return _binarize_statistical(maps, k)
    return _binarize_fixed(maps, threshold)


@jax.jit
def _binarize_statistical(maps: jax.Array, k: float) -> jax.Array:
    """maps > mean + k·std per map; all False for a constant map."""
    mean = maps.mean(axis=(1, 2), keepdims=True)
    std = maps.std(axis=(1, 2), keepdims=True)
    # Tested exactly rather than via std == 0: float32 round-off can put the mean of a
    # constant map a hair below its value, which would select every pixel.
    constant = maps.max(axis=(1, 2), keepdims=True) == maps.min(axis=(1, 2), keepdims=True)
    return (maps > mean + k * std) & ~constant


@jax.jit
def _binarize_fixed(maps: jax.Array, threshold: float) -> jax.Array:
    return maps > threshold


@jax.jit
def _iou_of_regions(explained: jax.Array, truth: jax.Array) -> jax.Array:
    """|E ∧ G| / |E ∨ G| per image for bool [B, H, W] regions."""
    intersection = jnp.sum(explained & truth, axis=(1, 2))
    union = jnp.sum(explained | truth, axis=(1, 2))
    # Callers reject empty masks, so union ≥ 1; the floor keeps the jitted core NaN-free on its own.
    return intersection / jnp.maximum(union, 1)
