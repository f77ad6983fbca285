"""The amortised networks: one image encoder, a mask head and a student head, shared by all images.

Shapes (S = cells^2 grid cells, F = `Nets.features`, R = `Nets.resolution`):

    Encoder      image [B, R, R, C]          -> cell features E [B, S, F]
    MaskHead     E [S, F]                    -> keep-logits [S]   (the mask is their sigmoid)
    StudentHead  E [S, F], shown [n, S]      -> prediction [n]    (the black box's logit or probability)

`shown` in [0, 1]^S is how much of each cell a (masked) perturbation shows. The student is DAX's
segment student (`daxjax.methods.dax.nets.SegmentStudent`: a linear term plus an interaction MLP)
whose weights are *read off the image* instead of learned per image:

    g(E, shown) = b(E) + shown . w(E) + MLP([shown @ E / S, mean(E)])

w(E)_j = the j-th cell's additive effect, from that cell's features (and position); b(E) the
image's baseline; the MLP sees the mean feature of what is shown, for interactions between cells.
The mask head and the student's output layers start at zero: the mask starts at 0.5 everywhere and
the student as a constant (as DAX's do).
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


def _linear(cin: int, cout: int, rngs: nnx.Rngs, zero: bool = False) -> nnx.Linear:
    return nnx.Linear(cin, cout, kernel_init=nnx.initializers.zeros if zero else _INIT, rngs=rngs)


class Encoder(nnx.Module):
    """image [B, R, R, C] -> E [B, S, F]: three 3x3 convolutions (the last two stride 2), average
    pooled to the cells x cells grid, a linear map to F and a learned embedding of each cell's place."""

    def __init__(self, config: Nets, in_channels: int, cells: int, *, rngs: nnx.Rngs):
        c1, c2, c3 = config.channels
        self.cells = cells
        self.conv1 = _conv(in_channels, c1, 1, rngs)
        self.conv2 = _conv(c1, c2, 2, rngs)
        self.conv3 = _conv(c2, c3, 2, rngs)
        self.project = _linear(c3, config.features, rngs)
        self.place = nnx.Param(_normal(rngs.params(), (cells * cells, config.features), 0.1))

    def __call__(self, x: jax.Array) -> jax.Array:
        h = jax.nn.gelu(self.conv1(x - 0.5))
        h = jax.nn.gelu(self.conv2(h))
        h = jax.nn.gelu(self.conv3(h))
        batch, side, _, width = h.shape
        pool = side // self.cells
        h = h.reshape(batch, self.cells, pool, self.cells, pool, width).mean((2, 4))
        return self.project(h.reshape(batch, self.cells * self.cells, width)) + self.place[...]


class MaskHead(nnx.Module):
    """E [S, F] -> keep-logits [S]: a per-cell MLP plus a learned logit per place; starts at 0."""

    def __init__(self, config: Nets, cells: int, *, rngs: nnx.Rngs):
        self.hidden = _linear(config.features, config.features, rngs)
        self.out = _linear(config.features, 1, rngs, zero=True)
        self.place = nnx.Param(jnp.zeros((cells * cells,)))

    def __call__(self, features: jax.Array) -> jax.Array:
        return self.out(jax.nn.gelu(self.hidden(features)))[..., 0] + self.place[...]


class StudentHead(nnx.Module):
    """(E [S, F], shown [n, S]) -> prediction [n] (see the module docstring)."""

    def __init__(self, config: Nets, *, rngs: nnx.Rngs):
        f, hidden = config.features, config.hidden
        self.effect_hidden = _linear(f, f, rngs)
        self.effect_out = _linear(f, 1, rngs, zero=True)
        self.base = _linear(f, 1, rngs, zero=True)
        self.mix_hidden = _linear(2 * f, hidden, rngs)
        self.mix_out = _linear(hidden, 1, rngs, zero=True)

    def __call__(self, features: jax.Array, shown: jax.Array) -> jax.Array:
        cells = features.shape[0]
        weights = self.effect_out(jax.nn.gelu(self.effect_hidden(features)))[:, 0]         # [S]
        summary = features.mean(0)                                                          # [F]
        pooled = shown @ features / cells                                                   # [n, F]
        mixed = jnp.concatenate([pooled, jnp.broadcast_to(summary, pooled.shape)], axis=-1)
        interaction = self.mix_out(jax.nn.gelu(self.mix_hidden(mixed)))[:, 0]               # [n]
        return self.base(summary)[0] + shown @ weights + interaction


class AmortisedNets(nnx.Module):
    """The three networks fitted together (`daxjax.amortised.training`)."""

    def __init__(self, config: Nets, in_channels: int, cells: int, *, rngs: nnx.Rngs):
        self.encoder = Encoder(config, in_channels, cells, rngs=rngs)
        self.mask = MaskHead(config, cells, rngs=rngs)
        self.student = StudentHead(config, rngs=rngs)


def init_nets(config: Nets, in_channels: int, cells: int, key: jax.Array) -> tuple[nnx.GraphDef, nnx.State]:
    """(graph definition, parameters) of freshly initialised `AmortisedNets` from `key`."""
    nets = AmortisedNets(config, in_channels, cells, rngs=nnx.Rngs(params=key))
    return graphdef_of(config, in_channels, cells), nnx.state(nets, nnx.Param)


@functools.lru_cache(maxsize=8)
def graphdef_of(config: Nets, in_channels: int, cells: int) -> nnx.GraphDef:
    """The graph definition alone (no parameters drawn): for `load`."""
    return nnx.graphdef(nnx.eval_shape(lambda: AmortisedNets(config, in_channels, cells, rngs=nnx.Rngs(0))))
