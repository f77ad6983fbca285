"""Train the Fashion-scenes CNN black box and export it to ONNX.

    python -m benchmarks.datasets.fashion.train                # regenerates benchmarks/datasets/fashion/fashion_cnn.onnx
    python -m benchmarks.datasets.fashion.train --out /tmp/m.onnx --steps 200 --min-accuracy 0   # a quick try

It also writes MODEL_CARD.md (next to the default model; <out>.md for another --out) with the
accuracy, times and sizes it measured, and refuses to export below --min-accuracy (0.90).

A small Flax NNX CNN (3x3 convolutions with BatchNorm and ReLU, global mean pool, dense, softmax;
the BatchNorms folded into the convolutions for export) learns the
class of the *large* object in scenes from `benchmarks.datasets.fashion.data` (distractors are always
pasted at about half the size). Training scenes use Fashion-MNIST's train split, the reported
accuracy the test split. The ONNX model takes NHWC float32 [B, 64, 64, 3] in [0, 1] (symbolic
batch B) and outputs softmax probabilities [B, 6]: load it with
``OnnxBlackBox(path, layout="NHWC", output="probs")``.

Deterministic: the scenes are a function of their seeds, the initialisation and the batch order
of --seed; XLA on CPU gives the same numbers run to run on the same machine and thread count.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

from benchmarks.datasets.training import (add_arguments, build_cnn, card_path, confusion_matrix, fit,
                                          fold_batch_norm, opset, param_count, probabilities, versions)

HERE = Path(__file__).resolve().parent
DEFAULT_OUT = HERE / "fashion_cnn.onnx"
SIZE = 64
# Scene seeds: training and evaluation scenes also differ by split (train vs test objects).
TRAIN_SEED, TEST_SEED = 1, 2
# Output channels and strides of the 3x3 convolutions: 64 -> 32 -> 16 -> 16 -> 8 -> 8 -> 4 -> 4 px;
# the last layers see the whole object (receptive field > 64 px), which five layers did not
# (7-class accuracy 88.9 % with five, 90.7 % with seven at the same training time).
WIDTHS = (24, 32, 48, 64, 96, 128, 128)
STRIDES = (2, 2, 1, 2, 1, 2, 1)
#: The packages whose versions the model card names.
PACKAGES = ("jax", "jaxlib", "flax", "optax", "numpy", "scikit-image", "scipy", "jax2onnx", "onnx", "onnxruntime")


def build_model(num_classes: int, seed: int, batch_norm: bool = True):
    """The CNN (`training.build_cnn`): 64x64x3 -> 7 x (3x3 conv [+ BatchNorm] + ReLU) -> mean over space
    -> dense -> softmax; with batch_norm=False the convolutions carry biases (the exported form)."""
    return build_cnn(3, WIDTHS, STRIDES, num_classes, seed, batch_norm, name="FashionCNN")


def augment(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Label-preserving and cheap: a random horizontal flip and a random permutation of the
    colour channels per image (objects are tinted randomly anyway; photos keep their shapes)."""
    x = x.copy()
    flip = rng.random(len(x)) < 0.5
    x[flip] = x[flip, :, ::-1]
    perms = np.array([[0, 1, 2], [0, 2, 1], [1, 0, 2], [1, 2, 0], [2, 0, 1], [2, 1, 0]])
    chosen = perms[rng.integers(len(perms), size=len(x))]
    return np.take_along_axis(x, chosen[:, None, None, :], axis=3)


def train(args) -> dict:
    from .data import CLASS_NAMES, make_scenes

    t_start = time.perf_counter()
    t0 = time.perf_counter()
    train_set = make_scenes(args.train_scenes, TRAIN_SEED, "train", SIZE)
    test_set = make_scenes(args.test_scenes, TEST_SEED, "test", SIZE)
    t_data = time.perf_counter() - t0
    print(f"scenes: {len(train_set)} train, {len(test_set)} test, generated in {t_data:.1f} s", flush=True)

    model = build_model(len(CLASS_NAMES), args.seed)
    t_train = fit(model, train_set.images, train_set.labels, augment, steps=args.steps, batch=args.batch,
                  lr=args.lr, seed=args.seed, log_every=args.log_every)

    def accuracy(scenes):
        probs = probabilities(model, scenes.images, batch=500)
        return probs, float(np.mean(probs.argmax(1) == scenes.labels))

    probs, test_acc = accuracy(test_set)
    has_d = test_set.distractor_labels >= 0
    pred = probs.argmax(1)
    confusion = confusion_matrix(test_set.labels, pred, len(CLASS_NAMES))
    _, train_acc = accuracy(make_scenes(min(2000, len(train_set)), TRAIN_SEED, "train", SIZE))
    result = dict(
        test_acc=test_acc,
        acc_distractor=float(np.mean(pred[has_d] == test_set.labels[has_d])),
        acc_no_distractor=float(np.mean(pred[~has_d] == test_set.labels[~has_d])),
        picked_distractor=float(np.mean(pred[has_d] == test_set.distractor_labels[has_d])),
        n_distractor=int(has_d.sum()), train_acc=train_acc, confusion=confusion,
        per_class={name: float(confusion[i, i] / confusion[i].sum()) for i, name in enumerate(CLASS_NAMES)},
        t_data=t_data, t_train=t_train, t_total=time.perf_counter() - t_start,
        params=param_count(model),
    )
    print(f"test accuracy {test_acc:.4f} ({len(test_set)} scenes; with distractor {result['acc_distractor']:.4f}, "
          f"without {result['acc_no_distractor']:.4f}; predicted the distractor's class "
          f"{result['picked_distractor']:.4f}); train accuracy (first 2000) {train_acc:.4f}")
    print("per class: " + ", ".join(f"{name} {v:.3f}" for name, v in result["per_class"].items()))
    print(f"confusion (rows: true, columns: predicted):\n{confusion}")
    print(f"training {t_train:.1f} s ({args.steps} steps of {args.batch}), total {result['t_total']:.1f} s",
          flush=True)
    return model, test_set, result


def export(model, out: Path, check_images: np.ndarray) -> float:
    """Writes the model (BatchNorm folded) to ONNX with jax2onnx; returns max |ORT - JAX| on check_images.

    JAX here is the trained model itself in eval mode, so the difference covers the folding too.
    """
    import onnx
    import onnxruntime as ort
    from jax2onnx import to_onnx

    onnx_model = to_onnx(fold_batch_norm(model), [("B", SIZE, SIZE, 3)])
    onnx.checker.check_model(onnx_model)
    out.parent.mkdir(parents=True, exist_ok=True)
    onnx.save_model(onnx_model, str(out))
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    got = session.run(None, {session.get_inputs()[0].name: check_images.astype(np.float32)})[0]
    want = np.asarray(model(check_images))
    return float(np.max(np.abs(got - want)))


def write_card(path: Path, onnx_path: Path, result: dict, args, diff: float, command: str) -> None:
    """MODEL_CARD.md with what this run measured."""
    import hashlib
    import platform

    from .data import (ALPHA_THRESHOLD, BACKGROUND_PHOTOS, BENCH_LABELS, CLASS_NAMES, DISTRACTOR_SIDE,
                       FASHION_CLASSES, MAX_ROTATION, SEPARATION, TARGET_SIDE)

    blob = onnx_path.read_bytes()
    conf = result["confusion"]
    header = "| true \\ predicted | " + " | ".join(CLASS_NAMES) + " |"
    rows = [header, "|" + "---|" * (len(CLASS_NAMES) + 1)]
    rows += [f"| {name} | " + " | ".join(str(v) for v in conf[i]) + " |" for i, name in enumerate(CLASS_NAMES)]
    per_class = ", ".join(f"{name} {100 * v:.1f} %" for name, v in result["per_class"].items())
    layers = ", ".join(f"{w}{'/2' if s == 2 else ''}" for w, s in zip(WIDTHS, STRIDES))
    text = f"""# Model card: `fashion_cnn.onnx`

The black box of the Fashion-MNIST scenes quality benchmark (`benchmarks/datasets/fashion`). Written by
`{command}`; every number below was measured by that run.

## Use

```python
from blackbox_adapters import OnnxBlackBox
bb = OnnxBlackBox("benchmarks/datasets/fashion/fashion_cnn.onnx", layout="NHWC", output="probs")
```

- **Input**: NHWC float32 `[B, 64, 64, 3]`, values in [0, 1], no further normalisation; `B` symbolic.
- **Output**: **softmax probabilities** float32 `[B, {len(CLASS_NAMES)}]` (not logits).
- **Classes** (output index: name): {", ".join(f"{i}: {name}" for i, name in enumerate(CLASS_NAMES))}
  (Fashion-MNIST without {', '.join(n for i, n in enumerate(FASHION_CLASSES) if i not in BENCH_LABELS)}).
- **What it decides**: the class of the **large** object of a scene made by
  `benchmarks.datasets.fashion.data.make_scenes`. The target's 28 x 28 box is scaled to
  {TARGET_SIDE[0]}-{TARGET_SIDE[1]} px, a distractor's (another class, in half the scenes) to
  {DISTRACTOR_SIDE[0]}-{DISTRACTOR_SIDE[1]} px, at least {SEPARATION} px away from the target. Items span
  their box in their longest direction, so "large" means larger in scale (longest extent), not always
  in pixel area: a thin trouser can cover fewer pixels than a bag distractor; both rotated by up to +-{MAX_ROTATION:g} degrees, flipped and
  tinted at random; mask = intensity > {ALPHA_THRESHOLD} after scaling and rotation, holes filled.
- **Ground truth**: `Scenes.masks`, the target's pixels; `Scenes.distractor_masks`, the wrong object.

## Architecture

Flax NNX: {len(WIDTHS)} 3x3 convolutions with ReLU, channels (stride 2 marked /2) {layers}, then a
global mean over space, a dense layer to {len(CLASS_NAMES)} logits and a softmax. Trained with
BatchNorm after each convolution; for export each BatchNorm's running statistics are folded into
its convolution's kernel and bias, so the ONNX graph holds only Conv, Relu, ReduceMean, Gemm,
Softmax (and layout Transposes). {result['params']:,} trainable parameters during training.

## Training

- Data: {args.train_scenes:,} scenes from Fashion-MNIST's **train** split (`make_scenes(..., seed=1,
  split="train")`), distractor probability 0.5; per batch a random left-right flip and a random
  permutation of the colour channels.
- Optimiser: AdamW (weight decay 1e-4), peak learning rate {args.lr:g}, linear warm-up over
  {min(100, args.steps // 10)} steps then cosine decay to 0; {args.steps} steps of {args.batch} scenes;
  softmax cross-entropy on the target's class. Initialisation seed {args.seed}.
- Deterministic: scenes are functions of their seeds; the batch order and augmentation come from
  `numpy.random.default_rng({args.seed})`. XLA on CPU reproduces the run on the same machine type and
  thread count; another CPU may differ in the last bits and so in the final weights.

## Measured (this run)

- **Test accuracy: {100 * result['test_acc']:.2f} %** on {args.test_scenes:,} scenes from Fashion-MNIST's
  **test** split (`make_scenes({args.test_scenes}, seed=2, split="test")`): {100 * result['acc_distractor']:.2f} %
  on the {result['n_distractor']} scenes with a distractor, {100 * result['acc_no_distractor']:.2f} % on
  those without; in {100 * result['picked_distractor']:.2f} % of the scenes with a distractor it
  answered the distractor's class.
- Train accuracy (first 2,000 training scenes, eval mode): {100 * result['train_acc']:.2f} %.
- Per class (test): {per_class}.
- Confusion on the test scenes (rows: true class, columns: predicted):

{chr(10).join(rows)}

- Time on {os.cpu_count()} CPU cores ({platform.machine()}, shared with other jobs): scene generation
  {result['t_data']:.0f} s, training {result['t_train']:.0f} s, whole run {result['t_total']:.0f} s
  before export.
- ONNX file: {len(blob):,} bytes, opset {opset(onnx_path)}, sha256 `{hashlib.sha256(blob).hexdigest()}`.
- ONNX Runtime vs JAX (eval mode, unfolded BatchNorm) on 64 test scenes: max abs difference
  {diff:.2g} in the probabilities.
- Software: {versions(PACKAGES)}; Python {platform.python_version()}.

## Data provenance and licences

**Fashion-MNIST** object images: Debian package `dataset-fashion-mnist`
(<https://github.com/zalandoresearch/fashion-mnist>), read from `/usr/share/datasets/fashion-mnist`.
Licence (MIT / Expat):

> Copyright (c) 2017 Zalando SE, https://tech.zalando.com
>
> Permission is hereby granted, free of charge, to any person obtaining a copy of this software and
> associated documentation files (the "Software"), to deal in the Software without restriction,
> including without limitation the rights to use, copy, modify, merge, publish, distribute,
> sublicense, and/or sell copies of the Software, and to permit persons to whom the Software is
> furnished to do so, subject to the following conditions:
>
> The above copyright notice and this permission notice shall be included in all copies or
> substantial portions of the Software.
>
> THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR IMPLIED, INCLUDING BUT
> NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY, FITNESS FOR A PARTICULAR PURPOSE AND
> NONINFRINGEMENT. IN NO EVENT SHALL THE AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES
> OR OTHER LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM, OUT OF OR IN
> CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE SOFTWARE.

**Background photos**: the images bundled in scikit-image's wheel (`skimage.data`, no download),
with the provenance their docstrings give:

| `skimage.data` | source | terms |
|---|---|---|
{_PHOTO_TABLE}

Only these {len(BACKGROUND_PHOTOS)} are used (`BACKGROUND_PHOTOS` in `data.py`).
"""
    path.write_text(text)


_PHOTO_TABLE = "\n".join([
    "| astronaut | Eileen Collins, NASA Great Images database | public domain |",
    "| chelsea | photo of a cat by Stefan van der Walt | CC0 |",
    "| coffee | photo by Rachel Michetti | CC0 |",
    "| rocket | SpaceX Photos (Flickr) | public domain |",
    "| immunohistochemistry | Center for Microscopy And Molecular Imaging (CMMI) | no known copyright restrictions |",
    "| hubble_deep_field | NASA, HubbleSite | public domain |",
    "| retina | Mikael Häggström, Wikimedia Commons | CC0 1.0 |",
    "| camera | photo by Lav Varshney | CC0 |",
    "| coins | Brooklyn Museum Collection | no known copyright restrictions |",
    "| grass | DeviantArt (linolafett), cropped and greyscaled by scikit-image | CC0 |",
    "| gravel | CC0Textures (Gravel04), rescaled and greyscaled by scikit-image | CC0 |",
    "| brick | CC0Textures (Bricks25), transformed by scikit-image | CC0 |",
    "| clock | photo by Stefan van der Walt | public domain |",
])


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train-scenes", type=int, default=25000)
    parser.add_argument("--test-scenes", type=int, default=2000)
    add_arguments(parser, steps=3000, lr=1e-2, log_every=250, out=DEFAULT_OUT, min_accuracy=0.90,
                  what="test accuracy")
    args = parser.parse_args(argv)
    command = "python -m benchmarks.datasets.fashion.train" + (" " + " ".join(argv if argv is not None else sys.argv[1:])).rstrip()

    model, test_set, result = train(args)
    if result["test_acc"] < args.min_accuracy:
        raise SystemExit(f"test accuracy {result['test_acc']:.4f} < {args.min_accuracy}; model not exported")
    if args.no_export:
        return
    diff = export(model, args.out, test_set.images[:64])
    print(f"wrote {args.out} ({os.path.getsize(args.out):,} bytes); "
          f"ONNX Runtime vs JAX max abs diff on 64 test scenes: {diff:.3g}")
    card = card_path(args, DEFAULT_OUT)
    write_card(card, args.out, result, args, diff, command)
    print(f"wrote {card}")


if __name__ == "__main__":
    main()
