"""Amortised DAX (issue 22): quality against black-box queries per explained image, and speed.

    python -m benchmarks.quality.amortised --parts fashion,composites,speed   # about 1.5 h on 2 CPU cores
    python -m benchmarks.quality.amortised --parts scale,scale-composites   # 1,000 / 10,000 images (own section)
    python -m benchmarks.quality.amortised --parts fashion --fit 48 --held-out 16 --steps 300 --no-write   # a smoke run
    python -m benchmarks.quality.amortised --parts speed

Datasets (one black box for the whole dataset, as the amortised explainer needs):
  fashion     the Fashion scenes of `benchmarks/quality/fashion.py` (64 px, our CNN `fashion_cnn.onnx`), correctly
              classified test scenes; ground truth = the object's pixels. Fitted on the first --fit,
              scored on the next --held-out.
  composites  the composites of `benchmarks/datasets/realmodels/cases.py` (an object cut out of one bundled
              photo pasted on another, kept when the model's top-1 is the object's class): under
              EfficientNet-Lite0 at 224 px, or --model lite2 (EfficientNet-Lite2, 260 px). Scored
              on the first --held-out (the first composites of the real-model table), fitted on
              the next --fit. The restricted views are left out: each has its own black
              box (the model behind its region), so there is no one black box to amortise over.
Held-out images (never fitted) are the only ones scored. Rows:
  amortised            `explain`: no query per image once fitted
  amortised + refine K `refine(queries_per_image=K)`
  DAX / RISE / KernelSHAP (N)   per-image explainers at N queries an image (`--per-image`)
  random map, centred Gaussian  references
Columns:
  queries/image   black-box queries per explained image, fitting included: the fit's queries
                  (fit images x (teacher queries + 1)) shared over every image of the dataset that
                  gets a map (fit + held-out), plus K + 1 per image for refinement. At the issue's
                  scale (>= 1,000 images explained per fit) the fit's share is fit queries / 1,000:
                  printed as "at 1k".
  IoU             mean (std) IoU, map thresholded at mean + 1 std (`daxjax.metrics.iou`)
  top-20 %        IoU of the map's top 20 % of pixels
  ins             insertion AUC (blurred start, pixel order, 50 steps) over the target's probability
  s/image         wall-clock seconds per held-out image (2 shared CPU cores; fitting not included)
Speed (`--parts speed`): images per second of `explain` at 224 px, after a warm-up call.
Scale (`--parts scale`, `scale-composites`): the fit of the fashion (composites) part (the same
fitted images, so the same explainer bit for bit) explaining datasets of --totals images (default
`SCALE_TOTALS`: Fashion 1,000 and 10,000, composites 1,000): the fit's queries shared over every
explained image, the amortised maps scored on every image but the fitted ones (the part's held-out
images first), and per-image RISE at N = 4000 on the part's first --rise-images held-out images,
beside the amortised row on the same images.
Fitted explainers are kept under --keep (one .npz per dataset, fit size, seed and config) and a
rerun loads them instead of fitting again (`--fresh` fits again).
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import time
from pathlib import Path

import numpy as np

PARTS = ("fashion", "composites", "speed", "scale", "scale-composites")
SECTION = "## Amortised DAX: quality against queries per explained image (issue 22)"
SCALE_SECTION = "## Amortised DAX at scale: one fit, 1,000 and 10,000 images explained (issue 22)"
#: Per dataset: (fitted images, held-out images, per-image rows "method:N,..."). The composites are
#: EfficientNet-Lite0 queries (about 80 a second on 2 CPU cores): fewer images, RISE at N = 1000.
PART_DEFAULTS = {"fashion": (400, 100, "dax:250,rise:4000,kernelshap:1000"),
                 "composites": (200, 40, "dax:250,rise:1000")}
#: Dataset sizes of the scale parts: composites are drawn until kept (about 16 Lite0 queries per
#: kept one) and scored with 50 insertion queries each, so 1,000 only.
SCALE_TOTALS = {"fashion": "1000,10000", "composites": "1000"}


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


def composites(count: int, seed: int = 0, model_name: str = "lite0") -> Dataset:
    from benchmarks.datasets.realmodels import models
    from benchmarks.datasets.realmodels.cases import make_cases

    model, side = models.load(model_name), models.SIDES[model_name]
    cases = make_cases(model, side, composites=count, restricted=0, seed=seed)
    # Lite0's name (and so its kept fits' file names) is the one of the runs before --model.
    slug = "" if model_name == "lite0" else f" {model_name}"
    return Dataset(f"real-model composites{slug} ({side} px, {models.NAMES[model_name]})", model, cases.images,
                   cases.masks, cases.targets)


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


def fitted(data: Dataset, fit_rows: slice, config, keep: Path | None, fresh: bool):
    """(explainer, fit seconds) of `amortised.fit(data.bb, data.images[fit_rows], config, seed=0)`:
    loaded from `keep` when a kept fit of the same images (by digest), config and seed is there
    (its seconds are those of the run that fitted it), else fitted and kept."""
    from daxjax import amortised

    images = data.images[fit_rows]
    key = hashlib.sha256(images.tobytes() + json.dumps(config.to_dict(), sort_keys=True).encode()).hexdigest()[:16]
    path = None if keep is None else keep / f"{data.name.split(' (')[0].replace(' ', '-')}_fit{len(images)}_seed0_{key}.npz"
    if path is not None and path.exists() and not fresh:
        explainer = amortised.load(path)
        if explainer.config == config:
            print(f"(fit loaded from {path})", flush=True)
            return explainer, float(explainer.report["fit_seconds"])
    start = time.perf_counter()
    explainer = amortised.fit(data.bb, images, config, seed=0)
    seconds = time.perf_counter() - start
    explainer.report["fit_seconds"] = seconds
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        explainer.save(path)
    return explainer, seconds


def run_dataset(data: Dataset, fit_rows: slice, test: slice, config, refine_budgets, per_image,
                keep: Path | None = None, fresh: bool = False) -> list[str]:
    """Fits on data[fit_rows], scores the held-out data[test]; returns the part's lines."""
    import daxjax
    from benchmarks.quality.fashion import reference_maps

    n_fit, n_test = len(data.targets[fit_rows]), len(data.targets[test])
    explained = n_fit + n_test
    out = [f"### {data.name}: fitted on {n_fit} images, {n_test} held-out images scored", ""]
    print("\n".join(out), flush=True)
    explainer, fit_seconds = fitted(data, fit_rows, config, keep, fresh)
    report = explainer.report
    fit_queries = report["queries"]
    out += [f"Fit: {fit_queries} queries ({config.teacher.queries_per_image + 1} an image), {fit_seconds:.0f} s "
            f"(the teacher, per-image DAX: {report['teacher_seconds']:.0f} s; training {report['training_seconds']:.0f} s, "
            f"{report['steps']} steps, best held-out step {report['best_step']}); the teacher trusted "
            f"{report['teacher_trusted']} of {n_fit} maps, the network learned {report['trained_on']}.", "",
            "| method | queries/image (this run; at 1k) | IoU mean (std) | top-20 % | ins | s/image |",
            "|---|---|---|---|---|---|"]
    print("\n".join(out[-4:]), flush=True)
    for name, maps in reference_maps(n_test, data.images.shape[1], seed=0).items():
        out.append(line(name, "—", scores(data, test, maps), None))

    share, at_scale = fit_queries / explained, fit_queries / 1000
    t = time.perf_counter()
    ex = explainer.explain(data.images[test], bb=data.bb)
    seconds = (time.perf_counter() - t) / n_test
    agree = float((ex.targets == data.targets[test]).mean())
    out.append(line("amortised (no query an image)", f"{share:.0f}; {at_scale:.0f}", scores(data, test, ex.maps),
                    seconds))
    print(out[-1], flush=True)
    for k in refine_budgets:
        t = time.perf_counter()
        ex = explainer.refine(data.bb, data.images[test], queries_per_image=k)
        seconds = (time.perf_counter() - t) / n_test
        kept = int(ex.diagnostics["refined"].sum())
        out.append(line(f"amortised + refine {k} ({kept}/{n_test} maps replaced by DAX's, {int(ex.trusted.sum())} "
                        f"trusted)", f"{share + k + 1:.0f}; {at_scale + k + 1:.0f}", scores(data, test, ex.maps),
                        seconds))
        print(out[-1], flush=True)
    kinds = {"dax": daxjax.DAXConfig, "rise": daxjax.RISEConfig, "kernelshap": daxjax.KernelSHAPConfig}
    for method, n in per_image:
        t = time.perf_counter()
        ex = daxjax.explain(data.bb, data.images[test], targets=data.targets[test], method=method,
                            config=kinds[method](num_samples=n), seed=0)
        seconds = (time.perf_counter() - t) / n_test
        label = {"dax": "DAX", "rise": "RISE", "kernelshap": "KernelSHAP"}[method]
        out.append(line(f"{label} per image (N = {n})", f"{n}", scores(data, test, ex.maps), seconds))
        print(out[-1], flush=True)
    out += ["", f"The black box's top-1 on the held-out images equals the case's target on {agree:.0%} of them (the "
            "amortised maps explain the top-1; the per-image rows the case's target).", ""]
    return out


def run_scale(kind: str, config, fit_count: int, held_out: int, totals: list[int], rise_images: int,
              keep: Path | None, fresh: bool, model_name: str = "lite0") -> list[str]:
    """The fit of part `kind` ("fashion" or "composites": the same fitted images, so the same
    explainer bit for bit) explaining datasets of `totals` images (module doc, "Scale"). Scored:
    every image of the largest dataset but the fitted ones, in the dataset's order (the part's
    held-out images first); a dataset of T images is its first T."""
    import daxjax

    largest = max(totals)
    if min(totals) <= fit_count + held_out:
        raise SystemExit(f"--totals must exceed the part's fitted + held-out images ({fit_count + held_out}); got {totals}")
    if kind == "fashion":
        data, fit_rows = fashion(largest), np.arange(fit_count)
    else:
        data, fit_rows = composites(largest, model_name=model_name), np.arange(held_out, held_out + fit_count)
    held = np.setdiff1d(np.arange(len(data.targets)), fit_rows)
    largest = len(data.targets)  # composites: fewer when too few draws were kept (said below)
    out = [f"### How the fit's cost amortises: {data.name}, fitted on {fit_count}, datasets of "
           f"{', '.join(f'{t:,}' for t in totals)} images", ""]
    print("\n".join(out), flush=True)
    explainer, fit_seconds = fitted(data, slice(fit_rows[0], fit_rows[-1] + 1), config, keep, fresh)
    fit_queries = explainer.report["queries"]
    t = time.perf_counter()
    ex = explainer.explain(data.images[held])  # no black box: no query at all
    explain_seconds = time.perf_counter() - t
    s = scores(data, held, ex.maps)
    out += [f"Fit: {fit_queries} queries, {fit_seconds:.0f} s; `explain` of the {len(held):,} held-out "
            f"images: {explain_seconds:.1f} s ({len(held) / explain_seconds:.0f} images/s), no query"
            f"{'' if largest == max(totals) else f'; only {largest} images could be drawn'}.", "",
            "| dataset | scored (held out) | queries/image (fit shared) | IoU mean (std) | top-20 % | ins |",
            "|---|---|---|---|---|---|"]
    print("\n".join(out[-4:]), flush=True)

    def row(label: str, rows: np.ndarray, queries: str) -> str:
        sub = {name: values[rows] for name, values in s.items()}
        return (f"| {label} | {len(rows):,} | {queries} | {sub['iou'].mean():.3f} ({sub['iou'].std():.3f}) | "
                f"{sub['top'].mean():.3f} | {sub['ins'].mean():.3f} |")

    for total in sorted(totals):
        out.append(row(f"{min(total, largest):,} images, amortised", np.flatnonzero(held < total),
                       f"{fit_queries / min(total, largest):.1f}"))
        print(out[-1], flush=True)
    count = min(rise_images, held_out)
    if count:
        rows = held[:count]
        t = time.perf_counter()
        rise = daxjax.explain(data.bb, data.images[rows], targets=data.targets[rows], method="rise",
                              config=daxjax.RISEConfig(num_samples=4000), seed=0)
        seconds = (time.perf_counter() - t) / count
        r = scores(data, rows, rise.maps)
        out += [row(f"the part's first {count} held out, amortised", np.arange(count),
                    f"{fit_queries / min(totals):.1f}"),
                f"| the part's first {count} held out, RISE per image (N = 4000; {seconds:.2f} s an image) | {count} | "
                f"4000 | {r['iou'].mean():.3f} ({r['iou'].std():.3f}) | {r['top'].mean():.3f} | {r['ins'].mean():.3f} |"]
        print("\n".join(out[-2:]), flush=True)
    return out + [""]


def speed(config, side: int = 224, count: int = 256) -> str:
    """Images per second of `explain` at side x side (3 channels), after a warm-up call: a line.
    The network's weights do not change its cost, so an unfitted explainer of `config` is timed."""
    import jax

    from daxjax import amortised
    from daxjax.amortised.nets import init_nets

    _, params = init_nets(config.nets, 3, jax.random.key(0))
    explainer = amortised.AmortisedExplainer(config, params, 3, 0, {})
    x = np.random.default_rng(0).uniform(size=(count, side, side, 3)).astype(np.float32)
    explainer.explain(x[:32])
    t = time.perf_counter()
    explainer.explain(x)
    seconds = time.perf_counter() - t
    text = (f"Speed: `explain` at {side} px, {count / seconds:.0f} images/s ({count} images in {seconds:.2f} s after a "
            f"warm-up call; {jax.default_backend()}, {jax.device_count()} device(s), no black-box query).")
    print(text, flush=True)
    return text


def per_image_rows(spec: str) -> list[tuple[str, int]]:
    """"dax:250,rise:4000" -> [("dax", 250), ("rise", 4000)]."""
    rows = []
    for item in (part.strip() for part in spec.split(",") if part.strip()):
        method, _, n = item.partition(":")
        if method not in ("dax", "rise", "kernelshap") or not n.isdigit():
            raise ValueError(f"--per-image: {item!r} is not method:N with method dax, rise or kernelshap")
        rows.append((method, int(n)))
    return rows


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--parts", default="fashion,composites,speed",
                        help=f"comma-separated, of {', '.join(PARTS)}")
    parser.add_argument("--fit", type=int, default=None, help="images fitted on (default: PART_DEFAULTS)")
    parser.add_argument("--held-out", type=int, default=None, help="held-out images scored (default: PART_DEFAULTS)")
    parser.add_argument("--queries", type=int, default=None, help="the teacher's queries per fitted image (default 250)")
    parser.add_argument("--steps", type=int, default=None, help="training steps (default 3000)")
    parser.add_argument("--refine", default="100", help="refinement budgets K, comma-separated (default 100)")
    parser.add_argument("--per-image", default=None, help="per-image rows, e.g. dax:250,rise:4000 (default: PART_DEFAULTS)")
    parser.add_argument("--totals", default=None,
                        help="scale parts: dataset sizes, comma-separated (default: SCALE_TOTALS)")
    parser.add_argument("--rise-images", type=int, default=100,
                        help="scale parts: the part's held-out images RISE (N = 4000) explains (0: none)")
    parser.add_argument("--model", default="lite0", choices=("lite0", "lite2"),
                        help="the black box of the composites parts (EfficientNet-Lite0 or -Lite2)")
    parser.add_argument("--keep", default="out/amortised", help="where fitted explainers are kept ('' : nowhere)")
    parser.add_argument("--fresh", action="store_true", help="fit again even when a kept fit matches")
    parser.add_argument("--no-write", action="store_true", help="print only; leave RESULTS.md alone")
    args = parser.parse_args(argv)
    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    if not parts or set(parts) - set(PARTS):
        parser.error(f"--parts: unknown or none of {', '.join(PARTS)}: {args.parts!r}")

    import sys

    import jax

    from benchmarks.results import write_section
    from daxjax import amortised

    teacher = amortised.Teacher(**({"queries_per_image": args.queries} if args.queries else {}))
    training = amortised.Training(**({"steps": args.steps} if args.steps else {}))
    config = amortised.AmortisedConfig(teacher=teacher, training=training)
    refine = [int(k) for k in args.refine.split(",") if k.strip()]
    command = ("python -m benchmarks.quality.amortised " + " ".join(sys.argv[1:] if argv is None else argv)).strip()
    lines = [SECTION, "", f"Command: `{command}` — {jax.default_backend()} ({jax.device_count()} device(s), 2 shared "
             f"CPU cores), {time.strftime('%Y-%m-%d')}. Config: the defaults of `daxjax.amortised` (teacher "
             f"{config.teacher.queries_per_image} queries an image, {config.training.steps} steps). Columns: the "
             "docstring of `benchmarks/quality/amortised.py`.", ""]
    keep = Path(args.keep) if args.keep else None
    scale: list[str] = []
    for part in parts:
        if part == "speed":
            continue
        if part.startswith("scale"):
            kind = part.partition("-")[2] or "fashion"
            fit_count, held_out, _ = PART_DEFAULTS[kind]
            totals = [int(t) for t in (args.totals or SCALE_TOTALS[kind]).split(",") if t.strip()]
            scale += run_scale(kind, config, args.fit or fit_count, args.held_out or held_out, totals,
                               args.rise_images, keep, args.fresh, args.model)
            continue
        fit_count, held_out, spec = PART_DEFAULTS[part]
        fit_count, held_out = args.fit or fit_count, args.held_out or held_out
        rows = per_image_rows(args.per_image or spec)
        if part == "fashion":
            data = fashion(fit_count + held_out)
            fit_rows, test = slice(0, fit_count), slice(fit_count, fit_count + held_out)
        else:
            data = composites(fit_count + held_out, model_name=args.model)
            test, fit_rows = slice(0, held_out), slice(held_out, held_out + fit_count)
        lines += run_dataset(data, fit_rows, test, config, refine, rows, keep, args.fresh)
    if "speed" in parts:
        lines.append(speed(config))
    if not args.no_write:
        if set(parts) - {"scale", "scale-composites"}:
            write_section(SECTION, "\n".join(lines))
        if scale:
            write_section(SCALE_SECTION, "\n".join([SCALE_SECTION, *lines[1:4], *scale]))


if __name__ == "__main__":
    main()
