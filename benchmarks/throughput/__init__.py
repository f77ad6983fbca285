"""Throughput benchmarks: each part measures in fresh processes and rewrites its own RESULTS.md section.

    python -m benchmarks.throughput                          # every part (about 1.5 hours on 2 CPU cores)
    python -m benchmarks.throughput --part floor peers       # some parts
    python -m benchmarks.throughput --quick --no-write       # a smoke run of every part, print only

Parts:
  loop     DAX per image: a Python loop over single images against the batched engine (issue 2)
  floor    explain_dataset on EfficientNet-Lite0 against the black box's own speed, DAX vs RISE vs LIME
  peers    our LIME / KernelSHAP against the lime package and Captum on the same models
           (pip install -r benchmarks/throughput/requirements-peers.txt first)
  devices  the same dataset on 1, 2, 4 devices (fake host devices on a CPU machine)
  memory   peak host memory of explain_dataset for 100 vs 1000 images
  gpu      black boxes on the accelerator (ONNX Runtime CUDA, torch CUDA, JAX) fed by DLPack: their
           own rate and RISE / DAX / LIME / KernelSHAP against it (issue 19; on a CPU it runs the
           same code on CPU devices and does not write RESULTS.md). Not in the default set:
           python -m benchmarks.throughput --part gpu --out out/gpu
"""

from __future__ import annotations

import argparse
import importlib
import json

PARTS = ("loop", "floor", "peers", "devices", "memory", "gpu")
DEFAULT_PARTS = ("loop", "floor", "peers", "devices", "memory")


def _module(part: str):
    return importlib.import_module(f"benchmarks.throughput.{part}")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.throughput", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--part", nargs="+", choices=PARTS, default=list(DEFAULT_PARTS), help="which parts to run")
    parser.add_argument("--quick", action="store_true", help="small sizes and N (a smoke run)")
    parser.add_argument("--no-write", action="store_true", help="print only, do not update RESULTS.md")
    parser.add_argument("--out", default="out/throughput", help="folder for a part's raw results (gpu: gpu.json, gpu.md)")
    parser.add_argument("--budget-s", type=float, default=420.0,
                        help="gpu: seconds the adapters' processes share; each skips what would not fit")
    parser.add_argument("--adapters", nargs="+", choices=("torch", "jax", "onnx"), default=["torch", "jax", "onnx"],
                        help="gpu: which adapters to measure")
    parser.add_argument("--worker", nargs=2, metavar=("PART", "SPEC"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        part, spec = args.worker
        print(json.dumps(_module(part).measure(json.loads(spec))))
        return

    from benchmarks.throughput.common import Lines

    for part in args.part:
        module = _module(part)
        print(f"\n{module.SECTION}\n", flush=True)
        lines = Lines()
        module.report(args, lines)
        flags = " ".join(["--part " + part] + ["--quick"] * args.quick)
        lines.write(module.SECTION, f"python -m benchmarks.throughput {flags}", not args.no_write)

