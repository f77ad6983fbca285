"""Host-side superpixel segmentation of image batches, padded to static shapes.

Every perturbation-based explainer in daxjax switches *segments* of an image on and off.
Segmentation runs on the host with scikit-image, one image per thread, and the result is
returned with a segment count rounded up to a bucket so that jitted code sees the same
shapes batch after batch.

An image's segments depend only on that image's pixels (every method is deterministic; the
quickshift tie-breaking generator is seeded with a fixed integer), never on the other images
in its batch. Only `Segmentation.max_segments` depends on the batch.

Besides the named methods, segments can come from any segmenter (a callable image -> integer
label map, e.g. Segment Anything wrapped by the user; the paper's V3) or as label maps the caller
computed beforehand (`label_map_segmentation`). Such maps are checked (`check_label_map`) rather
than repaired: a map with a single segment is an error, not a grid.
"""

from __future__ import annotations

import math
import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
import typing
from typing import Any, Callable, Literal, Mapping, Sequence

import numpy as np
from skimage.segmentation import felzenszwalb, quickshift, slic

from daxjax.inputs import InputError, as_float_images

#: A user's segmenter: one image float32 [H, W, C] in [0, 1] -> integer label map [H, W]
#: (any ids >= 0; relabelled to 0 .. S - 1). `segmentation_options` are passed as keywords.
Segmenter = Callable[..., np.ndarray]

#: `max_segments` is rounded up to a multiple of this, so that batches with slightly
#: different segment counts share one jitted shape.
SEGMENT_BUCKET = 16
#: Cells per side of a "grid" segmentation unless `segmentation_options` say otherwise.
GRID_CELLS = 8

#: A label map may hold at most one segment per this many pixels (and at least 2 segments): finer
#: "segments" are pixel noise rather than parts of the image, and each one costs a column of every
#: keep-vector and of the regressions (LIME, KernelSHAP solve an S x S system per image). 224 x 224
#: images may have up to 3136 segments; Segment Anything gives tens to a few hundred.
PIXELS_PER_SEGMENT = 16

#: Float images may overshoot [0, 1] by resampling round-off; beyond this they are rejected,
#: because a 0..255 float image silently gives quickshift 117–261 segments instead of 31–50.
_UNIT_RANGE_TOLERANCE = 1e-5


@dataclass(frozen=True, eq=False)  # eq=False: fields are arrays, so compare/hash by identity
class Segmentation:
    """Segment maps of a batch of images.

    Attributes:
        segments: int32 [B, H, W]; image b uses ids 0 .. num_segments[b] − 1, each at least once.
        num_segments: int32 [B]; number of segments of each image.
        max_segments: S_max, max(num_segments) rounded up to a multiple of `SEGMENT_BUCKET`;
            the static length of per-image keep-vectors.
        fell_back: bool [B]; True where the method produced a single segment and a regular grid
            was used instead.
    """

    segments: np.ndarray
    num_segments: np.ndarray
    max_segments: int
    fell_back: np.ndarray


def as_unit_float_images(images: Any) -> np.ndarray:
    """`inputs.as_float_images` as the segmenters and fills take images: float32 [B, H, W, C] in
    [0, 1] from uint8 or floats, any size, float pixels within 1e-5 of [0, 1] clipped into it.
    Raises InputError (a ValueError)."""
    return as_float_images(images, min_side=1, clip_tolerance=_UNIT_RANGE_TOLERANCE)


def relabel_contiguous(labels: np.ndarray) -> np.ndarray:
    """Map the distinct values of an integer label map onto 0 .. S−1 (int32, same shape), keeping order."""
    _, inverse = np.unique(labels, return_inverse=True)
    return inverse.reshape(labels.shape).astype(np.int32)


def grid_segments(height: int, width: int, cells: int) -> np.ndarray:
    """A regular grid of `cells` × `cells` segments as int32 [height, width], row-major ids.

    Cell boundaries come from `np.linspace(0, size, cells + 1)`, so any size works; when an
    axis is shorter than `cells`, empty cells are dropped and ids stay contiguous.
    """
    if cells < 1:
        raise ValueError(f"cells must be >= 1, got {cells}")
    rows = _cell_index(height, cells)
    cols = _cell_index(width, cells)
    return relabel_contiguous(rows[:, None] * cells + cols[None, :])


def _cell_index(size: int, cells: int) -> np.ndarray:
    """Cell number (0 .. cells−1) of every pixel coordinate 0 .. size−1 along one axis."""
    edges = np.linspace(0, size, cells + 1)
    return np.clip(np.searchsorted(edges, np.arange(size), side="right") - 1, 0, cells - 1)


def _quickshift(image: np.ndarray, **kwargs: Any) -> np.ndarray:
    # Grayscale is replicated to RGB (as LIME does) so that the Lab conversion stays on.
    rgb = image if image.shape[-1] == 3 else np.repeat(image, 3, axis=-1)
    return quickshift(rgb, **kwargs)


def _slic(image: np.ndarray, **kwargs: Any) -> np.ndarray:
    if image.shape[-1] == 1:
        return slic(image[..., 0], channel_axis=None, **kwargs)
    return slic(image, channel_axis=-1, **kwargs)


def _felzenszwalb(image: np.ndarray, **kwargs: Any) -> np.ndarray:
    if image.shape[-1] == 1:
        return felzenszwalb(image[..., 0], channel_axis=None, **kwargs)
    return felzenszwalb(image, channel_axis=-1, **kwargs)


def _grid(image: np.ndarray, *, cells: int) -> np.ndarray:
    return grid_segments(image.shape[0], image.shape[1], cells)


# Method name -> (function of one [H, W, C] image in [0, 1], default keyword arguments).
# quickshift uses LIME's settings (for images of REFERENCE_SIDE px, see `_scaled_defaults`);
# `rng` is fixed so that ties break the same way every call.
_METHODS: dict[str, tuple[Callable[..., np.ndarray], dict[str, Any]]] = {
    "quickshift": (_quickshift, dict(kernel_size=4, max_dist=200, ratio=0.2, sigma=0, rng=42)),
    "slic": (_slic, dict(n_segments=50, compactness=10, start_label=0)),
    "felzenszwalb": (_felzenszwalb, dict(scale=100, sigma=0.5, min_size=50)),
    "grid": (_grid, {}),  # its default `cells` is segment_images' grid_cells argument
}

#: The built-in segmentations by name (the keys of `_METHODS`).
SegmentationMethod = Literal["quickshift", "slic", "felzenszwalb", "grid"]
SEGMENTATION_METHODS = typing.get_args(SegmentationMethod)
assert SEGMENTATION_METHODS == tuple(_METHODS), "SegmentationMethod must name the methods of _METHODS"

#: The image side LIME's quickshift settings were made for (ImageNet crops).
REFERENCE_SIDE = 224


def _scaled_defaults(method: str, height: int, width: int) -> dict[str, Any]:
    """The method's default options for images of this size.

    quickshift's kernel_size and max_dist are distances in pixels: LIME's values give a few dozen
    segments at 224 px but only a handful on 64 px images, too coarse to separate an object from
    its background. Scaled by side / 224 they give a few dozen at 64 px too, and leave 224 px
    images unchanged. Below 56 px the scaled kernel would be under skimage's least valid
    size, 1 pixel: it is clamped there (at 8 px quickshift still finds several segments).
    """
    defaults = dict(_METHODS[method][1])
    if method == "quickshift":
        scale = min(height, width) / REFERENCE_SIDE
        defaults["kernel_size"] = max(1.0, defaults["kernel_size"] * scale)
        defaults["max_dist"] = defaults["max_dist"] * scale
    return defaults


#: quickshift with the defaults at REFERENCE_SIDE px took this many seconds per image on 2 shared
#: CPU cores (0.025 s at 112 px, 4.5 s at 448 px: the time grows with the pixels times the kernel's area).
QUICKSHIFT_REFERENCE_SECONDS = 0.3
#: Images whose default quickshift would take longer than this per image are refused.
QUICKSHIFT_LIMIT_SECONDS = 60.0


def check_segmentation_cost(method: str, options: Mapping[str, Any], height: int, width: int) -> None:
    """Refuses quickshift with its scaled defaults on images where it would take unreasonably long.

    The estimate is QUICKSHIFT_REFERENCE_SECONDS x (H W / 224^2) x (kernel_size / 4)^2: e.g. about
    2 minutes per image at 1024 px and 9 hours at 4096 px. Options given by the caller are taken
    as chosen and never refused.
    """
    if method != "quickshift" or "kernel_size" in options:
        return
    kernel = _scaled_defaults(method, height, width)["kernel_size"]
    seconds = QUICKSHIFT_REFERENCE_SECONDS * height * width / REFERENCE_SIDE**2 * (kernel / 4) ** 2
    if seconds > QUICKSHIFT_LIMIT_SECONDS:
        raise ValueError(
            f"quickshift on {height}x{width} images would take about {seconds / 60:.0f} min per image "
            f"(over the {QUICKSHIFT_LIMIT_SECONDS:.0f} s limit); resize the images (size= / --size, e.g. 224), "
            "or choose segmentation='slic' or 'grid', or give quickshift's kernel_size in segmentation_options")


def check_segmenter(value: Any, owner: str) -> None:
    """Validates a config's `segmentation` field: a method name or a hashable callable.

    owner: the config's class name, for the error. Configs key caches of compiled programs, so
    the callable must be hashable (functions and `functools.partial` objects are).
    Raises ValueError naming `owner.segmentation` and the allowed values.
    """
    if isinstance(value, str) and value in SEGMENTATION_METHODS:
        return
    if not isinstance(value, str) and callable(value):
        try:
            hash(value)
        except TypeError:
            raise ValueError(f"{owner}.segmentation: the segmenter {value!r} is not hashable (configs key "
                             "caches); pass a function instead") from None
        return
    raise ValueError(f"{owner}.segmentation={value!r} is not one of {SEGMENTATION_METHODS} or a callable "
                     "image float32 [H, W, C] in [0, 1] -> integer label map [H, W]")


def segmenter_name(segmenter: Any) -> str:
    """A stable name for a segmentation method or callable (module.qualname, no memory address)."""
    if isinstance(segmenter, str):
        return segmenter
    inner = getattr(segmenter, "func", segmenter)  # functools.partial names the function it wraps
    name = getattr(inner, "__qualname__", type(inner).__qualname__)
    return f"{getattr(inner, '__module__', None) or '?'}.{name}"


def max_label_segments(height: int, width: int) -> int:
    """The most segments a label map of height x width may hold (see `PIXELS_PER_SEGMENT`)."""
    return max(2, height * width // PIXELS_PER_SEGMENT)


def check_label_map(labels: Any, shape: tuple[int, int], what: str) -> np.ndarray:
    """Checks one label map and returns it relabelled to contiguous ids: int32 [H, W], ids 0 .. S − 1.

    labels: integer [H, W] segment ids >= 0 (any values; only equality matters).
    shape: (H, W) of the image it segments. what: how the error names the map ("the label map
    of image 3"). Raises InputError when the shape differs, the dtype is not an integer, a label
    is negative, or the map has a single segment (nothing to perturb) or more than
    `max_label_segments(H, W)`.
    """
    array = np.asarray(labels)
    if array.shape != tuple(shape):
        raise InputError(f"{what} has shape {array.shape}; it must be [H, W] = {tuple(shape)}, as its image")
    if not np.issubdtype(array.dtype, np.integer):
        raise InputError(f"{what} has dtype {array.dtype}; label maps must hold integer segment ids")
    if array.size and array.min() < 0:
        raise InputError(f"{what} has negative labels (min {array.min()}); segment ids must be >= 0")
    relabelled = relabel_contiguous(array)
    count = int(relabelled.max(initial=0)) + 1
    if count < 2:
        raise InputError(f"{what} has a single segment: nothing to switch off; give at least 2 segments")
    limit = max_label_segments(*shape)
    if count > limit:
        raise InputError(f"{what} has {count} segments, more than {limit} (one per {PIXELS_PER_SEGMENT} "
                         "pixels): merge small segments")
    return relabelled


def label_map_segmentation(labels: Any, shape: tuple[int, int], image_ids: Sequence[Any]) -> Segmentation:
    """A `Segmentation` from label maps given by the caller, one per image, each checked.

    labels: integer [B, H, W] (or a sequence of B [H, W] maps); shape: the images' (H, W);
    image_ids: how errors name the images (`check_label_map`). Nothing falls back to a grid.
    """
    if len(labels) != len(image_ids):
        raise InputError(f"{len(labels)} label maps for {len(image_ids)} images; give one per image")
    maps = [check_label_map(m, shape, f"the label map of image {i!r}") for m, i in zip(labels, image_ids)]
    return _stacked(maps, shape, np.zeros(len(maps), bool))


def resize_label_map(labels: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A label map [h, w] sampled to size (H, W) by nearest neighbour (pixel centres); values kept."""
    height, width = labels.shape
    rows = ((np.arange(size[0]) + 0.5) * height / size[0]).astype(np.intp)
    cols = ((np.arange(size[1]) + 0.5) * width / size[1]).astype(np.intp)
    return labels[rows][:, cols]


def _call_segmenter(segmenter: Segmenter, image: np.ndarray, options: Mapping[str, Any],
                    image_id: Any) -> np.ndarray:
    """The user's segmenter on one image, its failure or bad answer named by image and segmenter."""
    name = segmenter_name(segmenter)
    try:
        labels = segmenter(image, **options)
    except Exception as err:  # noqa: BLE001 - any failure of user code, reported with its image
        raise InputError(f"segmenter {name} failed on image {image_id!r}: {type(err).__name__}: {err}") from err
    return check_label_map(labels, image.shape[:2], f"the label map {name} gave for image {image_id!r}")


def _stacked(maps: list[np.ndarray], shape: tuple[int, int], fell_back: np.ndarray) -> Segmentation:
    """Contiguous per-image maps [H, W] as a `Segmentation` (counts, S_max bucketed)."""
    segments = np.stack(maps) if maps else np.zeros((0, *shape), np.int32)
    num_segments = (segments.max(axis=(1, 2), initial=0) + 1).astype(np.int32)
    return Segmentation(
        segments=segments,
        num_segments=num_segments,
        max_segments=bucket_size(int(num_segments.max(initial=1))),
        fell_back=fell_back,
    )


def segment_images(
    images: Any,
    method: str | Segmenter = "quickshift",
    *,
    grid_cells: int = GRID_CELLS,
    options: Mapping[str, Any] | None = None,
    image_ids: Sequence[Any] | None = None,
    workers: int | None = None,
) -> Segmentation:
    """Segment every image of a batch into superpixels.

    Args:
        images: float32 [B, H, W, C] in [0, 1] or uint8 [B, H, W, C]; C in {1, 3}.
        method: "quickshift" (LIME's kernel_size=4, max_dist=200, ratio=0.2 at 224 px, distances
            scaled by min(H, W) / 224 for other sizes; grayscale is replicated to RGB), "slic" (n_segments=50, compactness=10), "felzenszwalb"
            (scale=100, sigma=0.5, min_size=50) or "grid" (grid_cells × grid_cells cells);
            or a `Segmenter`, called on each image float32 [H, W, C] in [0, 1] in this thread,
            one image at a time (user code need not be thread-safe), whose maps are checked
            (`check_label_map`) and never replaced by a grid.
        grid_cells: cells per side for "grid" and for the single-segment fallback.
        options: keyword arguments overriding the method's defaults (for "grid": `cells`; for a
            callable: passed to it).
        image_ids: how warnings name the images (default: their positions in `images`).
        workers: threads segmenting images side by side; default min(4, os.cpu_count()).

    Returns:
        A `Segmentation`. Images a named method leaves as one segment get the grid instead,
        are flagged in `fell_back`, and one warning names them.
    """
    unit_images = as_unit_float_images(images)
    ids = list(range(len(unit_images))) if image_ids is None else list(image_ids)
    if not isinstance(method, str) and callable(method):
        maps = [_call_segmenter(method, image, options or {}, i) for image, i in zip(unit_images, ids)]
        return _stacked(maps, unit_images.shape[1:3], np.zeros(len(maps), bool))
    if method not in _METHODS:
        valid = ", ".join(SEGMENTATION_METHODS)
        raise ValueError(f"unknown segmentation method {method!r}; valid: {valid} (or a callable)")
    function = _METHODS[method][0]
    check_segmentation_cost(method, options or {}, *unit_images.shape[1:3])
    defaults = _scaled_defaults(method, *unit_images.shape[1:3])
    if method == "grid":
        defaults = {"cells": grid_cells}
    kwargs = {**defaults, **(options or {})}

    def segment_one(image: np.ndarray) -> np.ndarray:
        return relabel_contiguous(function(image, **kwargs))

    maps = _map_images(segment_one, unit_images, workers)
    # A grid asked for is never a fallback, even when it has a single cell.
    fell_back = np.array([method != "grid" and m.max() == 0 for m in maps], dtype=bool)
    if fell_back.any():
        height, width = unit_images.shape[1:3]
        grid = grid_segments(height, width, grid_cells)
        maps = [grid if fb else m for m, fb in zip(maps, fell_back)]
        warnings.warn(
            f"{method} gave a single segment for image(s) {[ids[i] for i in np.flatnonzero(fell_back)]}; "
            f"using a {grid_cells}x{grid_cells} grid instead",
            stacklevel=2,
        )
    return _stacked(maps, unit_images.shape[1:3], fell_back)


def bucket_size(count: int, bucket: int = SEGMENT_BUCKET) -> int:
    """`count` rounded up to a positive multiple of `bucket`."""
    return max(bucket, math.ceil(count / bucket) * bucket)


def _map_images(
    function: Callable[[np.ndarray], np.ndarray], images: np.ndarray, workers: int | None
) -> list[np.ndarray]:
    """Apply `function` to each image, in a thread pool when that can help.

    Threads pay off because scikit-image's Cython loops release the GIL (on 2 cores, quickshift
    took about half the time with 2 threads as in a loop; more threads than cores did not help).
    """
    workers = min(4, os.cpu_count() or 1) if workers is None else workers
    if workers <= 1 or len(images) <= 1:
        return [function(image) for image in images]
    with ThreadPoolExecutor(max_workers=min(workers, len(images))) as pool:
        return list(pool.map(function, images))
