"""Amortised DAX (issue 22): quality against black-box queries per explained image, and speed.

    python -m benchmarks.quality.amortised --quick     # a smoke run of several minutes on 2 CPU cores
    python -m benchmarks.quality.amortised             # the full run (hours on 2 CPU cores)
    python -m benchmarks.quality.amortised --parts fashion --fit 200 --held-out 50

Datasets (one black box for the whole dataset, as the amortised explainer needs):
  fashion     the Fashion scenes of `benchmarks/quality/fashion.py` (64 px, our CNN `fashion_cnn.onnx`), correctly
              classified test scenes; ground truth = the object's pixels.
  realmodels  the composites of `benchmarks/datasets/realmodels/cases.py` (an object cut out of one bundled
              photo pasted on another, kept when EfficientNet-Lite0's top-1 is the object's class;
              224 px). The restricted views are left out: each has its own black box (the model
              behind its region), so there is no one black box to amortise over.
The explainer is fitted on the first `--fit` images; the next `--held-out` ones, which it never saw,
are the only ones scored. Rows:
  amortised            `explain`: no query per image once fitted
  amortised + refine K `refine(queries_per_image=K)`
  RISE / DAX (N)       per-image explainers at N queries an image
  random map, centred Gaussian   references
Columns:
  queries/image   black-box queries per explained image, fitting included: the fit's queries
                  (fit images x (queries_per_image + 1)) shared over every image of the dataset that
                  gets a map (fit + held-out), plus K + 1 per image for refinement. At the issue's
                  scale (>= 1,000 images explained per fit) the fit's share is fit queries / 1,000:
                  printed as "at 1k".
  IoU             mean (std) IoU, map thresholded at mean + 1 std (`daxjax.metrics.iou`)
  top-20 %        IoU of the map's top 20 % of pixels
  ins             insertion AUC (blurred start, pixel order, 50 steps) over the target's probability
  s/image         wall-clock seconds per held-out image (2 shared CPU cores; fitting not included)
Speed (`--parts speed`): images per second of `explain` at 224 px, after a warm-up call.
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import numpy as np

PARTS = ("fashion", "realmodels", "speed")


@dataclasses.dataclass
class Dataset:
    """images float32 [n, S, S, 3]; masks bool [n, S, S]; targets int32 [n] (the black box's top-1)."""

    name: str
    bb: object
    images: np.ndarray
    masks: np.ndarray
    targets: np.ndarray


def fashion(count: int) -> Dataset:
    from benchmarks.datasets.fashion.data import make_scenes
    from benchmarks.quality.fashion import MODEL
    from blackbox_adapters import OnnxBlackBox

    bb = OnnxBlackBox(MODEL, layout="NHWC", output="probs", intra_op_threads=2)
    drawn = make_scenes(int(count * 1.15) + 8, seed=123, split="test", size=64)
    correct = np.flatnonzero(bb(drawn.images).argmax(axis=1) == drawn.labels)[:count]
    return Dataset("Fashion scenes (64 px, fashion_cnn)", bb, drawn.images[correct], drawn.masks[correct],
                   drawn.labels[correct].astype(np.int32))


def composites(count: int, seed: int = 0) -> Dataset:
    from benchmarks.datasets.realmodels import models
    from benchmarks.datasets.realmodels.cases import make_cases

    model = models.load("lite0")
    cases = make_cases(model, 224, composites=count, restricted=0, seed=seed)
    return Dataset("real-model composites (224 px, EfficientNet-Lite0)", model, cases.images, cases.masks,
                   cases.targets)


def top_share_iou(maps, masks, share=0.2):
    flat = maps.reshape(len(maps), -1)
    cut = np.quantile(flat, 1.0 - share, axis=1)
    region = maps >= cut[:, None, None]
    return ((region & masks).sum((1, 2)) / np.maximum((region | masks).sum((1, 2)), 1)).astype(np.float32)


def scores(data: Dataset, rows: slice, maps: np.ndarray) -> dict:
    import daxjax

    images, masks, targets = data.images[rows], data.masks[rows], data.targets[rows]
    base = np.asarray(data.bb(images))[np.arange(len(targets)), targets]
    insertion = daxjax.metrics.insertion_auc(data.bb, images, maps, targets) / np.maximum(base, 1e-6)
    iou = daxjax.metrics.iou(maps, masks)
    return {"iou": iou, "top": top_share_iou(maps, masks), "ins": insertion}


def line(name: str, queries: str, s: dict, seconds: float | None) -> str:
    sec = "—" if seconds is None else f"{seconds:.3f}"
    return (f"| {name} | {queries} | {s['iou'].mean():.3f} ({s['iou'].std():.3f}) | {s['top'].mean():.3f} | "
            f"{s['ins'].mean():.3f} | {sec} |")


def run_dataset(data: Dataset, fit_count: int, held_out: int, config, refine_budgets, rise_budgets, dax: bool):
    import daxjax
    from benchmarks.quality.fashion import reference_maps
    from daxjax import amortised

    fit_rows, test = slice(0, fit_count), slice(fit_count, fit_count + held_out)
    n_test = len(data.targets[test])
    explained = fit_count + n_test
    print(f"\n### {data.name}: fitted on {fit_count} images, {n_test} held-out images scored\n", flush=True)
    start = time.perf_counter()
    explainer = amortised.fit(data.bb, data.images[fit_rows], config, seed=0)
    fit_seconds = time.perf_counter() - start
    report = explainer.report
    fit_queries = report["queries"]
    agree = None
    print(f"fit: {fit_queries} queries ({config.sampling.queries_per_image + 1} per image), {fit_seconds:.0f} s "
          f"(queries {report['query_seconds']:.0f} s, training {report['training_seconds']:.0f} s); held-out fit of "
          f"the student on the fitted images' held-out perturbations {report['heldout_fit']:.3f}; "
          f"best step {report['best_step']} of {report['steps']}\n")
    print("| method | queries/image (this run; at 1k) | IoU mean (std) | top-20 % | ins | s/image |")
    print("|---|---|---|---|---|---|")
    for name, maps in reference_maps(n_test, data.images.shape[1], seed=0).items():
        print(line(name, "—", scores(data, test, maps), None), flush=True)

    share = fit_queries / explained
    at_scale = fit_queries / 1000
    t = time.perf_counter()
    ex = explainer.explain(data.images[test], bb=data.bb)
    seconds = (time.perf_counter() - t) / n_test
    agree = float((ex.targets == data.targets[test]).mean())
    print(line("amortised", f"{share:.0f}; {at_scale:.1f}", scores(data, test, ex.maps), seconds), flush=True)
    for k in refine_budgets:
        t = time.perf_counter()
        ex = explainer.refine(data.bb, data.images[test], queries_per_image=k)
        seconds = (time.perf_counter() - t) / n_test
        kept = int(ex.diagnostics["refined"].sum())
        print(line(f"amortised + refine {k} ({kept}/{n_test} refined maps kept, "
                   f"{int(ex.trusted.sum())} trusted)", f"{share + k + 1:.0f}; {at_scale + k + 1:.0f}",
                   scores(data, test, ex.maps), seconds), flush=True)
    per_image = [("rise", daxjax.RISEConfig, n) for n in rise_budgets] + \
        ([("dax", daxjax.DAXConfig, rise_budgets[0])] if dax else [])
    for method, kind, n in per_image:
        t = time.perf_counter()
        ex = daxjax.explain(data.bb, data.images[test], targets=data.targets[test], method=method,
                            config=kind(num_samples=n), seed=0)
        seconds = (time.perf_counter() - t) / n_test
        print(line(f"{method.upper()} (N = {n})", f"{n}", scores(data, test, ex.maps), seconds), flush=True)
    print(f"\n(the black box's top-1 on the held-out images equals the case's target on {agree:.0%} of them; "
          "the amortised maps explain the top-1)")
    return explainer


def speed(explainer, side: int = 224, count: int = 256) -> None:
    """Images per second of `explain` at side x side (3 channels), after a warm-up call."""
    x = np.random.default_rng(0).uniform(size=(count, side, side, 3)).astype(np.float32)
    explainer.explain(x[:32])
    t = time.perf_counter()
    explainer.explain(x)
    seconds = time.perf_counter() - t
    import jax

    print(f"\nexplain at {side} px: {count / seconds:.0f} images/s ({count} images in {seconds:.2f} s; "
          f"{jax.default_backend()}, {jax.device_count()} device(s))", flush=True)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small datasets and budgets: a smoke run")
    parser.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated, of {', '.join(PARTS)}")
    parser.add_argument("--fit", type=int, default=None, help="images fitted on (default 400, quick 24 / 12)")
    parser.add_argument("--held-out", type=int, default=None, help="held-out images scored (default 100, quick 16 / 4)")
    parser.add_argument("--queries", type=int, default=None, help="queries per fitted image (default 300, quick 100)")
    parser.add_argument("--steps", type=int, default=None, help="training steps (default 3000, quick 600)")
    parser.add_argument("--refine", default=None, help="refinement budgets K, comma-separated (default 100,250)")
    parser.add_argument("--rise", default=None, help="RISE budgets (default: the largest refined budget, 4000)")
    parser.add_argument("--dax", action="store_true", help="per-image DAX at the first RISE budget too")
    args = parser.parse_args(argv)
    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    if set(parts) - set(PARTS):
        parser.error(f"unknown part(s) {sorted(set(parts) - set(PARTS))}")

    from daxjax import amortised

    queries = args.queries or (100 if args.quick else 300)
    steps = args.steps or (600 if args.quick else 3000)
    refine = [int(k) for k in (args.refine or ("100" if args.quick else "100,250")).split(",")]
    explainer = None
    for part in parts:
        if part == "speed":
            continue
        quick_fit, quick_test = (24, 16) if part == "fashion" else (12, 4)
        fit_count = args.fit or (quick_fit if args.quick else 400)
        held_out = args.held_out or (quick_test if args.quick else 100)
        data = fashion(fit_count + held_out) if part == "fashion" else composites(fit_count + held_out)
        share = (fit_count * (queries + 1)) / (fit_count + held_out)
        rise = ([int(k) for k in args.rise.split(",")] if args.rise
                else [int(round(share + max(refine) + 1)), 4000])
        config = amortised.AmortisedConfig(sampling=amortised.Sampling(queries_per_image=queries),
                                           training=amortised.Training(steps=steps))
        explainer = run_dataset(data, fit_count, held_out, config, refine, rise, args.dax)
    if "speed" in parts:
        if explainer is None or explainer.channels != 3:
            from daxjax.amortised.nets import init_nets
            import jax

            config = amortised.AmortisedConfig()
            _, params = init_nets(config.nets, 3, config.sampling.cells, jax.random.key(0))
            explainer = amortised.AmortisedExplainer(config, params, 3, 0, {})
        speed(explainer)


if __name__ == "__main__":
    main()
