"""The `daxjax` command line.

    daxjax explain --model model.onnx --images photos/ --out results/
    daxjax evaluate results/ --masks masks.npz
    daxjax report results/ --source photos/
    daxjax demo
    daxjax explain --help

Commands are entries of COMMANDS: name -> Command(help, add_arguments, run, epilog). To add one
(`evaluate`, `report`, `demo`, ...), write `add_<name>_arguments(parser)` and
`run_<name>(args) -> exit code`, and add one line to COMMANDS. A command reports a usage error by
raising `UsageError` (or any of USER_ERRORS): `main` prints it as one line on stderr and exits
with 2; `--debug` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import sys
import tomllib
from pathlib import Path
from typing import Callable, NamedTuple

import numpy as np

EXIT_USAGE = 2
EXIT_FAILURE = 1


class UsageError(Exception):
    """A mistake in what the user asked for: printed as one line, exit code 2."""


class Command(NamedTuple):
    help: str                                               # one line, in `daxjax --help`
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]                # -> exit code
    epilog: str | None = None                               # examples, below the options


# -- explain ----------------------------------------------------------------------------------

_EXPLAIN_EPILOG = """\
examples:
  daxjax explain --model model.onnx --images photos/ --out results/
  daxjax explain --model model.onnx --images 'data/**/*.png' --out results/ --method rise --num-samples 2000
  daxjax explain --model model.onnx --images test.npz:x --out results/ --targets labels.csv --size 224
  daxjax explain --config run.toml          # every option can come from a TOML file
  daxjax explain --model model.onnx --images photos/ --out results/ --method dax-amortised --fit-images 500

Results go to a store directory (zarr arrays + an index). Read them in Python with
  res = daxjax.load_results("results/")   # res.ids, res.maps [n, H, W], res.targets, res.scores, res.errors
Run the same command again after an interruption: finished images are skipped (with
--retry-errors, error rows are explained again). A run in which every image failed exits with 1.

TOML file: top-level keys are the long options with '_' for '-' (model, images, out, method, seed,
targets, size, layout, mean, std, output, batch_size, workers, memory_budget, ...); a [config]
table holds fields of the method's config dataclass (e.g. daxjax.DAXConfig: num_samples, epochs,
segmentation, ...). Options on the command line win over the file. For --method dax-amortised the
config is daxjax.amortised.AmortisedConfig, one table per group: [config.teacher] queries_per_image = 250,
[config.training] steps = 3000, ...; --num-samples sets teacher.queries_per_image.

--method dax-amortised fits one explainer on --fit-images images of the dataset (default 512 or
all; the first by the SHA-256 of their ids), saves it in the store (results/amortised.npz; load it
with daxjax.amortised.load), then explains every image in one forward pass (with --refine-queries K,
K more queries an image check each map with DAX). A resumed run loads the saved explainer.

Several machines: start the same command on each with --coordinator HOST:PORT --num-processes P
--process-id I (jax.distributed); each takes a disjoint share of the images and writes its own
part of the store, which must be on a file system they all see.
"""

# Options that the TOML file may also give (dest -> default when neither gives it).
_EXPLAIN_DEFAULTS = {
    "model": None, "images": None, "out": None, "method": "dax", "seed": 0, "targets": None, "segments": None,
    "num_samples": None, "size": None, "layout": "auto", "mean": None, "std": None, "output": "logits",
    "batch_size": None, "workers": None, "memory_budget": None, "ort_threads": 1, "prefetch": 2,
    "retry_errors": False, "fit_images": None, "refine_queries": 0,
}
# Integer options and their least values: a value below is a usage error naming the option.
_COUNT_OPTIONS = {"batch_size": 1, "workers": 0, "prefetch": 1, "ort_threads": 1, "num_samples": 1, "fit_images": 2,
                  "refine_queries": 0}


def add_explain_arguments(parser: argparse.ArgumentParser) -> None:
    what = parser.add_argument_group("what to explain")
    what.add_argument("--model", metavar="MODEL.onnx", help="the classifier to explain, an ONNX file")
    what.add_argument("--images", metavar="SOURCE",
                      help="a directory (searched recursively), a quoted glob pattern, or FILE.npz[:ARRAY]")
    what.add_argument("--out", metavar="DIR", help="result store directory (created, or resumed)")
    what.add_argument("--targets", metavar="LABELS.csv",
                      help="classes to explain: CSV rows 'id,class' (id as the image is named in the "
                           "store: path relative to the directory); default: the model's top-1 class")
    what.add_argument("--segments", metavar="SOURCE",
                      help="label maps that replace the config's segmentation (dax, lime, kernelshap): a "
                           "directory of .npy files named as the images (a/cat.png -> a/cat.npy), or "
                           "FILE.npz[:ARRAY] [n, H, W] in the images' order")

    how = parser.add_argument_group("how to explain")
    how.add_argument("--method", help="dax (default), rise, lime, kernelshap, occlusion, or dax-amortised (one "
                                      "explainer fitted on a share of the dataset, see below)")
    how.add_argument("--num-samples", type=int, metavar="N", help="perturbations (black-box queries) per image")
    how.add_argument("--seed", type=int, help="random seed (default 0); with the image it fixes its explanation")
    how.add_argument("--config", metavar="FILE.toml", help="options and method config from a TOML file")
    how.add_argument("--fit-images", type=int, metavar="F",
                     help="dax-amortised: images the explainer is fitted on (default: 512, or all if fewer)")
    how.add_argument("--refine-queries", type=int, metavar="K",
                     help="dax-amortised: black-box queries an image to check each map with DAX (default 0: none; else >= 16)")
    how.add_argument("--size", metavar="H,W",
                     help="resize every image to H x W (or one number for square); default: the "
                          "model's fixed input size, else the first image's size")

    add_model_io_arguments(parser)

    run = parser.add_argument_group("resources")
    run.add_argument("--batch-size", type=int, metavar="B",
                     help="images per step, i.e. Execution.images_per_group (default: from the memory budget)")
    run.add_argument("--memory-budget", metavar="BYTES", help="host memory to plan for, e.g. 8G (default: 1/4 of free)")
    run.add_argument("--workers", type=int, metavar="W", help="processes reading and segmenting images")
    run.add_argument("--prefetch", type=int, metavar="K", help="prepared batches allowed to wait (default 2)")
    run.add_argument("--retry-errors", action="store_true", default=None,
                     help="on resume, explain the error rows of the store again (e.g. after black-box outages)")
    run.add_argument("--no-progress", action="store_true", help="no progress bar")
    run.add_argument("--coordinator", metavar="HOST:PORT", help="jax.distributed coordinator (several processes)")
    run.add_argument("--num-processes", type=int, metavar="P", help="number of processes (with --coordinator)")
    run.add_argument("--process-id", type=int, metavar="I", help="this process's index (with --coordinator)")


def add_model_io_arguments(parser: argparse.ArgumentParser) -> None:
    """How the ONNX model takes images and gives classes (shared by explain and evaluate)."""
    model = parser.add_argument_group("the ONNX model's input and output")
    model.add_argument("--layout", help="NCHW or NHWC (default: read from the model's input shape)")
    model.add_argument("--mean", metavar="M[,M,M]", help="subtracted from pixels in [0, 1] (per channel)")
    model.add_argument("--std", metavar="S[,S,S]", help="pixels are divided by it after --mean (per channel)")
    model.add_argument("--output", help="logits (default; a softmax is applied) or probs")
    model.add_argument("--ort-threads", type=int, metavar="T", help="ONNX Runtime intra-op threads (default 1)")


def _numbers(text, what: str, kind=float) -> list:
    if isinstance(text, (list, tuple)):
        return [kind(v) for v in text]
    if isinstance(text, (int, float)):
        return [kind(text)]
    try:
        return [kind(v) for v in str(text).replace("x", ",").split(",") if v.strip()]
    except ValueError:
        raise UsageError(f"{what} must be numbers separated by commas; got {text!r}") from None


def _bytes(text) -> int | None:
    if text is None:
        return None
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
    value = str(text).strip().upper().removesuffix("B")
    try:
        return int(float(value[:-1]) * units[value[-1]]) if value[-1:] in units else int(value)
    except (ValueError, IndexError):
        raise UsageError(f"--memory-budget must be a number of bytes like 8G or 512M; got {text!r}") from None


def read_targets_csv(path: str) -> dict[str, int]:
    """id -> class from a CSV file of rows 'id,class' (a header row is allowed)."""
    if not Path(path).is_file():
        raise UsageError(f"--targets: no such file: {path}")
    targets = {}
    with open(path, newline="") as f:
        for line, row in enumerate(csv.reader(f), start=1):
            if not row or row[0].startswith("#"):
                continue
            if len(row) < 2:
                raise UsageError(f"{path}:{line}: expected 'id,class', got {row}")
            try:
                targets[row[0].strip()] = int(row[1])
            except ValueError:
                if line == 1:
                    continue  # a header
                raise UsageError(f"{path}:{line}: class {row[1]!r} is not an integer") from None
    return targets


def _merged_options(args: argparse.Namespace) -> tuple[dict, dict]:
    """(options, config fields): the command line over the TOML file over the defaults."""
    from_file: dict = {}
    if args.config:
        if not Path(args.config).is_file():
            raise UsageError(f"--config: no such file: {args.config}")
        try:
            from_file = tomllib.loads(Path(args.config).read_text())
        except tomllib.TOMLDecodeError as err:
            raise UsageError(f"--config {args.config}: not valid TOML: {err}") from None
    config_fields = dict(from_file.pop("config", {}))
    unknown = sorted(set(from_file) - set(_EXPLAIN_DEFAULTS))
    if unknown:
        raise UsageError(f"--config {args.config}: unknown option(s) {unknown}; known: {sorted(_EXPLAIN_DEFAULTS)}")
    options = {}
    for name, default in _EXPLAIN_DEFAULTS.items():
        given = getattr(args, name)
        options[name] = given if given is not None else from_file.get(name, default)
    if options["num_samples"] is not None:
        config_fields["num_samples"] = options["num_samples"]
    for name in ("model", "images", "out"):
        if options[name] is None:
            raise UsageError(f"--{name} is required (on the command line or in the --config file)")
    for name, low in _COUNT_OPTIONS.items():
        value = options[name]
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < low):
            raise UsageError(f"--{name.replace('_', '-')} must be an integer >= {low}; got {value!r}")
    return options, config_fields


def _method_config(method: str, fields: dict):
    from daxjax.methods.registry import DATASET_METHODS, REGISTRY

    if method in DATASET_METHODS:
        return _amortised_config(method, fields)
    if method not in REGISTRY:
        raise UsageError(f"unknown method {method!r}; choose one of {', '.join((*REGISTRY, *DATASET_METHODS))}")
    config_type = REGISTRY[method].config_type
    known = {f.name for f in dataclasses.fields(config_type)}
    unknown = sorted(set(fields) - known)
    if unknown:
        raise UsageError(f"{config_type.__name__} has no field(s) {unknown} (method {method!r}); "
                         f"its fields: {', '.join(sorted(known))}")
    try:
        return config_type(**fields)
    except (TypeError, ValueError) as err:
        raise UsageError(str(err)) from None


def _amortised_config(method: str, fields: dict):
    """An `AmortisedConfig` from TOML groups ({"teacher": {...}, "training": {...}}); a num_samples
    field (--num-samples) is teacher.queries_per_image."""
    from daxjax.amortised.config import AmortisedConfig

    fields = {name: dict(value) if isinstance(value, dict) else value for name, value in fields.items()}
    if "num_samples" in fields:
        fields.setdefault("teacher", {})["queries_per_image"] = fields.pop("num_samples")
    flat = sorted(name for name, value in fields.items() if not isinstance(value, dict))
    if flat:
        raise UsageError(f"method {method!r}: config field(s) {flat} must sit in their group's table, e.g. "
                         "[config.teacher] queries_per_image = 250 (groups: teacher, nets, training, refine)")
    try:
        return AmortisedConfig.from_dict(fields)
    except (TypeError, ValueError) as err:
        raise UsageError(f"method {method!r}: {err}") from None


def _onnx_blackbox(options: dict):
    """The ONNX black box of the model options (model, layout, mean, std, output, ort_threads)."""
    from blackbox_adapters import OnnxBlackBox

    model = Path(options["model"])
    if not model.is_file():
        raise UsageError(f"--model: no such file: {model}")
    if options["layout"] not in ("NCHW", "NHWC", "auto"):
        raise UsageError(f"--layout must be NCHW or NHWC; got {options['layout']!r}")
    if options["output"] not in ("logits", "probs"):
        raise UsageError(f"--output must be logits or probs; got {options['output']!r}")
    return OnnxBlackBox(model, layout=options["layout"],
                        mean=None if options["mean"] is None else _numbers(options["mean"], "--mean"),
                        std=None if options["std"] is None else _numbers(options["std"], "--std"),
                        output=options["output"], intra_op_threads=int(options["ort_threads"]))


def run_explain(args: argparse.Namespace) -> int:
    options, config_fields = _merged_options(args)
    config = _method_config(options["method"], config_fields)
    if args.coordinator:
        if args.num_processes is None or args.process_id is None:
            raise UsageError("--coordinator needs --num-processes and --process-id")
        import jax

        jax.distributed.initialize(args.coordinator, num_processes=args.num_processes, process_id=args.process_id)

    from daxjax.dataset.pipeline import explain_dataset, load_results
    from daxjax.device.execution import Execution
    from daxjax.methods.registry import DATASET_METHODS

    bb = _onnx_blackbox(options)
    size = None if options["size"] is None else _numbers(options["size"], "--size", int)
    if size is not None and len(size) not in (1, 2):
        raise UsageError(f"--size must be H,W or one number; got {options['size']!r}")
    targets = None if options["targets"] is None else read_targets_csv(options["targets"])
    summary = explain_dataset(
        bb, options["images"], options["out"], method=options["method"], config=config,
        seed=options["seed"], targets=targets, segments=options["segments"],
        size=None if size is None else (size[0] if len(size) == 1 else size),
        execution=Execution(images_per_group=options["batch_size"]), memory_budget=_bytes(options["memory_budget"]),
        workers=options["workers"], prefetch=int(options["prefetch"]), progress=not args.no_progress,
        retry_errors=bool(options["retry_errors"]), fit_images=options["fit_images"],
        refine_queries=int(options["refine_queries"]))
    ignored = (f"; {len(summary.not_images)} files that are not images ignored "
               f"({', '.join(summary.not_images[:3])}{', ...' if len(summary.not_images) > 3 else ''})"
               if summary.not_images else "")
    uninformative = (f", {summary.uninformative} of them uninformative: the black box's answer did not change "
                     f"under perturbation" if summary.uninformative else "")
    flagged = (f" ({summary.untrusted} flagged untrusted{uninformative}: see load_results(out).diagnostics)"
               if summary.untrusted else "")
    print(f"{summary.out}: {summary.explained} explained{flagged}, {summary.errors} errors, "
          f"{summary.skipped} already done{ignored}; {summary.seconds:.1f} s "
          f"({summary.images_per_second:.2f} images/s)", file=sys.stderr)
    if options["method"] in DATASET_METHODS:
        from daxjax.dataset import amortised as amortised_mode

        print(f"{summary.out}: explainer in {Path(summary.out) / amortised_mode.EXPLAINER_FILE} (fit set and report: "
              f"{amortised_mode.FIT_RECORD})", file=sys.stderr)
    if summary.errors and not summary.explained:
        first_id, reason = next(iter(load_results(summary.out).errors.items()))
        print(f"daxjax explain: error: every image of this run failed ({summary.errors} errors; the store's "
              f"first, {first_id}: {_one_line(reason)})", file=sys.stderr)
        return EXIT_FAILURE
    return 0


# -- reading a store back: its images and ground truth ----------------------------------------

_SOURCE_HELP = ("the images the store was made from (the --images given to explain: a directory, "
                "a quoted glob pattern or FILE.npz[:ARRAY]); the store keeps maps, not images")


def _store_meta(out: str) -> dict:
    from daxjax.dataset.store import ResultStore

    if not Path(out).is_dir():
        raise UsageError(f"no such store directory: {out}")
    return ResultStore.open(out).meta


def _explained_positions(out: str) -> dict[str, int]:
    """id -> position in input order of each explained image of the store (from its index)."""
    from daxjax.dataset.store import ResultStore

    positions = {}
    for record in ResultStore.open(out).committed().values():
        for i, (image_id, status) in enumerate(zip(record["ids"], record["status"])):
            if status == "ok":
                positions[image_id] = record["start"] + i
    return positions


def _source_or_meta(args: argparse.Namespace, meta: dict) -> str:
    """--source, else the source recorded in the store's meta (stores that record one)."""
    source = args.source or meta.get("source")
    if source is None:
        raise UsageError(f"--source is required: store {args.out} does not record which images it was made "
                         "from; give the --images of the explain run")
    return source


def _store_images(source: str, ids: list[str], meta: dict) -> np.ndarray:
    """The store's images, read again from `source` as the run read them: float32 [n, H, W, C]."""
    from daxjax.inputs import InputError
    from daxjax.dataset.sources import open_source, read_image

    wanted, found = set(ids), {}
    for item in open_source(source).items():
        if item.id in wanted:
            found[item.id] = item
            if len(found) == len(wanted):
                break
    missing = [image_id for image_id in ids if image_id not in found]
    if missing:
        raise InputError(f"--source {source} has no image(s) {missing[:5]} of the store: give the images "
                         "the store was made from")
    return np.stack([read_image(found[i].raw, tuple(meta["size"]), meta["channels"]) for i in ids])


def read_masks(path: str, ids: list[str], positions: dict[str, int], size: tuple[int, int]) -> np.ndarray:
    """Ground truth for the store's explained images, bool [n, H, W] in the order of `ids`.

    The .npz file holds either one array [N, H, W] with a mask per image of the source in input
    order (N >= the last explained position), or one array [H, W] per image named by its id in
    the store (e.g. 'scene0.png'). Masks must have the store's image size H x W: the CLI never
    resizes ground truth. Every mask must mark some pixels (IoU is undefined on an empty one).
    """
    if not Path(path).is_file():
        raise UsageError(f"--masks: no such file: {path}")
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {name: npz[name] for name in npz.files}
    except (ValueError, OSError) as err:
        raise UsageError(f"--masks {path}: not a readable .npz file ({err})") from None
    if not arrays:
        raise UsageError(f"--masks {path}: the file holds no arrays")
    first_name, first = next(iter(arrays.items()))
    if len(arrays) == 1 and first.ndim == 3:
        needed = max(positions[i] for i in ids) + 1
        if first.shape[0] < needed:
            raise UsageError(f"--masks {path}: array {first_name!r} has {first.shape[0]} masks, but the store's "
                             f"images reach position {needed - 1} in input order (needs >= {needed})")
        masks = first[[positions[i] for i in ids]]
    else:
        missing = [i for i in ids if i not in arrays]
        if missing:
            raise UsageError(f"--masks {path}: no mask for image(s) {missing[:5]} of the store (give one array "
                             f"[N, H, W] in input order, or one [H, W] array per image id)")
        wrong = [f"{i!r} {arrays[i].shape}" for i in ids if arrays[i].ndim != 2]
        if wrong:
            raise UsageError(f"--masks {path}: masks keyed by id must be [H, W]; got {', '.join(wrong[:3])}")
        shapes = {arrays[i].shape for i in ids}
        if len(shapes) > 1:
            raise UsageError(f"--masks {path}: masks of different sizes {sorted(shapes)}; "
                             f"the store's images are {size[0]}x{size[1]}")
        masks = np.stack([arrays[i] for i in ids])
    if tuple(masks.shape[1:]) != tuple(size):
        raise UsageError(f"--masks {path}: masks are {masks.shape[1]}x{masks.shape[2]} but the store's maps are "
                         f"{size[0]}x{size[1]} (the images' size in the explain run); give masks of that size")
    if masks.dtype != bool and not np.isin(masks, (0, 1)).all():
        raise UsageError(f"--masks {path}: masks must be bool or 0/1; got values other than 0 and 1")
    masks = masks.astype(bool)
    empty = [image_id for image_id, mask in zip(ids, masks) if not mask.any()]
    if empty:
        raise UsageError(f"--masks {path}: empty mask (no object, IoU undefined) for image(s) {empty[:5]}")
    return masks


# -- report -----------------------------------------------------------------------------------

_REPORT_EPILOG = """\
examples:
  daxjax report results/ --source photos/                 # writes results/report.html
  daxjax report results/ --source photos/ --out-dir share/ --max-images 50

The page shows, per image, the input, the map as a heat-map overlay, its thresholded region, the
explained class and the black box's probability of it; then the run's config and timings, and the
images that could not be explained. Pictures are PNG files in report_files/ beside the page: copy
or zip the whole folder to share it.
"""


def add_report_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("out", metavar="OUT", help="the result store of a 'daxjax explain' run (its --out)")
    parser.add_argument("--source", metavar="SOURCE", help=_SOURCE_HELP)
    parser.add_argument("--out-dir", metavar="DIR", help="where report.html goes (default: inside OUT)")
    parser.add_argument("--max-images", type=int, default=200, metavar="N",
                        help="draw the first N explained images, in input order (default 200)")
    parser.add_argument("--masks", metavar="MASKS.npz",
                        help="ground truth: adds each image's mask and the IoU table (layouts: daxjax evaluate --help)")


def _masks_in_input_order(path: str, out: str, ids: list[str], size: tuple[int, int]) -> np.ndarray:
    """The masks of `ids` placed at their input positions: bool [last position + 1, H, W]."""
    positions = _explained_positions(out)
    masks = read_masks(path, ids, positions, size)
    placed = np.zeros((max(positions[i] for i in ids) + 1, *size), bool)
    placed[[positions[i] for i in ids]] = masks
    return placed


def run_report(args: argparse.Namespace) -> int:
    from daxjax.report.images import write_store_report
    from daxjax.dataset.store import load_results

    meta = _store_meta(args.out)
    source = _source_or_meta(args, meta)
    if args.max_images < 1:
        raise UsageError(f"--max-images must be at least 1; got {args.max_images}")
    masks = None
    if args.masks is not None:
        shown = load_results(args.out).ids[:args.max_images]
        if shown:
            masks = _masks_in_input_order(args.masks, args.out, shown, tuple(meta["size"]))
    path = write_store_report(args.out, source, args.out_dir, max_images=args.max_images, masks=masks)
    print(f"Report: {path.resolve()}  (open it in a browser)")
    return 0


# -- evaluate ---------------------------------------------------------------------------------

_EVALUATE_EPILOG = """\
examples:
  daxjax evaluate results/ --masks masks.npz
  daxjax evaluate results/ --masks masks.npz --model model.onnx --source photos/ --json metrics.json

Metrics, per image and their mean (higher is better unless marked lower):
  IoU            the map's region (map > mean + k*std) against the ground-truth mask
  pointing game  1 when the map's maximum lies in the mask (within --tolerance pixels), else 0
  deletion AUC   (lower) the model's probability of the class while the most important pixels are
                 removed; needs --model and --source
  insertion AUC  the probability while they are put back onto a blurred image; same needs
Two reference rows show what a metric gives for free: a random map and a centred Gaussian.

MASKS.npz holds either one bool (or 0/1) array [N, H, W]: a mask per image of the source in input
order (the order explain read them: sorted paths, or the rows of an .npz); or one array [H, W]
per image, named by its id in the store (e.g. np.savez("masks.npz", **{"cat.png": mask})). Masks
must have the store's image size (explain's --size), they are never resized.
"""


def add_evaluate_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("out", metavar="OUT", help="the result store of a 'daxjax explain' run (its --out)")
    parser.add_argument("--masks", metavar="MASKS.npz", required=True,
                        help="ground-truth masks (see below for the two layouts)")
    parser.add_argument("--json", metavar="FILE", help="also write every number (per image and means) as JSON")
    parser.add_argument("-k", type=float, default=1.0,
                        help="IoU threshold: a map's region is map > mean + k*std (default 1)")
    parser.add_argument("--tolerance", type=float, default=0.0, metavar="PX",
                        help="pointing game: a hit may miss the mask by this many pixels (default 0)")
    faithful = parser.add_argument_group("deletion / insertion AUC (only with --model)")
    faithful.add_argument("--model", metavar="MODEL.onnx", help="the classifier that was explained, an ONNX file")
    faithful.add_argument("--source", metavar="SOURCE", help=_SOURCE_HELP)
    faithful.add_argument("--auc-steps", type=int, metavar="S",
                          help="curve steps; each costs 2 queries per image and row (default 100)")
    add_model_io_arguments(parser)


def evaluate_store(out: str, masks_path: str, *, k: float = 1.0, tolerance: float = 0.0, bb=None,
                   source: str | None = None, auc_steps: int | None = None) -> dict:
    """Metrics of a store's maps against ground truth (and the black box when `bb` is given).

    Returns {"ids": [n], "method": str, "rows": {row: {metric: float32 [n]}}}: rows are the
    store's method, then the reference maps of `daxjax.report.reference_maps`.
    """
    from daxjax import metrics
    from daxjax.report.images import reference_maps
    from daxjax.dataset.store import load_results

    meta = _store_meta(out)
    results = load_results(out)
    if not results.ids:
        raise UsageError(f"store {out} has no explained images ({len(results.errors)} error(s)); nothing to evaluate")
    masks = read_masks(masks_path, results.ids, _explained_positions(out), tuple(meta["size"]))
    rows = {results.method: results.maps, **reference_maps(results.maps.shape)}
    images = None if bb is None else _store_images(source, results.ids, meta)
    steps = {} if auc_steps is None else {"steps": auc_steps}
    table: dict[str, dict[str, np.ndarray]] = {}
    for name, maps in rows.items():
        table[name] = {"IoU": metrics.iou(maps, masks, k=k),
                       "pointing game": metrics.pointing_game(maps, masks, tolerance=tolerance)}
        if bb is not None:
            table[name]["deletion AUC"] = metrics.deletion_auc(bb, images, maps, results.targets, **steps)
            table[name]["insertion AUC"] = metrics.insertion_auc(bb, images, maps, results.targets, **steps)
    return {"ids": results.ids, "method": results.method, "rows": table}


def _metrics_table(rows: dict[str, dict[str, np.ndarray]]) -> str:
    names = list(next(iter(rows.values())))
    width = max(len(row) for row in rows) + 2
    lines = ["".ljust(width) + "".join(f"{name:>16}" for name in names)]
    for row, values in rows.items():
        lines.append(row.ljust(width) + "".join(f"{float(np.mean(values[name])):>16.3f}" for name in names))
    return "\n".join(lines)


def run_evaluate(args: argparse.Namespace) -> int:
    if args.auc_steps is not None and args.auc_steps < 1:
        raise UsageError(f"--auc-steps must be at least 1; got {args.auc_steps}")
    bb = None
    if args.model is not None:
        source = _source_or_meta(args, _store_meta(args.out))
        options = {name: getattr(args, name) if getattr(args, name) is not None else _EXPLAIN_DEFAULTS[name]
                   for name in ("model", "layout", "mean", "std", "output", "ort_threads")}
        bb = _onnx_blackbox(options)
    else:
        source = None
        if args.source is not None or args.auc_steps is not None:
            raise UsageError("--source and --auc-steps are for deletion/insertion AUC, which need --model too")
    evaluation = evaluate_store(args.out, args.masks, k=args.k, tolerance=args.tolerance, bb=bb, source=source,
                                auc_steps=args.auc_steps)
    rows = evaluation["rows"]
    print(f"{args.out}: {len(evaluation['ids'])} images, method {evaluation['method']}; means over images")
    print(_metrics_table(rows))
    if args.json:
        import json

        record = {"store": str(Path(args.out).resolve()), "masks": str(Path(args.masks).resolve()),
                  "method": evaluation["method"], "ids": evaluation["ids"], "k": args.k,
                  "tolerance": args.tolerance,
                  "mean": {row: {name: float(np.mean(v)) for name, v in values.items()} for row, values in rows.items()},
                  "per_image": {row: {name: [float(x) for x in v] for name, v in values.items()}
                                for row, values in rows.items()}}
        Path(args.json).write_text(json.dumps(record, indent=1))
        print(f"Metrics: {Path(args.json).resolve()}")
    return 0


# -- demo -------------------------------------------------------------------------------------

_DEMO_EPILOG = """\
examples:
  daxjax demo                       # writes out/report.html; a few minutes on 2 CPU cores
  daxjax demo --out demo/ --photos chelsea,coffee --num-samples 500

Explains scikit-image's bundled photos (no download) with the bundled EfficientNet-Lite0 ImageNet
classifier: DAX and RISE side by side on each photo's top-1 class. Writes report.html (open it in
a browser), overlay_<photo>.png per photo, demo.png (all photos) and maps.npz to --out.
"""


def add_demo_arguments(parser: argparse.ArgumentParser) -> None:
    from daxjax import demo

    parser.add_argument("--out", default="out", metavar="DIR", help="output folder (default: out)")
    parser.add_argument("--photos", default=",".join(demo.PHOTOS), metavar="NAMES",
                        help=f"comma-separated photos of skimage.data (default: {','.join(demo.PHOTOS)}; "
                             f"bundled: {', '.join(demo.BUNDLED_PHOTOS)})")
    parser.add_argument("--num-samples", type=int, default=demo.DEFAULT_SAMPLES, metavar="N",
                        help=f"perturbations (model queries) per photo and method (default {demo.DEFAULT_SAMPLES}); "
                             "more: steadier maps, longer run")
    parser.add_argument("--auc-steps", type=int, default=demo.DEFAULT_AUC_STEPS, metavar="S",
                        help=f"steps of the deletion/insertion curves in the report (default {demo.DEFAULT_AUC_STEPS})")


def run_demo(args: argparse.Namespace) -> int:
    from daxjax import demo

    names = [name.strip() for name in args.photos.split(",") if name.strip()]
    unknown = [name for name in names if name not in demo.BUNDLED_PHOTOS]
    if unknown or not names:
        raise UsageError(f"--photos: {', '.join(map(repr, unknown)) or 'none given'}; "
                         f"choose from {', '.join(demo.BUNDLED_PHOTOS)}")
    for option, value in (("--num-samples", args.num_samples), ("--auc-steps", args.auc_steps)):
        if value < 1:
            raise UsageError(f"{option} must be at least 1; got {value}")
    demo.main(["--out", args.out, "--photos", ",".join(names), "--num-samples", str(args.num_samples),
               "--auc-steps", str(args.auc_steps)])
    return 0


# -- the command table ------------------------------------------------------------------------

COMMANDS: dict[str, Command] = {
    "explain": Command("explain every image of a dataset with a black-box model; results to a store",
                       add_explain_arguments, run_explain, _EXPLAIN_EPILOG),
    "evaluate": Command("score a store's maps against ground-truth masks (IoU, pointing game, deletion/insertion AUC)",
                        add_evaluate_arguments, run_evaluate, _EVALUATE_EPILOG),
    "report": Command("write the HTML report of a store: each image with its map, region, label and score",
                      add_report_arguments, run_report, _REPORT_EPILOG),
    "demo": Command("explain a few bundled photos with a real ImageNet model and write a report (no download)",
                    add_demo_arguments, run_demo, _DEMO_EPILOG),
}


def _user_errors() -> tuple[type[BaseException], ...]:
    from blackbox_adapters import BlackBoxError
    from daxjax.inputs import InputError
    from daxjax.dataset.sources import SourceError
    from daxjax.dataset.store import StoreError

    return (UsageError, InputError, BlackBoxError, SourceError, StoreError, FileNotFoundError)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="daxjax", description="Explain what a black-box image classifier looks at (DAX and baselines).",
        epilog="Run 'daxjax COMMAND --help' for a command's options.")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, command in COMMANDS.items():
        sub = commands.add_parser(name, help=command.help, description=command.help,
                                  epilog=command.epilog,
                                  formatter_class=argparse.RawDescriptionHelpFormatter)
        sub.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                         help="show tracebacks on errors")
        command.add_arguments(sub)
        sub.set_defaults(run=command.run)
    return parser


def _one_line(err: BaseException) -> str:
    text = " ".join(str(err).split()) or type(err).__name__
    return text if len(text) <= 400 else text[:397] + "..."


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except KeyboardInterrupt:
        print(f"daxjax {args.command}: interrupted (run the same command again to resume)", file=sys.stderr)
        return 130
    except Exception as err:  # noqa: BLE001 - one line unless --debug
        if args.debug:
            raise
        user = isinstance(err, _user_errors())
        hint = "" if user else f" ({type(err).__name__}; --debug shows the traceback)"
        print(f"daxjax {args.command}: error: {_one_line(err)}{hint}", file=sys.stderr)
        return EXIT_USAGE if user else EXIT_FAILURE


if __name__ == "__main__":
    sys.exit(main())
