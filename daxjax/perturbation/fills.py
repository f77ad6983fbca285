"""Baseline ("fill") images: what a switched-off segment is replaced with.

A perturbed image is `z[segments] * image + (1 − z[segments]) * fill`, so the fill decides
what "absent" means to the black box. Which fill works best depends on the explainer and the
model, so it is a per-method option (each config documents its default and why).
"""

from __future__ import annotations

import typing
from typing import Any, Literal

import numpy as np
from skimage.filters import gaussian

from daxjax.perturbation.segmentation import Segmentation, as_unit_float_images

#: What a switched-off segment shows (segment-space methods: DAX, LIME, KernelSHAP).
FillMethod = Literal["segment_mean", "segment_grey", "blur", "zero", "image_mean"]
FILL_METHODS = typing.get_args(FillMethod)
#: What a masked pixel shows where masks are drawn on pixels (RISE, Occlusion, deletion/insertion).
PixelFill = Literal["zero", "blur", "image_mean"]
PIXEL_FILLS = typing.get_args(PixelFill)
#: DAX's fills: any segment fill, or "auto", which gives each image the candidate of `AUTO_FILLS`
#: its black box answers most to (`daxjax.methods.dax.engine.choose_fills`).
DAXFill = Literal["auto", "segment_mean", "segment_grey", "blur", "zero", "image_mean"]
#: The candidates of fill="auto", in order: ties go to the first.
AUTO_FILLS = ("image_mean", "blur")


def candidate_fills(images: Any, segments: np.ndarray | Segmentation, how: str) -> np.ndarray:
    """`fill_images(images, segments, how)` [B, H, W, C], or for how="auto" every candidate of
    `AUTO_FILLS` stacked on axis 1: [B, len(AUTO_FILLS), H, W, C]."""
    if how != "auto":
        return fill_images(images, segments, how)
    return np.stack([fill_images(images, segments, name) for name in AUTO_FILLS], axis=1)


def fill_images(
    images: Any,
    segments: np.ndarray | Segmentation,
    how: str = "segment_mean",
    *,
    blur_sigma: float | None = None,
) -> np.ndarray:
    """Baseline image per input image, float32 [B, H, W, C] in [0, 1].

    Args:
        images: float32 [B, H, W, C] in [0, 1] or uint8 [B, H, W, C]; C in {1, 3}.
        segments: int [B, H, W] segment ids (or a `Segmentation`); used by the segment fills.
        how:
            "segment_mean": every segment takes its own per-channel mean colour (as LIME's
                `hide_color=None`); keeps coarse colour layout, removes texture.
            "segment_grey": every segment takes one grey level, the mean over all its pixels
                and channels (as the DAX authors' code).
            "blur": Gaussian blur of the image, sigma `blur_sigma` pixels (default
                max(H, W) / 16); removes detail but keeps low frequencies.
            "zero": black.
            "image_mean": the image's per-channel mean colour everywhere.
        blur_sigma: standard deviation of the "blur" kernel in pixels; only for "blur".
    """
    if how not in FILL_METHODS:
        raise ValueError(f"unknown fill {how!r}; valid: {', '.join(FILL_METHODS)}")
    unit_images = as_unit_float_images(images)
    segment_ids = np.asarray(segments.segments if isinstance(segments, Segmentation) else segments)
    if segment_ids.shape != unit_images.shape[:3]:
        raise ValueError(f"segments shape {segment_ids.shape} does not match images {unit_images.shape[:3]}")

    if how == "segment_mean":
        fill = _segment_means(unit_images, segment_ids)
    elif how == "segment_grey":
        # Mean of per-pixel channel means = mean over all the segment's pixels and channels.
        grey = _segment_means(unit_images.mean(axis=-1, keepdims=True), segment_ids)
        fill = np.repeat(grey, unit_images.shape[-1], axis=-1)
    elif how == "blur":
        fill = _blur(unit_images, blur_sigma)
    elif how == "zero":
        fill = np.zeros_like(unit_images)
    else:  # "image_mean"
        fill = np.broadcast_to(unit_images.mean(axis=(1, 2), keepdims=True), unit_images.shape)
    return np.ascontiguousarray(fill, dtype=np.float32)


def _segment_means(images: np.ndarray, segments: np.ndarray) -> np.ndarray:
    """Each pixel replaced by the per-channel mean of its segment; [B, H, W, C] -> float64 same shape.

    All segments of all images are reduced at once: image b's segment s gets the global id
    b * stride + s, and one `np.bincount` per channel sums over the whole batch.
    """
    batch, channels = images.shape[0], images.shape[-1]
    stride = int(segments.max(initial=-1)) + 1
    global_ids = (segments.astype(np.int64) + stride * np.arange(batch)[:, None, None]).ravel()
    counts = np.bincount(global_ids, minlength=batch * stride)
    # Ids that no pixel uses have count 0; they are never gathered back, so any value will do.
    safe_counts = np.maximum(counts, 1)
    pixels = images.reshape(-1, channels).astype(np.float64)
    sums = [np.bincount(global_ids, weights=pixels[:, c], minlength=batch * stride) for c in range(channels)]
    means = np.stack(sums, axis=-1) / safe_counts[:, None]
    return means[global_ids].reshape(images.shape)


def _blur(images: np.ndarray, sigma: float | None) -> np.ndarray:
    """Gaussian blur over height and width only (never across images or channels)."""
    height, width = images.shape[1:3]
    sigma = max(height, width) / 16 if sigma is None else sigma
    # sigma 0 on the batch axis keeps images apart; channel_axis keeps channels apart.
    return gaussian(images, sigma=(0, sigma, sigma), channel_axis=-1, preserve_range=True)
