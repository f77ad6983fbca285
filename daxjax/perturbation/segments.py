"""Segment-space perturbation, shared by DAX, LIME and KernelSHAP.

Segments and fills are computed on the host; keep-vectors are drawn on the device; the black box
answers through the shared query path (`querying.query_targets`).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from daxjax.perturbation.fills import candidate_fills
from daxjax.inputs import InputError
from daxjax.device.querying import DeviceBlackBox, RenderedQueries, query_targets
from daxjax.perturbation.sampling import keep_masks, keep_vectors, segment_perturbations
from daxjax.perturbation.segmentation import GRID_CELLS, bucket_size, label_map_segmentation, segment_images

#: Segments per image a memory plan assumes for quickshift, slic, felzenszwalb or a callable on
#: small images (a keep-vector holds one byte per segment); a grid has exactly cells^2.
SEGMENTS_BOUND = 256


class SegmentedImages(NamedTuple):
    """A group of images prepared for segment-space perturbation, on the device."""

    images: jax.Array        # float32 [B, H, W, C]
    segments: jax.Array      # int32 [B, H, W], ids 0 .. num_segments[b] - 1
    fills: jax.Array         # float32 [B, H, W, C], what a switched-off segment shows ([B, F, H, W, C]:
                             # fill="auto"'s candidates, until `engine.choose_fills` picks one per image)
    num_segments: jax.Array  # int32 [B]
    max_segments: int        # S_max, the padded keep-vector length (depends on the group)


class HostSegments(NamedTuple):
    """Segments and fills of a group as made on the host, before they go to the device.

    Plain arrays, so that worker processes can make them ahead of the device work
    (`daxjax.dataset.pipeline`) and hand them to an engine's `explain_images(..., segmented=...)`.
    """

    segments: np.ndarray      # int32 [B, H, W]
    fills: np.ndarray         # float32 [B, H, W, C]; [B, F, H, W, C] for DAX's fill="auto" (candidates)
    num_segments: np.ndarray  # int32 [B]
    max_segments: int


def host_segments(images: np.ndarray, config, image_ids: list, labels=None) -> HostSegments:
    """Segments the images on the host (`config.segmentation`) and builds their fills (`config.fill`).

    labels: None, or the caller's label maps int [B, H, W], one per image, which replace
    `config.segmentation` (checked: `segmentation.check_label_map` names a bad one by image_ids).
    """
    if labels is None:
        seg = segment_images(images, config.segmentation, options=config.segmentation_options,
                             image_ids=image_ids)
    else:
        seg = label_map_segmentation(labels, images.shape[1:3], image_ids)
    fills = candidate_fills(images, seg.segments, config.fill)
    return HostSegments(seg.segments, fills, seg.num_segments, seg.max_segments)


def segments_bound(config) -> int:
    """The most segments an image can have under `config.segmentation`, for memory plans."""
    if config.segmentation == "grid":
        return int((config.segmentation_options or {}).get("cells", GRID_CELLS)) ** 2
    return SEGMENTS_BOUND


def given_segments(config, images: np.ndarray, labels) -> HostSegments:
    """The caller's label maps int [B, H, W] for images float32 [B, H, W, C], checked, with their fills.

    Errors (InputError) name the image (its position) whose label map is wrong
    (`segmentation.check_label_map`).
    """
    labels = np.asarray(labels)
    if labels.ndim != 3 or labels.shape[0] != images.shape[0]:
        raise InputError(f"segments must be label maps int [B, H, W] = {list(images.shape[:3])}, one per image; "
                         f"got shape {list(labels.shape)}")
    if not np.issubdtype(labels.dtype, np.integer):  # one dtype for all: no single image to blame
        raise InputError(f"segments has dtype {labels.dtype}; label maps must hold integer segment ids")
    return host_segments(images, config, list(range(len(images))), labels)


def select_segments(host: HostSegments, index) -> HostSegments:
    """The images `index` (a slice or int positions) of a group, S_max re-bucketed for them alone."""
    num = host.num_segments[index]
    return HostSegments(host.segments[index], host.fills[index], num, bucket_size(int(num.max(initial=1))))


def segment_and_fill(images: np.ndarray, config, image_ids: list,
                     segmented: HostSegments | None = None) -> SegmentedImages:
    """The group on the device with its segments and fills (`segmented`: made earlier, else now)."""
    host = host_segments(images, config, image_ids) if segmented is None else segmented
    return SegmentedImages(jnp.asarray(images), jnp.asarray(host.segments, jnp.int32), jnp.asarray(host.fills),
                           jnp.asarray(host.num_segments, jnp.int32), host.max_segments)


@jax.jit
def paint_segments(values: jax.Array, segments: jax.Array) -> jax.Array:
    """Each pixel takes its segment's value: values [B, S], segments int [B, H, W] -> [B, H, W]."""
    return jax.vmap(lambda v, s: v[s])(values, segments)


@functools.partial(jax.jit, static_argnums=(1, 3, 4))
def draw_keep_vectors(keys, num_samples: int, num_segments, max_segments: int, keep_prob: float):
    """Keep-vectors for a group: keys [B], num_segments int [B] -> bool [B, N, S_max]."""
    return jax.vmap(keep_vectors, in_axes=(0, None, 0, None, None))(
        keys, num_samples, num_segments, max_segments, keep_prob)


@dataclasses.dataclass(frozen=True)
class RenderedSegmentPerturbations:
    """`query_targets` build for `RenderedQueries`: keep-vectors -> masks on the segment map -> render."""

    render: Callable

    def __call__(self, source, segments, fill, z, start, size: int) -> jax.Array:
        return self.render(keep_masks(jax.lax.dynamic_slice_in_dim(z, start, size, axis=0), segments), source, fill)


def query_segment_perturbations(device_bb: DeviceBlackBox, group: SegmentedImages, z: jax.Array,
                                targets: np.ndarray, chunk: int, image_ids: list,
                                queries: RenderedQueries | None = None) -> jax.Array:
    """The black box's target probability on every perturbation z [B, N, S] of the group: [B, N].

    queries: None queries blended images; else `queries.render` makes the black-box inputs.
    """
    if queries is None:
        build, per_image = segment_perturbations, (group.images, group.segments, group.fills, z)
    else:
        build = RenderedSegmentPerturbations(queries.render)
        per_image = (jnp.asarray(queries.sources), group.segments, jnp.asarray(queries.fills), z)
    return query_targets(device_bb, build, per_image, jnp.asarray(targets, jnp.int32), z.shape[1], chunk,
                         image_ids)
