"""Saliency maps as arrays: the scaling every explainer applies last."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def normalise(maps: jax.Array) -> jax.Array:
    """Min-max scales each map [..., H, W] to [0, 1]; a constant map becomes all zeros."""
    low = maps.min(axis=(-2, -1), keepdims=True)
    high = maps.max(axis=(-2, -1), keepdims=True)
    return jnp.where(high > low, (maps - low) / jnp.maximum(high - low, 1e-12), 0.0)
