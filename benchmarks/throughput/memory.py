"""Peak host memory of `explain_dataset` against the number of images (it should not grow; issue 4).

    python -m benchmarks.throughput --part memory        # 100 vs 1000 images, RISE and DAX, 64x64

Each run is a fresh process reading an .npz of synthetic scenes from disk (rows are read one at
a time) with one worker process; reported: peak RSS of the main process (`ru_maxrss`), peak of
the summed RSS of the whole process tree (main, fork server, workers; sampled every 0.1 s), the
batch plan and the images/s of the run.
"""

from __future__ import annotations

import resource
import tempfile
import time
from pathlib import Path

SECTION = "## Host memory of explain_dataset against the dataset size (issue 4)"


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


def measure(spec: dict) -> dict:
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
    summary = daxjax.explain_dataset(bb, data, Path(spec["dir"]) / f"out-{spec['method']}-{spec['count']}", method=spec["method"],
                                     config=config, workers=1, progress=False)
    seconds = time.perf_counter() - t0
    done.set()
    return {"count": spec["count"], "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "tree_peak_rss_mib": peak[0],
            "batch": summary.plan.batch, "query_chunk": summary.plan.query_chunk, "prefetch": summary.plan.prefetch,
            "images_per_second": summary.explained / seconds}


def report(args, lines) -> None:
    import numpy as np

    from benchmarks.throughput.common import run_worker
    from daxjax.scenes import colour_patch_scenes

    # (method, N, dataset sizes): RISE, the cheaper, also at 3000 images, to see where memory settles.
    runs = ((("rise", 64, (20, 200)), ("dax", 128, (20, 200))) if args.quick else
            (("rise", 64, (100, 1000, 3000)), ("dax", 128, (100, 1000))))
    lines(f"Images 64 x 64 read row by row from an .npz, one worker process, the bundled colour model; "
          "N = " + ", ".join(f"{n} ({m})" for m, n, _ in runs)
          + " queries per image (memory follows the batch and the query chunk; see the loop table for N).")
    lines()
    lines("| method | images | B | query chunk | prefetch | main peak RSS MiB | process tree peak RSS MiB | images/s |")
    lines("|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        # The datasets are made here, so that the measured process never holds one.
        for count in sorted({c for *_, counts in runs for c in counts}):
            images, _ = colour_patch_scenes(count, 64, seed=1)
            np.savez(Path(tmp) / f"scenes{count}.npz", images=(np.asarray(images) * 255).astype(np.uint8))
        for method, num_samples, counts in runs:
            for count in counts:
                r = run_worker("memory", {"dir": tmp, "count": count, "method": method,
                                          "num_samples": num_samples})
                lines(f"| {method} | {r['count']} | {r['batch']} | {r['query_chunk']} | {r['prefetch']} | "
                      f"{r['peak_rss_mib']:.0f} | {r['tree_peak_rss_mib']:.0f} | {r['images_per_second']:.1f} |")
    lines()
    lines("Main peak RSS = `ru_maxrss` of the main process; process tree = the summed RSS of the main "
          "process, the fork server and the worker, sampled every 0.1 s.")
