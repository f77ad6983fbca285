"""RISE: saliency as the score-weighted mean of random smooth masks (Petsiuk et al., 2018).

For each image, N masks M_i in [0, 1]^(H x W) are drawn: an s x s grid of Bernoulli(p1) cells,
bilinearly upsampled to (s + 1) * cell pixels per side (cell = ceil(side / s)) and cropped at a
random offset in [0, cell) — the construction of the paper's official code. The black box sees
x_i = M_i * x + (1 - M_i) * fill, and

    S = 1 / (N * p1) * sum_i f_T(x_i) * M_i        (p1 = E[M], the paper's normalisation)

is min-max scaled to [0, 1].

Memory stays bounded by one chunk of masks: mask i is a pure function of (the image's key, i),
so the queries build each chunk of masks on the device, and the saliency sum regenerates them
chunk by chunk inside one jitted loop. No [N, H, W] stack of masks ever exists.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from daxjax.methods.base import QUERY_BYTES, GroupResult, Method, normalise, pixel_mask_inputs
from daxjax._checks import Replace, check_fields
from daxjax.device.execution import Execution, MovedExecutionFields, query_chunk
from daxjax.perturbation.fills import PixelFill
from daxjax.device.querying import (DeviceBlackBox, RenderedQueries, input_elements, mask_grid, masked_queries,
                                    query_targets)
from daxjax.perturbation.sampling import image_keys

RISEFill = PixelFill


@dataclasses.dataclass(frozen=True)
class RISEConfig(Replace, MovedExecutionFields):
    """How RISE explains one image; the same for every image of a call.

    num_samples: N random masks (= black-box queries) per image. The paper uses 4000 to 8000;
      4000 is the default.
    cells: s, grid cells per side before upsampling (the paper: 7 or 8).
    keep_prob: p1, probability that a grid cell is kept. 0.5 is the paper's value; its official
      notebooks also use 0.1 (sparser masks).
    fill: what a masked pixel shows: "zero" (black, x * M as in the paper), "blur" (Gaussian
      blur of the image, `fills.fill_images`) or "image_mean" (the image's mean colour).

    Masks per image in one black-box call and in one step of the saliency sum (memory ~ images per
    group * chunk * H * W) are execution settings: `explain(execution=daxjax.Execution(...))`.
    """

    num_samples: int = 4000
    cells: int = 8
    keep_prob: float = 0.5
    fill: RISEFill = "zero"

    def _check(self) -> None:
        check_fields(self, positive=("num_samples", "cells"),
                     open_unit=("keep_prob",))


@functools.lru_cache(maxsize=32)
def upsampling_matrix(cells: int, side: int) -> np.ndarray:
    """Bilinear weights float32 [(cells + 1) * cell, cells] from a grid axis to the upsampled axis.

    cell = ceil(side / cells). Row r holds the weights of the grid cells at upsampled pixel r
    (half-pixel centres, the edge cell repeated beyond the border, as `jax.image.resize(...,
    "linear")`), so that `U = R_h @ grid @ R_w.T` is the bilinear upsampling of `grid`.
    A host constant: built under jit from jnp ops, XLA spent seconds constant-folding it.
    """
    upsampled = (cells + 1) * math.ceil(side / cells)
    source = np.clip((np.arange(upsampled) + 0.5) * cells / upsampled - 0.5, 0.0, cells - 1.0)
    below = np.floor(source).astype(np.int64)
    above = np.minimum(below + 1, cells - 1)
    weights = np.zeros((upsampled, cells), np.float32)
    rows = np.arange(upsampled)
    np.add.at(weights, (rows, below), 1.0 - (source - below))
    np.add.at(weights, (rows, above), source - below)
    return weights


def rise_masks(key: jax.Array, indices: jax.Array, *, cells: int, keep_prob: float, height: int,
               width: int) -> jax.Array:
    """Masks number `indices` [n] of one image: float32 [n, height, width] in [0, 1].

    Mask i depends only on (key, i): a Bernoulli(keep_prob) grid [cells, cells], upsampled
    bilinearly and cropped at a random shift in [0, cell) per axis. Computed as
    R_h[dy:dy + H] @ grid @ R_w[dx:dx + W].T, i.e. only the crop is ever formed.
    """
    rows = upsampling_matrix(cells, height)
    cols = upsampling_matrix(cells, width)
    cell_rows, cell_cols = rows.shape[0] // (cells + 1), cols.shape[0] // (cells + 1)

    def one(index):
        # One draw per mask for the grid and both shifts: each random op costs a second of
        # XLA compile time on CPU, the draws themselves nothing.
        u = jax.random.uniform(jax.random.fold_in(key, index), (cells * cells + 2,))
        grid = (u[:-2] < keep_prob).astype(jnp.float32).reshape(cells, cells)
        shift_rows = jnp.minimum((u[-2] * cell_rows).astype(jnp.int32), cell_rows - 1)
        shift_cols = jnp.minimum((u[-1] * cell_cols).astype(jnp.int32), cell_cols - 1)
        r = jax.lax.dynamic_slice_in_dim(rows, shift_rows, height, axis=0)
        c = jax.lax.dynamic_slice_in_dim(cols, shift_cols, width, axis=0)
        # Round-off can overshoot 1 by an ulp; a perturbed pixel must stay inside [0, 1].
        return jnp.clip(r @ grid @ c.T, 0.0, 1.0)

    return jax.vmap(one)(indices)


@dataclasses.dataclass(frozen=True)
class RISEPerturbations:
    """`query_targets` build for RISE: masked copies [start, start + size) of one image.

    A frozen dataclass, so that equal settings hash equal and reuse the compiled query program.
    """

    cells: int
    keep_prob: float
    render: Callable | None = None  # `querying.RenderedQueries.render`; None blends images

    def __call__(self, key, image, fill, start, size: int) -> jax.Array:
        height, width = mask_grid(self.render, image)
        masks = rise_masks(key, start + jnp.arange(size), cells=self.cells, keep_prob=self.keep_prob,
                           height=height, width=width)
        return masked_queries(self.render, masks, image, fill)


@functools.partial(jax.jit, static_argnames=("cells", "keep_prob", "height", "width", "chunk"))
def rise_saliency(keys: jax.Array, scores: jax.Array, *, cells: int, keep_prob: float, height: int,
                  width: int, chunk: int) -> jax.Array:
    """S = sum_i scores_i * M_i / (N * keep_prob) per image: float32 [B, height, width].

    keys: [B] image keys; scores: [B, N] target probabilities of the masked images. The masks
    are regenerated `chunk` at a time inside a fori_loop (scores padded with zeros to a whole
    number of chunks), so memory is ~ B * chunk * H * W, whatever N is.
    """
    batch, num_samples = scores.shape
    num_chunks = -(-num_samples // chunk)
    padded = jnp.pad(scores, ((0, 0), (0, num_chunks * chunk - num_samples)))
    masks_of = functools.partial(rise_masks, cells=cells, keep_prob=keep_prob, height=height, width=width)

    def add_chunk(step, total):
        start = step * chunk
        weights = jax.lax.dynamic_slice_in_dim(padded, start, chunk, axis=1)
        masks = jax.vmap(masks_of, in_axes=(0, None))(keys, start + jnp.arange(chunk))
        return total + jnp.einsum("bn,bnhw->bhw", weights, masks)

    total = jax.lax.fori_loop(0, num_chunks, add_chunk, jnp.zeros((batch, height, width), jnp.float32))
    return total / (num_samples * keep_prob)


def explain_images(device_bb: DeviceBlackBox, images: np.ndarray, targets: np.ndarray,
                   digests: np.ndarray, config: RISEConfig, seed: int,
                   image_ids: list, queries: RenderedQueries | None = None,
                   execution: Execution | None = None) -> tuple[np.ndarray, dict]:
    """Explains one group of images side by side with RISE.

    images: float32 [B, H, W, C] in [0, 1]; targets: int32 [B]; digests: uint32 [B] image
    fingerprints; image_ids: the caller's names for the images.
    queries: None for images; `querying.RenderedQueries` when the black box takes other inputs
    (audio): the masks, drawn on `images`' H x W grid, are rendered by it (config.fill unused).
    execution: masks per black-box call (`device.execution.query_chunk`); never changes the maps.
    Returns (maps float32 [B, H, W] in [0, 1], seconds per phase: "queries", "saliency").
    """
    batch, height, width, _ = images.shape
    keys = image_keys(seed, digests)
    chunk = query_chunk(execution, batch, input_elements(images, queries))
    render, sources, fills = pixel_mask_inputs(images, config.fill, queries)

    t0 = time.perf_counter()
    build = RISEPerturbations(cells=config.cells, keep_prob=config.keep_prob, render=render)
    scores = query_targets(device_bb, build, (keys, jnp.asarray(sources), jnp.asarray(fills)),
                           jnp.asarray(targets, jnp.int32), config.num_samples, chunk, image_ids)
    timings = {"queries": time.perf_counter() - t0}

    t0 = time.perf_counter()
    saliency = rise_saliency(keys, scores, cells=config.cells, keep_prob=config.keep_prob,
                             height=height, width=width, chunk=chunk)
    maps = np.asarray(normalise(saliency))
    timings["saliency"] = time.perf_counter() - t0
    return GroupResult(maps, timings)


def working_bytes(config: RISEConfig, height: int, width: int, channels: int) -> int:
    """Per image: its answers (masks are rebuilt from the key, chunk by chunk)."""
    return config.num_samples * QUERY_BYTES


METHOD = Method("rise", RISEConfig, explain_images, perturbs_segments=False, query_only=True,
                queries_per_image=lambda config, height, width: config.num_samples, working_bytes=working_bytes)
