"""The classifiers GLANCE-lite is tested on: small CNNs over MorphoSynth digits, exported to ONNX.

Two binary tasks with known mechanisms (`morphosynth.label_*`):

- ``thickness_slant`` (the classifier f to explain): label 1 where t + s > 0, so thickness and
  slant are its only causes; intensity and width are merely correlated with them in the data;
- ``intensity_slant`` (the control): label 1 where i + s > 0, so intensity replaces thickness.

Both are trained on an *interventional* sample in which intensity and width are drawn independently
of thickness and slant (`decorrelate=("intensity", "width")`): a network trained on observational
data could use a correlate as a shortcut, and then the planted ground truth would not describe it.
Accuracy is reported on held-out *observational* images (the distribution the explainer sees).

The committed models were trained by `train` and exported by `tools/train_glance_classifiers.py`
(from a repository checkout; not part of the installed package):

    python -m tools.train_glance_classifiers             # regenerates daxjax/glance/models/*.onnx + MODEL_CARD.md
    python -m tools.train_glance_classifiers --steps 200 --out /tmp/m   # a quick try elsewhere

The ONNX models take NHWC float32 [B, 32, 32, 1] in [0, 1] and return logits [B, 2]:
``classifier_blackbox("thickness_slant")`` wraps one in an ``OnnxBlackBox``.
Deterministic: images are functions of their seeds, initialisation and batch order of the seed.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from daxjax.glance import morphosynth as ms

MODELS_DIR = Path(__file__).resolve().parent / "models"
TASKS = {"thickness_slant": ms.label_thickness_slant, "intensity_slant": ms.label_intensity_slant}
"""Task name -> label function of the standardised planted concepts [n, 4]."""
CAUSES = {"thickness_slant": ("thickness", "slant"), "intensity_slant": ("intensity", "slant")}
"""Task name -> the concepts that cause its label (the planted ground truth of an explanation)."""
TRAIN_SEED, TEST_SEED = 101, 102
MARGINS = {"thickness_slant": (0, 2), "intensity_slant": (1, 2)}
"""Task name -> the CONCEPTS columns whose sum is the label's margin (label 1 where it is > 0)."""
WIDTHS = (16, 32, 32, 64)
STRIDES = (1, 2, 2, 2)


def model_path(task: str) -> Path:
    """The committed ONNX file of `task`."""
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; tasks are {sorted(TASKS)}")
    return MODELS_DIR / f"{task}.onnx"


def classifier_blackbox(task: str = "thickness_slant", threads: int = 1):
    """The committed classifier of `task` as an ``OnnxBlackBox`` (probabilities [n, 2])."""
    from blackbox_adapters import OnnxBlackBox

    return OnnxBlackBox(model_path(task), layout="NHWC", output="logits", intra_op_threads=threads,
                        inter_op_threads=1, providers=["CPUExecutionProvider"])


def build_model(seed: int):
    """The CNN: 32x32x1 -> 3x3 convolutions (channels WIDTHS, strides STRIDES, ReLU) -> mean over
    space -> dense 64 + ReLU (the penultimate features) -> dense 2 (logits)."""
    class DigitCNN(nnx.Module):
        def __init__(self, rngs: nnx.Rngs):
            chans = (1,) + WIDTHS
            self.convs = nnx.List([
                nnx.Conv(chans[i], chans[i + 1], kernel_size=(3, 3), strides=(s, s), padding="SAME", rngs=rngs)
                for i, s in enumerate(STRIDES)])
            self.hidden = nnx.Linear(WIDTHS[-1], 64, rngs=rngs)
            self.head = nnx.Linear(64, 2, rngs=rngs)

        def features(self, x):
            """x [B, 32, 32, 1] -> penultimate features [B, 64]."""
            for conv in self.convs:
                x = nnx.relu(conv(x))
            return nnx.relu(self.hidden(jnp.mean(x, axis=(1, 2))))

        def __call__(self, x):
            """x [B, 32, 32, 1] -> logits [B, 2]."""
            return self.head(self.features(x))

    return DigitCNN(nnx.Rngs(seed))


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Training of one classifier (defaults reproduce the committed models).

    label_sharpness: k of the soft targets P(label 1) = sigmoid(k x margin). With hard labels the
    trained log-odds saturated away from the boundary: there a 1 sd change of a cause moved them
    less than a change of a correlate on 15 % of the images, so "causes matter more" was not true
    of the classifier itself.
    """

    train_images: int = 12000
    test_images: int = 2000
    steps: int = 2500
    batch: int = 64
    lr: float = 3e-3
    label_sharpness: float = 3.0
    seed: int = 0


def train(task: str, config: TrainConfig, train_set: ms.Sample | None = None, test_set: ms.Sample | None = None):
    """Trains the classifier of `task`; returns (model, report dict). Samples are rendered if not given."""
    label = TASKS[task]
    if train_set is None:
        train_set = ms.sample(config.train_images, TRAIN_SEED, decorrelate=("intensity", "width"))
    if test_set is None:
        test_set = ms.sample(config.test_images, TEST_SEED)
    y_train = label(train_set.concepts)
    margin = train_set.concepts[:, list(MARGINS[task])].sum(axis=1)
    p_one = 1.0 / (1.0 + np.exp(-config.label_sharpness * margin))
    targets = np.stack([1.0 - p_one, p_one], axis=1).astype(np.float32)
    model = build_model(config.seed)
    schedule = optax.warmup_cosine_decay_schedule(0.0, config.lr, config.steps // 20, config.steps)
    optimizer = nnx.Optimizer(model, optax.adamw(schedule, weight_decay=1e-4), wrt=nnx.Param)

    rng = np.random.default_rng(config.seed)
    n = len(train_set)
    t0 = time.perf_counter()
    order, cursor = rng.permutation(n), 0
    for i in range(config.steps):
        if cursor + config.batch > n:
            order, cursor = rng.permutation(n), 0
        idx = order[cursor:cursor + config.batch]
        cursor += config.batch
        loss = _train_step(model, optimizer, jnp.asarray(train_set.images[idx]), jnp.asarray(targets[idx]))
        if (i + 1) % 500 == 0:
            print(f"[{task}] step {i + 1}/{config.steps} loss {float(loss):.4f} {time.perf_counter() - t0:.0f} s",
                  flush=True)
    t_train = time.perf_counter() - t0
    logits = predict_logits(model, test_set.images)
    report = {
        "task": task,
        "test_accuracy": float(np.mean(logits.argmax(1) == label(test_set.concepts))),
        "train_accuracy": float(np.mean(predict_logits(model, train_set.images[:2000]).argmax(1) == y_train[:2000])),
        "train_seconds": t_train,
    }
    return model, report


@nnx.jit
def _train_step(model, optimizer, x, y):
    """One AdamW step on the soft-target cross-entropy."""
    def loss_fn(model):
        return optax.softmax_cross_entropy(model(x), y).mean()

    loss, grads = nnx.value_and_grad(loss_fn)(model)
    optimizer.update(model, grads)
    return loss


def predict_logits(model, images: np.ndarray, batch: int = 500) -> np.ndarray:
    """The JAX model's logits [n, 2] (float32), in batches."""
    return np.concatenate([np.asarray(_forward(model, images[i:i + batch])) for i in range(0, len(images), batch)])


_forward = nnx.jit(lambda model, x: model(x))
