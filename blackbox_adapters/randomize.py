"""Weight-randomised copies of ONNX models, for the model-randomisation sanity check.

Adebayo et al. (2018, "Sanity checks for saliency maps") re-initialise a trained network's
weights, all at once or cascading from the output layer down, and ask whether an explanation
changes. We cannot re-run a foreign model's own initialiser, so each float initialiser is
re-drawn from N(0, rms²), rms = the root mean square of that tensor's trained values: the new
weights keep each tensor's shape, dtype and overall scale (a scalar keeps its magnitude, a
zero tensor stays zero) but none of what was learned.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np

from .base import BlackBoxError

# Element types (onnx.TensorProto names) whose initialisers count as weights; integer tensors
# (shapes, indices) are kept.
_FLOAT_TYPES = ("FLOAT16", "FLOAT", "DOUBLE")


def randomized_onnx(path: str | os.PathLike, out_path: str | os.PathLike, seed: int = 0, *,
                    layers: str = "all") -> Path:
    """Writes a copy of an ONNX model whose float weights are re-drawn at random; returns out_path.

    Args:
      path: the trained model (.onnx; external data next to it is loaded too).
      out_path: where the randomised copy is written (parent folders are created).
      seed: with a tensor's position in the graph, fixes its new values, so cascades share
        draws: the weights randomised by "top-1" are identical in the "top-2" copy.
      layers: "all" re-draws every float initialiser of the main graph. "top-k" (e.g. "top-3")
        re-draws those of the k layers closest to the output, the cascading randomisation of the
        sanity-check paper: a layer is a node that takes float initialisers (a Conv's weight
        and bias together), in the graph's topological order; an initialiser shared by several
        nodes belongs to the first that reads it.

    Only initialisers of the main graph are changed; weights held in Constant nodes or in
    subgraphs (If/Loop bodies) are kept. The copy is one protobuf file, so models over 2 GB
    cannot be written.

    Raises:
      FileNotFoundError: no file at path.
      BlackBoxError: the file is not a loadable ONNX model, `layers` is malformed or asks for more
        layers than the model has, or the model has no float initialisers (randomising nothing
        would pass the sanity check's correlation off as the model's).
      ImportError: the `onnx` package is missing.
    """
    onnx, numpy_helper = _import_onnx()
    source = Path(path)
    if not source.is_file():
        raise FileNotFoundError(f"ONNX model not found: {source}")
    try:
        model = onnx.load(str(source))
    except Exception as err:  # protobuf and onnx raise several private types for a bad file
        raise BlackBoxError(f"{source}: cannot load it as an ONNX model: {err}") from err

    graph = model.graph
    float_types = {getattr(onnx.TensorProto, name) for name in _FLOAT_TYPES}
    float_names = {init.name for init in graph.initializer if init.data_type in float_types}
    if not float_names:
        raise BlackBoxError(f"{source}: the model has no float initialisers (weights) to randomise")
    chosen = _chosen_initialisers(graph, float_names, layers, source)

    for position, init in enumerate(graph.initializer):
        if init.name in chosen:
            trained = numpy_helper.to_array(init)
            redrawn = _redraw(trained, np.random.default_rng([seed, position]))
            init.CopyFrom(numpy_helper.from_array(redrawn, init.name))

    target = Path(out_path)
    target.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(target))
    return target


def _redraw(trained: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Gaussian values of the tensor's shape and dtype with mean 0 and the tensor's RMS as std."""
    rms = float(np.sqrt(np.mean(np.square(trained.astype(np.float64))))) if trained.size else 0.0
    return rng.normal(0.0, rms, trained.shape).astype(trained.dtype)


def _chosen_initialisers(graph, float_names: set[str], layers: str, source: Path) -> set[str]:
    """Names of the float initialisers that `layers` selects."""
    if layers == "all":
        return float_names
    match = re.fullmatch(r"top-(\d+)", layers) if isinstance(layers, str) else None
    if match is None or int(match.group(1)) < 1:
        raise BlackBoxError(f"layers must be 'all' or 'top-k' with k >= 1 (e.g. 'top-2'), got {layers!r}")
    model_layers = _weight_layers(graph, float_names)
    count = int(match.group(1))
    if count > len(model_layers):
        raise BlackBoxError(f"layers={layers!r}, but {source.name} has only {len(model_layers)} "
                            f"layer(s) with float weights")
    return {name for layer in model_layers[-count:] for name in layer}


def _weight_layers(graph, float_names: set[str]) -> list[list[str]]:
    """Float initialiser names grouped by the first node that reads them, in graph order."""
    assigned: set[str] = set()
    layers = []
    for node in graph.node:
        weights = [name for name in node.input if name in float_names and name not in assigned]
        if weights:
            assigned.update(weights)
            layers.append(weights)
    return layers


def _import_onnx():
    """(onnx, onnx.numpy_helper), or an ImportError that says how to install them."""
    try:
        import onnx
        from onnx import numpy_helper
    except ImportError as err:
        raise ImportError("randomized_onnx needs the onnx package: pip install 'daxjax[onnx]'") from err
    return onnx, numpy_helper
