"""How DAX's map combines the mask and the student's segment effects, measured on three case sets.

    python -m benchmarks.quality.dax_map_rule                       # photos, real-model cases, Fashion scenes
    python -m benchmarks.quality.dax_map_rule --parts photos --no-write

DAX's map is built from the trained mask M (the mask net's grid, upsampled to the image) and,
optionally, the student's effect of each segment E (relative to the image's largest, negatives 0).
S is the mask's mean over each segment (the mask as the segment student sees it,
`DAXConfig.map_on_segments=True`); the default is S * E^0.1 (M * E^0.1 before 2026-12-05). The mask says which
segments the black box needs (extent: IoU), the effect orders them (what deletion and insertion
reward). This trains DAX once per image and records M, E and S (hooks on the engine's internals: an
experiment, not an API), then scores every rule on the same training:
  photos       deletion / insertion AUC on the 10 bundled photos, EfficientNet-Lite0, N = 2000
               (as `benchmarks.quality.photos`; its table has the baselines)
  realmodels   IoU (mean + 1 std) on the real-model cases, N = 1000, EfficientNet-Lite0 (`--models
               lite2`: EfficientNet-Lite2, a section of its own: a check of the rules on a model they
               were not compared on). The training is the DAX row of `benchmarks.quality.realmodels`
               (same cases, config and `--out` store): one training serves that table and this one.
  fashion      IoU on the Fashion scenes, N = 2000 (as `benchmarks.quality.fashion`)
  planted      IoU with the cause and with the distractor on the six planted scenes of
               `tests/test_dax.py::test_dax_localises_the_planted_cause_not_the_distractor`
               (`tests/planted.py`; N = 1000; that test's bar is 0.5)
The training is the same for every rule, so differences between rows are the rule's alone.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time

import numpy as np

from benchmarks.results import write_section

SECTION = "## DAX's map: the mask and the segment effects combined (issue 18)"
POWERS = (0.0, 0.1, 0.25, 0.5, 1.0)
PARTS = ("photos", "realmodels", "fashion", "planted")


@contextlib.contextmanager
def recorded_parts(log: list):
    """Appends (mask, effect, share), each [rows, H, W], of every DAX group explained inside the
    block, as `engine._finish` receives them: the trained rows' raw maps M (the mask grid,
    upsampled); the student's segment effects E (negatives 0, divided by the image's largest)
    painted on the segments; and S, the mask's mean over each segment painted on it (the mask as
    the segment student sees it). Needs restarts=1."""
    from daxjax.methods.dax import engine

    finish = engine._finish

    def finish_recorded(row_maps, effects, segments, **kwargs):
        masks, labels = np.asarray(row_maps), np.asarray(segments)
        shown = np.maximum(np.asarray(effects), np.float32(0.0))
        shown = shown / np.maximum(shown.max(axis=1, keepdims=True), np.float32(1e-12))
        shares = np.asarray(engine.segment_means(row_maps, segments, shown.shape[1]))  # map_on_segments' map
        log.append((masks, np.stack([e[s] for e, s in zip(shown, labels)]), shares))
        return finish(row_maps, effects, segments, **kwargs)

    engine._finish = finish_recorded
    try:
        yield log
    finally:
        engine._finish = finish


def painted(parts: dict, on_segments: float, effect_power: float) -> np.ndarray:
    """A DAX row's maps [n, H, W] from its kept parts under a painting (as the engine's `_finish`
    with one restart: the mask, or its mean per segment, times the relative effects ** power, scaled)."""
    from daxjax.methods.base import normalise

    base = parts["shares"] if on_segments else parts["masks"]
    if effect_power > 0:
        base = base * parts["effects"] ** np.float32(effect_power)
    return np.asarray(normalise(base))


def rule_maps(mask: np.ndarray, effect: np.ndarray, share: np.ndarray) -> dict:
    """Rule name -> maps [n, H, W] in [0, 1], from masks, painted effects and painted shares [n, H, W]."""
    from daxjax.methods.base import normalise

    parts = {"masks": mask, "effects": effect, "shares": share}
    rules = {f"M x E^{p:g}" + (" (mask alone)" if p == 0 else "") + (" (the default before 2026-12-05)" if p == 0.1 else ""):
             painted(parts, 0.0, p) for p in POWERS}
    rules["E alone (effects, no mask)"] = np.asarray(normalise(effect))
    rules["S (the mask's mean per segment; map_on_segments=True)"] = painted(parts, 1.0, 0.0)
    for p in (0.1, 0.25):
        rules[f"S x E^{p:g}" + (" (default)" if p == 0.1 else "")] = painted(parts, 1.0, p)
    return rules


def explain_recorded(bb, images, targets, config, seed=0) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """(masks, effects, shares, seconds per image) of DAX on `images` under `config`."""
    import daxjax

    log: list = []
    start = time.perf_counter()
    with recorded_parts(log):
        daxjax.explain(bb, images, targets=targets, method="dax", config=config, seed=seed)
    seconds = (time.perf_counter() - start) / len(images)
    return tuple(np.concatenate([entry[k] for entry in log]) for k in range(3)) + (seconds,)


def part_photos(budget: int, fill: str) -> list[str]:
    import daxjax
    from benchmarks.quality.photos import AnswerCache
    from benchmarks.throughput.common import photos
    from blackbox_adapters import CallableBlackBox, efficientnet_lite0

    images = photos(10)
    bb = CallableBlackBox(AnswerCache(efficientnet_lite0(threads=2)), num_classes=1000, output="probs")
    targets = np.asarray(bb(images)).argmax(axis=1).astype(np.int32)
    config = daxjax.DAXConfig(num_samples=budget, effect_power=1.0, fill=fill)
    mask, effect, share, seconds = explain_recorded(bb, images, targets, config)
    lines = [f"### 10 bundled photos, EfficientNet-Lite0, N = {budget}, fill {fill!r} ({seconds:.1f} s per photo)", "",
             "| rule | deletion AUC mean (std) | insertion AUC mean (std) |", "|---|---|---|"]
    for name, maps in rule_maps(mask, effect, share).items():
        deletion = np.asarray(daxjax.metrics.deletion_auc(bb, images, maps, targets, steps=50))
        insertion = np.asarray(daxjax.metrics.insertion_auc(bb, images, maps, targets, steps=50))
        lines.append(f"| {name} | {deletion.mean():.3f} ({deletion.std():.3f}) | "
                     f"{insertion.mean():.3f} ({insertion.std():.3f}) |")
        print(lines[-1], flush=True)
    return lines


def part_realmodels(model_name: str, budget: int, composites: int, restricted: int, fill: str, out: str) -> list[str]:
    """The rules on the real-model cases of `model_name`, from the DAX row of
    `benchmarks.quality.realmodels` (its `explained`: the same cases, config and store, so a row
    explained there is not trained again here, and a row trained here is that table's DAX row)."""
    from pathlib import Path

    import daxjax
    from benchmarks.datasets.realmodels import models as model_zoo
    from benchmarks.datasets.realmodels.cases import make_cases
    from benchmarks.quality.realmodels import explained, parts_path, top_share_iou

    model = model_zoo.load(model_name)
    side = model_zoo.SIDES[model_name]
    cases = make_cases(model, side, composites, restricted, seed=0)
    config = daxjax.DAXConfig(num_samples=budget, fill=fill)
    name = "DAX (ours)" if fill == daxjax.DAXConfig().fill else f"DAX (ours), fill {fill}"
    store = Path(out) / f"{model_name}_seed0_N{budget}_{len(cases)}cases"
    # A row kept before rows kept their parts is trained again.
    _, seconds, _ = explained(model, cases, name, "dax", config, store, fresh=not parts_path(store, name).is_file())
    with np.load(parts_path(store, name)) as saved:
        masks, effects, shares = saved["masks"], saved["effects"], saved["shares"]
    kinds = np.array(cases.kinds)
    lines = [f"### Real-model cases, {model_zoo.NAMES[model_name]}, N = {budget}, fill {fill!r}: {len(cases)} cases "
             f"({int((kinds == 'composite').sum())} composites, {int((kinds == 'restricted').sum())} restricted "
             f"views, seed 0; {seconds:.1f} s per case)", "",
             "| rule | IoU mean (std) | comp | restr | top-20 % |", "|---|---|---|---|---|"]
    for rule, maps in rule_maps(masks, effects, shares).items():
        iou = np.asarray(daxjax.metrics.iou(maps, cases.masks))
        top = top_share_iou(maps, cases.masks)
        lines.append(f"| {rule} | {iou.mean():.3f} ({iou.std():.3f}) | {iou[kinds == 'composite'].mean():.3f} | "
                     f"{iou[kinds == 'restricted'].mean():.3f} | {top.mean():.3f} |")
        print(lines[-1], flush=True)
    return lines


def part_fashion(budget: int, count: int, fill: str) -> list[str]:
    import daxjax
    from benchmarks.quality.fashion import correct_scenes

    bb, scenes = correct_scenes(count)
    targets = scenes.labels.astype(np.int32)
    config = daxjax.DAXConfig(num_samples=budget, effect_power=1.0, fill=fill)
    mask, effect, share, seconds = explain_recorded(bb, scenes.images, targets, config)
    lines = [f"### Fashion scenes: {len(targets)} correctly classified of {count} drawn (as `benchmarks.quality.fashion`), "
             f"N = {budget}, fill {fill!r} ({seconds:.2f} s per scene)", "", "| rule | IoU mean (std) | pointing |", "|---|---|---|"]
    for name, maps in rule_maps(mask, effect, share).items():
        iou = np.asarray(daxjax.metrics.iou(maps, scenes.masks))
        pointing = np.asarray(daxjax.metrics.pointing_game(maps, scenes.masks))
        lines.append(f"| {name} | {iou.mean():.3f} ({iou.std():.3f}) | {pointing.mean():.2f} |")
        print(lines[-1], flush=True)
    return lines


def part_planted(budget: int) -> list[str]:
    import importlib.util
    from pathlib import Path

    import daxjax

    spec = importlib.util.spec_from_file_location("planted", Path(__file__).parents[2] / "tests" / "planted.py")
    planted = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(planted)
    images, cause, distractor = (np.stack(p) for p in zip(*[planted.red_and_distractor_scene(s, 64) for s in range(6)]))
    targets = np.asarray(planted.red_fraction_box(images)).argmax(axis=1).astype(np.int32)
    config = daxjax.DAXConfig(num_samples=budget)
    mask, effect, share, seconds = explain_recorded(planted.red_fraction_box, images, targets, config)
    lines = [f"### The six planted scenes of tests/test_dax.py, N = {budget} ({seconds:.1f} s per scene)", "",
             "| rule | IoU with the cause | with the distractor | scenes where the cause wins |", "|---|---|---|---|"]
    for name, maps in rule_maps(mask, effect, share).items():
        on_cause = np.asarray(daxjax.metrics.iou(maps, cause))
        on_distractor = np.asarray(daxjax.metrics.iou(maps, distractor))
        lines.append(f"| {name} | {on_cause.mean():.3f} | {on_distractor.mean():.3f} | "
                     f"{int((on_cause > on_distractor).sum())} of 6 |")
        print(lines[-1], flush=True)
    return lines


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated, of {', '.join(PARTS)}")
    parser.add_argument("--models", default="lite0", help="real-model part: comma-separated, of lite0,lite2")
    parser.add_argument("--out", default="out/realmodels",
                        help="real-model part: the store of `benchmarks.quality.realmodels` (its DAX row is shared)")
    parser.add_argument("--composites", type=int, default=60)
    parser.add_argument("--restricted", type=int, default=40)
    parser.add_argument("--scenes", type=int, default=260, help="Fashion scenes drawn")
    parser.add_argument("--fills", default="image_mean",
                        help="comma-separated DAXConfig.fill values, each trained and scored (default: DAX's)")
    parser.add_argument("--no-write", action="store_true", help="print only, do not update RESULTS.md")
    args = parser.parse_args(argv)
    parts = args.parts.split(",")
    if set(parts) - set(PARTS):
        raise SystemExit(f"--parts: unknown {sorted(set(parts) - set(PARTS))}; choose from {', '.join(PARTS)}")
    from benchmarks.throughput.common import machine

    # Other fills than DAX's are a section of their own, so that each run rewrites only its own.
    section = SECTION if args.fills == "image_mean" else SECTION.replace(" (issue 18)", f", fills {args.fills} (issue 18)")
    if args.models != "lite0":  # so is a second model's: it checks the rules chosen on the first
        section = section.replace(" (issue 18)", f", models {args.models} (issue 18)")
    command = "python -m benchmarks.quality.dax_map_rule " + " ".join(argv if argv is not None else sys.argv[1:])
    lines = [section, "", f"Command: `{command.strip()}` — {machine()}, {time.strftime('%Y-%m-%d')}.",
             "M: the trained mask; E: the student's effect of each segment relative to the image's largest; "
             "every rule from the same training (the default config but for the fill given), so rows differ by the rule alone. "
             "See the docstring of `benchmarks/quality/dax_map_rule.py`.", ""]
    print("\n".join(lines), flush=True)
    for part in parts:
        for fill in args.fills.split(","):
            if part == "photos":
                lines += part_photos(2000, fill)
            elif part == "realmodels":
                for model_name in args.models.split(","):
                    lines += part_realmodels(model_name, 1000, args.composites, args.restricted, fill, args.out)
            elif part == "planted":
                lines += part_planted(1000)
            else:
                lines += part_fashion(2000, args.scenes, fill)
            lines.append("")
            if not args.no_write:
                write_section(section, "\n".join(lines))


if __name__ == "__main__":
    main()
