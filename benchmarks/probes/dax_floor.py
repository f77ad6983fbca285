"""Probes of DAX's cost beyond its queries on 224 x 224 photos (issue 4's 1-device floor ratio).

    python -m benchmarks.probes.dax_floor queries   # query phase: inside the black box vs the rest
    python -m benchmarks.probes.dax_floor calls     # 24- vs 64-image calls, glibc heap setting off/on
    python -m benchmarks.probes.dax_floor rows      # rows vectorised per training step (Execution.rows_per_step)
    python -m benchmarks.probes.dax_floor steps     # one training step alone, ms per row, by rows per step
    python -m benchmarks.probes.dax_floor steps image 1   # only the image student, one repeat

Each but `steps` prints seconds per phase for a group of 4 photos, twice (the first run compiles).
`steps` times the training steps of 12 rows (4 images x 3 restarts) on synthetic data at the default
config with the segment student and with the image student (`student="image"`), after the warm-up
and dispatched as the engine does (`steps_per_call`): best of 3 runs of 20 steps, for 1, 3 and 12
rows per step (`Execution.rows_per_step`), twice.
"""

from __future__ import annotations

import sys
import time

import numpy as np


def _group():
    from benchmarks.throughput.common import photos
    from blackbox_adapters import efficientnet_lite0
    from daxjax.inputs import image_digest

    onnx = efficientnet_lite0()
    images = photos(4)
    targets = onnx(images).argmax(1).astype(np.int32)
    digests = np.array([image_digest(i, t) for i, t in zip(images, targets)], np.uint32)
    return onnx, images, targets, digests


def _explain(bb, images, targets, digests, config, execution=None):
    from daxjax.device.querying import device_blackbox
    from daxjax.methods.dax import engine as dax

    device_bb = device_blackbox(bb, bb, bb.num_classes)
    return dax.explain_images(device_bb, images, targets, digests, config, 0, list(range(len(images))),
                            execution=execution)[1]


def queries() -> None:
    from daxjax.methods.dax.config import DAXConfig

    onnx, images, targets, digests = _group()
    inside = {"seconds": 0.0, "calls": 0, "rows": 0}

    class Timed:
        num_classes = onnx.num_classes

        def __call__(self, x):
            t0 = time.perf_counter()
            out = onnx(x)
            inside["seconds"] += time.perf_counter() - t0
            inside["calls"] += 1
            inside["rows"] += len(x)
            return out

    timed = Timed()
    for rep in range(2):
        inside.update(seconds=0.0, calls=0, rows=0)
        phases = _explain(timed, images, targets, digests, DAXConfig(num_samples=1000))
        print(rep, {k: round(v, 2) for k, v in phases.items()}, "inside the black box",
              round(inside["seconds"], 2), "calls", inside["calls"], "rows", inside["rows"], flush=True)
    block = np.repeat(images, 8, axis=0)[:inside["rows"] // inside["calls"]]
    t0 = time.perf_counter()
    for _ in range(inside["calls"]):
        onnx(block)
    print("the same calls on one fixed block alone", round(time.perf_counter() - t0, 2))


def calls() -> None:
    import subprocess

    for heap in ("plain", "heap"):
        subprocess.run([sys.executable, "-m", "benchmarks.probes.dax_floor", "_calls", heap], check=True)


def _calls(heap: str) -> None:
    from daxjax.methods.dax.config import DAXConfig
    from daxjax.device.execution import Execution
    from daxjax.glance.surrogate import keep_large_buffers_in_the_heap

    if heap == "heap":
        keep_large_buffers_in_the_heap(256)
    group = _group()
    for rep in range(2):
        for chunk in (6, 16):  # 24 or 64 images per call for 4 photos
            phases = _explain(*group, DAXConfig(num_samples=1000), Execution(queries_per_call=4 * chunk))
            print(heap, "images per call", 4 * chunk, rep, {k: round(v, 2) for k, v in phases.items()}, flush=True)


def rows() -> None:
    from blackbox_adapters import as_blackbox
    from daxjax.methods.dax.config import DAXConfig
    from daxjax.device.execution import Execution
    from daxjax.inputs import image_digest

    _, images, _, _ = _group()
    weights = np.random.default_rng(0).normal(size=(48, 10)).astype(np.float32)

    def synthetic(x):  # cheap, so that training dominates
        pooled = x.reshape(len(x), 4, 56, 4, 56, 3).mean(axis=(2, 4)).reshape(len(x), -1)
        logits = pooled @ weights * 5
        e = np.exp(logits - logits.max(1, keepdims=True))
        return (e / e.sum(1, keepdims=True)).astype(np.float32)

    bb = as_blackbox(synthetic, num_classes=10)
    targets = synthetic(images).argmax(1).astype(np.int32)
    digests = np.array([image_digest(i, t) for i, t in zip(images, targets)], np.uint32)
    for rep in range(2):
        for width in (1, 3, 12):
            phases = _explain(bb, images, targets, digests, DAXConfig(), Execution(rows_per_step=width))
            print("rows_per_step", width, rep, {k: round(v, 2) for k, v in phases.items()}, flush=True)


def steps(students: str = "segments,image", repeats: str = "2") -> None:
    """ms per row and training step, by rows per step, for each student (synthetic data, default config)."""
    import jax
    import jax.numpy as jnp

    from daxjax.methods.dax.config import DAXConfig
    from daxjax.methods.dax.engine import padded_segments, to_working_resolution
    from daxjax.methods.dax.train import (Samples, TrainData, TrainKeys, compiled_trainer, steps_per_call,
                                          warmup_steps)

    row_count, segments, timed_steps = 12, 60, 20
    max_segments = padded_segments(segments)
    for student in students.split(","):
        config = DAXConfig(student=student)
        side, n = config.resolution, config.num_samples
        keys = jax.random.split(jax.random.PRNGKey(0), 4)
        images = jax.random.uniform(keys[0], (row_count, side, side, 3))
        segment_maps = jax.random.randint(keys[1], (row_count, side, side), 0, segments)
        cells = config.mask_cells if student == "segments" else None
        work = jax.vmap(lambda i, m, f: to_working_resolution(i, m, f, side, max_segments, cells))(
            images, segment_maps, jnp.full_like(images, 0.5))
        z = jax.random.bernoulli(keys[2], config.keep_prob, (row_count, n, max_segments))
        z = z & (jnp.arange(max_segments) < segments)  # padded segments are never shown
        samples = Samples(z, jax.random.normal(keys[3], (row_count, n)), jnp.ones((row_count, n)))
        data = TrainData(work, samples, jnp.ones((row_count,)), jnp.tile(jnp.arange(1, n)[None], (row_count, 1)),
                         jnp.zeros((row_count, 1), jnp.int32))
        init_keys, order_keys, gate_keys = (jax.random.split(k, row_count) for k in jax.random.split(keys[0], 3))
        train_keys = TrainKeys(order_keys, gate_keys)
        # Time steps after the warm-up (the mask trains too), dispatched as the engine does.
        first, per_call = warmup_steps(config), steps_per_call(config)
        for rep in range(int(repeats)):
            for width in (1, 3, row_count):
                trainer = compiled_trainer(config, 3, max_segments, width)

                def run(state, stop):
                    for t in range(int(state.step), stop, per_call):
                        state = trainer.run(state, data, train_keys, min(t + per_call, stop))
                    return state

                state = trainer.init(init_keys)._replace(step=jnp.asarray(first, jnp.int32))
                state = run(state, first + 1)  # compiles
                best = float("inf")
                for _ in range(3):
                    jax.block_until_ready(state)
                    t0 = time.perf_counter()
                    state = run(state._replace(step=jnp.asarray(first, jnp.int32)), first + timed_steps)
                    jax.block_until_ready(state)
                    best = min(best, (time.perf_counter() - t0) / timed_steps / row_count)
                print(f"student {student} rows_per_step {width} rep {rep}: {best * 1e3:.2f} ms per row and step",
                      flush=True)


if __name__ == "__main__":
    {"queries": queries, "calls": calls, "rows": rows, "steps": lambda: steps(*sys.argv[2:]),
     "_calls": lambda: _calls(sys.argv[2])}[sys.argv[1]]()
