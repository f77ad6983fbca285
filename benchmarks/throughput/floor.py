"""The floor ratio: whole-dataset explanation against the black box's own speed (issue 4).

An explanation costs at least N black-box forwards, so no explainer can run faster than
(the black box's queries/s) / N images per second: the floor. For DAX, RISE and LIME at the same
N, one process measures
  * the black box alone: EfficientNet-Lite0 (ONNX Runtime, all cores) answering calls of the size
    the engine makes (B images x query chunk), before and after the methods run;
  * `daxjax.explain_dataset` end to end on photos from an .npz file (reading, segmenting in a
    worker process, queries, training, the store): first on the first batch alone (compiling),
    then timed on all photos, in a fresh store;
and reports images/s, the floor ratio (images/s) / (queries/s / N), each method's cost relative
to RISE's, and where the time went. The images are scikit-image's bundled photos (and mirror
images of them) at 224 x 224.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

SECTION = "## Floor ratio: datasets explained against the black box's own speed (issue 4)"
METHODS = ("dax", "rise", "lime")


def blackbox_rate(bb, images, call_size: int, queries: int) -> float:
    """Queries per second of `bb` alone on calls of `call_size` images, about `queries` in all."""
    import numpy as np

    block = np.repeat(images, -(-call_size // len(images)), axis=0)[:call_size]
    bb(block)  # ONNX Runtime's first run allocates; not part of the rate
    calls = max(1, round(queries / call_size))
    start = time.perf_counter()
    for _ in range(calls):
        bb(block)
    return calls * call_size / (time.perf_counter() - start)


def measure(spec: dict) -> dict:
    import numpy as np

    import daxjax
    from benchmarks.throughput.common import photos
    from blackbox_adapters import efficientnet_lite0
    from daxjax.explain import EXPLAINERS

    bb = efficientnet_lite0()
    images = photos(spec["images"])
    n = spec["num_samples"]
    result = {"providers": bb.providers, "methods": {}}
    with tempfile.TemporaryDirectory() as tmp:
        pixels = (images * 255).round().astype(np.uint8)
        sources = {"compile": Path(tmp) / "first-batch.npz", "timed": Path(tmp) / "photos.npz"}
        np.savez(sources["compile"], images=pixels[:spec["batch"]])
        np.savez(sources["timed"], images=pixels)
        rates = []
        for method in spec["methods"]:
            config = EXPLAINERS[method][0](num_samples=n)
            runs = []
            for attempt, source in sources.items():
                summary = daxjax.explain_dataset(bb, source, Path(tmp) / f"{method}-{attempt}", method=method,
                                                 config=config, seed=0, batch_size=spec["batch"], workers=1,
                                                 progress=False)
                if summary.errors:
                    raise RuntimeError(f"{method}: {summary.errors} error rows")
                runs.append(summary)
            call_size = runs[1].plan.batch * runs[1].plan.query_chunk
            rates.append(blackbox_rate(bb, images, call_size, spec["floor_queries"]))
            result["methods"][method] = {
                "first_batch_seconds": runs[0].seconds, "seconds": runs[1].seconds,
                "images_per_second": runs[1].images_per_second, "phases": runs[1].phases,
                "batch": runs[1].plan.batch, "query_chunk": runs[1].plan.query_chunk,
                "queries_per_second": rates[-1],
            }
    result["queries_per_second"] = float(np.mean(rates))
    return result


def report(args, lines) -> None:
    from benchmarks.throughput.common import run_worker

    spec = {"images": 4 if args.quick else 12, "batch": 2 if args.quick else 4,
            "num_samples": 300 if args.quick else 2000,
            "floor_queries": 600 if args.quick else 2000, "methods": list(METHODS)}
    r = run_worker("floor", spec)
    n, qps = spec["num_samples"], r["queries_per_second"]
    floor = qps / n
    lines(f"Black box: bundled EfficientNet-Lite0 (224 x 224, ONNX Runtime on {', '.join(r['providers'])}, "
          f"all cores); {spec['images']} photos (scikit-image's bundled photos and mirror images) in batches "
          f"of {spec['batch']}, "
          f"N = {n} queries per image for every method, each method's default config otherwise. The black "
          f"box alone, measured after each method on calls of the engine's size: "
          + ", ".join(f"{m['queries_per_second']:.1f}" for m in r["methods"].values())
          + f" queries/s (mean {qps:.1f}), so the floor is {floor:.4f} images/s ({1 / floor:.1f} s per image).")
    lines()
    lines("| method | images/s | floor ratio | cost / RISE | s/image | first batch alone, s/image (compile) | "
          "per image: wait | targets | segmentation | queries | training / saliency | commit |")
    lines("|---|---|---|---|---|---|---|---|---|---|---|---|")
    rise = r["methods"]["rise"]["seconds"]
    for method, m in r["methods"].items():
        p = {k: v / spec["images"] for k, v in m["phases"].items()}
        fit = p.get("training", p.get("saliency", p.get("regression", 0.0)))
        lines(f"| {method} | {m['images_per_second']:.4f} | {m['images_per_second'] / floor:.2f} | "
              f"{m['seconds'] / rise:.2f} | {m['seconds'] / spec['images']:.2f} | "
              f"{m['first_batch_seconds'] / spec['batch']:.2f} | {p.get('wait', 0):.2f} | {p.get('targets', 0):.2f} | "
              f"{p.get('segmentation', 0):.2f} | {p.get('queries', 0):.2f} | {fit:.2f} | {p.get('commit', 0):.2f} |")
    lines()
    lines("Floor ratio = (images/s of `explain_dataset` over all photos, after a run on the first batch alone "
          "that compiled the programs) / "
          "(black box queries/s / N). Cost / RISE = seconds of the run / RISE's. Phases are per image, as "
          "`RunSummary.phases` reports them (segmentation runs in the worker process, overlapping the device "
          "work, and is not part of the main process's time).")
