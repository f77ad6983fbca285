"""Train and export the MorphoSynth classifiers GLANCE-lite is tested on (run by hand, from the
repository root; needs jax2onnx and onnx, which are not project dependencies).

    python -m tools.train_glance_classifiers             # regenerates daxjax/glance/models/*.onnx + MODEL_CARD.md
    python -m tools.train_glance_classifiers --steps 200 --out /tmp/m   # a quick try elsewhere

The tasks, the network and the training loop are `daxjax.glance.classifier` (see there); this
script trains every task, refuses a model below --min-accuracy on held-out images, exports each to
ONNX (checked against the JAX logits) and writes MODEL_CARD.md with the measured numbers.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import time
from pathlib import Path

import numpy as np

from daxjax.glance import morphosynth as ms
from daxjax.glance.classifier import (CAUSES, MODELS_DIR, STRIDES, TASKS, TEST_SEED, TRAIN_SEED, WIDTHS,
                                      TrainConfig, predict_logits, train)


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
    command = "python -m tools.train_glance_classifiers" + (" " + " ".join(argv if argv is not None else sys.argv[1:])).rstrip()
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
