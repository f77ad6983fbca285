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

import threading
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from blackbox_adapters import BlackBoxError, check_probabilities

class DeviceBlackBox:
    """A black box as a JAX-traceable function x [..., H, W, C] -> probabilities [..., K]."""

    def __init__(self, bb, num_classes: int):
        self.bb = bb
        self.num_classes = int(num_classes)
        self.jax_fn: Callable | None = getattr(bb, "jax_fn", None)
        self._lock = threading.Lock()
        self._pending: list[BlackBoxError] = []

    def __call__(self, x: jax.Array) -> jax.Array:
        if self.jax_fn is not None:
            lead, image = x.shape[:-3], x.shape[-3:]
            probs = self.jax_fn(x.reshape((-1,) + image))
            return probs.reshape(lead + (self.num_classes,))
        shape = jax.ShapeDtypeStruct(x.shape[:-3] + (self.num_classes,), jnp.float32)
        return jax.pure_callback(self._host_call, shape, x, vmap_method="expand_dims")

    def _host_call(self, x: np.ndarray) -> np.ndarray:
        """x: [B, n, H, W, C] when vmapped over images (or [n, H, W, C]) -> [B, n, K]."""
        lead, image = x.shape[:-3], x.shape[-3:]
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


def device_blackbox(user_bb, bb, num_classes: int) -> DeviceBlackBox:
    """The `DeviceBlackBox` for a caller's black box, reused across calls with the same object.

    Jitted query programs take the DeviceBlackBox as a static argument; reusing it means a second
    `explain` call with the same black box and shapes compiles nothing.
    """
    for known, device_bb in _RECENT_DEVICE_BLACK_BOXES:
        if known is user_bb and device_bb.num_classes == num_classes:
            return device_bb
    device_bb = DeviceBlackBox(bb, num_classes)
    _RECENT_DEVICE_BLACK_BOXES.insert(0, (user_bb, device_bb))
    del _RECENT_DEVICE_BLACK_BOXES[8:]
    return device_bb


def query_in_chunks(query_chunk: Callable[[int, int], jax.Array], num_samples: int, chunk: int,
                    device_bb: DeviceBlackBox, image_ids: list) -> jax.Array:
    """Runs `query_chunk(start, size)` over samples [0, N) and concatenates the results.

    query_chunk(start, size) -> [B, size], the answers for samples [start, start + size). Each
    call is checked for black-box errors before the next is issued, so a failure stops at once.
    """
    parts = []
    for start in range(0, num_samples, chunk):
        size = min(chunk, num_samples - start)
        part = query_chunk(start, size)
        part.block_until_ready()
        device_bb.raise_pending(image_ids)
        parts.append(part)
    return jnp.concatenate(parts, axis=1)
