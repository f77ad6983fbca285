"""An ONNX model file as a black box, run with ONNX Runtime.

Inputs arrive as float32 ``[n, H, W, C]`` in ``[0, 1]``; this adapter normalises them
(``(x - mean) / std``), transposes them to the model's layout, batches them to what the model
accepts, runs the session and returns checked probabilities ``[n, K]``.

It also takes inputs that already sit on the session's device (``device_feed`` /
``device_forward``): a JAX array is handed to ONNX Runtime by DLPack and I/O binding, the output
is bound on the same device and comes back to JAX by DLPack, so a CUDA session is fed from JAX
without a host round trip (see ``daxjax.device.querying``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np

from .base import BlackBoxError, OutputKind, check_output_kind, to_probabilities

# Dynamic spatial sides are probed at this size when num_classes must be found by a query.
_PROBE_SIDE = 224
# Input element types this adapter can feed (the [0, 1] floats are cast to them).
_FEED_DTYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64}


def _import_onnxruntime():
    """onnxruntime, or an ImportError that says how to install it."""
    try:
        import onnxruntime
    except ImportError as err:
        raise ImportError(
            "OnnxBlackBox needs onnxruntime: pip install 'daxjax[onnx]' "
            "(or 'daxjax[gpu]' for onnxruntime-gpu; install only one of the two)"
        ) from err
    return onnxruntime


def open_session(path: Path, intra_op_threads: int, inter_op_threads: int, providers=None):
    """An ONNX Runtime session on the model at `path`, with the thread counts set explicitly and
    spinning disabled (idle ORT threads do not steal cores from JAX); providers None: CUDA if
    available, then CPU."""
    ort = _import_onnxruntime()
    options = ort.SessionOptions()
    options.intra_op_num_threads = intra_op_threads
    options.inter_op_num_threads = inter_op_threads
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    if providers is None:
        available = ort.get_available_providers()
        providers = [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available]
    if _CUDA in _provider_names(providers) and hasattr(ort, "preload_dlls"):
        # Load CUDA, cuDNN, cuBLAS from the nvidia-*-cu13 wheels that jax[cuda13] also uses, so
        # the process holds one copy of each library (onnxruntime-gpu 1.31 and jax[cuda13]
        # link the same CUDA 13 major version; a system copy found first could differ).
        ort.preload_dlls()
    try:
        return ort.InferenceSession(str(path), sess_options=options, providers=list(providers))
    except Exception as err:  # ORT raises several private exception types (bad file, bad providers)
        raise BlackBoxError(f"{path}: ONNX Runtime cannot load it as a model: {err}") from err


def _fixed(dim: object) -> int | None:
    """An ONNX dimension as an int if it is fixed, None if symbolic or unknown."""
    return dim if isinstance(dim, int) and dim > 0 else None


def _normalised(x, mean: np.ndarray, std: np.ndarray, layout: str, xp):
    """[n, H, W, C] in [0, 1] -> (x - mean) / std in the model's layout; xp: numpy or jax.numpy."""
    x = (x - mean) / std
    return xp.transpose(x, (0, 3, 1, 2)) if layout == "NCHW" else x


def _per_channel(value: float | Sequence[float] | None, default: float, name: str) -> np.ndarray:
    """mean/std as a float32 vector broadcastable over the channel axis of [n, H, W, C]."""
    array = np.atleast_1d(np.asarray(default if value is None else value, dtype=np.float32))
    if array.ndim != 1:
        raise BlackBoxError(f"{name} must be a scalar or a per-channel sequence, got shape {array.shape}")
    return array


def infer_layout(shape: Sequence[int | None], what: str = "the model input") -> str:
    """"NCHW" or "NHWC" for a 4-D image input shape (None: a dynamic dimension): the layout whose
    channel axis is fixed at 1 or 3 while the other candidate axis is not. BlackBoxError when the
    shape does not tell (both or neither could be channels, e.g. [n, 3, 3, 3] or all dynamic)."""
    channels = {"NCHW": shape[1], "NHWC": shape[3]}
    fits = [layout for layout, c in channels.items() if c in (1, 3)]
    if len(fits) != 1:
        dims = "x".join("?" if d is None else str(d) for d in shape)
        raise BlackBoxError(f"{what} has shape {dims}: cannot tell NCHW from NHWC; give the layout "
                            "(layout= in Python, --layout on the command line)")
    return fits[0]


class OnnxBlackBox:
    """Query an ONNX classifier with images float32 ``[n, H, W, C]`` in ``[0, 1]``.

    Args:
        path: the .onnx file.
        layout: the model's input layout, "NCHW" or "NHWC"; "auto": read from the input's shape
            (`infer_layout`), an error when it cannot tell.
        mean, std: per-channel sequences (or scalars) applied in the [0, 1] space before the
            layout transpose: ``x' = (x - mean) / std``. EfficientNet-Lite's ``(x*255 - 127)/128``
            is ``mean=127/255, std=128/255``. None: no shift / no scaling.
        output: "logits" (a softmax is applied) or "probs" (the model already outputs probabilities).
        batch_size: largest chunk per session run when the model's batch axis is dynamic
            (None: the whole query in one run). With a fixed batch axis the model's own batch is used,
            the last chunk zero-padded and the padded rows dropped.
        intra_op_threads, inter_op_threads: ONNX Runtime thread counts, set explicitly; spinning
            is disabled so idle ORT threads do not steal cores from JAX.
        providers: execution providers in preference order; None: CUDA if available, then CPU.
        input_name, output_name: which model input/output to use; None: the only input, the first output.

    Attributes:
        num_classes: K, from the output shape if fixed, else from one probe query at construction.
        providers: the providers the session really uses (``session.get_providers()``).
        input_shape: the model input's shape in its own layout; None for dynamic dimensions.
        path: the model file.
        session: the ``onnxruntime.InferenceSession`` (thread-safe: concurrent calls are fine).

    Raises:
        FileNotFoundError: no file at path.
        BlackBoxError: the file is not a loadable ONNX model, an option is invalid, or (on call)
            the images do not fit the model's fixed input size or the answer is not probabilities.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        layout: str = "NCHW",
        mean: float | Sequence[float] | None = None,
        std: float | Sequence[float] | None = None,
        output: OutputKind = "logits",
        batch_size: int | None = None,
        intra_op_threads: int = 1,
        inter_op_threads: int = 1,
        providers: Sequence[str] | None = None,
        input_name: str | None = None,
        output_name: str | None = None,
    ) -> None:
        _import_onnxruntime()  # its install hint first
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"ONNX model not found: {self.path}")
        if layout not in ("NCHW", "NHWC", "auto"):
            raise BlackBoxError(f"layout must be 'NCHW', 'NHWC' or 'auto', got {layout!r}")
        if batch_size is not None and batch_size < 1:
            raise BlackBoxError(f"batch_size must be >= 1 or None, got {batch_size}")
        self.layout = layout
        self.output = check_output_kind(output)
        self.mean = _per_channel(mean, 0.0, "mean")
        self.std = _per_channel(std, 1.0, "std")
        if np.any(self.std == 0):
            raise BlackBoxError(f"std must be non-zero, got {self.std.tolist()}")

        self.session = open_session(self.path, intra_op_threads, inter_op_threads, providers)
        self.providers = self.session.get_providers()
        # Where outputs are bound in device_forward: the first provider's device.
        self._device = _session_device(self.session)

        model_input = self._pick("input", self.session.get_inputs(), input_name, require_single=True)
        model_output = self._pick("output", self.session.get_outputs(), output_name, require_single=False)
        if len(model_input.shape) != 4:
            raise BlackBoxError(f"{self.path}: input {model_input.name!r} has shape {model_input.shape}; expected 4-D")
        if model_input.type not in _FEED_DTYPES:
            raise BlackBoxError(
                f"{self.path}: input {model_input.name!r} has type {model_input.type}; "
                f"supported: {', '.join(_FEED_DTYPES)}"
            )
        self.input_name = model_input.name
        self.output_name = model_output.name
        self._feed_dtype = _FEED_DTYPES[model_input.type]
        self.input_shape = tuple(_fixed(d) for d in model_input.shape)
        if layout == "auto":
            layout = self.layout = infer_layout(self.input_shape, f"{self.path}: input {model_input.name!r}")
        # The model's fixed batch, or None when the batch axis is dynamic.
        self.model_batch = self.input_shape[0]
        if self.model_batch is not None and batch_size not in (None, self.model_batch):
            raise BlackBoxError(
                f"batch_size={batch_size} conflicts with the fixed batch {self.model_batch} of {self.path.name}"
            )
        self.batch_size = self.model_batch or batch_size
        dims = self.input_shape[1:]
        # The model's (H, W, C), in the caller's [n, H, W, C] order; None where dynamic.
        self.expected_hwc = (dims[1], dims[2], dims[0]) if layout == "NCHW" else tuple(dims)

        output_k = _fixed(model_output.shape[-1]) if len(model_output.shape) == 2 else None
        self.num_classes = output_k if output_k is not None else self._probe_num_classes()

    def _pick(self, kind: str, candidates: list, name: str | None, *, require_single: bool):
        """The session input/output called name, or the default one."""
        names = [c.name for c in candidates]
        if name is not None:
            if name not in names:
                raise BlackBoxError(f"{self.path}: no {kind} named {name!r}; the model has {names}")
            return candidates[names.index(name)]
        if require_single and len(candidates) != 1:
            raise BlackBoxError(f"{self.path}: the model has {kind}s {names}; choose one with {kind}_name=")
        return candidates[0]

    def _probe_num_classes(self) -> int:
        """K from the width of one answer to a zero image (dynamic sides probed at 224)."""
        defaults = (_PROBE_SIDE, _PROBE_SIDE, 3)
        h, w, c = (default if side is None else side for side, default in zip(self.expected_hwc, defaults))
        probe = np.zeros((1, h, w, c), dtype=np.float32)
        raw = self._run_batched(self._prepare(probe))
        if raw.ndim != 2:
            raise BlackBoxError(f"{self.path}: output {self.output_name!r} has shape {raw.shape}; expected [n, K]")
        return int(raw.shape[1])

    def _check_image_size(self, x: np.ndarray) -> None:
        """Raise if x is not [n, H, W, C] or disagrees with the model's fixed H, W or C."""
        if x.ndim != 4:
            raise BlackBoxError(f"{self!r} expects images [n, H, W, C], got shape {x.shape}")
        got = x.shape[1:]
        if any(e is not None and e != g for e, g in zip(self.expected_hwc, got)):
            expected = ", ".join("any" if e is None else str(e) for e in self.expected_hwc)
            raise BlackBoxError(f"{self.path.name} expects images (H, W, C) = ({expected}), got {tuple(got)}")
        if self.mean.size not in (1, got[2]) or self.std.size not in (1, got[2]):
            raise BlackBoxError(
                f"mean/std have {self.mean.size}/{self.std.size} entries for images with {got[2]} channels"
            )

    def _prepare(self, x: np.ndarray) -> np.ndarray:
        """[n, H, W, C] in [0, 1] -> normalised model input in the model's layout and dtype."""
        return np.ascontiguousarray(_normalised(x, self.mean, self.std, self.layout, np), dtype=self._feed_dtype)

    def _run_batched(self, feed: np.ndarray) -> np.ndarray:
        """Run the session over feed [n, ...] in chunks of batch_size; pad a short last chunk
        with zeros when the model's batch is fixed and drop the padded rows again."""
        n = feed.shape[0]
        step = self.batch_size or n
        outputs = []
        for start in range(0, n, step):
            chunk = feed[start : start + step]
            rows = chunk.shape[0]
            if self.model_batch is not None and rows < self.model_batch:
                padding = np.zeros((self.model_batch - rows, *chunk.shape[1:]), dtype=chunk.dtype)
                chunk = np.concatenate([chunk, padding])
            (result,) = self.session.run([self.output_name], {self.input_name: chunk})
            outputs.append(np.asarray(result)[:rows])
        return np.concatenate(outputs)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """x: float32 [n, H, W, C] in [0, 1] -> float32 [n, K] probabilities."""
        x = np.asarray(x, dtype=np.float32)
        self._check_image_size(x)
        if x.shape[0] == 0:  # nothing to run; some models reject an empty batch
            return np.zeros((0, self.num_classes), dtype=np.float32)
        raw = self._run_batched(self._prepare(x))
        return to_probabilities(raw, self.output, x.shape[0], self.num_classes, what=repr(self))

    # --- inputs already on the session's device (daxjax.device.querying's device path) -----------

    def dlpack_device(self) -> tuple[str, int]:
        """Where `device_forward` takes its input: ("cuda", device id) for a CUDA session, else ("cpu", 0)."""
        return self._device

    def device_feed(self, x):
        """x: jax.Array float32 [n, H, W, C] in [0, 1] -> the model's input [n, ...] (normalised, in its
        layout and dtype), as jax code: traced inside the jitted program that builds x, so the
        normalisation costs no pass of its own. Raises BlackBoxError at trace time for a wrong size."""
        import jax.numpy as jnp

        self._check_image_size(x)
        return _normalised(x, self.mean, self.std, self.layout, jnp).astype(self._feed_dtype)

    def device_forward(self, feed):
        """feed: jax.Array from `device_feed`, on `dlpack_device()` -> raw output jax.Array [n, K] there.

        The feed reaches ONNX Runtime by DLPack (no copy) and I/O binding; the output is bound on the
        same device and returned to JAX by DLPack. Chunked to `batch_size` as `__call__` is, a short
        last chunk of a fixed-batch model padded with zeros. The answer is raw (logits or
        probabilities, as `output` says); the caller checks it.
        """
        import jax
        import jax.numpy as jnp

        ort = _import_onnxruntime()
        n = feed.shape[0]
        step = self.batch_size or max(n, 1)
        outputs = []
        for start in range(0, n, step):
            chunk = feed[start : start + step] if step < n else feed
            rows = chunk.shape[0]
            if self.model_batch is not None and rows < self.model_batch:
                chunk = jnp.pad(chunk, [(0, self.model_batch - rows)] + [(0, 0)] * (chunk.ndim - 1))
            # ONNX Runtime reads the memory on its own stream: the program writing it must be done.
            chunk.block_until_ready()
            binding = self.session.io_binding()  # one per run: concurrent calls share the session
            binding.bind_ortvalue_input(self.input_name, ort.OrtValue.from_dlpack(chunk))
            binding.bind_output(self.output_name, *self._device)
            self.session.run_with_iobinding(binding)
            binding.synchronize_outputs()  # the output is complete before JAX reads it (a no-op on the CPU)
            (result,) = binding.get_outputs()
            out = jax.dlpack.from_dlpack(result)
            outputs.append(out[:rows] if rows < out.shape[0] else out)
        if not outputs:
            return jnp.zeros((0, self.num_classes), jnp.float32)
        return outputs[0] if len(outputs) == 1 else jnp.concatenate(outputs)

    def __repr__(self) -> str:
        shape = "x".join("?" if d is None else str(d) for d in self.input_shape)
        return (
            f"OnnxBlackBox({self.path.name!r}, {self.layout} {shape}, "
            f"num_classes={self.num_classes}, output={self.output!r}, providers={self.providers})"
        )


_CUDA = "CUDAExecutionProvider"


def _provider_names(providers: Sequence) -> list[str]:
    """Provider names from ONNX Runtime's list form (a name, or (name, options) pairs)."""
    return [p if isinstance(p, str) else p[0] for p in providers]


def _session_device(session) -> tuple[str, int]:
    """("cuda", device id) when the session runs on the CUDA provider, else ("cpu", 0)."""
    if session.get_providers()[0] != _CUDA:
        return ("cpu", 0)
    options = session.get_provider_options().get(_CUDA, {})
    return ("cuda", int(options.get("device_id", 0)))
