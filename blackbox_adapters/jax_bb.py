"""A JAX function as a black box that can be queried on device, inside jitted code."""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from .base import BlackBoxError, OutputKind, check_output_kind, check_probabilities


class JaxBlackBox:
    """Wrap a jittable ``fn: x [n, H, W, C] float32 -> [n, K]`` as a black box.

    The explainers still treat it as query-only (they never differentiate through it), but they
    can call ``jax_fn`` directly inside their own jitted code, so perturbed images never leave
    the device.

    Attributes:
        jax_fn: pure, jittable ``x [n, H, W, C] -> float32 [n, K]`` probabilities
            (``fn`` followed by a softmax when ``output="logits"``). Not validated: checks on
            traced values are impossible; use ``__call__`` to check a model once.
        num_classes: K.
    """

    def __init__(self, fn: Callable[[jax.Array], jax.Array], num_classes: int, *, output: OutputKind = "probs") -> None:
        if not callable(fn):
            raise TypeError(f"JaxBlackBox needs a callable, got {type(fn).__name__}")
        if num_classes < 1:
            raise BlackBoxError(f"num_classes must be >= 1, got {num_classes}")
        self.fn = fn
        self.num_classes = int(num_classes)
        self.output = check_output_kind(output)
        self.jax_fn = _probability_fn(fn, self.output)
        self._jitted = jax.jit(self.jax_fn)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """x: float32 [n, H, W, C] in [0, 1] (host) -> float32 [n, K] probabilities (host), checked."""
        x = np.asarray(x, dtype=np.float32)
        probs = np.asarray(self._jitted(x))
        return check_probabilities(probs, x.shape[0], self.num_classes, what=repr(self))

    def __repr__(self) -> str:
        name = getattr(self.fn, "__qualname__", type(self.fn).__name__)
        return f"JaxBlackBox({name}, num_classes={self.num_classes}, output={self.output!r})"


def _probability_fn(fn: Callable[[jax.Array], jax.Array], output: OutputKind) -> Callable[[jax.Array], jax.Array]:
    """fn made to return float32 probabilities [n, K]."""
    if output == "logits":

        def probs_from_logits(x: jax.Array) -> jax.Array:
            return jax.nn.softmax(fn(x).astype(jnp.float32), axis=-1)

        return probs_from_logits

    def probs(x: jax.Array) -> jax.Array:
        return fn(x).astype(jnp.float32)

    return probs
