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

from blackbox_adapters import BlackBoxError

ROW_SUM_TOLERANCE = 1e-3


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
        nan = np.full(lead + (self.num_classes,), np.nan, np.float32)
        try:
            probs = np.asarray(self.bb(np.ascontiguousarray(x.reshape((rows,) + image))))
            if probs.shape != (rows, self.num_classes):
                raise BlackBoxError(
                    f"black box returned shape {probs.shape} for {rows} inputs; expected "
                    f"({rows}, {self.num_classes}) probabilities")
            probs = probs.astype(np.float32).reshape(lead + (self.num_classes,))
            self._check_rows(probs)
            return probs
        except Exception as err:  # noqa: BLE001 - re-raised on the host by raise_pending
            with self._lock:
                self._pending.append(err if isinstance(err, BlackBoxError) else
                                     BlackBoxError(f"black box raised {type(err).__name__}: {err}"))
            return nan

    def _check_rows(self, probs: np.ndarray) -> None:
        """Rows must be finite, non-negative and sum to 1; names the batch positions that fail."""
        per_image = probs.reshape(probs.shape[0] if probs.ndim == 3 else 1, -1, self.num_classes)
        finite = np.isfinite(per_image).all(-1)
        valid = finite & (per_image >= 0).all(-1) & (
            np.abs(per_image.sum(-1) - 1.0) <= ROW_SUM_TOLERANCE)
        if valid.all():
            return
        image_pos, row = np.argwhere(~valid)[0]
        bad_images = np.flatnonzero(~valid.all(-1))
        sample = per_image[image_pos, row]
        reason = "NaN/inf" if not finite[image_pos, row] else (
            f"negative values or row sum {sample.sum():.4g} != 1")
        err = BlackBoxError(
            f"black box returned invalid probabilities ({reason}) for perturbations of the images "
            f"at batch positions {bad_images.tolist()} (first: position {image_pos}, row {row})")
        err.batch_positions = bad_images.tolist()
        raise err

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
            raise BlackBoxError(f"{err} -> image(s) {names}") from err
        raise err


def query_in_chunks(query_chunk: Callable[[jax.Array], jax.Array], num_samples: int, chunk: int,
                    device_bb: DeviceBlackBox, image_ids: list) -> jax.Array:
    """Runs `query_chunk(start_index_array)` over [0, N) in chunks and concatenates the results.

    query_chunk(starts) -> [B, c] for samples [start, start + c). Each call is checked for
    black-box errors before the next is issued, so a failure stops the work at once.
    """
    parts = []
    for start in range(0, num_samples, chunk):
        size = min(chunk, num_samples - start)
        part = query_chunk(start, size)
        part.block_until_ready()
        device_bb.raise_pending(image_ids)
        parts.append(part)
    return jnp.concatenate(parts, axis=1)
