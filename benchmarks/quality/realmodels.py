"""Real models, real photos, exact ground truth: the project's primary quality table.

    python -m benchmarks.quality.realmodels                     # Lite0 and Lite2, N = 1000 and 3000 (hours on 2 CPU cores)
    python -m benchmarks.quality.realmodels --quick --no-write  # a smoke run of minutes (Lite0, 4 cases, N = 150)
    python -m benchmarks.quality.realmodels --models lite0 --budgets 1000 --parts ablation

Cases (`benchmarks/datasets/realmodels/cases.py`): cut-outs of bundled photos pasted on other bundled photos,
kept when the model's top-1 is the object's class (ground truth = the pasted pixels), and restricted
views (the model sees only a region R of a photo, grey elsewhere: ground truth = R). Models:
EfficientNet-Lite0 (224 px, bundled) and EfficientNet-Lite2 (260 px, exported on first use,
`models.py`). Every method gets the same N; Occlusion's stride is chosen so that its window count is
closest to N. Maps of each row are kept under `--out` and reused by a rerun (`--fresh` recomputes),
case by case: a run stopped midway keeps the chunks it finished, and a table of more cases (a larger
`--large-n-cases`) explains only the cases a smaller one has not. Each table (one model and N) rewrites
its own part of RESULTS.md's section, with its command, and keeps the other tables.

Columns:
  IoU            mean (std) IoU of the map thresholded at mean + 1 std with the ground truth
  comp / restr   the IoU mean over the composites / the restricted views alone
  top-20 %       IoU of the map's top 20 % of pixels with the ground truth
  flat           maps with no usable region: std of the [0, 1] map below 0.02 (a dead or flat map)
  del / ins      deletion AUC (zero fill; lower is better) and insertion AUC (from a blurred image;
                 higher is better), pixel order, 50 steps, divided by the target's unperturbed
                 probability (many cases sit at 0.1-0.5)
  s/image        wall-clock seconds per image (2 CPU cores; composites explained as one batch,
                 restricted views one at a time, each behind its own region)
References: a random map, a centred Gaussian, and the ground truth itself (what a perfect localiser
hands deletion and insertion).
"""

from __future__ import annotations

import argparse
import hashlib
import re
import sys
import time
from pathlib import Path

import numpy as np

from benchmarks.results import write_section, write_subsection
from benchmarks.datasets.realmodels import models as model_zoo
from benchmarks.quality.dax_variants import ablation_variants
from benchmarks.quality.photos import AnswerCache
from benchmarks.quality.fashion import reference_maps
from benchmarks.datasets.realmodels.cases import Cases, make_cases

SECTION = "## Real models, real photos, exact ground truth (issue 18)"
ABLATION_SECTION = "## DAX on real models: why it failed and what each part is worth (issue 18)"
PARTS = ("table", "ablation")
AUC_STEPS = 50
FLAT_STD = 0.02


def occlusion_stride(side: int, budget: int) -> int:
    """The stride whose window count (ceil(side / stride))^2 is closest to `budget`."""
    strides = np.arange(1, side + 1)
    counts = np.ceil(side / strides) ** 2
    return int(strides[np.argmin(np.abs(counts - budget))])


def occlusion_config(side: int, budget: int):
    """Occlusion's default config at the stride of `occlusion_stride`, its window widened to the
    stride where a small budget makes the stride larger (no pixel left uncovered)."""
    import daxjax

    stride = occlusion_stride(side, budget)
    return daxjax.OcclusionConfig(window=max(daxjax.OcclusionConfig().window, stride), stride=stride)


def methods(budget: int, side: int, presets: bool) -> dict:
    """Row name -> (method, config), each method's default config but for N."""
    import daxjax

    rows = {"DAX (ours)": ("dax", daxjax.DAXConfig(num_samples=budget))}
    if presets:
        rows["DAX-V1 (paper preset)"] = ("dax", daxjax.DAXConfig.paper_v1(num_samples=budget))
        rows["DAX-V2 (paper preset)"] = ("dax", daxjax.DAXConfig.paper_v2(num_samples=budget))
    rows.update({
        "RISE": ("rise", daxjax.RISEConfig(num_samples=budget)),
        "LIME": ("lime", daxjax.LIMEConfig(num_samples=budget)),
        "KernelSHAP": ("kernelshap", daxjax.KernelSHAPConfig(num_samples=budget)),
        "Occlusion": ("occlusion", occlusion_config(side, budget)),
    })
    return rows


def case_groups(cases: Cases) -> list[list[int]]:
    """Cases explained together: all composites (they share the model), each restricted view alone."""
    shared = [i for i, region in enumerate(cases.regions) if region is None]
    return ([shared] if shared else []) + [[i] for i, region in enumerate(cases.regions) if region is not None]


def explain_cases(model, cases: Cases, method: str, config, seed: int = 0, black_boxes=None):
    """Maps [n, side, side] of every case and the wall-clock seconds per image.

    Composites share the model and are explained as one call; each restricted view has its own
    black box (the model behind its region) and is explained alone. black_boxes: one per group of
    `case_groups` (e.g. answer caches), else made here. Returns (maps, seconds, diagnostics,
    timings): the Explanation's per-image diagnostics when it has any, and its seconds per phase
    summed over the groups.
    """
    import daxjax

    maps = np.zeros(cases.masks.shape, np.float32)
    diagnostics: dict = {}
    timings: dict = {}
    start = time.perf_counter()
    groups = case_groups(cases)
    black_boxes = black_boxes or [cases.black_box(model, group[0]) for group in groups]
    for group, bb in zip(groups, black_boxes):
        ex = daxjax.explain(bb, cases.images[group], targets=cases.targets[group],
                            method=method, config=config, seed=seed)
        maps[group] = ex.maps
        for phase, value in ex.timings.items():
            timings[phase] = timings.get(phase, 0.0) + value
        for name, values in getattr(ex, "diagnostics", {}).items():
            diagnostics.setdefault(name, np.zeros(len(cases), np.asarray(values).dtype))[group] = values
    return maps, (time.perf_counter() - start) / len(cases), diagnostics, timings


def top_share_iou(maps: np.ndarray, masks: np.ndarray, share: float = 0.2) -> np.ndarray:
    """IoU of each map's top `share` of pixels (ties at the cut included) with its mask: [n]."""
    flat = maps.reshape(len(maps), -1)
    cut = np.quantile(flat, 1.0 - share, axis=1)
    region = maps >= cut[:, None, None]
    inter = (region & masks).sum((1, 2))
    union = (region | masks).sum((1, 2))
    return (inter / np.maximum(union, 1)).astype(np.float32)


def score(model, cases: Cases, maps: np.ndarray) -> dict:
    """Per-case scores of one row's maps (see the module docstring)."""
    from daxjax import metrics

    deletion = np.zeros(len(cases), np.float32)
    insertion = np.zeros(len(cases), np.float32)
    for group in case_groups(cases):
        bb = cases.black_box(model, group[0])
        deletion[group] = metrics.deletion_auc(bb, cases.images[group], maps[group], cases.targets[group],
                                               steps=AUC_STEPS, normalize=True)
        insertion[group] = metrics.insertion_auc(bb, cases.images[group], maps[group], cases.targets[group],
                                                 steps=AUC_STEPS, fill="blur", normalize=True)
    return {"iou": metrics.iou(maps, cases.masks), "top20": top_share_iou(maps, cases.masks),
            "flat": np.array([m.std() < FLAT_STD for m in maps]), "deletion": deletion, "insertion": insertion}


def scored(model, cases: Cases, maps: np.ndarray, path: Path) -> dict:
    """`score`, kept in `path` beside the row's maps and reused while the maps are the same (deletion
    and insertion cost 2 x AUC_STEPS queries a case: minutes a row on 2 cores)."""
    digest = hashlib.blake2b(np.ascontiguousarray(maps, np.float32).tobytes(), digest_size=16).hexdigest()
    if path.is_file():
        saved = np.load(path)
        if str(saved["maps_digest"]) == digest:
            return {key: saved[key] for key in saved.files if key != "maps_digest"}
    result = score(model, cases, maps)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, maps_digest=digest, **result)
    return result


HEADER = ["| method | IoU mean (std) | comp | restr | top-20 % | flat | del | ins | s/image |",
          "|---|---|---|---|---|---|---|---|---|"]


def row_line(name: str, cases: Cases, s: dict, seconds) -> str:
    kinds = np.array(cases.kinds)

    def part(kind):
        chosen = s["iou"][kinds == kind]
        return f"{chosen.mean():.3f}" if len(chosen) else "—"
    secs = "—" if seconds is None else f"{seconds:.2f}"
    return (f"| {name} | {s['iou'].mean():.3f} ({s['iou'].std():.3f}) | {part('composite')} | {part('restricted')} | "
            f"{s['top20'].mean():.3f} | {int(s['flat'].sum())} | {s['deletion'].mean():.3f} | "
            f"{s['insertion'].mean():.3f} | {secs} |")


def first_cases(cases: Cases, count: int) -> Cases:
    """The first `count` cases with composites and restricted views in the proportion of `cases`."""
    kinds = np.array(cases.kinds)
    composites = np.nonzero(kinds == "composite")[0]
    restricted = np.nonzero(kinds == "restricted")[0]
    take = int(round(count * len(composites) / len(cases)))
    return cases.select(list(composites[:take]) + list(restricted[:count - take]))


def slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


class Section:
    """One section of RESULTS.md, rewritten after every row so that a stopped run keeps its rows.

    subsection: the '### ' title of the one part of the section this writes (`header` starts with
    it), the section's other parts kept (`write_subsection`): a table of one model and N."""

    def __init__(self, title: str, header: list, write: bool, subsection: str | None = None):
        self.title, self.header, self.write, self.lines = title, header, write, []
        self.subsection = subsection

    def __call__(self, line: str = "", publish: bool = False) -> None:
        print(line, flush=True)
        self.lines.append(line)
        if publish:
            self.publish("\n*The run had not finished when this was written: rows or tables below are missing.*")

    def publish(self, note: str = "") -> None:
        if not self.write:
            return
        text = "\n".join(self.header + self.lines + ([note] if note else [])) + "\n"
        if self.subsection is None:
            write_section(self.title, text)
        else:
            write_subsection(self.title, self.subsection, text, TABLE_PREAMBLE, order=table_order)


#: What precedes the tables in SECTION (each table follows with its own command).
TABLE_PREAMBLE = (f"{SECTION}\n\nColumns: see the docstring of `benchmarks/quality/realmodels.py`. Each table is "
                  "written by the run that made it, its command under its title (`--models`, `--budgets`: a "
                  "run rewrites its own tables and keeps the others).\n")


def table_order(title: str):
    """A table's place in SECTION: N first, then the model (MODELS' order); other parts after."""
    found = re.fullmatch(r"### (.+) \(\d+ px\), N = (\d+)", title)
    names = list(model_zoo.NAMES.values())
    if not found or found.group(1) not in names:
        return None
    return int(found.group(2)), names.index(found.group(1))


def parts_path(store: Path, name: str) -> Path:
    """Where a DAX row's map ingredients are kept (`explained`; read by `benchmarks.quality.dax_map_rule`)."""
    return store / f"{slug(name)}.parts.npz"


def explained(model, cases: Cases, name: str, method: str, config, store: Path, fresh: bool, black_boxes=None,
              pool: Path | None = None, chunk: int = 20):
    """(maps, seconds, diagnostics) of one row, kept in `store` and reused unless `fresh`.

    A DAX row with one restart also keeps what its maps are built from (`parts_path`: the mask M,
    the segment effects E and the mask's mean per segment S, each [n, side, side] in case order, as
    `dax_map_rule.recorded_parts` records them), so that the map rules are compared on this very
    training without training again.

    pool: a folder of this model and budget where each case's map is kept by case (`explain_pooled`),
    shared by every case selection (the first 15 cases, the first 40, all 100): cases already there
    are not explained again, the others are explained `chunk` cases at a time and each chunk kept
    at once, so that a stopped run loses at most one chunk. None (the ablation, whose variants share
    one answer cache per case group): the row is explained in one go."""
    path = store / f"{slug(name)}.npz"
    record = method == "dax" and getattr(config, "restarts", 1) == 1 and getattr(config, "student", "") == "segments"
    saved = np.load(path) if path.is_file() and not fresh else None
    if saved is not None and made_under(saved, method, config):
        diagnostics = {key[5:]: saved[key] for key in saved.files if key.startswith("diag_")}
        maps = saved["maps"]
        kept = tuple(saved["painting"]) if "painting" in saved.files else LEGACY_PAINTING
        if record and kept != painting(config):
            from benchmarks.quality.dax_map_rule import painted

            # Kept under another painting (map_on_segments, effect_power: they change no training):
            # repainted from the kept parts once these are shown to give the kept maps; without
            # parts, or when they do not give them, trained again.
            if not parts_path(store, name).is_file():
                return explained(model, cases, name, method, config, store, True, black_boxes, pool, chunk)
            with np.load(parts_path(store, name)) as parts:
                parts = dict(parts)
            if np.abs(painted(parts, *kept) - maps).max() > 1e-5:
                return explained(model, cases, name, method, config, store, True, black_boxes, pool, chunk)
            maps = painted(parts, *painting(config))
        return maps, float(saved["seconds"]), diagnostics
    if pool is not None:
        maps, seconds, diagnostics, parts = explain_pooled(model, cases, method, config, pool / slug(name), chunk,
                                                           fresh, record)
    else:
        maps, seconds, diagnostics, parts = explain_recording(model, cases, method, config, record, black_boxes)
    store.mkdir(parents=True, exist_ok=True)
    if record:
        np.savez_compressed(parts_path(store, name), **parts)
    extra = {"painting": np.array(painting(config), np.float64)} if record else {}
    np.savez_compressed(path, maps=maps, seconds=seconds, config=np.array(config_label(method, config)), **extra,
                        **{f"diag_{k}": v for k, v in diagnostics.items()})
    return maps, seconds, diagnostics


def made_under(saved, method: str, config) -> bool:
    """Whether a kept row (its loaded .npz) was made under `config`, but for DAX's painting, which a
    kept row's parts can redo (`explained`). Rows kept before 2026-12-06 name no config: trusted, as then."""
    if "config" not in saved.files:
        return True
    if "painting" in saved.files:
        on_segments, power = saved["painting"]
        config = config.replace(map_on_segments=bool(on_segments), effect_power=float(power))
    return str(saved["config"]) == config_label(method, config)


def kept_under(path: Path, method: str, config) -> bool:
    """Whether `path` holds a row made under `config` (`made_under`)."""
    if not path.is_file():
        return False
    with np.load(path) as saved:
        return made_under(saved, method, config)


def explain_recording(model, cases: Cases, method: str, config, record: bool, black_boxes=None):
    """`explain_cases`' (maps, seconds, diagnostics) and, when `record`, the DAX parts in case order
    ({"masks", "effects", "shares"}, each [n, side, side]; else {})."""
    if not record:
        maps, seconds, diagnostics, _ = explain_cases(model, cases, method, config, black_boxes=black_boxes)
        return maps, seconds, diagnostics, {}
    from benchmarks.quality.dax_map_rule import recorded_parts

    log: list = []
    with recorded_parts(log):
        maps, seconds, diagnostics, _ = explain_cases(model, cases, method, config, black_boxes=black_boxes)
    order = np.argsort(np.concatenate(case_groups(cases)), kind="stable")  # the log follows case_groups' order
    masks, effects, shares = (np.concatenate([entry[k] for entry in log])[order] for k in range(3))
    return maps, seconds, diagnostics, {"masks": masks, "effects": effects, "shares": shares}


def case_keys(cases: Cases) -> list[str]:
    """What identifies each case's explanation under one config: a digest of its image, target and
    region (an explanation depends only on image, target, seed and config; the seed is fixed here)."""
    keys = []
    for i in range(len(cases)):
        digest = hashlib.blake2b(digest_size=12)
        digest.update(np.ascontiguousarray(cases.images[i], np.float32).tobytes())
        digest.update(np.int64(cases.targets[i]).tobytes())
        if cases.regions[i] is not None:
            digest.update(np.packbits(np.asarray(cases.regions[i], bool)).tobytes())
        keys.append(digest.hexdigest())
    return keys


def config_label(method: str, config) -> str:
    """The method and its whole config as text: a kept case is reused only under the same one."""
    return f"{method}: {config!r}"


def pooled(folder: Path, label: str, drop: set = frozenset()) -> dict:
    """case key -> that case's kept entries (maps, seconds, diag_*, part_*) under config `label` in
    `folder`; kept chunks holding any key of `drop` are removed instead (a fresh run's)."""
    kept: dict = {}
    for file in sorted(folder.glob("*.npz")) if folder.is_dir() else []:
        with np.load(file) as saved:
            if str(saved["config"]) != label:
                continue
            if drop & set(saved["case_keys"].tolist()):
                file.unlink()
                continue
            for i, key in enumerate(saved["case_keys"].tolist()):
                kept[key] = {name: saved[name][i] for name in saved.files if name not in ("case_keys", "config")}
    return kept


def explain_pooled(model, cases: Cases, method: str, config, folder: Path, chunk: int, fresh: bool, record: bool):
    """`explain_recording` for `cases`, taking each case already kept in `folder` under the same
    config and explaining the rest `chunk` at a time, each chunk kept (an .npz of its case keys,
    maps, per-image seconds, diagnostics and parts) as soon as it is done. seconds: the mean over
    the cases of their chunk's seconds per image. fresh: every case is explained again and the kept
    chunks holding any of them are removed."""
    if chunk < 1:
        raise ValueError(f"chunk must be positive, got {chunk}")
    keys, label = case_keys(cases), config_label(method, config)
    config_digest = hashlib.blake2b(label.encode(), digest_size=6).hexdigest()  # configs share the folder
    folder.mkdir(parents=True, exist_ok=True)
    kept = pooled(folder, label, drop=set(keys) if fresh else set())
    missing = [i for i, key in enumerate(keys) if key not in kept]
    for start in range(0, len(missing), chunk):
        indices = missing[start:start + chunk]
        maps, seconds, diagnostics, parts = explain_recording(model, cases.select(indices), method, config, record)
        entries = {"maps": maps, "seconds": np.full(len(indices), seconds),
                   **{f"diag_{k}": v for k, v in diagnostics.items()}, **{f"part_{k}": v for k, v in parts.items()}}
        chunk_keys = [keys[i] for i in indices]
        np.savez_compressed(folder / f"{config_digest}-{chunk_keys[0]}-{len(indices)}.npz",
                            case_keys=np.array(chunk_keys), config=np.array(label), **entries)
        for j, key in enumerate(chunk_keys):
            kept[key] = {name: values[j] for name, values in entries.items()}
        print(f"  {folder.name}: {len(missing) - start - len(indices)} of {len(missing)} cases left", flush=True)
    rows = [kept[key] for key in keys]
    stacked = {name: np.stack([row[name] for row in rows]) for name in rows[0]}
    diagnostics = {name[5:]: values for name, values in stacked.items() if name.startswith("diag_")}
    parts = {name[5:]: values for name, values in stacked.items() if name.startswith("part_")}
    return stacked["maps"], float(stacked["seconds"].mean()), diagnostics, parts


#: The painting of DAX rows kept before rows recorded theirs (the default until 2026-12-05).
LEGACY_PAINTING = (0.0, 0.1)


def painting(config) -> tuple[float, float]:
    """(map_on_segments, effect_power) of a DAX config: how its trained mask becomes its map."""
    return float(config.map_on_segments), float(config.effect_power)


def run_rows(model, cases: Cases, rows: dict, store: Path, fresh: bool, out, kept_only: bool = False,
             pool: Path | None = None, chunk: int = 20) -> dict:
    """Explains and scores every row; prints and publishes its line; returns the scores.
    kept_only: rows whose maps are not kept in `store` (nor every case of theirs in `pool`) are
    listed as not run, with how many of their cases are kept, instead of explained.
    pool, chunk: where cases are kept one by one, and how many are explained at a time (`explained`)."""
    results = {}
    for name, (method, config) in rows.items():
        if kept_only and not kept_under(store / f"{slug(name)}.npz", method, config):
            kept = pooled(pool / slug(name), config_label(method, config)) if pool is not None else {}
            done = sum(key in kept for key in case_keys(cases))
            if done < len(cases):
                out(f"| {name} | not run yet ({done} of {len(cases)} cases kept) | | | | | | | |", publish=True)
                continue
        maps, seconds, _ = explained(model, cases, name, method, config, store, fresh, pool=pool, chunk=chunk)
        results[name] = scored(model, cases, maps, store / f"{slug(name)}.scores.npz")
        out(row_line(name, cases, results[name], seconds), publish=True)
    return results


ABLATION_HEADER = ["| change | IoU mean (std) | comp | restr | top-20 % | flat | held-out fit | surrogate fit | "
                   "mask area | untrusted | s/image |", "|---|---|---|---|---|---|---|---|---|---|---|"]


def ablation_line(name: str, cases: Cases, maps: np.ndarray, diagnostics: dict, seconds: float) -> str:
    from daxjax import metrics

    kinds = np.array(cases.kinds)
    iou = metrics.iou(maps, cases.masks)
    flat = int(sum(m.std() < FLAT_STD for m in maps))

    def part(kind):
        return f"{iou[kinds == kind].mean():.3f}" if (kinds == kind).any() else "—"
    return (f"| {name} | {iou.mean():.3f} ({iou.std():.3f}) | {part('composite')} | {part('restricted')} | "
            f"{top_share_iou(maps, cases.masks).mean():.3f} | {flat} | {np.mean(diagnostics['heldout_fit']):.3f} | "
            f"{np.mean(diagnostics['surrogate_fit']):.3f} | {np.mean(diagnostics['mask_area']):.3f} | "
            f"{int((~diagnostics['trusted'].astype(bool)).sum())} | {seconds:.2f} |")


def run_ablation(model, cases: Cases, budget: int, store: Path, fresh: bool, out) -> None:
    """DAX's default and one change at a time, on shared answers (see `ablation_variants`)."""
    import daxjax

    black_boxes = [AnswerCache(cases.black_box(model, group[0])) for group in case_groups(cases)]
    base = daxjax.DAXConfig(num_samples=budget)
    for name, changes in ablation_variants().items():
        maps, seconds, diagnostics = explained(model, cases, name, "dax", base.replace(**changes), store, fresh,
                                               black_boxes)
        out(ablation_line(name, cases, maps, diagnostics, seconds), publish=True)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smoke run: Lite0, 3 composites + 1 restricted, N=150")
    parser.add_argument("--models", default=",".join(model_zoo.MODELS), help="comma-separated: lite0,lite2")
    parser.add_argument("--budgets", default="1000,3000", help="comma-separated query budgets N")
    parser.add_argument("--composites", type=int, default=60)
    parser.add_argument("--restricted", type=int, default=40)
    parser.add_argument("--preset-cases", type=int, default=12,
                        help="cases (the first ones) on which the paper's slow V1/V2 presets run (0: none)")
    parser.add_argument("--large-n-cases", type=int, default=None,
                        help="budgets above 1000 run on this many cases only (the first composites and "
                             "restricted views in the table's proportion); default all")
    parser.add_argument("--seed", type=int, default=0, help="which cases are drawn")
    parser.add_argument("--parts", default="table", help=f"comma-separated, of {', '.join(PARTS)}: the table "
                        f"rewrites its own tables (one per model and N) in '{SECTION[3:]}', the ablation (first model and budget) '{ABLATION_SECTION[3:]}'")
    parser.add_argument("--methods", default=None,
                        help="comma-separated row names to run (e.g. RISE,LIME); default all")
    parser.add_argument("--out", default="out/realmodels", help="where each row's maps are kept")
    parser.add_argument("--fresh", action="store_true", help="recompute rows whose maps are kept")
    parser.add_argument("--chunk", type=int, default=20,
                        help="cases explained at a time, each chunk kept at once under --out (by case, shared "
                             "by every selection of cases: a larger --large-n-cases reuses a smaller one's)")
    parser.add_argument("--kept-only", action="store_true",
                        help="table only the rows whose maps are kept (others are listed as not run): "
                             "a partial table while a run is still under way")
    parser.add_argument("--no-write", action="store_true", help="print only, do not update RESULTS.md")
    args = parser.parse_args(argv)
    if args.quick:
        args.models, args.budgets, args.composites, args.restricted, args.preset_cases = "lite0", "150", 3, 1, 0
    parts = args.parts.split(",")
    unknown = sorted(set(parts) - set(PARTS))
    if unknown:
        raise SystemExit(f"--parts: unknown {unknown}; choose from {', '.join(PARTS)}")
    command = "python -m benchmarks.quality.realmodels " + " ".join(argv if argv is not None else sys.argv[1:])
    from benchmarks.throughput.common import machine

    def section(title, subsection=None):
        header = [subsection or title, "", f"Command: `{command.strip()}` — {machine()}, "
                  f"{time.strftime('%Y-%m-%d')}.", *([] if subsection else
                  ["Columns: see the docstring of `benchmarks/quality/realmodels.py`."]), ""]
        return Section(title, header, write=not args.no_write, subsection=subsection)

    ablation = section(ABLATION_SECTION) if "ablation" in parts else None
    budgets = [int(b) for b in args.budgets.split(",")]
    loaded = {}
    # Budget-major: every model's N = 1000 table comes before any N = 3000 one (a stopped run keeps
    # the cheaper tables of both models).
    for budget in budgets:
        for model_name in args.models.split(","):
            if model_name not in loaded:
                model = model_zoo.load(model_name)
                loaded[model_name] = (model, make_cases(model, model_zoo.SIDES[model_name], args.composites,
                                                        args.restricted, seed=args.seed))
            model, cases = loaded[model_name]
            side = model_zoo.SIDES[model_name]
            large = budget > 1000 and args.large_n_cases and args.large_n_cases < len(cases)
            if large:
                cases = first_cases(cases, args.large_n_cases)
            kinds = np.array(cases.kinds)
            about = (f"{len(cases)} cases ({int((kinds == 'composite').sum())} composites, "
                     f"{int((kinds == 'restricted').sum())} restricted views; drawn with seed {args.seed}"
                     f"{'; the first of the N = 1000 table in its proportions, --large-n-cases' if large else ''}); "
                     f"target probability {np.median(cases.scores):.2f} median ({cases.scores.min():.2f} to "
                     f"{cases.scores.max():.2f}).")
            store = Path(args.out) / f"{model_name}_seed{args.seed}_N{budget}_{len(cases)}cases"
            pool = Path(args.out) / f"{model_name}_N{budget}_by_case"
            title = f"### {model_zoo.NAMES[model_name]} ({side} px), N = {budget}"
            if "table" in parts:
                table = section(SECTION, subsection=title)
                print(title, flush=True)
                table(about)
                table()
                table("\n".join(HEADER))
                for name, maps in reference_maps(len(cases), side, seed=0, masks=cases.masks).items():
                    table(row_line(name, cases, scored(model, cases, maps, store / f"{slug(name)}.scores.npz"), None))
                rows = methods(budget, side, presets=False)
                if args.methods:
                    rows = {name: row for name, row in rows.items() if name in args.methods.split(",")}
                run_rows(model, cases, rows, store, args.fresh, table, kept_only=args.kept_only, pool=pool,
                         chunk=args.chunk)
                if args.preset_cases and budget == budgets[0]:
                    subset = cases.select(range(min(args.preset_cases, len(cases))))
                    table()
                    table(f"The paper's presets on the first {len(subset)} cases only (their training is "
                          f"far longer than DAX's), beside our default on the same cases:")
                    table()
                    table("\n".join(HEADER))
                    presets = {name: row for name, row in methods(budget, side, presets=True).items()
                               if name.startswith("DAX") and (not args.methods or name in args.methods.split(","))}
                    run_rows(model, subset, presets, store / f"first{len(subset)}", args.fresh, table,
                             kept_only=args.kept_only, pool=pool, chunk=args.chunk)
                table.publish()
            if ablation is not None and model_name == args.models.split(",")[0] and budget == budgets[0]:
                ablation(title + ": DAX's default and one change at a time")
                ablation()
                ablation(about + " Every variant perturbs alike, so the black box's answers are shared: "
                         "the seconds are training and segmentation, the queries paid by the first row.")
                ablation()
                ablation("\n".join(ABLATION_HEADER))
                run_ablation(model, cases, budget, store / "ablation", args.fresh, ablation)
                ablation()
    if ablation is not None:
        ablation.publish()


if __name__ == "__main__":
    main()
