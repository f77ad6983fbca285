"""The `daxjax` command line.

    daxjax explain --model model.onnx --images photos/ --out results/
    daxjax explain --help

Commands are entries of COMMANDS: name -> Command(help, add_arguments, run, epilog). To add one
(`evaluate`, `report`, `bench`, `demo`, ...), write `add_<name>_arguments(parser)` and
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

Results go to a store directory (zarr arrays + an index). Read them in Python with
  res = daxjax.load_results("results/")   # res.ids, res.maps [n, H, W], res.targets, res.scores, res.errors
Run the same command again after an interruption: finished images are skipped.

TOML file: top-level keys are the long options with '_' for '-' (model, images, out, method, seed,
targets, size, layout, mean, std, output, batch_size, workers, memory_budget, ...); a [config]
table holds fields of the method's config dataclass (e.g. daxjax.DAXConfig: num_samples, epochs,
segmentation, ...). Options on the command line win over the file.

Several machines: start the same command on each with --coordinator HOST:PORT --num-processes P
--process-id I (jax.distributed); each takes a disjoint share of the images and writes its own
part of the store, which must be on a file system they all see.
"""

# Options that the TOML file may also give (dest -> default when neither gives it).
_EXPLAIN_DEFAULTS = {
    "model": None, "images": None, "out": None, "method": "dax", "seed": 0, "targets": None,
    "num_samples": None, "size": None, "layout": "NCHW", "mean": None, "std": None, "output": "logits",
    "batch_size": None, "workers": None, "memory_budget": None, "ort_threads": 1, "prefetch": 2,
}


def add_explain_arguments(parser: argparse.ArgumentParser) -> None:
    what = parser.add_argument_group("what to explain")
    what.add_argument("--model", metavar="MODEL.onnx", help="the classifier to explain, an ONNX file")
    what.add_argument("--images", metavar="SOURCE",
                      help="a directory (searched recursively), a quoted glob pattern, or FILE.npz[:ARRAY]")
    what.add_argument("--out", metavar="DIR", help="result store directory (created, or resumed)")
    what.add_argument("--targets", metavar="LABELS.csv",
                      help="classes to explain: CSV rows 'id,class' (id as the image is named in the "
                           "store: path relative to the directory); default: the model's top-1 class")

    how = parser.add_argument_group("how to explain")
    how.add_argument("--method", help="dax (default), rise, lime, kernelshap or occlusion")
    how.add_argument("--num-samples", type=int, metavar="N", help="perturbations (black-box queries) per image")
    how.add_argument("--seed", type=int, help="random seed (default 0); with the image it fixes its explanation")
    how.add_argument("--config", metavar="FILE.toml", help="options and method config from a TOML file")
    how.add_argument("--size", metavar="H,W",
                     help="resize every image to H x W (or one number for square); default: the "
                          "model's fixed input size, else the first image's size")

    model = parser.add_argument_group("the ONNX model's input and output")
    model.add_argument("--layout", help="NCHW (default) or NHWC")
    model.add_argument("--mean", metavar="M[,M,M]", help="subtracted from pixels in [0, 1] (per channel)")
    model.add_argument("--std", metavar="S[,S,S]", help="pixels are divided by it after --mean (per channel)")
    model.add_argument("--output", help="logits (default; a softmax is applied) or probs")
    model.add_argument("--ort-threads", type=int, metavar="T", help="ONNX Runtime intra-op threads (default 1)")

    run = parser.add_argument_group("resources")
    run.add_argument("--batch-size", type=int, metavar="B", help="images per step (default: from the memory budget)")
    run.add_argument("--memory-budget", metavar="BYTES", help="host memory to plan for, e.g. 8G (default: 1/4 of free)")
    run.add_argument("--workers", type=int, metavar="W", help="processes reading and segmenting images")
    run.add_argument("--prefetch", type=int, metavar="K", help="prepared batches allowed to wait (default 2)")
    run.add_argument("--no-progress", action="store_true", help="no progress bar")
    run.add_argument("--coordinator", metavar="HOST:PORT", help="jax.distributed coordinator (several processes)")
    run.add_argument("--num-processes", type=int, metavar="P", help="number of processes (with --coordinator)")
    run.add_argument("--process-id", type=int, metavar="I", help="this process's index (with --coordinator)")


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
    return options, config_fields


def _method_config(method: str, fields: dict):
    from daxjax.explain import EXPLAINERS

    if method not in EXPLAINERS:
        raise UsageError(f"unknown method {method!r}; choose one of {', '.join(EXPLAINERS)}")
    config_type = EXPLAINERS[method][0]
    known = {f.name for f in dataclasses.fields(config_type)}
    unknown = sorted(set(fields) - known)
    if unknown:
        raise UsageError(f"{config_type.__name__} has no field(s) {unknown} (method {method!r}); "
                         f"its fields: {', '.join(sorted(known))}")
    try:
        return config_type(**fields)
    except (TypeError, ValueError) as err:
        raise UsageError(str(err)) from None


def run_explain(args: argparse.Namespace) -> int:
    options, config_fields = _merged_options(args)
    config = _method_config(options["method"], config_fields)
    if args.coordinator:
        if args.num_processes is None or args.process_id is None:
            raise UsageError("--coordinator needs --num-processes and --process-id")
        import jax

        jax.distributed.initialize(args.coordinator, num_processes=args.num_processes, process_id=args.process_id)

    from blackbox_adapters import OnnxBlackBox
    from daxjax.pipeline import explain_dataset

    model = Path(options["model"])
    if not model.is_file():
        raise UsageError(f"--model: no such file: {model}")
    if options["layout"] not in ("NCHW", "NHWC"):
        raise UsageError(f"--layout must be NCHW or NHWC; got {options['layout']!r}")
    if options["output"] not in ("logits", "probs"):
        raise UsageError(f"--output must be logits or probs; got {options['output']!r}")
    bb = OnnxBlackBox(model, layout=options["layout"],
                      mean=None if options["mean"] is None else _numbers(options["mean"], "--mean"),
                      std=None if options["std"] is None else _numbers(options["std"], "--std"),
                      output=options["output"], intra_op_threads=int(options["ort_threads"]))
    size = None if options["size"] is None else _numbers(options["size"], "--size", int)
    if size is not None and len(size) not in (1, 2):
        raise UsageError(f"--size must be H,W or one number; got {options['size']!r}")
    targets = None if options["targets"] is None else read_targets_csv(options["targets"])
    summary = explain_dataset(
        bb, options["images"], options["out"], method=options["method"], config=config,
        seed=int(options["seed"]), targets=targets,
        size=None if size is None else (size[0] if len(size) == 1 else size),
        batch_size=options["batch_size"], memory_budget=_bytes(options["memory_budget"]),
        workers=options["workers"], prefetch=int(options["prefetch"]), progress=not args.no_progress)
    print(f"{summary.out}: {summary.explained} explained, {summary.errors} errors, "
          f"{summary.skipped} already done; {summary.seconds:.1f} s "
          f"({summary.images_per_second:.2f} images/s)", file=sys.stderr)
    return 0


# -- the command table ------------------------------------------------------------------------

COMMANDS: dict[str, Command] = {
    "explain": Command("explain every image of a dataset with a black-box model; results to a store",
                       add_explain_arguments, run_explain, _EXPLAIN_EPILOG),
}


def _user_errors() -> tuple[type[BaseException], ...]:
    from blackbox_adapters import BlackBoxError
    from daxjax.inputs import InputError
    from daxjax.sources import SourceError
    from daxjax.store import StoreError

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
