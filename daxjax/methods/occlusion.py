"""Occlusion: slide a filled window over the image and record the drop in the target probability.

(Zeiler & Fergus, 2014; the sliding-window form of Captum's `Occlusion`.) Windows of
`window` x `window` pixels start every `stride` pixels along each axis, plus one flush with the
bottom / right edge when the stride does not land there, so every pixel is covered. With
n_r = len(range(0, H - w + 1, stride)) (+1 if (H - w) % stride) window rows, n_c likewise for
the columns (w = min(window, side)), an image costs

    1 + n_r * n_c queries      (1: the unperturbed image; e.g. 224 px, window 16, stride 8: 730).

A pixel's saliency is the mean, over the windows that cover it, of f_T(x) - f_T(x with the
window filled).
"""

from __future__ import annotations

import dataclasses
import functools
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

OcclusionFill = PixelFill


@dataclasses.dataclass(frozen=True)
class OcclusionConfig(Replace, MovedExecutionFields):
    """How Occlusion explains one image; the same for every image of a call.

    window: side of the square occluding window in pixels (clipped to the image's sides).
    stride: pixels between window starts, at most `window` (every pixel covered); stride < window
      makes windows overlap, and the number of queries grows as (side / stride)^2 (see the module
      docstring).
    fill: what the window shows: "zero" (black, Captum's default baseline), "blur" (Gaussian
      blur of the image) or "image_mean" (the image's mean colour, Zeiler & Fergus' grey square).
    positive_only: True: a window whose occlusion *raises* the probability counts as no
      evidence (negative drops clipped to 0); False: signed drops are min-max scaled.

    Execution settings (images per group, inputs per call) are not config fields: `explain(execution=)`.
    """

    window: int = 16
    stride: int = 8
    fill: OcclusionFill = "zero"
    positive_only: bool = True

    def _check(self) -> None:
        check_fields(self, positive=("window", "stride"))
        if self.stride > self.window:
            # Pixels between two windows would be covered by none: a map with holes (0 / 0).
            raise ValueError(f"OcclusionConfig.stride must be <= window ({self.window}) so that every pixel "
                             f"is covered by a window, got stride={self.stride}")


    def num_queries(self, height: int, width: int) -> int:
        """Black-box queries per image of height x width pixels (the unperturbed one included)."""
        return 1 + len(window_starts(height, self.window, self.stride)) * len(
            window_starts(width, self.window, self.stride))


def window_starts(side: int, window: int, stride: int) -> np.ndarray:
    """First pixel of each window along one axis: every `stride`, plus one flush with the end."""
    window = min(window, side)
    starts = list(range(0, side - window + 1, stride))
    if starts[-1] != side - window:
        starts.append(side - window)
    return np.asarray(starts, np.int32)


def coverage(side: int, window: int, stride: int) -> np.ndarray:
    """float32 [n windows, side]: 1 where window i covers the pixel along this axis."""
    starts = window_starts(side, window, stride)
    pixels = np.arange(side)
    width = min(window, side)
    return ((pixels >= starts[:, None]) & (pixels < starts[:, None] + width)).astype(np.float32)


@dataclasses.dataclass(frozen=True)
class OcclusionPerturbations:
    """`query_targets` build: query 0 is the image itself, query 1 + r * n_c + c has window (r, c) filled.

    A frozen dataclass, so that equal settings hash equal and reuse the compiled query program.
    """

    window: int
    stride: int
    render: Callable | None = None  # `querying.RenderedQueries.render`; None fills images

    def __call__(self, image, fill, start, size: int) -> jax.Array:
        height, width = mask_grid(self.render, image)
        # An all-zero row stands for query 0: no window, the unperturbed image.
        rows = np.concatenate([np.zeros((1, height), np.float32), coverage(height, self.window, self.stride)])
        cols = coverage(width, self.window, self.stride)
        query = start + jnp.arange(size)
        window = jnp.maximum(query - 1, 0)
        row_cover = jnp.asarray(rows)[jnp.where(query == 0, 0, 1 + window // cols.shape[0])]
        col_cover = jnp.asarray(cols)[window % cols.shape[0]]
        occluded = row_cover[:, :, None] * col_cover[:, None, :] > 0
        return masked_queries(self.render, 1.0 - occluded.astype(jnp.float32), image, fill)


@functools.partial(jax.jit, static_argnames=("window", "stride", "height", "width", "positive_only"))
def occlusion_maps(scores: jax.Array, *, window: int, stride: int, height: int, width: int,
                   positive_only: bool) -> jax.Array:
    """Mean probability drop of the windows covering each pixel, scaled to [0, 1]: [B, H, W].

    scores: [B, 1 + n_r * n_c] target probabilities (query 0 unperturbed). With the windows
    being products of a row and a column interval, sum_i drop_i * window_i = R^T D C for the
    drops D [n_r, n_c] and coverages R [n_r, H], C [n_c, W]; no per-window image is formed.
    """
    rows = jnp.asarray(coverage(height, window, stride))
    cols = jnp.asarray(coverage(width, window, stride))
    drops = (scores[:, :1] - scores[:, 1:]).reshape(-1, rows.shape[0], cols.shape[0])
    summed = jnp.einsum("rh,brc,cw->bhw", rows, drops, cols)
    covering = jnp.einsum("rh,cw->hw", rows, cols)
    saliency = summed / covering
    if positive_only:
        saliency = jnp.maximum(saliency, 0.0)
    return normalise(saliency)


def explain_images(device_bb: DeviceBlackBox, images: np.ndarray, targets: np.ndarray,
                   digests: np.ndarray, config: OcclusionConfig, seed: int,
                   image_ids: list, queries: RenderedQueries | None = None,
                   execution: Execution | None = None) -> tuple[np.ndarray, dict]:
    """Explains one group of images side by side with Occlusion (deterministic: seed, digests unused).

    images: float32 [B, H, W, C] in [0, 1]; targets: int32 [B]; image_ids: the caller's names
    for the images. queries: None for images; `querying.RenderedQueries` when the black box takes
    other inputs (audio): the windows, on `images`' H x W grid, are rendered by it (config.fill
    unused). execution: windows per black-box call (`device.execution.query_chunk`). Returns (maps
    float32 [B, H, W] in [0, 1], seconds per phase: "queries", "saliency").
    """
    batch, height, width, _ = images.shape
    render, sources, fills = pixel_mask_inputs(images, config.fill, queries)

    t0 = time.perf_counter()
    build = OcclusionPerturbations(window=config.window, stride=config.stride, render=render)
    scores = query_targets(device_bb, build, (jnp.asarray(sources), jnp.asarray(fills)),
                           jnp.asarray(targets, jnp.int32), config.num_queries(height, width),
                           query_chunk(execution, batch, input_elements(images, queries)), image_ids)
    timings = {"queries": time.perf_counter() - t0}

    t0 = time.perf_counter()
    maps = np.asarray(occlusion_maps(scores, window=config.window, stride=config.stride, height=height,
                                     width=width, positive_only=config.positive_only))
    timings["saliency"] = time.perf_counter() - t0
    return GroupResult(maps, timings)


def working_bytes(config: OcclusionConfig, height: int, width: int, channels: int) -> int:
    """Per image: its answers (windows are rebuilt from their index)."""
    return config.num_queries(height, width) * QUERY_BYTES


METHOD = Method("occlusion", OcclusionConfig, explain_images, perturbs_segments=False, query_only=True,
                queries_per_image=lambda config, height, width: config.num_queries(height, width),
                working_bytes=working_bytes)
