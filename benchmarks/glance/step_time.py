"""Milliseconds per surrogate training step of GLANCE-lite, through the public `train_surrogate`.

    python -m benchmarks.glance.step_time [--steps 200]

Fits the default surrogate (control classifier, reconstruction queries on) for `--steps` steps
on 1000 MorphoSynth images, after a short fit that compiles the programs, and prints ms per
step, the student's pre-training seconds and the final losses (equal losses across two checkouts
mean the same training). It uses only what every version of `daxjax.glance.surrogate` has, so the
same file times an older checkout side by side, in alternation:

    git worktree add /tmp/old <commit>
    for i in 1 2; do python -m benchmarks.glance.step_time; \\
                     PYTHONPATH=/tmp/old python -m benchmarks.glance.step_time; done
"""

from __future__ import annotations

import argparse

import numpy as np

from daxjax.glance import classifier as cl
from daxjax.glance import evaluation as ev
from daxjax.glance import morphosynth as ms
from daxjax.glance import surrogate as su
from daxjax.glance.api import _log_odds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=200)
    args = parser.parse_args()
    su.keep_large_buffers_in_the_heap()  # the allocator setting the package leaves to its caller
    train = ms.sample(1000, 2001)
    context = ev.context_features(train.images)
    bb = cl.classifier_blackbox("intensity_slant")
    images = train.images.astype(np.float32)
    logits = _log_odds(bb, images, 1, 512).astype(np.float32)
    concepts = ((context - context.mean(0)) / context.std(0)).astype(np.float32)

    def query(x):
        return _log_odds(bb, x, 1, 512)

    config = su.SurrogateConfig(steps=args.steps, student_steps=50, log_every=0)
    su.train_surrogate(images[:100], concepts[:100], logits[:100], config, query=query)  # compiles
    fit = su.train_surrogate(images, concepts, logits, config, query=query)
    print(f"{su.__file__}: {fit.seconds['surrogate'] / args.steps * 1000:.1f} ms per step, student "
          f"{fit.seconds['student']:.2f} s; last-20 mean recon {np.mean(fit.history['recon'][-20:]):.6f}, "
          f"student {np.mean(fit.history['student'][-20:]):.6f}")


if __name__ == "__main__":
    main()
