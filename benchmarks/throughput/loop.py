"""Where DAX's time goes: a Python loop over single images vs the batched engine (issue 2).

    python -m benchmarks.throughput --part loop            # full table (over 30 minutes on 2 CPU cores)
    python -m benchmarks.throughput --part loop --quick    # a smoke run (about 2 minutes)

Every measurement runs in its own subprocess, so compile time and peak memory (max RSS) belong
to that configuration alone. The black box is the bundled ONNX colour-patch classifier, the
images crops of scikit-image's photos with a planted red patch (`daxjax/scenes.py`).

Per-image seconds are steady-state: a batch is explained twice and the second call is timed
(compile time = first call - second call); the loop explains image 0 once to warm up, then
times a loop over all B images (recompiles caused by an image's segment count are included,
as a user of the loop would pay them).
"""

from __future__ import annotations

import dataclasses
import resource
import time

from benchmarks.throughput.common import run_worker

SECTION = "## DAX throughput: loop vs batch (issue 2)"


def measure(spec: dict) -> dict:
    """Runs one measurement in this process and returns its numbers."""
    import jax
    import numpy as np

    import daxjax
    from daxjax.scenes import colour_patch_scenes
    from blackbox_adapters import OnnxBlackBox, bundled_model_path

    bb = OnnxBlackBox(bundled_model_path("colour_nchw"), intra_op_threads=2)
    images, _ = colour_patch_scenes(spec["batch"], spec["size"], seed=1)
    config = daxjax.DAXConfig(**spec["config"])
    execution = daxjax.Execution(**spec.get("execution", {}))
    result = {"device": jax.devices()[0].device_kind, "providers": bb.providers}

    if spec["mode"] == "batch":
        t0 = time.perf_counter()
        daxjax.explain(bb, images, config=config, execution=execution)
        first = time.perf_counter() - t0
        t0 = time.perf_counter()
        ex = daxjax.explain(bb, images, config=config, execution=execution)
        steady = time.perf_counter() - t0
        phases = ex.timings
    else:
        t0 = time.perf_counter()
        daxjax.explain(bb, images[:1], config=config, execution=execution)
        first_single = time.perf_counter() - t0
        phases = {"segmentation": 0.0, "queries": 0.0, "training": 0.0}
        t0 = time.perf_counter()
        for i in range(len(images)):
            timings = daxjax.explain(bb, images[i:i + 1], config=config, execution=execution).timings
            for phase in phases:
                phases[phase] += timings[phase]
        steady = time.perf_counter() - t0
        first = first_single + steady * (len(images) - 1) / len(images)

    if spec.get("floor"):
        # The floor: the same number of black-box forwards on the same images, nothing else.
        # Calls of the size the engine makes: B images x query_chunk(...) samples each.
        from daxjax.device.execution import query_chunk
        from daxjax.device.querying import input_elements

        chunk = query_chunk(execution, len(images), input_elements(images))
        reps = np.repeat(images, chunk, axis=0)
        t0 = time.perf_counter()
        for _ in range(config.num_samples // chunk):
            bb(reps)
        result["floor_seconds"] = time.perf_counter() - t0

    per_image = {k: v / len(images) for k, v in phases.items()}
    result.update(seconds_per_image=steady / len(images), compile_seconds=first - steady,
                  phases_per_image=per_image,
                  peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    return result


def _run(spec: dict) -> dict:
    return run_worker("loop", spec)


def report(args, emit) -> None:
    import daxjax

    base = {"num_samples": 500 if args.quick else 2000}
    if args.quick:
        base["epochs"] = 2
    sizes = (64,) if args.quick else (64, 224)
    batches = (4,) if args.quick else (4, 16, 64)
    config = dataclasses.replace(daxjax.DAXConfig(), **base)
    emit(f"DAXConfig: N={config.num_samples}, epochs={config.epochs}, minibatch_size={config.minibatch_size}, "
         f"resolution={config.resolution}, segmentation={config.segmentation}, "
         f"restarts={config.restarts}; black box: bundled colour_nchw.onnx (ORT, 2 threads)")
    emit()
    emit("| image | B | mode | s/image | segmentation | queries | training | compile s | peak RSS MB | loop/batch |")
    emit("|---|---|---|---|---|---|---|---|---|---|")
    for size in sizes:
        for batch in batches:
            rows = {}
            for mode in ("loop", "batch"):
                r = _run({"mode": mode, "batch": batch, "size": size, "config": base})
                rows[mode] = r
            ratio = rows["loop"]["seconds_per_image"] / rows["batch"]["seconds_per_image"]
            for mode, r in rows.items():
                p = r["phases_per_image"]
                emit(f"| {size}x{size} | {batch} | {mode} | {r['seconds_per_image']:.3f} | "
                     f"{p['segmentation']:.3f} | {p['queries']:.3f} | {p['training']:.3f} | "
                     f"{r['compile_seconds']:.1f} | {r['peak_rss_mb']:.0f} | "
                     f"{f'{ratio:.2f}' if mode == 'batch' else ''} |")

    emit()
    overhead = {**base, "epochs": 2 if args.quick else 10}
    r = _run({"mode": "batch", "batch": 16, "size": 64, "config": overhead, "floor": True})
    total = r["seconds_per_image"] * 16
    emit(f"Training overhead (64x64, B=16, N={overhead['num_samples']}, epochs={overhead['epochs']}): "
         f"DAX total / black-box query time = {total / r['floor_seconds']:.1f} "
         f"(total {total:.1f} s, the same number of bare black-box forwards {r['floor_seconds']:.2f} s; "
         f"inside DAX the query phase took {r['phases_per_image']['queries'] * 16:.2f} s)")

    emit()
    emit("Peak memory (64x64, B=16) against query chunk and N:")
    emit()
    emit("| N | query_chunk | peak RSS MB |")
    emit("|---|---|---|")
    for n, chunk in ((1000, 16), (1000, 256), (4000, 16), (4000, 256)):
        cfg = {"num_samples": n, "epochs": 1}
        r = _run({"mode": "batch", "batch": 16, "size": 64, "config": cfg,
                  "execution": {"queries_per_call": 16 * chunk}})
        emit(f"| {n} | {chunk} | {r['peak_rss_mb']:.0f} |")
