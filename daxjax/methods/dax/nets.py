"""The two small networks DAX trains per image: the mask generator f_M and the student f_S.

Two students: `SegmentStudent` (the default) reads a masked perturbation as the share of each
segment it shows, which is all that distinguishes one perturbation of an image from another;
`StudentNet` is the paper's CNN on the masked pixels (the presets). `segment_pooling` is the
linear map from the mask grid to those shares.

Each image has its own parameters, and images are trained side by side under `jax.vmap`. A
vmapped `lax.conv` with per-image kernels lowers to a grouped convolution, several times slower
per image than a Python loop on XLA CPU; so convolutions here are patch extraction (a kernel-free
op, batched like any other) followed by a matrix product with the kernel, which under `vmap`
becomes one batched matrix product.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from daxjax.methods.dax.config import DAXConfig


class PatchConv(nnx.Module):
    """'SAME' 2-D convolution as im2col + matmul. x: [..., H, W, C_in] -> [..., H/s, W/s, C_out]."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1,
                 *, rngs: nnx.Rngs):
        fan_in = in_channels * kernel_size * kernel_size
        self.kernel_size = kernel_size
        self.stride = stride
        self.kernel = nnx.Param(nnx.initializers.lecun_normal()(rngs.params(), (fan_in, out_channels)))
        self.bias = nnx.Param(jnp.zeros((out_channels,)))

    def __call__(self, x: jax.Array) -> jax.Array:
        patches = extract_patches(x, self.kernel_size, self.stride)
        return patches @ self.kernel[...] + self.bias[...]


def extract_patches(x: jax.Array, size: int, stride: int) -> jax.Array:
    """'SAME'-padded im2col by strided slicing: [..., H, W, C] -> [..., H/s, W/s, size*size*C].

    Slices, not `lax.conv_general_dilated_patches`: that op is itself a convolution with a one-hot
    kernel and costs (size^2 C)^2 multiply-adds per pixel, more than the convolution it feeds.
    """
    height, width = x.shape[-3], x.shape[-2]
    out_h, out_w = -(-height // stride), -(-width // stride)
    pad_h = max((out_h - 1) * stride + size - height, 0)
    pad_w = max((out_w - 1) * stride + size - width, 0)
    pads = [(0, 0)] * (x.ndim - 3) + [(pad_h // 2, pad_h - pad_h // 2),
                                      (pad_w // 2, pad_w - pad_w // 2), (0, 0)]
    padded = jnp.pad(x, pads)
    taps = [padded[..., i:i + (out_h - 1) * stride + 1:stride, j:j + (out_w - 1) * stride + 1:stride, :]
            for i in range(size) for j in range(size)]
    return jnp.concatenate(taps, axis=-1)


class MaskNet(nnx.Module):
    """f_M: image [..., R, R, C] -> mask [..., cells, cells] in (0, 1).

    Two 3x3 convolutions at the working resolution (the paper's "two layer CNN"), average-pooled to
    the mask grid (the reference code pools to 16 x 16), plus a learnable logit per cell, then a
    sigmoid (the paper). channels=0 leaves the convolutions out: the mask is the grid alone.
    """

    def __init__(self, in_channels: int, channels: int, cells: int, *, grid_bias: bool = False,
                 grid_init: float = 0.0, rngs: nnx.Rngs):
        if channels == 0 and not grid_bias:
            raise ValueError("MaskNet with channels=0 needs grid_bias=True (it would have no parameters)")
        self.cells = cells
        self.conv1 = PatchConv(in_channels, channels, 3, rngs=rngs) if channels else None
        self.conv2 = PatchConv(channels, 1, 3, rngs=rngs) if channels else None
        # A learnable logit per mask cell: the convolutions see 5 x 5 pixels and can only mark
        # what looks locally different; the grid lets the mask mark where the evidence is.
        self.grid = nnx.Param(jnp.full((cells, cells), grid_init, jnp.float32)) if grid_bias else None

    def __call__(self, x: jax.Array) -> jax.Array:
        pooled = jnp.zeros(x.shape[:-3] + (self.cells, self.cells), x.dtype)
        if self.conv1 is not None:
            h = jax.nn.leaky_relu(self.conv1(x))
            logits = self.conv2(h)[..., 0]
            pool = logits.shape[-1] // self.cells
            pooled = logits.reshape(logits.shape[:-2] + (self.cells, pool, self.cells, pool)).mean((-3, -1))
        if self.grid is not None:
            pooled = pooled + self.grid[...]
        return jax.nn.sigmoid(pooled)


class PatchEmbed(nnx.Module):
    """Non-overlapping p x p patches, linearly embedded: [..., H, W, C] -> [..., H/p, W/p, C_out].

    A reshape, not a gather: the cheapest first layer for the student, whose input changes every
    step (the backward pass of an overlapping im2col layer dominated the step on CPU).
    """

    def __init__(self, in_channels: int, out_channels: int, patch: int, *, rngs: nnx.Rngs):
        self.patch = patch
        fan_in = in_channels * patch * patch
        self.kernel = nnx.Param(nnx.initializers.lecun_normal()(rngs.params(), (fan_in, out_channels)))
        self.bias = nnx.Param(jnp.zeros((out_channels,)))

    def __call__(self, x: jax.Array) -> jax.Array:
        patches = to_patches(x, self.patch)
        return patches.reshape(patches.shape[:-2] + (-1,)) @ self.kernel[...] + self.bias[...]

    def gated(self, base: jax.Array, direction: jax.Array, keep: jax.Array) -> jax.Array:
        """self(base + keep[..., None] * direction), without forming those inputs.

        keep: [..., H, W], one factor per pixel; base, direction: [..., H, W, C], broadcast
        against keep's leading axes (one image for all, or one per input). The embedding is
        linear, so the kept part is a sum over each patch's pixels of keep x (that pixel's
        direction times its kernel rows): a [..., H/p, W/p, p*p, C_out] table, then a product
        with keep, which has C times fewer values than the inputs it stands for.
        """
        p, channels = self.patch, direction.shape[-1]
        kernel = self.kernel[...].reshape(p * p, channels, -1)
        table = jnp.einsum("...abkc,kco->...abko", to_patches(direction, p), kernel)
        return self(base) + jnp.einsum("...abk,...abko->...abo", to_patches(keep[..., None], p)[..., 0], table)


def to_patches(x: jax.Array, p: int) -> jax.Array:
    """[..., H, W, C] -> [..., H/p, W/p, p*p, C], the pixels of each patch in row-major order."""
    *lead, height, width, channels = x.shape
    x = x.reshape(*lead, height // p, p, width // p, p, channels)
    return jnp.moveaxis(x, -4, -3).reshape(*lead, height // p, width // p, p * p, channels)


class StudentNet(nnx.Module):
    """f_S: image [..., R, R, C] -> probability of the target class [...] in (0, 1).

    CNN layers (a 4 x 4 patch embedding, then a strided 3 x 3 convolution), then fully connected
    layers with a sigmoid output (the paper's Fig. 4).
    """

    def __init__(self, in_channels: int, channels: tuple[int, int], hidden: int, resolution: int,
                 *, rngs: nnx.Rngs):
        c1, c2 = channels
        self.embed = PatchEmbed(in_channels, c1, 4, rngs=rngs)
        self.conv = PatchConv(c1, c2, 3, stride=2, rngs=rngs)
        flat = (resolution // 8) ** 2 * c2
        self.hidden = nnx.Linear(flat, hidden, rngs=rngs)
        self.out = nnx.Linear(hidden, 1, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self._head(self.embed(x))

    def gated(self, base: jax.Array, direction: jax.Array, keep: jax.Array) -> jax.Array:
        """self(base + keep[..., None] * direction) (see `PatchEmbed.gated`): [...]."""
        return self._head(self.embed.gated(base, direction, keep))

    def _head(self, embedded: jax.Array) -> jax.Array:
        h = jax.nn.leaky_relu(embedded)
        h = jax.nn.leaky_relu(self.conv(h))
        h = h.reshape(h.shape[:-3] + (-1,))
        h = jax.nn.leaky_relu(self.hidden(h))
        return jax.nn.sigmoid(self.out(h)[..., 0])


class SegmentStudent(nnx.Module):
    """f_S on a masked perturbation read in segment space: shown [..., S] -> prediction [...].

    shown_j in [0, 1] is how much of segment j the masked perturbation shows (keep_j x the mask's
    gate on j). Every perturbation of one image is a function of its keep-vector alone, so this is
    the student's whole input, without the ill-conditioned detour through pixels; the pixel mask
    still decides the gates (`segment_pooling`). A linear term (what a LIME surrogate fits) plus a
    one-hidden-layer MLP for interactions between segments; the output is unbounded (it fits the
    black box's logits or probabilities, `DAXConfig.target`).

    Row j of the first layer is drawn from fold_in(key, j), so a segment's initial weights do not
    depend on how many segments the batch pads to (the determinism contract); padded segments are
    never shown and keep their initial weights.
    """

    def __init__(self, max_segments: int, hidden: int, *, rngs: nnx.Rngs):
        key = rngs.params()
        rows = jax.vmap(lambda j: jax.random.normal(jax.random.fold_in(key, j), (hidden,)))(jnp.arange(max_segments))
        # 0.3: pre-activations of order 1 with tens of segments shown; the output layers start at
        # zero so that the student starts as a constant and no restart starts far off.
        # hidden=0 leaves the MLP out: a linear student (LIME's model, trained jointly with the mask).
        self.hidden = nnx.Param(0.3 * rows) if hidden else None
        self.hidden_bias = nnx.Param(jnp.zeros((hidden,))) if hidden else None
        self.out = nnx.Param(jnp.zeros((hidden,))) if hidden else None
        self.linear = nnx.Param(jnp.zeros((max_segments,)))
        self.bias = nnx.Param(jnp.zeros(()))

    def __call__(self, shown: jax.Array) -> jax.Array:
        prediction = shown @ self.linear[...] + self.bias[...]
        if self.hidden is not None:
            prediction = prediction + jax.nn.gelu(shown @ self.hidden[...] + self.hidden_bias[...]) @ self.out[...]
        return prediction


class DaxNets(nnx.Module):
    """The pair trained jointly for one image.

    max_segments: S_max, the keep-vectors' padded length (the segment student's input width).
    """

    def __init__(self, config: DAXConfig, in_channels: int, max_segments: int, *, rngs: nnx.Rngs):
        self.mask = MaskNet(in_channels, config.mask_channels, config.mask_cells,
                            grid_bias=config.mask_grid_bias, grid_init=config.mask_init, rngs=rngs)
        if config.student == "segments":
            self.student = SegmentStudent(max_segments, config.student_hidden, rngs=rngs)
        else:
            self.student = StudentNet(in_channels, tuple(config.student_channels), config.student_hidden,
                                      config.resolution, rngs=rngs)


def init_nets(config: DAXConfig, in_channels: int, max_segments: int,
              keys: jax.Array) -> tuple[nnx.GraphDef, nnx.State]:
    """Initialises one independent pair of networks per key.

    Returns the shared graph definition and the parameters stacked along a leading image axis.
    """
    graphdef = nnx.graphdef(nnx.eval_shape(lambda: DaxNets(config, in_channels, max_segments, rngs=nnx.Rngs(0))))

    def one(key):
        return nnx.state(DaxNets(config, in_channels, max_segments, rngs=nnx.Rngs(params=key)), nnx.Param)

    return graphdef, jax.vmap(one)(keys)


def segment_pooling(segments: jax.Array, max_segments: int, cells: int) -> jax.Array:
    """The share of each segment a mask grid shows: P [S_max, cells * cells], shares = P @ mask.

    segments: int [H, W] at the image's own size. The mask grid is shown bilinearly upsampled to
    H x W (as the explanation is, `upsample_mask`), so share_j = mean over segment j's pixels of
    the upsampled mask, which is linear in the grid: P[j, (a, b)] = mean over j's pixels of the
    upsampling weights of cell (a, b). The weights are separable (rows x columns), so P is one
    contraction of the segments' one-hot map with the two 1-D weight tables. Padded segments
    (no pixels) get zero rows.
    """
    height, width = segments.shape
    rows = jax.image.resize(jnp.eye(cells), (height, cells), "bilinear")   # [H, cells]
    cols = jax.image.resize(jnp.eye(cells), (width, cells), "bilinear")    # [W, cells]
    onehot = jax.nn.one_hot(segments, max_segments, dtype=jnp.float32)    # [H, W, S]
    pooled = jnp.einsum("hws,ha,wb->sab", onehot, rows, cols).reshape(max_segments, cells * cells)
    return pooled / jnp.maximum(onehot.sum((0, 1)), 1.0)[:, None]


def upsample_mask(mask: jax.Array, side: int) -> jax.Array:
    """Bilinear resize of [..., cells, cells] masks to [..., side, side]."""
    return jax.image.resize(mask, mask.shape[:-2] + (side, side), method="bilinear")
