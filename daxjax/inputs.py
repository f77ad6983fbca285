"""Checks on what callers hand us: every error names the offending image."""

from __future__ import annotations

import hashlib
import numbers

import numpy as np

#: Seeds are integers in [0, SEED_LIMIT): what a JAX key takes whole (larger ones overflow or wrap).
SEED_LIMIT = 2**32


class InputError(ValueError):
    """An image, target or option that cannot be explained as given."""


def _indices(mask: np.ndarray, limit: int = 8) -> str:
    idx = np.flatnonzero(mask)
    shown = ", ".join(str(i) for i in idx[:limit])
    return shown + (f", ... ({idx.size} in all)" if idx.size > limit else "")


def as_float_images(images, *, min_side: int = 8, clip_tolerance: float = 0.0) -> np.ndarray:
    """Validates a batch of images and returns it as float32 [B, H, W, C] in [0, 1].

    Accepts uint8 [B, H, W, C] (divided by 255) or floating [B, H, W, C] already in [0, 1],
    with C in {1, 3}. By default nothing is clipped: out-of-range, NaN or inf pixels are errors.
    clip_tolerance: float pixels up to this far outside [0, 1] are accepted and clipped (round-off
    of images computed by the caller, e.g. resized ones; the segmenters take 1e-5).
    """
    arr = np.asarray(images)
    if arr.ndim != 4:
        hint = " (a single image? add a batch axis: images[None])" if arr.ndim == 3 else ""
        raise InputError(f"images must have shape [B, H, W, C]; got shape {arr.shape}{hint}")
    batch, height, width, channels = arr.shape
    if batch == 0:
        raise InputError("images is an empty batch (B = 0): nothing to explain")
    if channels not in (1, 3):
        raise InputError(f"images must have 1 or 3 channels (last axis); got {channels} "
                         f"in shape {arr.shape}")
    if height < min_side or width < min_side:
        raise InputError(f"images must be at least {min_side}x{min_side} pixels; got {height}x{width}")
    if arr.dtype == np.uint8:
        return arr.astype(np.float32) / 255.0
    if not np.issubdtype(arr.dtype, np.floating):
        raise InputError(f"images must be uint8 or floating point in [0, 1]; got dtype {arr.dtype}")
    arr = arr.astype(np.float32)
    flat = arr.reshape(batch, -1)
    bad = ~np.isfinite(flat).all(axis=1)
    if bad.any():
        raise InputError(f"image(s) {_indices(bad)} contain NaN or inf pixels")
    low, high = flat.min(axis=1), flat.max(axis=1)
    out = (low < -clip_tolerance) | (high > 1.0 + clip_tolerance)
    if out.any():
        first = int(np.flatnonzero(out)[0])
        raise InputError(
            f"image(s) {_indices(out)} have float pixels outside [0, 1] (image {first}: min "
            f"{low[first]:.4g}, max {high[first]:.4g}); pass uint8 or divide by 255 — nothing is "
            "clipped silently")
    return np.clip(arr, 0.0, 1.0) if clip_tolerance else arr


# A config field's annotation (as text) -> the kinds of value it takes: a number of another kind
# (num_samples=64.7, epochs=True) would otherwise reach the engines and fail there, or be truncated.
_FIELD_KINDS = {"int": (numbers.Integral,), "float": (numbers.Real,), "bool": (bool, np.bool_)}


def check_field_types(config) -> None:
    """InputError naming the first field of a config dataclass whose value is not of its annotated
    kind: int (not bool), float (any real number, not bool) or bool, each optionally "| None"."""
    import dataclasses

    for field in dataclasses.fields(config):
        annotation = str(field.type).replace(" ", "")
        optional = annotation.endswith("|None")
        kinds = _FIELD_KINDS.get(annotation.removesuffix("|None"))
        value = getattr(config, field.name)
        if kinds is None or (optional and value is None):
            continue
        is_bool = isinstance(value, (bool, np.bool_))
        if not isinstance(value, kinds) or (is_bool and bool not in kinds):
            raise InputError(f"{type(config).__name__}.{field.name} must be {field.type}; got {value!r}")


def check_seed(seed) -> int:
    """seed as an int; InputError unless it is an integer (not a bool) in [0, SEED_LIMIT)."""
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, numbers.Integral) or not 0 <= seed < SEED_LIMIT:
        raise InputError(f"seed must be an integer in [0, 2**32); got {seed!r}")
    return int(seed)


def check_target(value, num_classes: int, image: str) -> int:
    """One target class as an int; InputError naming `image` unless it is an integral number
    (not a bool or string) in [0, num_classes)."""
    if (isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real)
            or not float(value).is_integer() or not 0 <= value < num_classes):
        raise InputError(f"target {value!r} of image {image} is not a class in [0, {num_classes})")
    return int(value)


def as_targets(targets, batch: int, num_classes: int, default: np.ndarray) -> np.ndarray:
    """Returns int32 [B] target classes; `None` takes `default` (the black box's top-1 class)."""
    if targets is None:
        return np.asarray(default, dtype=np.int32)
    arr = np.asarray(targets)
    if arr.ndim == 0:
        arr = np.full(batch, arr)
    if arr.shape != (batch,):
        raise InputError(f"targets must have shape [B] = ({batch},); got shape {arr.shape}")
    if not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
        raise InputError(f"targets must be integer class indices; got {arr.dtype} values such as "
                         f"{arr.flat[0].item()!r}")
    if not np.issubdtype(arr.dtype, np.integer):
        if not np.all(np.equal(np.mod(arr, 1), 0)):
            raise InputError(f"targets must be integer class indices; got {arr.dtype} values")
    arr = arr.astype(np.int64)
    bad = (arr < 0) | (arr >= num_classes)
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise InputError(f"target(s) of image(s) {_indices(bad)} are outside [0, {num_classes}) "
                         f"(image {first}: target {arr[first]})")
    return arr.astype(np.int32)


def image_digest(image: np.ndarray, target: int) -> int:
    """A 31-bit fingerprint of (image content, target): the per-image source of randomness.

    It makes an explanation independent of which other images share its batch and of its position.
    """
    h = hashlib.blake2b(digest_size=4)
    h.update(np.asarray(image.shape, np.int64).tobytes())
    h.update(np.ascontiguousarray(image, dtype=np.float32).tobytes())
    h.update(np.int64(target).tobytes())
    return int.from_bytes(h.digest(), "little") & 0x7FFFFFFF
