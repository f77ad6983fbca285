"""The one path by which every explainer queries the black box from jitted code.

A black box with a `jax_fn` (a `JaxBlackBox`) is called on the device inside the computation.
Any other black box is reached through `jax.pure_callback` with `vmap_method="expand_dims"`: the
per-image query function is vmapped over images, so one host call receives the whole
[B, chunk, H, W, C] block of perturbations and ONNX Runtime sees one large batch.

Errors raised by the black box inside a callback would surface as an opaque XLA runtime error;
instead the callback records them and returns NaNs, and `raise_pending` re-raises them on the host
with the images they concern.
"""

from __future__ import annotations

import functools
import threading
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental.buffer_callback import buffer_callback

from blackbox_adapters import BlackBoxError, check_probabilities
from daxjax.sharding import current_image_devices, over_images

#: Inputs per black-box call the engines aim at when a config leaves `query_chunk` to them:
#: on 2 CPU cores with the bundled model at 64 px, 1,024-image calls cost 2.6x more per sample
#: than 256-image calls.
CALL_INPUTS = 256
#: ... unless that many inputs would exceed this many bytes (float32). glibc hands out blocks over
#: 32 MiB by mmap afresh at every call, so each such block is page-faulted in again: measured on
#: 2 CPU cores (LIME, 2 images of 224 x 224, N = 1024, bundled colour model), calls of 64 images
#: (38 MiB) took 5.3 s in the query phase, calls of 32 images (19 MiB) 2.2-2.6 s.
CALL_BYTES = 16 * 2**20


def query_chunk(requested: int | None, batch: int, input_elements: int) -> int:
    """Perturbations per input in one black-box call, for a group of `batch` inputs.

    requested: a config's `query_chunk` (used as given when set). input_elements: float32
    values in one black-box input (H * W * C for images). None picks about `CALL_INPUTS` inputs
    per call, fewer when they would exceed `CALL_BYTES`.
    """
    if requested is not None:
        return int(requested)
    per_call = max(1, min(CALL_INPUTS, CALL_BYTES // (4 * max(1, int(input_elements)))))
    return max(1, per_call // batch)


def input_elements(images, queries: "RenderedQueries | None" = None) -> int:
    """float32 values in one black-box input: an image of `images` [B, ...], or a rendered query."""
    shape = np.shape(images)[1:] if queries is None else np.shape(queries.sources)[1:]
    return int(np.prod(shape))


class DeviceBlackBox:
    """A black box as a JAX-traceable function x [..., H, W, C] -> probabilities [..., K].

    input_rank: axes of one black-box input (3 for images [H, W, C]; 1 for waveforms [S]).
    """

    def __init__(self, bb, num_classes: int, input_rank: int = 3):
        self.bb = bb
        self.num_classes = int(num_classes)
        self.input_rank = int(input_rank)
        self.jax_fn: Callable | None = getattr(bb, "jax_fn", None)
        self._lock = threading.Lock()
        self._pending: list[BlackBoxError] = []

    def __call__(self, x: jax.Array) -> jax.Array:
        if self.jax_fn is not None:
            lead, image = x.shape[:-self.input_rank], x.shape[-self.input_rank:]
            probs = self.jax_fn(x.reshape((-1,) + image))
            return probs.reshape(lead + (self.num_classes,))
        shape = jax.ShapeDtypeStruct(x.shape[:-self.input_rank] + (self.num_classes,), jnp.float32)
        if current_image_devices() > 1 and jax.default_backend() == "cpu":
            # pure_callback copies its arguments onto CPU device 0 before calling; when device 0
            # is itself running the sharded program that waits for the callback, that copy
            # never completes (measured: a deadlock within seconds on 4 host devices). A buffer
            # callback reads each device's own buffer in place.
            return buffer_callback(self._buffer_call, shape, vmap_method="expand_dims")(x)
        return jax.pure_callback(self._host_call, shape, x, vmap_method="expand_dims")

    def _buffer_call(self, ctx, out, x) -> None:
        """`_host_call` for a buffer callback: reads x's buffer, writes the answer into out's."""
        del ctx
        np.asarray(out)[...] = self._host_call(np.asarray(x))

    def _host_call(self, x: np.ndarray) -> np.ndarray:
        """x: [B, n, H, W, C] when vmapped over images (or [n, H, W, C]) -> [B, n, K]."""
        x = np.asarray(x)  # a jax.Array on CPU from pure_callback; NumPy from here on
        lead, image = x.shape[:-self.input_rank], x.shape[-self.input_rank:]
        rows = int(np.prod(lead))
        try:
            probs = check_probabilities(self.bb(np.ascontiguousarray(x.reshape((rows,) + image))),
                                        rows, self.num_classes, what="black box on perturbations")
            return probs.reshape(lead + (self.num_classes,))
        except Exception as err:  # noqa: BLE001 - re-raised on the host by raise_pending
            if not isinstance(err, BlackBoxError):
                err = BlackBoxError(f"black box raised {type(err).__name__}: {err}")
            if err.rows is not None and len(lead) > 1:
                err.batch_positions = sorted({row // lead[-1] for row in err.rows})
            with self._lock:
                self._pending.append(err)
            return np.full(lead + (self.num_classes,), np.nan, np.float32)

    def raise_pending(self, image_ids: list) -> None:
        """Re-raises the first recorded callback error, naming images by the caller's ids."""
        with self._lock:
            pending, self._pending = self._pending, []
        if not pending:
            return
        err = pending[0]
        positions = getattr(err, "batch_positions", None)
        if positions is not None:
            names = [image_ids[p] for p in positions if p < len(image_ids)]
            raise BlackBoxError(f"{err}; these are perturbations of image(s) {names}") from err
        raise err


_RECENT_DEVICE_BLACK_BOXES: list[tuple[object, DeviceBlackBox]] = []


def device_blackbox(user_bb, bb, num_classes: int, input_rank: int = 3) -> DeviceBlackBox:
    """The `DeviceBlackBox` for a caller's black box, reused across calls with the same object.

    Jitted query programs take the DeviceBlackBox as a static argument; reusing it means a second
    `explain` call with the same black box and shapes compiles nothing.
    """
    for known, device_bb in _RECENT_DEVICE_BLACK_BOXES:
        if (known is user_bb and device_bb.num_classes == num_classes
                and device_bb.input_rank == input_rank):
            return device_bb
    device_bb = DeviceBlackBox(bb, num_classes, input_rank)
    _RECENT_DEVICE_BLACK_BOXES.insert(0, (user_bb, device_bb))
    del _RECENT_DEVICE_BLACK_BOXES[8:]
    return device_bb


class RenderedQueries(NamedTuple):
    """Perturbations that reach the black box as something other than blended images (audio).

    Every explainer perturbs an input with masks m over its H x W grid (1 keeps the input, 0
    removes it); by default a mask becomes the image m * x + (1 - m) * fill. A modality whose
    black box takes other inputs passes this to an engine's `explain_images(..., queries=)`,
    while the engine still segments, trains and paints maps on the H x W images it is given:
      render: render(masks float32 [n, H, W] in [0, 1], source, fill) -> black-box inputs [n, ...],
        traced inside jit; hashable (a frozen dataclass: it keys the compile cache), with
        `render.grid` = (H, W).
      sources, fills: [B, ...] arrays, one row per input, handed to `render` input by input
        (audio: the waveform and what removed frames are replaced with).
    """

    render: Callable
    sources: Any
    fills: Any


@functools.partial(jax.jit, static_argnames=("build", "device_bb", "size"))
def _chunk_target_probabilities(per_image, targets, start, *, build, device_bb, size):
    def group(per_image, targets, start):
        def one(args, target):
            return device_bb(build(*args, start, size))[:, target]
        return jax.vmap(one)(per_image, targets)
    # Under an image mesh each device queries the black box for its own images (a host callback
    # outside shard_map would run on one device with the whole group gathered there).
    return over_images(group, replicated=(2,))(per_image, targets, start)


def query_targets(device_bb: DeviceBlackBox, build: Callable, per_image: tuple, targets: jax.Array,
                  num_samples: int, chunk: int, image_ids: list) -> jax.Array:
    """The black box's probability of each image's target on N perturbations of it: [B, N].

    Args:
      device_bb: the black box (`device_blackbox`).
      build: build(*args, start, size) -> [size, H, W, C], perturbations [start, start + size) of
        one image, traced inside jit. A module-level function: it keys the compile cache.
      per_image: arrays with a leading image axis [B, ...], passed to `build` image by image.
      targets: int [B].
      num_samples: N; chunk: perturbations per image in one black-box call.
      image_ids: the caller's names for the B images, used in error messages.

    Each chunk is checked for black-box errors before the next is issued, so a failure stops
    at once; only one chunk of perturbed images exists at a time.
    """
    parts = []
    for start in range(0, num_samples, chunk):
        size = min(chunk, num_samples - start)
        part = _chunk_target_probabilities(per_image, targets, start, build=build,
                                           device_bb=device_bb, size=size)
        part.block_until_ready()
        device_bb.raise_pending(image_ids)
        parts.append(part)
    return jnp.concatenate(parts, axis=1)
