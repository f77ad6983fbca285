"""Why DAX failed on real models: how well its student fits, and what its mask does in training.

    python -m benchmarks.probes.dax_diagnose              # 8 composites + 8 restricted views, N = 1000
    python -m benchmarks.probes.dax_diagnose --cases 4 --no-write

On the first cases of the real-model benchmark (EfficientNet-Lite0, seed 0), the default before
issue 18 (a CNN student on the masked pixels fitting probabilities, a soft mask) and today's
default train on the same queries (answers shared). Reported:
  - the scale of what is fitted: the target's probability on the image and on the perturbations;
  - the student's held-out fit (1 - pi-weighted squared error / pi-weighted variance on the 10 %
    of perturbations it never trains on) against a linear surrogate's (LIME's ridge regression on
    the same keep-vectors and targets, same split);
  - the held-out fit and the mask's area (mean of the mask over the image) along training: at the
    end of the student's warm-up (mask frozen) and then every 5 % of the steps.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from benchmarks.quality.dax_variants import BEFORE
from benchmarks.quality.photos import AnswerCache
from benchmarks.datasets.realmodels import models as model_zoo
from benchmarks.datasets.realmodels.cases import make_cases
from benchmarks.results import write_section

SECTION = "## Why DAX failed on real models: the student's fit and the mask in training (issue 18)"


class Recorder:
    """A black box that remembers the target's probability of every answer it gives."""

    def __init__(self, bb, target: int):
        self.bb, self.target, self.answers = bb, target, []
        self.num_classes = getattr(bb, "num_classes", None)

    def __call__(self, x):
        probs = np.asarray(self.bb(x))
        self.answers.append(probs[:, self.target])
        return probs


def train_traced(bb, image: np.ndarray, target: int, config) -> tuple[dict, list]:
    """DAX on one image with a trace of its training: (diagnostics, trace)."""
    from blackbox_adapters import as_blackbox
    from daxjax.device.querying import device_blackbox
    from daxjax.inputs import image_digest
    from daxjax.methods.dax import engine as dax

    device_bb = device_blackbox(bb, as_blackbox(bb), 1000)
    digest = np.array([image_digest(image, target)], np.uint32)
    trace: list = []
    result = dax.explain_images(device_bb, image[None], np.array([target], np.int32), digest, config, 0, [0],
                                trace=trace)
    return result.diagnostics, trace


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", type=int, default=8, help="composites and restricted views each (default 8)")
    parser.add_argument("--budget", type=int, default=1000)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)

    import daxjax
    from benchmarks.throughput.common import machine

    model = model_zoo.load("lite0")
    cases = make_cases(model, 224, args.cases, args.cases, seed=0)
    configs = {"before (image student, probabilities, soft mask)": daxjax.DAXConfig(num_samples=args.budget, **BEFORE),
               "today's default": daxjax.DAXConfig(num_samples=args.budget)}
    command = "python -m benchmarks.probes.dax_diagnose " + " ".join(argv if argv is not None else sys.argv[1:])
    lines = [SECTION, "", f"Command: `{command.strip()}` — {machine()}, {time.strftime('%Y-%m-%d')}.",
             "What is measured: see the docstring of `benchmarks/probes/dax_diagnose.py`.", ""]

    def say(line=""):
        print(line, flush=True)
        lines.append(line)

    results = {name: [] for name in configs}
    scales = []
    for i in range(len(cases)):
        recorder = Recorder(AnswerCache(cases.black_box(model, i)), int(cases.targets[i]))
        for name, config in configs.items():
            results[name].append(train_traced(recorder, cases.images[i], int(cases.targets[i]), config))
        answers = np.concatenate(recorder.answers)
        scales.append((cases.scores[i], np.median(answers), np.mean(answers < 0.01)))
        print(f"case {i} ({cases.names[i]}) done", file=sys.stderr, flush=True)
    scales = np.array(scales)
    say(f"{len(cases)} cases ({args.cases} composites, {args.cases} restricted views), N = {args.budget}. "
        f"The target's probability on the image: median {np.median(scales[:, 0]):.2f} "
        f"({scales[:, 0].min():.2f} to {scales[:, 0].max():.2f}); on the perturbations: median over cases of "
        f"the per-case median {np.median(scales[:, 1]):.3f}, and {100 * np.mean(scales[:, 2]):.0f} % of "
        "the answers below 0.01 (the probability scale the student must fit).")
    say()
    say("| default | student's held-out fit | linear surrogate's | mask area | untrusted maps |")
    say("|---|---|---|---|---|")
    for name, runs in results.items():
        fit = np.array([float(d["heldout_fit"][0]) for d, _ in runs])
        surrogate = np.array([float(d["surrogate_fit"][0]) for d, _ in runs])
        area = np.array([float(d["mask_area"][0]) for d, _ in runs])
        untrusted = int(sum(not bool(d["trusted"][0]) for d, _ in runs))
        say(f"| {name} | {fit.mean():.3f} (median {np.median(fit):.3f}) | {surrogate.mean():.3f} | "
            f"{area.mean():.3f} | {untrusted} of {len(runs)} |")
    say()
    say("Along training (mean over cases; the first point is the end of the student's warm-up, the mask "
        "still at its initial 0.5):")
    say()
    for name, runs in results.items():
        steps = [point["step"] for point in runs[0][1]]
        fits = np.mean([[float(point["heldout_fit"][0]) for point in trace] for _, trace in runs], axis=0)
        areas = np.mean([[float(point["mask_area"][0]) for point in trace] for _, trace in runs], axis=0)
        say(f"- {name}: step " + ", ".join(f"{s}: fit {f:.2f} / area {a:.2f}" for s, f, a in
                                              zip(steps, fits, areas) if s in _shown(steps)))
    say()
    if not args.no_write:
        write_section(SECTION, "\n".join(lines) + "\n")


def _shown(steps: list) -> set:
    """About six of the trace's steps: its first, every fourth, its last."""
    return set(steps[:1]) | set(steps[::4]) | set(steps[-1:])


if __name__ == "__main__":
    main()
