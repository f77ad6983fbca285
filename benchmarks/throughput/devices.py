"""Scaling with the number of devices: the same dataset on 1, 2 and 4 devices (issue 4).

Each device count runs in its own process. On a CPU machine the devices are XLA's fake host
devices (`XLA_FLAGS=--xla_force_host_platform_device_count=D`): they share the same cores, so
this measures the cost of splitting batches over devices (sharding, one host callback per
device) rather than a speed-up; on a machine with several accelerators, run it there to see one.
Every run must give the same maps as one device (the determinism contract): the largest
difference is reported.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

SECTION = "## Scaling with devices (issue 4)"
COUNTS = (1, 2, 4)


def measure(spec: dict) -> dict:
    import jax
    import numpy as np

    import daxjax
    from blackbox_adapters import OnnxBlackBox, bundled_model_path
    from daxjax.explain import EXPLAINERS
    from daxjax.scenes import colour_patch_scenes

    bb = OnnxBlackBox(bundled_model_path("colour_nchw"))
    images, _ = colour_patch_scenes(spec["images"], 64, seed=3)
    config = EXPLAINERS[spec["method"]][0](num_samples=spec["num_samples"])
    with tempfile.TemporaryDirectory() as tmp:
        runs = [daxjax.explain_dataset(bb, images, Path(tmp) / attempt, method=spec["method"], config=config,
                                       batch_size=spec["batch"], workers=1, progress=False)
                for attempt in ("compile", "timed")]
        maps = daxjax.load_results(Path(tmp) / "timed").maps
        np.save(spec["maps_out"], maps)
    return {"devices": len(jax.local_devices()), "images_per_second": runs[1].images_per_second,
            "first_seconds": runs[0].seconds, "seconds": runs[1].seconds}


def report(args, lines) -> None:
    import numpy as np

    from benchmarks.throughput.common import run_worker

    images = 8 if args.quick else 32
    methods = (("dax", 300 if args.quick else 1000), ("rise", 300 if args.quick else 1000))
    lines(f"{images} scenes 64 x 64 (bundled colour model), batch {min(images, 16)} over all devices, "
          "`explain_dataset` steady state (second run); fake host devices share the machine's cores.")
    lines()
    lines("| method | N | devices | images/s | relative to 1 device | first run s | max abs map difference vs 1 device |")
    lines("|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for method, n in methods:
            one = None
            for count in COUNTS:
                maps_out = str(Path(tmp) / f"{method}{count}.npy")
                spec = {"method": method, "num_samples": n, "images": images, "batch": min(images, 16),
                        "maps_out": maps_out}
                r = run_worker("devices", spec,
                               env={"XLA_FLAGS": f"--xla_force_host_platform_device_count={count}"})
                maps = np.load(maps_out)
                if one is None:
                    one = (r, maps)
                lines(f"| {method} | {n} | {r['devices']} | {r['images_per_second']:.2f} | "
                      f"{r['images_per_second'] / one[0]['images_per_second']:.2f} | {r['first_seconds']:.1f} | "
                      f"{np.abs(maps - one[1]).max():.2e} |")
