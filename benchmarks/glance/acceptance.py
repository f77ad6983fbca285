"""GLANCE-lite on MorphoSynth: fit the explainer to both committed classifiers and score it
against the planted ground truth (issue 7's acceptance figures).

    python -m benchmarks.glance.acceptance                   # both classifiers; RESULTS.md section, figures in out/glance
    python -m benchmarks.glance.acceptance --save-models     # also rewrites daxjax/glance/models/glance_<task>.npz
    python -m benchmarks.glance.acceptance --train 1000 --steps 200 --no-results   # a quick try
    python -m benchmarks.glance.acceptance --adversarial --tasks intensity_slant --figures ''   # the GPU mode

The CPU run in AE mode owns the section "GLANCE-lite on MorphoSynth (issue 7)"; a run on another
JAX backend or in adversarial mode writes a section of its own, named after both, so the CPU
table is never replaced by figures from another machine or mode. `--results FILE` writes the
section to FILE instead of RESULTS.md (for runs on a machine whose files come back separately).

For each classifier (`thickness_slant`: label caused by T and S; control `intensity_slant`: by I
and S): render `--train` images (seed 2001) and measure their context features, fit
`daxjax.glance.fit`, then score on `--test` held-out images (seed 2002) with
`daxjax.glance.evaluation.score` (local scores on the first `--local` of them).
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

import numpy as np

from daxjax import glance
from daxjax.glance import classifier as cl
from daxjax.glance import discovery as dc
from daxjax.glance import evaluation as ev
from daxjax.glance import morphosynth as ms
from daxjax.glance import plots

from benchmarks.throughput.common import machine

TRAIN_SEED, TEST_SEED = 2001, 2002
MODELS = Path(cl.__file__).resolve().parent / "models"
SECTION = "## GLANCE-lite on MorphoSynth (issue 7)"


def saved_model_path(task: str) -> Path:
    """Where `--save-models` writes the fitted explainer of `task`."""
    return MODELS / f"glance_{task}.npz"


def run(args) -> dict:
    t0 = time.perf_counter()
    train = ms.sample(args.train, TRAIN_SEED)
    context = ev.context_features(train.images)
    test = ms.sample(args.test, TEST_SEED)
    t_data = time.perf_counter() - t0
    print(f"data: {args.train} + {args.test} images, context measured, {t_data:.0f} s", flush=True)
    config = glance.GlanceConfig(surrogate=glance.SurrogateConfig(
        steps=args.steps, log_every=args.log_every, adversarial=args.adversarial))
    results = {"t_data": t_data, "config": config}
    for task in args.tasks:
        bb = cl.classifier_blackbox(task)
        t0 = time.perf_counter()
        model = glance.fit(bb, train.images, context, config)
        t_fit = time.perf_counter() - t0
        t0 = time.perf_counter()
        scores = ev.score(model, task, test, n_local=args.local)
        scores["t_fit"], scores["t_score"], scores["seconds"] = t_fit, time.perf_counter() - t0, model.seconds
        # Discovery on the *true* concepts with f's log-odds (the sanity check of the method).
        data = np.c_[test.concepts, model.log_odds(test.images)]
        nodes, truth = ev.planted_adjacency(task)
        scores["true_concept_shd"] = dc.structural_hamming_distance(
            dc.notears(data, nodes, sinks=("logit",)).adjacency, truth)
        try:  # independent cross-check on the encoded codes, when causal-learn is installed
            codes = np.c_[model.encode(train.images)[:, :4], model.log_odds(train.images)]
            pc = dc.causal_learn_graph(codes, nodes, method="pc", sinks=("logit",))
            cpdag = truth.copy()
            cpdag[1, 0] = cpdag[3, 2] = True
            scores["pc_shd"] = dc.structural_hamming_distance(pc.adjacency, cpdag)
        except ImportError:
            scores["pc_shd"] = None
        print(f"[{task}] fit {t_fit:.0f} s, scored in {scores['t_score']:.0f} s: " + _summary(scores), flush=True)
        if args.save_models:
            model.save(saved_model_path(task))
            print(f"wrote {saved_model_path(task)}")
        if args.figures:
            _, planted = ev.planted_adjacency(task)
            plots.write_glance_report(Path(args.figures) / task, model, scores["explanation"],
                                             test.images[:args.local], indices=(0, 1, 2), truth=planted,
                                             true_effects=scores["truth_total"],
                                             title=f"GLANCE-lite: classifier {task}")
        results[task] = scores
    return results


def section_title(args) -> str:
    """The RESULTS.md heading of this run: the CPU AE-mode run owns SECTION."""
    import jax

    backend = jax.default_backend()
    if backend == "cpu" and not args.adversarial:
        return SECTION
    mode = "adversarial mode" if args.adversarial else "AE mode"
    return f"## GLANCE-lite on MorphoSynth: {mode} on {backend.upper()} (issue 7)"


def _summary(s: dict) -> str:
    r2 = ", ".join(f"{v:.3f}" for v in s["alignment_r2"])
    return (f"fidelity {s['fidelity']:.3f}; R2 {r2}; free |corr| {s['free_code_correlation']:.2f}; SHD {s['graph_shd']} "
            f"{s['concept_edges']}; outrank total {s['outrank_rate']:.3f} (truth {s['true_outrank_rate']:.3f}), direct "
            f"{s['outrank_direct']:.3f} (truth {s['true_outrank_direct']:.3f}); "
            f"spearman total {s['spearman_total']:.3f}, direct {s['spearman_direct']:.3f}, per image "
            f"{s['spearman_per_image']:.3f}; counterfactual direction {s['counterfactual_direction']:.3f}")


def _section(results: dict, args, command: str, title: str) -> str:
    names = ms.CONCEPTS
    tasks = [task for task in cl.TASKS if task in results]
    rows, imp_rows, off, edges, truth, per_image, phases = [], [], [], [], [], [], []
    for task in tasks:
        s = results[task]
        rows.append(
            f"| `{task}` ({' + '.join(cl.CAUSES[task])}) | {s['fidelity']:.3f} | "
            + " / ".join(f"{v:.2f}" for v in s["alignment_r2"])
            + f" | {s['free_code_correlation']:.2f} | {s['graph_shd']} | {s['true_concept_shd']} | "
            f"{'-' if s['pc_shd'] is None else s['pc_shd']} | {s['outrank_rate']:.3f} | {s['outrank_direct']:.3f} | "
            f"{s['spearman_total']:.3f} | "
            f"{s['spearman_direct']:.3f} | {s['counterfactual_direction']:.3f} | {s['t_fit']:.0f} s |")
        imp_rows.append(f"| `{task}` | " + " | ".join(
            f"{a:.2f} ({b:.2f})" for a, b in zip(s["mean_importance"], s["mean_true_importance"])) + " |")
        m = s["counterfactual_off_target"]
        off.append(f"| `{task}` | " + " | ".join(
            " / ".join(f"{m[c, j]:.2f}" for j in range(len(names))) for c in range(len(names))) + " |")
        edges.append(f"`{task}` {s['concept_edges']}")
        truth.append(f"`{task}` {s['true_outrank_rate']:.3f} / {s['true_outrank_direct']:.3f}")
        per_image.append(f"`{task}` {s['spearman_per_image']:.3f}")
        phases.append(f"`{task}` {_phases(s)}")
    sur = results["config"].surrogate
    mode = (f"adversarial mode (discriminator, lazy R1 every {sur.r1_every} steps)" if sur.adversarial
            else "AE mode")
    return f"""{title}

Command: `{command}` — {machine()}, ONNX Runtime 1 thread.
Training: {args.train} MorphoSynth images (seed {TRAIN_SEED}) with their measured context
(thickness, intensity, slant, inner width); scores on {args.test} held-out images (seed {TEST_SEED}),
local scores on the first {args.local}. Surrogate: {mode}, {sur.steps} steps of {sur.batch}, code size
{sur.latent_dim}, generator channels {sur.channels}; NOTEARS with the log-odds node as a sink; local
effects averaged over E(x) and {results["config"].smoothing_pairs} antithetic pairs of codes around it.
GLANCE-inspired re-implementation (the paper's code and full text were not available).

| classifier (planted causes) | fidelity | R² aligned code vs true T / I / S / W | max \\|corr\\| free code vs concepts | SHD learned graph | SHD NOTEARS on true concepts | SHD PC (causal-learn) on codes, vs CPDAG | causes outrank correlates (total) | (direct) | Spearman total effects | Spearman direct effects | counterfactual moves concept the intended way | fit time |
|---|---|---|---|---|---|---|---|---|---|---|---|---|
{chr(10).join(rows)}

Targets (issue 7): fidelity ≥ 0.90; R² ≥ 0.8 per concept; SHD ≤ 1 (0 on the true concepts);
causes outrank correlates ≥ 0.90 (control: on direct effects); Spearman ≥ 0.8; counterfactual direction ≥ 0.90; the control
flips the ranking. Learned concept edges: {"; ".join(edges)}.

- Definitions: fidelity = f's decision on G(E(x)) equals its decision on x. "Causes outrank
  correlates" = share of images where both planted causes have a larger |effect| than both
  correlates, on total and on direct effects. For the control the causes are I and S, so this *is*
  the flipped ranking; there thickness is a genuine indirect cause (T -> I -> label), so its total
  effect is not planted to be small and the flip is judged on direct effects. Ground truth from
  re-rendered counterfactuals, total / direct: {", ".join(truth)}. Spearman = rank correlation of explained and ground-truth
  effects (log-odds per sd, ±1 sd interventions re-rendered from the SCM and answered by f) over
  all image × concept pairs; per image (across the 4 concepts, mean): {", ".join(per_image)}.
  Counterfactual direction = the morphometric of G's +1 sd image exceeds that of its −1 sd image.

Mean importance per concept, explained (ground truth), log-odds per sd, T / I / S / W:

| classifier | thickness | intensity | slant | width |
|---|---|---|---|---|
{chr(10).join(imp_rows)}

Side effects of G's counterfactuals: median |change| of each measured concept (T / I / S / W,
in sd of the measure) under an intervention on the row's concept (columns: intervened T, I, S, W):

| classifier | do(T) | do(I) | do(S) | do(W) |
|---|---|---|---|---|
{chr(10).join(off)}

Times: data rendering and measurement {results['t_data']:.0f} s; fit phases (s) — {", ".join(phases)}.
{chr(10) + INVESTIGATION if title == SECTION else ""}"""


INVESTIGATION = """\
**Why the control missed two targets, and what each change measured** (the earlier run: 2000
surrogate steps, interventions centred on the image; it gave the control 0.875 on direct effects
and Spearman 0.744). Numbers are the control's "causes outrank correlates" on direct effects /
Spearman of total effects, on the same 200 local images of seed 2002, one fit each of
`daxjax.glance.fit` on the benchmark's training set with the change named (the code of the
changes not kept was removed). "The committed models" in this list are the explainers committed
before 2026-12-04, scored without the averaging over codes described further down.

- Diagnosis on the committed models: the generator cannot draw a concept beyond the training
  data. MorphoSynth's slant is uniform on ±1.73 sd, so a ±1 sd intervention on a digit already
  slanted asks G for codes it never saw; there its drawings stop following the concept. The
  explained direct slant effect was 45 % of the true one on the fifth of images with the most
  negative slant (1.13 against 2.49 log-odds per sd) and 76 % in the middle fifth (2.20 against
  2.88); on the thinnest fifth the direct thickness effect had the wrong sign (−0.73 against
  +0.49). Part of the side-effect table is no leak at all (a total do(T) must move I, do(S) must
  move W), and morphometrics of G's blurry images are biased (G's reconstructions measure +5.6 sd
  of inner width), so they are a poor judge of G.
- Interventions slid, whole, into the range of the training codes (`GlanceConfig.support`,
  0.5 % left out at each end; the pair keeps its width), on the committed models: 0.965 / 0.750
  (`thickness_slant`: outrank on total effects 0.930 → 1.000, Spearman 0.885 → 0.900). With the
  full range: 0.925 / 0.755; with 2 % left out: 0.970 / 0.725. Kept.
- Longer surrogate training with that window: 3000 steps 0.995 / 0.791 (final reconstruction
  loss 0.015 against 0.032 in a 2000-step fit); the default is now 4000 steps (the table above).
- A frozen concept reader (an encoder fitted to the context on real images only) judging the
  cycle term instead of E, which G and E can bend together: 0.895 / 0.728 (window off). Not kept.
- That reader also refined on the morphometrics of G's images at every step (what G draws, not
  only real images): stopped at 1000 of 2000 steps (428 s for them against 149 s without), the
  blurry images measuring far off. Not kept.
- Adversarial mode (discriminator, lazy R1): reconstruction loss 0.016 and counterfactual
  direction 0.995, but 0.875 / 0.726 (0.955 / 0.729 with the window), fit 935 s against 379 s.
  Not kept.
- Effects composed from the graph (direct effect 0 for a concept that is not a parent of the
  log-odds, totals as path sums of the direct ones): 1.000 by construction / 0.712. Not kept: it
  hides what G draws instead of measuring it.
- Held-out check of the control explainer committed then, on the tests' images (seed 4242): 0.990 /
  0.820 on 100 local images (the default test), Spearman 0.804 on 200; the `-m slow` run's
  from-scratch fit 1.000 / 0.788 on those 200. The direct-effect ranking was met with room, the
  Spearman target only on average.
- Where the control's rank correlation is lost (probe on that explainer, the 200 images of seed
  4242; uncommitted): within each concept, explained and true effects correlate only 0.52
  (thickness), 0.55 (intensity), 0.32 (slant), 0.26 (width); putting the true slant effects in
  place of the explained ones would lift the pooled Spearman from 0.804 to 0.891, the true width
  effects only to 0.821. The true slant effect grows with the digit's intensity and thickness
  (Spearman 0.50 / 0.41), the explained one does not (-0.01 / 0.08). G itself can show f the right
  effects: G(E(x)) of the *true* counterfactual images gives 0.844, so what is lost is the code
  direction of an intervention, not G's drawing. Tried at explanation time, none kept: projecting
  the shifted codes until E reads back the intended concepts: 0.800; adding G's change to the real
  image instead of using G's image: 0.418; no slide into the training range: 0.780; half-size
  interventions: 0.763. Tried at fitting time: generator channels (32, 32, 8) with 3000 steps:
  0.765 and counterfactual direction 0.805. Not kept.

**Effects averaged over codes around E(x)** (2026-12-02; the default since, and in the table
above). `python -m benchmarks.glance.smoothing` on the control explainer committed then (200 images
each of seeds 4242 / 2002): pooled Spearman 0.804 / 0.774 from E(x) alone, 0.827 / 0.801 averaged
over E(x) and 4 antithetic pairs of codes offset by 0.5 of each coordinate's spread
(`smoothing_pairs=4, smoothing_sd=0.5`), 0.819 / 0.788 at sd 0.35, 0.832 / 0.804 with 8 pairs;
causes outrank correlates on direct effects 0.990 -> 1.000 / 0.995 -> 0.995. Not kept: refining
E(x) by 50-200 gradient steps on ||G(z) - x||^2 (Spearman 0.808-0.820, but fidelity of the refined
reconstructions 0.97 -> 0.87-0.92); a fit on 8000 training images (0.787 / 0.759 with averaging).

**Fitting speed.** `python -m benchmarks.glance.step_time` (a 200-step fit on 1000 images, the
control), alternated with a checkout of 6597230 (2 CPU cores, 2026-12-02): 74.1 / 83.4 ms per
surrogate step against 139.5 / 160.2 ms, student pre-training 0.22 / 0.31 s against 1.14 / 1.18 s,
the same losses bit for bit: the training steps are pure jitted functions of (parameters,
optimiser state, batch), and glibc keeps buffers up to 64 MB in its heap instead of mapping fresh
memory for XLA's convolution buffers every step. `benchmarks.glance.acceptance` with both (2026-12-04): 272 /
254 s per fit; its previous run, before them, took 1251 / 374 s (two runs on different days of a
shared machine, not side by side: the ratio measured side by side is the step time's above).

**The committed explainers and the acceptance run** (2 CPU cores, x86-64, 2026-12-04). The fits
of that run are the committed explainers (`--save-models`). Scored on the tests' held-out images (seed
4242): Spearman 0.914 / 0.857 (`thickness_slant` / control) on 100 local images of 200 (the
default tests), 0.903 / 0.819 on 200 of 500; control outrank on direct effects 1.000 / 0.995;
fidelity 0.95-0.97, counterfactual direction 0.96-0.98. `pytest -m slow
tests/test_glance_acceptance.py` fits both from scratch with the default configuration, in two
processes pinned to one core each (so not bit for bit the table's two-core fits), and scores them
on those 500 / 200 images: **530 s** (the issue's bar: 10 min), every target met: fidelity 0.976 /
0.980, R² ≥ 0.855, SHD 0 / 0, outrank 1.000 (total) / 1.000 (control, direct), Spearman 0.892 /
**0.812**, counterfactual direction 0.984 / 0.964. So the control's Spearman, the tightest target,
is 0.81-0.86 across the fits and image sets measured (two on GPU: see the next sections), above 0.8
everywhere but not by much.
"""


def _phases(s: dict) -> str:
    return ", ".join(f"{k} {v:.0f}" for k, v in s["seconds"].items())


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train", type=int, default=4000)
    parser.add_argument("--test", type=int, default=500)
    parser.add_argument("--local", type=int, default=200)
    parser.add_argument("--steps", type=int, default=glance.SurrogateConfig.steps)
    parser.add_argument("--log-every", type=int, default=500)
    parser.add_argument("--save-models", action="store_true")
    parser.add_argument("--figures", default="out/glance", help="folder for the report pages ('' for none)")
    parser.add_argument("--tasks", nargs="+", choices=list(cl.TASKS), default=list(cl.TASKS),
                        help="which classifiers to explain (default: both)")
    parser.add_argument("--adversarial", action="store_true",
                        help="the surrogate's adversarial mode (discriminator, lazy R1; meant for GPUs)")
    parser.add_argument("--no-results", action="store_true", help="do not write RESULTS.md")
    parser.add_argument("--results", type=Path, help="write the section to this file instead of RESULTS.md")
    args = parser.parse_args(argv)
    from daxjax.glance.surrogate import keep_large_buffers_in_the_heap

    keep_large_buffers_in_the_heap()  # 15-20 % off each surrogate step; process-wide, so the caller's choice
    command = " ".join(["python -m benchmarks.glance.acceptance", shlex.join(argv if argv is not None else sys.argv[1:])]).rstrip()
    results = run(args)
    if not args.no_results:
        from benchmarks.results import RESULTS, write_section

        path, title = args.results or RESULTS, section_title(args)
        write_section(title, _section(results, args, command, title), path)
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
