"""A plain numpy function as a black box: output checked, optionally softmaxed and chunked."""

from __future__ import annotations

from typing import Callable

import numpy as np

from .base import BlackBox, BlackBoxError, LearnsNumClasses, OutputKind, check_output_kind


class CallableBlackBox(LearnsNumClasses):
    """Wrap ``fn: x [n, ...] -> [n, K]`` (numpy in, array-like out) as a checked black box.

    Args:
        fn: the model. Receives float32 ``[m, ...]`` with m <= max_batch (when set) and returns
            ``[m, K]`` probabilities or logits.
        num_classes: K. When None it is inferred from the first call's output width; before that
            call reading ``num_classes`` raises AttributeError (so ``hasattr`` and the ``BlackBox``
            isinstance check say False) because the input shape a probe query needs is unknown here.
        output: "probs" if fn returns probabilities, "logits" to apply a softmax.
        max_batch: largest batch fn is given at once; bigger queries are split into chunks
            (bounding fn's memory) and the answers concatenated. None: one call per query.

    Every answer is validated with ``check_probabilities``; a bad one raises BlackBoxError.
    """

    def __init__(
        self,
        fn: Callable[[np.ndarray], np.ndarray],
        num_classes: int | None = None,
        *,
        output: OutputKind = "probs",
        max_batch: int | None = None,
    ) -> None:
        if not callable(fn):
            raise TypeError(f"CallableBlackBox needs a callable, got {type(fn).__name__}")
        if num_classes is not None and num_classes < 1:
            raise BlackBoxError(f"num_classes must be >= 1, got {num_classes}")
        if max_batch is not None and max_batch < 1:
            raise BlackBoxError(f"max_batch must be >= 1 or None, got {max_batch}")
        self.fn = fn
        self.output = check_output_kind(output)
        self.max_batch = max_batch
        self._num_classes = num_classes

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """x: float32 [n, H, W, C] in [0, 1] -> float32 [n, K] probabilities."""
        x = np.asarray(x, dtype=np.float32)
        n = x.shape[0]
        if self.max_batch is None or n <= self.max_batch:
            raw = np.asarray(self.fn(x))
        else:
            chunks = [np.asarray(self.fn(x[start : start + self.max_batch])) for start in range(0, n, self.max_batch)]
            try:
                raw = np.concatenate(chunks)
            except ValueError as err:
                shapes = [c.shape for c in chunks]
                raise BlackBoxError(f"{self!r} returned chunks that do not stack: shapes {shapes}") from err
        return self._probabilities(raw, n)

    def __repr__(self) -> str:
        name = getattr(self.fn, "__qualname__", type(self.fn).__name__)
        k = "?" if self._num_classes is None else self._num_classes
        return f"CallableBlackBox({name}, num_classes={k}, output={self.output!r}, max_batch={self.max_batch})"


def _declares_num_classes(obj: object) -> bool:
    """True when obj has a ``num_classes`` attribute or property, without evaluating it.

    Evaluating could fail (a lazily inferred ``num_classes`` is unknown before the first call),
    and such an object is still a black box.
    """
    return hasattr(type(obj), "num_classes") or "num_classes" in getattr(obj, "__dict__", {})


def as_blackbox(obj: object, num_classes: int | None = None) -> BlackBox:
    """Accept a black box or any plain callable ``x [n, H, W, C] -> probabilities [n, K]``.

    Objects that already declare ``num_classes`` and are callable are returned unchanged
    (``num_classes``, when given, must agree). Other callables are wrapped in a
    ``CallableBlackBox`` whose K is ``num_classes`` or, if None, inferred on its first call.

    Raises:
        TypeError: obj is not callable.
        BlackBoxError: obj's ``num_classes`` disagrees with the one given.
    """
    if not callable(obj):
        raise TypeError(
            f"expected a black box (a callable mapping float32 [n, H, W, C] to probabilities [n, K]), "
            f"got {type(obj).__name__}"
        )
    if _declares_num_classes(obj):
        declared = getattr(obj, "num_classes", None)  # None: not known before its first call
        if None not in (num_classes, declared) and declared != num_classes:
            raise BlackBoxError(f"{obj!r} has num_classes={declared}, but num_classes={num_classes} was given")
        return obj  # type: ignore[return-value]
    return CallableBlackBox(obj, num_classes)
