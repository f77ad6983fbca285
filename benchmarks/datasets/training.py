"""What the benchmarks' own black boxes share in training (`fashion/train.py`, `audio/train.py`).

A small Flax NNX CNN (3x3 convolutions with BatchNorm and ReLU, a mean over the two spatial axes,
a dense layer, softmax), its BatchNorm folded into the convolutions for export (plain ONNX ops),
the AdamW loop on softmax cross-entropy, batched prediction, and the command line and small
facts every model card states. Deterministic given the seed: the initialisation, the batch order
and the augmentation all come from it.
"""

from __future__ import annotations

import argparse
import functools
import time
from pathlib import Path
from typing import Callable

import numpy as np


def build_cnn(in_channels: int, widths: tuple[int, ...], strides: tuple[int, ...], num_classes: int, seed: int,
              batch_norm: bool = True, name: str = "CNN"):
    """[B, H, W, in_channels] -> len(widths) x (3x3 conv [+ BatchNorm] + ReLU) -> mean over H, W ->
    dense -> softmax. `logits` stops before the softmax; with batch_norm=False the convolutions
    carry biases instead (the exported form, `fold_batch_norm`)."""
    import jax.numpy as jnp
    from flax import nnx

    class CNN(nnx.Module):
        def __init__(self, rngs: nnx.Rngs):
            self.architecture = (in_channels, tuple(widths), tuple(strides))
            chans = (in_channels,) + tuple(widths)
            self.convs = nnx.List([
                nnx.Conv(chans[i], chans[i + 1], kernel_size=(3, 3), strides=(s, s), padding="SAME",
                         use_bias=not batch_norm, rngs=rngs)
                for i, s in enumerate(strides)
            ])
            self.norms = nnx.List([nnx.BatchNorm(w, momentum=0.9, rngs=rngs) for w in widths]) if batch_norm else None
            self.head = nnx.Linear(widths[-1], num_classes, rngs=rngs)

        def logits(self, x):
            for i, conv in enumerate(self.convs):
                x = conv(x)
                if self.norms is not None:
                    x = self.norms[i](x)
                x = nnx.relu(x)
            return self.head(jnp.mean(x, axis=(1, 2)))

        def __call__(self, x):
            return nnx.softmax(self.logits(x), axis=-1)

    CNN.__name__ = CNN.__qualname__ = name
    return CNN(nnx.Rngs(seed))


def fold_batch_norm(model):
    """The trained CNN with each BatchNorm's running statistics folded into its convolution: the
    same function as the model in eval mode, as conv, relu, mean, dense, softmax only."""
    import jax.numpy as jnp

    in_channels, widths, strides = model.architecture
    folded = build_cnn(in_channels, widths, strides, model.head.out_features, 0, batch_norm=False,
                       name=type(model).__name__)
    for conv, norm, target in zip(model.convs, model.norms, folded.convs):
        gain = norm.scale[...] / jnp.sqrt(norm.var[...] + norm.epsilon)
        target.kernel[...] = conv.kernel[...] * gain
        target.bias[...] = norm.bias[...] - norm.mean[...] * gain
    folded.head.kernel[...] = model.head.kernel[...]
    folded.head.bias[...] = model.head.bias[...]
    return folded


def fit(model, images: np.ndarray, labels: np.ndarray, augment: Callable[[np.ndarray, np.random.Generator], np.ndarray],
        *, steps: int, batch: int, lr: float, seed: int, log_every: int) -> float:
    """Trains `model` in place on softmax cross-entropy of `model.logits`; returns the seconds.

    AdamW (weight decay 1e-4), learning rate warmed up over min(100, steps // 10) steps then cosine
    decay to 0; batches of `batch` rows in the order of a permutation from
    `numpy.random.default_rng(seed)` (a new one when the rest cannot fill a batch), each passed
    through augment(rows, rng) with that generator. Leaves the model in eval mode.
    """
    import jax.numpy as jnp
    import optax
    from flax import nnx

    schedule = optax.warmup_cosine_decay_schedule(0.0, lr, min(100, steps // 10), steps)
    optimizer = nnx.Optimizer(model, optax.adamw(schedule, weight_decay=1e-4), wrt=nnx.Param)

    @nnx.jit
    def step(model, optimizer, x, y):
        def loss_fn(model):
            return optax.softmax_cross_entropy_with_integer_labels(model.logits(x), y).mean()

        loss, grads = nnx.value_and_grad(loss_fn)(model)
        optimizer.update(model, grads)
        return loss

    rng = np.random.default_rng(seed)
    n = len(images)
    order, cursor, running = rng.permutation(n), 0, []
    t0 = time.perf_counter()
    for i in range(steps):
        if cursor + batch > n:
            order, cursor = rng.permutation(n), 0
        idx = order[cursor:cursor + batch]
        cursor += batch
        x = jnp.asarray(augment(images[idx], rng))
        running.append(float(step(model, optimizer, x, jnp.asarray(labels[idx]))))
        if (i + 1) % log_every == 0 or i + 1 == steps:
            print(f"step {i + 1}/{steps}  loss {np.mean(running):.4f}  {time.perf_counter() - t0:.0f} s", flush=True)
            running = []
    model.eval()
    return time.perf_counter() - t0


def probabilities(model, images: np.ndarray, batch: int) -> np.ndarray:
    """The model's probabilities [n, K] for images [n, ...], `batch` at a time."""
    predict = _predict()
    return np.concatenate([np.asarray(predict(model, images[i:i + batch])) for i in range(0, len(images), batch)])


@functools.cache
def _predict():
    from flax import nnx

    return nnx.jit(lambda model, x: model(x))


def confusion_matrix(labels: np.ndarray, predicted: np.ndarray, k: int) -> np.ndarray:
    """[k, k] counts: rows the true class, columns the predicted one."""
    confusion = np.zeros((k, k), np.int64)
    np.add.at(confusion, (labels, predicted), 1)
    return confusion


def param_count(model) -> int:
    """Trainable parameters of an NNX model."""
    import jax
    from flax import nnx

    return sum(int(np.prod(p.shape)) for p in jax.tree.leaves(nnx.state(model, nnx.Param)))


def add_arguments(parser: argparse.ArgumentParser, *, steps: int, lr: float, log_every: int, out: Path,
                  min_accuracy: float, what: str) -> None:
    """The options every training script has (its data-size options come before them)."""
    parser.add_argument("--steps", type=int, default=steps)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--lr", type=float, default=lr)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--log-every", type=int, default=log_every)
    parser.add_argument("--out", type=Path, default=out)
    parser.add_argument("--card", type=Path, default=None,
                        help="model card to write (default: MODEL_CARD.md next to the default model, else <out>.md)")
    parser.add_argument("--no-export", action="store_true")
    parser.add_argument("--min-accuracy", type=float, default=min_accuracy,
                        help=f"exit with an error (and write no model) below this {what}")


def card_path(args, default_out: Path) -> Path:
    """--card, else MODEL_CARD.md beside the default model, else <out>.md."""
    return args.card or (default_out.with_name("MODEL_CARD.md") if args.out.resolve() == default_out
                         else args.out.with_suffix(".md"))


def versions(names: tuple[str, ...]) -> str:
    """'name version, ...' of the installed distributions among `names`."""
    from importlib.metadata import PackageNotFoundError, version

    parts = []
    for name in names:
        try:
            parts.append(f"{name} {version(name)}")
        except PackageNotFoundError:
            pass
    return ", ".join(parts)


def opset(onnx_path: Path) -> str:
    """The ONNX file's default-domain opset version(s)."""
    import onnx

    model = onnx.load(str(onnx_path))
    return ", ".join(str(o.version) for o in model.opset_import if o.domain in ("", "ai.onnx"))
