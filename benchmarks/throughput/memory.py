"""Peak host memory of `explain_dataset` against the number of images (it should not grow).

    python -m benchmarks.pipeline_memory                 # 100 vs 1000 images, RISE, 64x64
    python -m benchmarks.pipeline_memory --counts 100 1000 --method dax --num-samples 200

Each run is a fresh process reading an .npz of synthetic scenes from disk (rows are read one at
a time) with one worker process; reported: peak RSS of the main process (`ru_maxrss`), peak of
the summed RSS of the whole process tree (main, fork server, workers; sampled every 0.1 s), the
batch plan and the images/s of the run.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _tree_rss_mib() -> float:
    """Summed RSS of this process and all its descendants (Linux /proc)."""
    import os

    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
                children.setdefault(ppid, []).append(int(entry))
            except (OSError, IndexError, ValueError):
                pass
    total, todo = 0, [os.getpid()]
    while todo:
        pid = todo.pop()
        todo.extend(children.get(pid, []))
        try:
            with open(f"/proc/{pid}/status") as f:
                total += next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
        except (OSError, StopIteration):
            pass
    return total / 1024


def _worker(spec: dict) -> dict:
    import threading

    import daxjax
    from blackbox_adapters import OnnxBlackBox, bundled_model_path
    from daxjax.explain import EXPLAINERS

    peak = [0.0]
    done = threading.Event()

    def sample():
        while not done.wait(0.1):
            peak[0] = max(peak[0], _tree_rss_mib())
    threading.Thread(target=sample, daemon=True).start()
    data = Path(spec["dir"]) / f"scenes{spec['count']}.npz"
    bb = OnnxBlackBox(bundled_model_path("colour_nchw"))
    config = EXPLAINERS[spec["method"]][0](num_samples=spec["num_samples"])
    t0 = time.perf_counter()
    summary = daxjax.explain_dataset(bb, data, Path(spec["dir"]) / f"out{spec['count']}", method=spec["method"],
                                     config=config, workers=1, progress=False)
    seconds = time.perf_counter() - t0
    done.set()
    return {"count": spec["count"], "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "tree_peak_rss_mib": peak[0],
            "batch": summary.plan.batch, "query_chunk": summary.plan.query_chunk, "prefetch": summary.plan.prefetch,
            "images_per_second": summary.explained / seconds}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--counts", type=int, nargs="+", default=[100, 1000])
    parser.add_argument("--method", default="rise")
    parser.add_argument("--num-samples", type=int, default=64)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(_worker(json.loads(args.worker))))
        return
    print(f"method={args.method}, N={args.num_samples}, {args.size}x{args.size} images from an .npz, 1 worker")
    print("| images | B | query chunk | prefetch | main peak RSS MiB | process tree peak RSS MiB | images/s |")
    print("|---|---|---|---|---|---|---|")
    import numpy as np

    from daxjax.scenes import colour_patch_scenes

    with tempfile.TemporaryDirectory() as tmp:
        for count in args.counts:  # made here, so that the measured process never holds the dataset
            images, _ = colour_patch_scenes(count, args.size, seed=1)
            np.savez(Path(tmp) / f"scenes{count}.npz", images=(np.asarray(images) * 255).astype(np.uint8))
        for count in args.counts:
            spec = {"dir": tmp, "count": count, "method": args.method, "num_samples": args.num_samples,
                    "size": args.size}
            out = subprocess.run([sys.executable, "-m", "benchmarks.pipeline_memory", "--worker", json.dumps(spec)],
                                 capture_output=True, text=True, check=False)
            if out.returncode != 0:
                raise RuntimeError(out.stderr[-3000:])
            r = json.loads(out.stdout.strip().splitlines()[-1])
            print(f"| {r['count']} | {r['batch']} | {r['query_chunk']} | {r['prefetch']} | {r['peak_rss_mib']:.0f} | "
                  f"{r['tree_peak_rss_mib']:.0f} | {r['images_per_second']:.1f} |", flush=True)


if __name__ == "__main__":
    main()
