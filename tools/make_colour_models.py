"""Build the bundled colour-patch classifiers as tiny ONNX graphs (deterministic).

Run from the repository root:  python -m tools.make_colour_models

Writes, into blackbox_adapters/models/ (where the package and the tests load them from):
- colour_nchw.onnx:    input "images" float32 [N, 3, H, W] (N, H, W dynamic), output "logits" [N, 4].
- colour_nhwc_b8.onnx: input "images" float32 [8, 32, 32, 3] (fixed), output "probs" [8, 4]
  (softmax included); exercises fixed-batch padding and input-size checks.
Both compute ``blackbox_adapters.models.colour_reference.colour_logits`` (see there for the function).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from blackbox_adapters.models.colour_reference import LOGIT_SCALE, NONE_LOGIT, PURITY_MARGIN

# opset 17 / IR 8: loadable by every onnxruntime this project supports.
OPSET = 17
IR_VERSION = 8
MODELS_DIR = Path(__file__).resolve().parents[1] / "blackbox_adapters" / "models"


def build_colour_model(
    layout: str, batch: int | str, height: int | str, width: int | str, *, softmax_output: bool
) -> onnx.ModelProto:
    """The colour classifier as an ONNX model; int dims are fixed, str dims symbolic."""
    channel_axis, spatial_axes = (1, [2, 3]) if layout == "NCHW" else (3, [1, 2])
    input_shape = [batch, 3, height, width] if layout == "NCHW" else [batch, height, width, 3]
    output_name = "probs" if softmax_output else "logits"

    initializers = [
        numpy_helper.from_array(np.array(PURITY_MARGIN, dtype=np.float32), "purity_margin"),
        numpy_helper.from_array(np.array(LOGIT_SCALE, dtype=np.float32), "logit_scale"),
        numpy_helper.from_array(np.array([1], dtype=np.int64), "one_column"),
    ]
    nodes = [helper.make_node("Split", ["images"], ["r", "g", "b"], axis=channel_axis)]
    # score_c = relu(c - max(other two) - margin), one [N, 1, H, W] (or [N, H, W, 1]) map per colour.
    for colour, others in (("r", ("g", "b")), ("g", ("r", "b")), ("b", ("r", "g"))):
        nodes += [
            helper.make_node("Max", list(others), [f"{colour}_rival"]),
            helper.make_node("Sub", [colour, f"{colour}_rival"], [f"{colour}_lead"]),
            helper.make_node("Sub", [f"{colour}_lead", "purity_margin"], [f"{colour}_excess"]),
            helper.make_node("Relu", [f"{colour}_excess"], [f"{colour}_score"]),
        ]
    nodes += [
        helper.make_node("Concat", ["r_score", "g_score", "b_score"], ["scores"], axis=channel_axis),
        helper.make_node("ReduceMean", ["scores"], ["mean_scores"], axes=spatial_axes, keepdims=0),
        helper.make_node("Mul", ["mean_scores", "logit_scale"], ["colour_logits"]),
        # The "none" column is built from the batch size alone, so it is exactly NONE_LOGIT
        # whatever the pixels are.
        helper.make_node("Shape", ["images"], ["batch_dim"], start=0, end=1),
        helper.make_node("Concat", ["batch_dim", "one_column"], ["none_shape"], axis=0),
        helper.make_node(
            "ConstantOfShape",
            ["none_shape"],
            ["none_logit"],
            value=numpy_helper.from_array(np.array([NONE_LOGIT], dtype=np.float32)),
        ),
    ]
    if softmax_output:
        nodes += [
            helper.make_node("Concat", ["colour_logits", "none_logit"], ["logits"], axis=1),
            helper.make_node("Softmax", ["logits"], [output_name], axis=1),
        ]
    else:
        nodes.append(helper.make_node("Concat", ["colour_logits", "none_logit"], [output_name], axis=1))

    graph = helper.make_graph(
        nodes,
        "colour_patch_classifier",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, input_shape)],
        [helper.make_tensor_value_info(output_name, TensorProto.FLOAT, [batch, 4])],
        initializer=initializers,
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        producer_name="daxjax.make_colour_models",
        ir_version=IR_VERSION,
        doc_string="Planted colour-patch classifier: classes red, green, blue, none.",
    )
    onnx.checker.check_model(model, full_check=True)
    return model


def bundled_models() -> dict[str, onnx.ModelProto]:
    """File name -> model, for both bundled files."""
    return {
        "colour_nchw.onnx": build_colour_model("NCHW", "N", "H", "W", softmax_output=False),
        "colour_nhwc_b8.onnx": build_colour_model("NHWC", 8, 32, 32, softmax_output=True),
    }


def main() -> None:
    """Write both bundled models into MODELS_DIR."""
    for name, model in bundled_models().items():
        path = MODELS_DIR / name
        path.write_bytes(model.SerializeToString(deterministic=True))
        print(f"wrote {path} ({path.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
