"""A PyTorch ``nn.Module`` as a black box: numpy images in, checked probabilities out.

torch is imported only when a ``TorchBlackBox`` is built, so daxjax works without it
(install with ``pip install 'daxjax[torch]'``, which pins the CPU build ``torch==2.13.0``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import numpy as np

from .base import BlackBoxError, LearnsNumClasses, OutputKind, check_output_kind

if TYPE_CHECKING:
    import torch


def _import_torch():
    """torch, or an ImportError that says how to install it."""
    try:
        import torch
    except ImportError as err:
        raise ImportError("TorchBlackBox needs PyTorch: pip install 'daxjax[torch]'") from err
    return torch


def _per_channel(value: float | Sequence[float] | None, name: str) -> np.ndarray | None:
    """mean/std as a float32 vector over the channel axis of [n, H, W, C], or None."""
    if value is None:
        return None
    array = np.atleast_1d(np.asarray(value, dtype=np.float32))
    if array.ndim != 1:
        raise BlackBoxError(f"{name} must be a scalar or a per-channel sequence, got shape {array.shape}")
    return array


class TorchBlackBox(LearnsNumClasses):
    """Query a PyTorch classifier with images float32 ``[n, H, W, C]`` in ``[0, 1]``.

    Each call moves the images to the device (``torch.from_numpy``: no host copy for writable
    arrays), normalises ``x' = (x - mean) / std`` there, hands the module its layout (NCHW is a
    view of the NHWC data: no transposed copy), runs it in eval mode under
    ``torch.inference_mode()`` in chunks of ``batch_size``, and returns checked float32
    probabilities ``[n, K]`` on the host. Rows are independent: a row's answer does not depend
    on the other images in the query (as long as the module itself treats samples independently,
    which eval mode gives for batch norm and dropout).

    Args:
        module: the classifier, mapping a float tensor ``[m, C, H, W]`` (or ``[m, H, W, C]``) to
            ``[m, K]``. It is put in eval mode and moved to ``device`` in place (as ``nn.Module.to``
            does). Inputs are cast to the dtype of its first floating-point parameter (float32 if none).
        layout: the layout the module expects, "NCHW" or "NHWC".
        mean, std: per-channel sequences (or scalars) in the [0, 1] space, e.g. ImageNet's
            ``mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225)``. None: no shift / no scaling.
        output: "logits" (a softmax is applied) or "probs" (the module outputs probabilities).
        device: torch device the module runs on, e.g. "cpu", "cuda", "cuda:1".
        batch_size: largest chunk per forward pass (bounds activation memory); None: the whole query.
        num_classes: K; None: inferred from the first call (until then reading ``num_classes``
            raises AttributeError, as for CallableBlackBox, because no input size is known to probe with).

    Thread count: torch's own (``torch.set_num_threads``), a process-wide setting left to the caller.
    Concurrent calls from several threads are safe (inference mode, no state is written).

    Raises:
        ImportError: torch is not installed.
        BlackBoxError: an invalid option; on call, input that is not ``[n, H, W, C]`` or whose channels
            disagree with mean/std, a module that fails or returns a non-tensor (named with the input
            shape), or an answer that is not probabilities (``.rows`` names the offending rows).
    """

    def __init__(
        self,
        module: "torch.nn.Module",
        *,
        layout: str = "NCHW",
        mean: float | Sequence[float] | None = None,
        std: float | Sequence[float] | None = None,
        output: OutputKind = "logits",
        device: "str | torch.device" = "cpu",
        batch_size: int | None = None,
        num_classes: int | None = None,
    ) -> None:
        torch = _import_torch()
        if not isinstance(module, torch.nn.Module):
            raise TypeError(f"TorchBlackBox needs a torch.nn.Module, got {type(module).__name__}")
        if layout not in ("NCHW", "NHWC"):
            raise BlackBoxError(f"layout must be 'NCHW' or 'NHWC', got {layout!r}")
        if batch_size is not None and batch_size < 1:
            raise BlackBoxError(f"batch_size must be >= 1 or None, got {batch_size}")
        if num_classes is not None and num_classes < 1:
            raise BlackBoxError(f"num_classes must be >= 1 or None, got {num_classes}")
        mean_np, std_np = _per_channel(mean, "mean"), _per_channel(std, "std")
        if std_np is not None and np.any(std_np == 0):
            raise BlackBoxError(f"std must be non-zero, got {std_np.tolist()}")
        self.layout = layout
        self.output = check_output_kind(output)
        self.batch_size = batch_size
        self.device = torch.device(device)
        self.module = module.eval().to(self.device)
        floating = [p.dtype for p in module.parameters() if p.is_floating_point()]
        self.dtype = floating[0] if floating else torch.float32
        self._mean = None if mean_np is None else torch.from_numpy(mean_np).to(self.device, self.dtype)
        self._std = None if std_np is None else torch.from_numpy(std_np).to(self.device, self.dtype)
        self._num_classes = num_classes

    def _check_input(self, x: np.ndarray) -> None:
        if x.ndim != 4:
            raise BlackBoxError(f"{self!r} expects images [n, H, W, C], got shape {x.shape}")
        channels = x.shape[-1]
        for name, vector in (("mean", self._mean), ("std", self._std)):
            if vector is not None and vector.numel() not in (1, channels):
                raise BlackBoxError(
                    f"{name} has {vector.numel()} entries for images with {channels} channels (shape {x.shape})"
                )

    def _forward(self, chunk: np.ndarray) -> np.ndarray:
        """One forward pass: chunk float32 [m, H, W, C] (host) -> raw output [m, ...] (host, float32)."""
        torch = _import_torch()
        # The module must get a tensor of its own (one that modifies its input in place must not change
        # the caller's images), made with at most one copy: the normalisation makes one; without it,
        # .to() is told to copy. Read-only arrays (as a JAX callback hands over) are copied on the host
        # first, because torch.from_numpy warns on them.
        owned = not chunk.flags.writeable
        host = np.array(chunk) if owned else chunk
        normalises = self._mean is not None or self._std is not None
        x = torch.from_numpy(host).to(self.device, self.dtype, copy=not (owned or normalises))
        return self._module_output(x).to("cpu", torch.float32).numpy()

    def _module_output(self, x: "torch.Tensor") -> "torch.Tensor":
        """x [m, H, W, C] on the module's device, its dtype -> the module's raw output [m, ...] there,
        detached. Normalises, hands the module its layout (NCHW as a view) and names the input
        shape when the module fails."""
        torch = _import_torch()
        shape = tuple(x.shape)
        if self._mean is not None:
            x = x - self._mean
        if self._std is not None:
            x = x / self._std
        if self.layout == "NCHW":
            x = x.permute(0, 3, 1, 2)  # a channels-last view; convolutions accept it as is
        try:
            out = self.module(x)
        except RuntimeError as err:  # torch reports shape and dtype mismatches as RuntimeError
            raise BlackBoxError(
                f"{self!r} failed on images of shape {shape} (fed as {self.layout} {tuple(x.shape)}): {err}"
            ) from err
        if not isinstance(out, torch.Tensor):
            raise BlackBoxError(f"{self!r} returned {type(out).__name__}, not a tensor [n, K]")
        return out.detach()

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """x: float32 [n, H, W, C] in [0, 1] -> float32 [n, K] probabilities."""
        torch = _import_torch()
        x = np.asarray(x, dtype=np.float32)
        self._check_input(x)
        n = x.shape[0]
        if n == 0 and self._num_classes is not None:
            return np.zeros((0, self._num_classes), dtype=np.float32)
        step = self.batch_size or max(n, 1)
        # An empty query with K unknown is still run once (as an empty batch) to learn K.
        starts = range(0, n, step) if n else [0]
        with torch.inference_mode():
            chunks = [self._forward(x[start : start + step]) for start in starts]
        try:
            raw = np.concatenate(chunks)
        except ValueError as err:
            raise BlackBoxError(f"{self!r} returned chunks that do not stack: {[c.shape for c in chunks]}") from err
        return self._probabilities(raw, n)

    # --- inputs already on the module's device (daxjax.device.querying's device path) ------------

    def dlpack_device(self) -> tuple[str, int]:
        """Where `device_forward` takes its input: ("cuda", index) or ("cpu", 0)."""
        if self.device.type != "cuda":
            return (self.device.type, 0)
        torch = _import_torch()
        return ("cuda", self.device.index if self.device.index is not None else torch.cuda.current_device())

    def device_feed(self, x):
        """x: jax.Array float32 [n, H, W, C] in [0, 1] -> x itself: the module normalises on its own
        device in `device_forward`, as `__call__` does. Traced inside jit (shapes only)."""
        self._check_input(x)
        return x

    def device_forward(self, feed):
        """feed: jax.Array [n, H, W, C] on `dlpack_device()` -> raw output jax.Array [n, K] there.

        The images reach torch by DLPack (`torch.from_dlpack`: no copy; torch makes its stream wait
        for JAX's), run in chunks of `batch_size` under inference mode, and the output returns to
        JAX by DLPack. The module shares the feed's memory: a module that writes its input in place
        writes into a buffer the caller built for this call alone and never reads again.
        Raw means logits or probabilities, as `output` says; the caller checks them.
        """
        import jax.dlpack

        torch = _import_torch()
        x = torch.from_dlpack(feed).to(self.device, self.dtype)
        n = x.shape[0]
        step = self.batch_size or max(n, 1)
        with torch.inference_mode():
            outs = [self._module_output(x[start : start + step]) for start in range(0, n, step)]
            raw = torch.cat(outs).to(torch.float32).contiguous() if outs else x.new_zeros((0, self.num_classes))
        return jax.dlpack.from_dlpack(raw)

    def __repr__(self) -> str:
        k = "?" if self._num_classes is None else self._num_classes
        return (
            f"TorchBlackBox({type(self.module).__name__}, {self.layout}, num_classes={k}, "
            f"output={self.output!r}, device={str(self.device)!r})"
        )
