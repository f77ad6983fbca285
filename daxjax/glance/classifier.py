"""The classifiers GLANCE-lite is tested on: small CNNs over MorphoSynth digits, exported to ONNX.

Two binary tasks with known mechanisms (`morphosynth.label_*`):

- ``thickness_slant`` (the classifier f to explain): label 1 where t + s > 0, so thickness and
  slant are its only causes; intensity and width are merely correlated with them in the data;
- ``intensity_slant`` (the control): label 1 where i + s > 0, so intensity replaces thickness.

Both are trained on an *interventional* sample in which intensity and width are drawn independently
of thickness and slant (`decorrelate=("intensity", "width")`): a network trained on observational
data could use a correlate as a shortcut, and then the planted ground truth would not describe it.
Accuracy is reported on held-out *observational* images (the distribution the explainer sees).

    python -m daxjax.glance.classifier             # regenerates daxjax/glance/models/*.onnx + MODEL_CARD.md
    python -m daxjax.glance.classifier --steps 200 --out /tmp/m   # a quick try elsewhere

The ONNX models take NHWC float32 [B, 32, 32, 1] in [0, 1] and return logits [B, 2]:
``classifier_blackbox("thickness_slant")`` wraps one in an ``OnnxBlackBox``.
Deterministic: images are functions of their seeds, initialisation and batch order of the seed.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import sys
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


def export(model, path: Path, check_images: np.ndarray) -> float:
    """Writes `model` to ONNX (symbolic batch); returns max |ONNX Runtime - JAX| logit on check_images."""
    import onnx
    import onnxruntime as ort
    from jax2onnx import to_onnx

    onnx_model = to_onnx(model, [("B", 32, 32, 1)])
    onnx.checker.check_model(onnx_model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save_model(onnx_model, str(path))
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    got = session.run(None, {session.get_inputs()[0].name: check_images.astype(np.float32)})[0]
    return float(np.max(np.abs(got - predict_logits(model, check_images))))


def _card(reports: list[dict], config: TrainConfig, out: Path, command: str) -> str:
    rows = []
    for r in reports:
        blob = (out / f"{r['task']}.onnx").read_bytes()
        rows.append(f"| `{r['task']}.onnx` | {' + '.join(CAUSES[r['task']])} | {100 * r['test_accuracy']:.2f} % | "
                    f"{100 * r['train_accuracy']:.2f} % | {r['train_seconds']:.0f} s | {r['onnx_diff']:.1g} | "
                    f"{len(blob):,} | `{hashlib.sha256(blob).hexdigest()[:16]}` |")
    return f"""# MorphoSynth classifiers (GLANCE-lite test subjects)

Written by `{command}`; every number below was measured by that run (2-core shared CPU).

- Input NHWC float32 `[B, 32, 32, 1]` in [0, 1]; output logits `[B, 2]` (class 1: the label below
  is 1). Load with `daxjax.glance.classifier.classifier_blackbox(task)`.
- Architecture: 3x3 convolutions with channels {WIDTHS}, strides {STRIDES}, ReLU, mean over
  space, dense 64 + ReLU, dense 2. AdamW (weight decay 1e-4), peak lr {config.lr:g}, warm-up then
  cosine decay, {config.steps} steps of {config.batch}, seed {config.seed}.
- Training images: {config.train_images:,} MorphoSynth digits (seed {TRAIN_SEED}) with intensity and
  width drawn independently of thickness and slant, so that neither correlate is a usable shortcut.
- Soft targets: P(label 1) = sigmoid({config.label_sharpness:g} x margin), margin = the sum of the two
  standardised causes (a logistic label model), so the log-odds follow the margin over its whole
  range instead of saturating; accuracy below is against the hard label (margin > 0).
- Test accuracy: {config.test_images:,} held-out *observational* MorphoSynth digits (seed {TEST_SEED}).

| model | label caused by | test accuracy | train accuracy (2,000) | training | max ORT-JAX logit diff | bytes | sha256 (16) |
|---|---|---|---|---|---|---|---|
{chr(10).join(rows)}
"""


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=TrainConfig.steps)
    parser.add_argument("--train-images", type=int, default=TrainConfig.train_images)
    parser.add_argument("--out", type=Path, default=MODELS_DIR)
    parser.add_argument("--min-accuracy", type=float, default=0.95,
                        help="refuse to export a model below this held-out accuracy")
    args = parser.parse_args(argv)
    command = "python -m daxjax.glance.classifier" + (" " + " ".join(argv if argv is not None else sys.argv[1:])).rstrip()
    config = TrainConfig(steps=args.steps, train_images=args.train_images)
    t0 = time.perf_counter()
    train_set = ms.sample(config.train_images, TRAIN_SEED, decorrelate=("intensity", "width"))
    test_set = ms.sample(config.test_images, TEST_SEED)
    print(f"rendered {len(train_set)} + {len(test_set)} images in {time.perf_counter() - t0:.1f} s", flush=True)
    reports = []
    for task in TASKS:
        model, report = train(task, config, train_set, test_set)
        print(f"[{task}] test accuracy {report['test_accuracy']:.4f}, train {report['train_accuracy']:.4f}, "
              f"{report['train_seconds']:.0f} s", flush=True)
        if report["test_accuracy"] < args.min_accuracy:
            raise SystemExit(f"{task}: test accuracy {report['test_accuracy']:.4f} < {args.min_accuracy}; not exported")
        report["onnx_diff"] = export(model, args.out / f"{task}.onnx", test_set.images[:64])
        reports.append(report)
    (args.out / "MODEL_CARD.md").write_text(_card(reports, config, args.out, command))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
