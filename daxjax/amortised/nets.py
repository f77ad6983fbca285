"""The amortised mask network: image -> a map logit per pixel, one network for a whole dataset.

Shapes (R = `Nets.resolution`, widths (c1, c2, c3) = `Nets.channels`):

    MapNet   image [B, R, R, C] -> map logits [B, R, R]

A U-Net of two levels: 3x3 convolutions at R (c1), R/2 (c2) and R/4 (c3, two of them), then
bilinear upsampling, each level concatenated with the encoder's features of its resolution
(the skip connections keep the outlines the teacher's maps follow), and a 1x1 convolution to one
logit per pixel. It learns what the teacher (per-image DAX) marks, so its receptive field (about
R/4 pixels at the deepest level) must see an object's context, not only its texture.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from daxjax.amortised.config import Nets


def _normal(key: jax.Array, shape: tuple, scale: float) -> jax.Array:
    """Normal(0, scale^2) float32 of `shape`, drawn by NumPy from the key's bits (deterministic in
    the key). JAX's samplers, eager or jitted, took 4-12 s to compile for these few parameters on
    a CPU; NumPy draws them at once. Traced (`graphdef_of`'s shape-only pass): zeros."""
    if isinstance(key, jax.core.Tracer):
        return jnp.zeros(shape, jnp.float32)
    seed = np.asarray(jax.random.key_data(key)).astype(np.uint64).ravel().tolist()
    return jnp.asarray(scale * np.random.default_rng(seed).standard_normal(shape), jnp.float32)


def _INIT(key, shape, dtype=jnp.float32):
    """LeCun normal (untruncated): std 1 / sqrt(fan in), fan in = all axes but the last."""
    return _normal(key, shape, 1.0 / np.sqrt(max(1, int(np.prod(shape[:-1])))))


def _conv(cin: int, cout: int, stride: int, rngs: nnx.Rngs) -> nnx.Conv:
    return nnx.Conv(cin, cout, (3, 3), strides=stride, kernel_init=_INIT, rngs=rngs)


class MapNet(nnx.Module):
    """image [B, R, R, C] in [0, 1] -> map logits [B, R, R] (see the module docstring)."""

    def __init__(self, config: Nets, in_channels: int, *, rngs: nnx.Rngs):
        c1, c2, c3 = config.channels
        self.down1 = _conv(in_channels, c1, 1, rngs)
        self.down2 = _conv(c1, c2, 2, rngs)
        self.down3 = _conv(c2, c3, 2, rngs)
        self.middle = _conv(c3, c3, 1, rngs)
        self.up2 = _conv(c3 + c2, c2, 1, rngs)
        self.up1 = _conv(c2 + c1, c1, 1, rngs)
        self.out = nnx.Conv(c1, 1, (1, 1), kernel_init=_INIT, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        def up(h, like):
            return jax.image.resize(h, (*like.shape[:3], h.shape[-1]), "linear")

        h1 = jax.nn.gelu(self.down1(x - 0.5))
        h2 = jax.nn.gelu(self.down2(h1))
        h3 = jax.nn.gelu(self.middle(jax.nn.gelu(self.down3(h2))))
        h = jax.nn.gelu(self.up2(jnp.concatenate([up(h3, h2), h2], axis=-1)))
        h = jax.nn.gelu(self.up1(jnp.concatenate([up(h, h1), h1], axis=-1)))
        return self.out(h)[..., 0]


def init_nets(config: Nets, in_channels: int, key: jax.Array) -> tuple[nnx.GraphDef, nnx.State]:
    """(graph definition, parameters) of a freshly initialised `MapNet` from `key`."""
    net = MapNet(config, in_channels, rngs=nnx.Rngs(params=key))
    return graphdef_of(config, in_channels), nnx.state(net, nnx.Param)


@functools.lru_cache(maxsize=8)
def graphdef_of(config: Nets, in_channels: int) -> nnx.GraphDef:
    """The graph definition alone (no parameters drawn): for `load`."""
    return nnx.graphdef(nnx.eval_shape(lambda: MapNet(config, in_channels, rngs=nnx.Rngs(0))))
