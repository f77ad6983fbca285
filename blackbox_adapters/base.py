"""The black-box protocol every explainer queries, and the checks applied to its answers.

A black box maps a batch of inputs to class probabilities and nothing else: no gradients,
no internals. For images the input is float32 ``[n, H, W, C]`` in ``[0, 1]``; the answer is
float32 ``[n, K]`` whose rows are probability distributions over the K classes.

A black box may also take inputs already on a device (``daxjax.device.querying``'s DLPack path; the
ONNX Runtime and torch adapters do): ``dlpack_device()`` -> ("cpu", 0) or ("cuda", i), where
it reads its input; ``device_feed(x)``, JAX code traced inside the program that builds the
images x [n, H, W, C], returning what it takes (normalised, in its layout); ``device_forward(feed)``
-> raw jax.Array [n, K] on the same device, logits or probabilities as its ``output`` says. The
caller checks the answer as ``check_probabilities`` does.
"""

from __future__ import annotations

from typing import Literal, Protocol, runtime_checkable

import numpy as np

OutputKind = Literal["probs", "logits"]

# Rows of float32 softmax outputs sum to 1 within ~1e-6; 1e-3 still catches real mistakes
# (unnormalised scores, a forgotten softmax) without rejecting float16 models.
ROW_SUM_TOLERANCE = 1e-3
# How many offending rows an error message lists before it stops.
_ROWS_SHOWN = 5


@runtime_checkable
class BlackBox(Protocol):
    """Anything with ``num_classes`` that maps inputs ``[n, ...]`` to probabilities ``[n, K]``."""

    num_classes: int

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """x: float32 [n, H, W, C] in [0, 1] -> float32 [n, K], each row summing to 1."""
        ...


class BlackBoxError(ValueError):
    """A black box was misconfigured or answered something that is not a batch of probabilities.

    `rows` lists the offending output rows when the fault is in particular rows (else None), so
    that callers that batch many images into one query can name the images concerned.
    """

    def __init__(self, message: str, rows: list[int] | None = None):
        super().__init__(message)
        self.rows = rows


def softmax(logits: np.ndarray, axis: int = -1) -> np.ndarray:
    """Numerically stable softmax over ``axis`` (float32 in, float32 out; computed in float64)."""
    z = np.asarray(logits, dtype=np.float64)
    # Subtracting the row maximum keeps exp() from overflowing; it does not change the result.
    z = z - np.max(z, axis=axis, keepdims=True)
    e = np.exp(z)
    return (e / np.sum(e, axis=axis, keepdims=True)).astype(np.float32)


def _describe_rows(rows: np.ndarray, values: np.ndarray, label: str) -> str:
    """'row 3 <label> 0.5, row 9 <label> 1.2 (2 of 10 rows)' for the first few offending rows."""
    shown = ", ".join(f"row {int(r)} {label} {_fmt(values[r])}" for r in rows[:_ROWS_SHOWN])
    more = f" (+{len(rows) - _ROWS_SHOWN} more)" if len(rows) > _ROWS_SHOWN else ""
    return f"{shown}{more}"


def _fmt(value: np.ndarray) -> str:
    """Short rendering of a scalar or a row (long rows are cut after a few entries)."""
    value = np.asarray(value)
    if value.ndim == 0:
        return f"{float(value):.6g}"
    head = ", ".join(f"{float(v):.4g}" for v in value[:6])
    return f"[{head}{', ...' if value.size > 6 else ''}]"


def check_probabilities(
    probs: np.ndarray,
    n: int,
    num_classes: int | None = None,
    *,
    what: str = "black box",
) -> np.ndarray:
    """Validate a black box's answer and return it as float32 ``[n, K]``.

    Args:
        probs: the answer, expected ``[n, K]`` with non-negative rows summing to 1.
        n: the number of inputs that were queried (one row each).
        num_classes: the expected K, or None to accept any K.
        what: names the black box in error messages.

    Raises:
        BlackBoxError: wrong rank, row count or K; NaN/inf; negative entries; or rows whose sum
            is off by more than ``ROW_SUM_TOLERANCE``. The message lists the first offending rows.
    """
    try:
        p = np.asarray(probs, dtype=np.float32)
    except (TypeError, ValueError) as err:
        raise BlackBoxError(f"{what} returned {type(probs).__name__}, not a numeric array: {err}") from err
    if p.ndim != 2:
        raise BlackBoxError(f"{what} returned shape {p.shape}; expected 2-D [n, K] = [{n}, K]")
    if p.shape[0] != n:
        raise BlackBoxError(f"{what} returned {p.shape[0]} rows for {n} inputs (shape {p.shape})")
    if num_classes is not None and p.shape[1] != num_classes:
        raise BlackBoxError(f"{what} returned {p.shape[1]} classes; expected {num_classes} (shape {p.shape})")

    bad = np.flatnonzero(~np.all(np.isfinite(p), axis=1))
    if bad.size:
        raise BlackBoxError(f"{what} returned NaN or inf: {_describe_rows(bad, p, 'is')}", bad.tolist())
    bad = np.flatnonzero(np.any(p < 0, axis=1))
    if bad.size:
        raise BlackBoxError(f"{what} returned negative probabilities: {_describe_rows(bad, p, 'is')}",
                            bad.tolist())
    sums = p.sum(axis=1, dtype=np.float64)
    bad = np.flatnonzero(np.abs(sums - 1.0) > ROW_SUM_TOLERANCE)
    if bad.size:
        raise BlackBoxError(
            f"{what} returned rows that do not sum to 1 (tolerance {ROW_SUM_TOLERANCE:g}; "
            f"logits passed as probabilities?): {_describe_rows(bad, sums, 'sums to')}",
            bad.tolist(),
        )
    return p


def to_probabilities(
    raw: np.ndarray, output: OutputKind, n: int, num_classes: int | None, what: str
) -> np.ndarray:
    """Turn a model's raw output ``[n, K]`` into checked float32 probabilities.

    ``output="logits"`` applies a softmax first; non-finite logits are reported as such
    (after a softmax they would only show up as NaN rows).
    """
    if output == "logits":
        logits = np.asarray(raw, dtype=np.float32)
        if logits.ndim == 2:  # other ranks are reported by check_probabilities
            bad = np.flatnonzero(~np.all(np.isfinite(logits), axis=1))
            if bad.size:
                raise BlackBoxError(f"{what} returned NaN or inf logits: {_describe_rows(bad, logits, 'is')}",
                                    bad.tolist())
            raw = softmax(logits)
    return check_probabilities(raw, n, num_classes, what=what)


def check_output_kind(output: str) -> OutputKind:
    """Reject anything but "probs" or "logits" with a message naming the bad value."""
    if output not in ("probs", "logits"):
        raise BlackBoxError(f"output must be 'probs' or 'logits', got {output!r}")
    return output  # type: ignore[return-value]


class LearnsNumClasses:
    """For adapters whose K is given or learned from the first answer: the `num_classes` property
    and `_probabilities`, which checks an answer and learns K from it."""

    _num_classes: int | None = None
    #: How to make K known, for the error when it is read too early.
    _NUM_CLASSES_HINT = "it is inferred from the first call; query the black box once or pass num_classes="

    @property
    def num_classes(self) -> int:
        """K, given at construction or inferred from the first call. Before that, reading it raises
        AttributeError (so ``hasattr`` and the ``BlackBox`` isinstance check say False)."""
        if self._num_classes is None:
            raise AttributeError(f"num_classes of {self!r} is not known yet: {self._NUM_CLASSES_HINT}")
        return self._num_classes

    def _probabilities(self, raw: np.ndarray, n: int) -> np.ndarray:
        """raw [n, K] answers (`self.output`: probabilities or logits) -> checked float32
        probabilities [n, K]; the first answer sets K."""
        probs = to_probabilities(raw, self.output, n, self._num_classes, what=repr(self))
        if self._num_classes is None:
            self._num_classes = probs.shape[1]
        return probs
