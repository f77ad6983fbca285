"""An ONNX audio classifier that takes waveforms, as a black box for `daxjax.explain_audio`."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .base import BlackBoxError, OutputKind, check_output_kind, to_probabilities
from .onnx import _fixed, _import_onnxruntime, open_session


class OnnxWaveformBlackBox:
    """Query an ONNX model with mono waveforms float32 ``[n, S]``; answers probabilities ``[n, K]``.

    Args:
        path: the .onnx file; its one input is float32 ``[batch, S]`` (S fixed or dynamic).
        sample_rate: Hz the model was trained at; `explain_audio` refuses clips at another rate.
        output: "probs" (the model ends in a softmax) or "logits" (a softmax is applied here).
        batch_size: largest chunk per session run (None: the whole query at once).
        intra_op_threads, inter_op_threads: ONNX Runtime thread counts, set explicitly; spinning
            is disabled so idle ORT threads do not steal cores from JAX.
        providers: execution providers in preference order; None: CUDA if available, then CPU.

    Attributes: num_classes, sample_rate, num_samples (S, None if dynamic), providers (what the
    session really uses), path, session.
    """

    def __init__(self, path: str | os.PathLike, *, sample_rate: int, output: OutputKind = "probs",
                 batch_size: int | None = 256, intra_op_threads: int = 1, inter_op_threads: int = 1,
                 providers=None) -> None:
        _import_onnxruntime()  # its install hint first
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"ONNX model not found: {self.path}")
        if batch_size is not None and batch_size < 1:
            raise BlackBoxError(f"batch_size must be >= 1 or None, got {batch_size}")
        self.sample_rate = int(sample_rate)
        self.output = check_output_kind(output)
        self.batch_size = batch_size
        self.session = open_session(self.path, intra_op_threads, inter_op_threads, providers)
        self.providers = self.session.get_providers()
        inputs = self.session.get_inputs()
        if len(inputs) != 1 or len(inputs[0].shape) != 2:
            raise BlackBoxError(f"{self.path}: expected one input of shape [batch, samples]; got "
                                f"{[(i.name, i.shape) for i in inputs]}")
        self.input_name = inputs[0].name
        self.num_samples = _fixed(inputs[0].shape[1])
        output_shape = self.session.get_outputs()[0].shape
        k = _fixed(output_shape[-1]) if len(output_shape) == 2 else None
        if k is None:
            probe = np.zeros((1, self.num_samples or self.sample_rate), np.float32)
            k = int(self.session.run(None, {self.input_name: probe})[0].shape[1])
        self.num_classes = k

    def __call__(self, waveforms: np.ndarray) -> np.ndarray:
        """waveforms: float32 [n, S] -> float32 [n, K] probabilities."""
        x = np.ascontiguousarray(waveforms, dtype=np.float32)
        if x.ndim != 2:
            raise BlackBoxError(f"{self!r} expects mono waveforms [n, samples]; got shape {x.shape}")
        if self.num_samples is not None and x.shape[1] != self.num_samples:
            raise BlackBoxError(f"{self.path.name} expects clips of {self.num_samples} samples "
                                f"({self.num_samples / self.sample_rate:g} s at {self.sample_rate} Hz); got {x.shape[1]}")
        if x.shape[0] == 0:
            return np.zeros((0, self.num_classes), np.float32)
        step = self.batch_size or x.shape[0]
        raw = np.concatenate([self.session.run(None, {self.input_name: x[i:i + step]})[0]
                              for i in range(0, x.shape[0], step)])
        return to_probabilities(raw, self.output, x.shape[0], self.num_classes, what=repr(self))

    def __repr__(self) -> str:
        return (f"OnnxWaveformBlackBox({self.path.name!r}, {self.sample_rate} Hz, "
                f"num_classes={self.num_classes}, providers={self.providers})")
