"""The floor ratio: whole-dataset explanation against the black box's own speed (issue 4).

An explanation costs at least N black-box forwards, so no explainer can run faster than
(the black box's queries/s) / N images per second: the floor. For DAX, RISE and LIME at the same
N, one process per device count measures
  * `daxjax.explain_dataset` end to end on photos from an .npz file (reading, segmenting in a
    worker process, queries, training, the store): first on the first batch alone (compiling),
    then timed on all photos, in a fresh store;
  * the black box alone after each method: EfficientNet-Lite0 (ONNX Runtime, all cores) answering
    calls of the size the engine made, from one thread and from as many threads as there are
    devices (each device queries the black box for its own images, concurrently); the floor is the
    best of all these rates, so that concurrency never counts in our favour.
Reported: images/s, the floor ratio (images/s) / (queries/s / N), each method's cost relative to
RISE's and where the time went. On a CPU machine the devices are XLA's host devices
(`XLA_FLAGS=--xla_force_host_platform_device_count=D`), which let the engine run the images of a
batch in parallel threads: training on all cores, and one device's perturbations built while
another's are in the black box. The images are scikit-image's bundled photos (and mirror images
of them) at 224 x 224.
"""

from __future__ import annotations

import tempfile
import threading
import time
from pathlib import Path

SECTION = "## Floor ratio: datasets explained against the black box's own speed (issue 4)"
METHODS = ("dax", "rise", "lime")


def blackbox_rate(bb, images, call_size: int, queries: int, callers: int = 1) -> float:
    """Queries per second of `bb` alone, `callers` threads each making calls of `call_size` images,
    about `queries` in all."""
    import numpy as np

    block = np.repeat(images, -(-call_size // len(images)), axis=0)[:call_size]
    bb(block)  # ONNX Runtime's first run allocates; not part of the rate
    calls = max(1, round(queries / call_size / callers))

    def work():
        for _ in range(calls):
            bb(block)
    threads = [threading.Thread(target=work) for _ in range(callers)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return callers * calls * call_size / (time.perf_counter() - start)


def measure(spec: dict) -> dict:
    import jax
    import numpy as np

    import daxjax
    from benchmarks.throughput.common import photos
    from blackbox_adapters import efficientnet_lite0
    from daxjax.explain import EXPLAINERS

    bb = efficientnet_lite0()
    images = photos(spec["images"])
    devices = len(jax.local_devices())
    result = {"providers": bb.providers, "devices": devices, "methods": {}, "rates": []}
    with tempfile.TemporaryDirectory() as tmp:
        pixels = (images * 255).round().astype(np.uint8)
        sources = {"compile": Path(tmp) / "first-batch.npz", "timed": Path(tmp) / "photos.npz"}
        np.savez(sources["compile"], images=pixels[:spec["batch"]])
        np.savez(sources["timed"], images=pixels)
        for method in spec["methods"]:
            config = EXPLAINERS[method][0](num_samples=spec["num_samples"])
            runs = []
            for attempt, source in sources.items():
                summary = daxjax.explain_dataset(bb, source, Path(tmp) / f"{method}-{attempt}", method=method,
                                                 config=config, seed=0, batch_size=spec["batch"], workers=1,
                                                 progress=False)
                if summary.errors:
                    raise RuntimeError(f"{method}: {summary.errors} error rows")
                runs.append(summary)
            plan = runs[1].plan
            per_device_call = plan.batch // devices * plan.query_chunk
            rates = {"1": blackbox_rate(bb, images, plan.batch * plan.query_chunk, spec["floor_queries"])}
            if devices > 1:
                rates[str(devices)] = blackbox_rate(bb, images, per_device_call, spec["floor_queries"], devices)
            result["rates"].extend(rates.values())
            result["methods"][method] = {
                "first_batch_seconds": runs[0].seconds, "seconds": runs[1].seconds,
                "images_per_second": runs[1].images_per_second, "phases": runs[1].phases,
                "batch": plan.batch, "query_chunk": plan.query_chunk, "rates": rates,
            }
    return result


def report(args, lines) -> None:
    from benchmarks.throughput.common import cpu_count, run_worker

    spec = {"images": 4 if args.quick else 12, "batch": 2 if args.quick else 4,
            "num_samples": 300 if args.quick else 2000,
            "floor_queries": 600 if args.quick else 2000, "methods": list(METHODS)}
    device_counts = sorted({1, min(cpu_count(), spec["batch"])})
    runs = [run_worker("floor", spec, env={"XLA_FLAGS": f"--xla_force_host_platform_device_count={d}"})
            for d in device_counts]
    n = spec["num_samples"]
    qps = max(rate for r in runs for rate in r["rates"])
    floor = qps / n
    lines(f"Black box: bundled EfficientNet-Lite0 (224 x 224, ONNX Runtime on {', '.join(runs[0]['providers'])}, "
          f"all cores); {spec['images']} photos (scikit-image's bundled photos and mirror images) in batches "
          f"of {spec['batch']}, N = {n} queries per image for every method, each method's default config "
          f"otherwise. The black box alone, after each method, from one thread / one thread per device: "
          + "; ".join(f"{r['devices']} device(s): " + ", ".join(
              " / ".join(f"{rate:.1f}" for rate in m["rates"].values()) for m in r["methods"].values())
              for r in runs)
          + f" queries/s. The floor takes the best, {qps:.1f} queries/s: {floor:.4f} images/s "
          f"({1 / floor:.1f} s per image).")
    lines()
    lines("| method | devices | images/s | floor ratio | cost / RISE | s/image | first batch alone, s/image (compile) | "
          "per image: wait | targets | queries | training / saliency / regression | commit |")
    lines("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in runs:
        rise = r["methods"]["rise"]["seconds"]
        for method, m in r["methods"].items():
            p = {k: v / spec["images"] for k, v in m["phases"].items()}
            fit = p.get("training", p.get("saliency", p.get("regression", 0.0)))
            lines(f"| {method} | {r['devices']} | {m['images_per_second']:.4f} | {m['images_per_second'] / floor:.2f} | "
                  f"{m['seconds'] / rise:.2f} | {m['seconds'] / spec['images']:.2f} | "
                  f"{m['first_batch_seconds'] / spec['batch']:.2f} | {p.get('wait', 0):.2f} | "
                  f"{p.get('targets', 0):.2f} | {p.get('queries', 0):.2f} | {fit:.2f} | {p.get('commit', 0):.2f} |")
    lines()
    lines("Floor ratio = (images/s of `explain_dataset` over all photos, after a run on the first batch alone "
          "that compiled the programs) / (the best black-box queries/s of the run / N). Cost / RISE = seconds "
          "of the run / RISE's with the same devices. Phases are per image, as `RunSummary.phases` reports "
          "them; with several devices they overlap, so they can add up to more than s/image (segmentation "
          "runs in the worker process, beside the device work).")
