"""GLANCE-lite: local effects from the code alone against averaged over codes around it.

    python -m benchmarks.glance.smoothing                  # the committed control explainer
    python -m benchmarks.glance.smoothing --task thickness_slant
    python -m benchmarks.glance.smoothing --fit            # a fresh fit, default config (~10 min)

Scores the first 200 images of two held-out seeds (the tests' 4242 and the benchmark's 2002) for
`GlanceConfig.smoothing_pairs` 0 (E(x) alone), 4 and 8 at `smoothing_sd` 0.5 (and 4 at 0.35):
pooled Spearman of total effects with the re-rendered ground truth (causes outrank correlates on
direct / total effects in brackets).
"""

from __future__ import annotations

import argparse
import dataclasses

import numpy as np

from daxjax import glance
from daxjax.glance import classifier as cl
from daxjax.glance import evaluation as ev
from daxjax.glance import morphosynth as ms

SETTINGS = ((0, 0.5), (4, 0.5), (4, 0.35), (8, 0.5))


def main(argv=None) -> None:
    from benchmarks.glance.acceptance import TRAIN_SEED, saved_model_path

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", default="intensity_slant", choices=sorted(cl.TASKS))
    parser.add_argument("--fit", action="store_true", help="fit from scratch (default config) instead of loading")
    args = parser.parse_args(argv)
    bb = cl.classifier_blackbox(args.task)
    if args.fit:
        from daxjax.glance.surrogate import keep_large_buffers_in_the_heap

        keep_large_buffers_in_the_heap()
        train = ms.sample(4000, TRAIN_SEED)
        model = glance.fit(bb, train.images, ev.context_features(train.images),
                           glance.GlanceConfig(surrogate=glance.SurrogateConfig(log_every=0)))
    else:
        model = glance.load(saved_model_path(args.task), bb)
    causes = [ms.CONCEPTS.index(c) for c in cl.CAUSES[args.task]]
    correlates = [j for j in range(len(ms.CONCEPTS)) if j not in causes]
    for seed in (4242, 2002):
        sample = ms.sample(200, seed)
        truth = ev.true_effects(sample, model.log_odds, model.config.shift, "total")
        row = []
        for pairs, sd in SETTINGS:
            model.config = dataclasses.replace(model.config, smoothing_pairs=pairs, smoothing_sd=sd)
            e = model.explain(sample.images)
            row.append(f"pairs {pairs} sd {sd}: {ev.pooled_spearman(e.total_effects, truth):.3f} "
                       f"({ev.outrank_rate(np.abs(e.direct_effects), causes, correlates):.3f} / "
                       f"{ev.outrank_rate(e.importances, causes, correlates):.3f})")
        print(args.task, "seed", seed, " | ".join(row), flush=True)


if __name__ == "__main__":
    main()
