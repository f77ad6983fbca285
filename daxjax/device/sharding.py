"""Splitting a group of images over the local devices: one mesh axis, the image axis.

Every explainer computes each image independently, so a group of B images runs on D devices by
giving each device B / D of them. The jitted programs of the engines see arrays sharded along
their leading (image or row) axis; the XLA partitioner splits the element-wise and vmapped parts
by itself. Two kinds of computation it cannot split are wrapped in `jax.shard_map` by
`over_images`:
  * host callbacks (the black-box queries): outside a shard_map they would run on one device
    with the whole group gathered there; inside, each device calls the black box with its own
    share, concurrently (so the callback must be thread-safe: `querying.DeviceBlackBox`);
  * loops over rows (`lax.map`, the CPU training step): a loop over a sharded axis would be
    replicated.

Outside `with image_mesh(devices):` nothing changes: `over_images(fn)` is `fn`.

One ONNX Runtime session serves all devices' callbacks: `InferenceSession.run` is thread-safe and
runs concurrently in the calling threads, and a session per thread was no faster, so no per-thread
copies are made.
"""

from __future__ import annotations

import contextlib
from typing import Callable, Sequence

import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

#: Name of the mesh axis along which images (and DAX's rows, image x restart) are split.
IMAGE_AXIS = "images"


def current_image_devices() -> int:
    """Number of devices the image axis is split over at trace time (1 outside `image_mesh`)."""
    mesh = jax.sharding.get_abstract_mesh()
    if mesh.empty or IMAGE_AXIS not in mesh.axis_names:
        return 1
    return mesh.shape[IMAGE_AXIS]


def over_images(fn: Callable, *, replicated: Sequence[int] = ()) -> Callable:
    """fn, run per device on its share of the leading axis when traced under an image mesh.

    Every positional argument and every output must carry the image (row) axis first, except
    the positional arguments listed in `replicated` (scalars, shared constants), which every
    device receives whole. The leading axis must be a multiple of the device count.
    """
    def wrapped(*args):
        if current_image_devices() == 1:
            return fn(*args)
        spec = PartitionSpec(IMAGE_AXIS)
        in_specs = tuple(PartitionSpec() if i in replicated else spec for i in range(len(args)))
        return jax.shard_map(fn, in_specs=in_specs, out_specs=spec)(*args)
    return wrapped


def make_image_mesh(devices: Sequence[jax.Device]) -> Mesh:
    """A one-axis mesh over `devices` whose axis is `IMAGE_AXIS`."""
    return Mesh(list(devices), (IMAGE_AXIS,), axis_types=(AxisType.Auto,))


@contextlib.contextmanager
def image_mesh(devices: Sequence[jax.Device]):
    """Within this context, engine programs split their image axis over `devices`.

    Yields the mesh. With a single device this is a no-op context (programs stay unsharded, so
    a 1-device run compiles exactly what `daxjax.explain` compiles).
    """
    if len(devices) == 1:
        with jax.default_device(devices[0]):
            yield None
        return
    mesh = make_image_mesh(devices)
    with jax.set_mesh(mesh):
        yield mesh


def shard_images(mesh: Mesh | None, array):
    """Places an array with a leading image axis on the mesh, split along that axis."""
    if mesh is None:
        return jax.numpy.asarray(array)
    return jax.device_put(array, NamedSharding(mesh, PartitionSpec(IMAGE_AXIS)))


def replicated(mesh: Mesh | None, tree):
    """Places every array of `tree` whole on each device of the mesh (parameters, optimiser state,
    data every device reads); outside a mesh (None) the tree is returned as it is."""
    if mesh is None:
        return tree
    return jax.device_put(tree, NamedSharding(mesh, PartitionSpec()))


def split_over_images(tree):
    """Inside a jitted program: asks XLA to split every array of `tree` along its leading (image)
    axis over the image mesh (data-parallel training: each device computes its share of a batch's
    gradients, XLA sums them). A no-op outside an image mesh, or when the leading axis is not a
    multiple of the device count (the batch is then computed whole on every device)."""
    devices = current_image_devices()
    leaves = jax.tree.leaves(tree)
    if devices == 1 or any(leaf.shape[0] % devices for leaf in leaves):
        return tree
    return jax.lax.with_sharding_constraint(tree, PartitionSpec(IMAGE_AXIS))


def padded_count(images: int, devices: int) -> int:
    """Images computed for `images` images split over `devices` devices in groups whose size is a
    multiple of the device count: the last group is padded with copies of its first image to a
    multiple of the device count (copies are computed and queried like any image, then dropped)."""
    return -(-images // devices) * devices


def padded_positions(start: int, stop: int, devices: int) -> np.ndarray:
    """Positions start .. stop - 1, then copies of `start` up to a multiple of `devices`: int [G]."""
    count = stop - start
    return np.concatenate([np.arange(start, stop), np.full(padded_count(count, devices) - count, start)])


def local_devices(devices: Sequence[jax.Device] | None) -> list[jax.Device]:
    """`devices` as a list (None: all of `jax.local_devices()`); an empty list is a ValueError."""
    chosen = list(jax.local_devices() if devices is None else devices)
    if not chosen:
        raise ValueError("devices: an empty list; give at least one device (None: all local devices)")
    return chosen
