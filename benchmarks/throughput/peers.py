"""Our LIME and KernelSHAP against the tools people use today, on the same model (issue 4).

    pip install -r benchmarks/throughput/requirements-peers.txt    # the peers, in the benchmark environment only
    python -m benchmarks.throughput --part peers

Peers: the `lime` package (`lime_image.LimeImageExplainer.explain_instance`) and Captum's `Lime`
(with a Ridge surrogate: its default Lasso returns all-zero maps on low probabilities)
and `KernelShap`, each driving the same ONNX model through a thin wrapper, with the same N, the
same superpixels (ours, made inside each peer's timed call, as ours are inside our call) and
batched model calls of the size ours have (`daxjax.device.execution.query_chunk` for one image: 256 inputs, at
most 16 MiB; the `lime` package's default is 10 and Captum's 1, which would make them slower for
no reason of theirs). Three models: the bundled
EfficientNet-Lite0 at 224 x 224 (its forwards dominate every method's time on a CPU), the
Fashion-MNIST benchmark's small CNN at 64 x 64, and the bundled colour-patch model at 224 x 224,
which costs almost nothing, so that the explainers' own work is what is timed (as on a GPU,
where the model is fast).

Reported per image: our steady-state seconds (a second call: compiling is reported apart, it is
paid once per shape), each peer's seconds, and the ratio peer / ours.
"""

from __future__ import annotations

import functools
import time
from pathlib import Path

import numpy as np

SECTION = "## Against peers: the lime package and Captum on the same model (issue 4)"
FASHION_MODEL = Path(__file__).resolve().parents[1] / "datasets" / "fashion" / "fashion_cnn.onnx"


def _model_and_images(model: str, count: int):
    from blackbox_adapters import OnnxBlackBox, efficientnet_lite0

    if model == "efficientnet_lite0":
        from benchmarks.throughput.common import photos

        return efficientnet_lite0(), photos(count)
    if model == "colour":
        from blackbox_adapters import bundled_model_path
        from daxjax.scenes import colour_patch_scenes

        return OnnxBlackBox(bundled_model_path("colour_nchw")), np.asarray(colour_patch_scenes(count, 224, seed=1)[0])
    from benchmarks.datasets.fashion.data import make_scenes

    bb = OnnxBlackBox(FASHION_MODEL, layout="NHWC", output="probs")
    return bb, np.ascontiguousarray(make_scenes(count, seed=123, split="test", size=64).images)


def peer_batch(image) -> int:
    """Inputs per model call for the peers: the size of our own calls for one image."""
    from daxjax.device.execution import query_chunk
    from daxjax.device.querying import input_elements

    return query_chunk(None, 1, input_elements(image[None]))


def _lime_package(bb, image, segments, target, num_samples) -> None:
    from lime import lime_image

    explainer = lime_image.LimeImageExplainer(random_state=0)
    explainer.explain_instance(image.astype(np.float64), bb, labels=(int(target),), top_labels=None,
                               num_samples=num_samples, batch_size=peer_batch(image),
                               segmentation_fn=lambda _: segments, random_seed=0)


def _captum(kind: str, bb, image, segments, target, num_samples) -> None:
    import torch
    from captum._utils.models.linear_model import SkLearnRidge
    from captum.attr import KernelShap, Lime

    def forward(x: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(bb(x.detach().numpy()))

    explainer = Lime(forward, interpretable_model=SkLearnRidge(alpha=1.0)) if kind == "lime" else KernelShap(forward)
    inputs = torch.from_numpy(image[None])
    mask = torch.from_numpy(np.broadcast_to(segments[None, :, :, None], inputs.shape).astype(np.int64))
    baseline = torch.from_numpy(np.broadcast_to(image.mean(axis=(0, 1)), image.shape)[None].astype(np.float32))
    torch.manual_seed(0)
    explainer.attribute(inputs, baselines=baseline, target=int(target), feature_mask=mask, n_samples=num_samples,
                        perturbations_per_eval=peer_batch(image))


def measure(spec: dict) -> dict:
    import torch

    import daxjax
    from daxjax.perturbation.segmentation import segment_images

    torch.set_num_threads(1)  # the peers' own tensor work; the model has the cores
    bb, images = _model_and_images(spec["model"], spec["images"])
    n = spec["num_samples"]
    targets = bb(images).argmax(axis=1).astype(np.int32)
    result = {"providers": bb.providers, "rows": {}}

    call = peer_batch(images[0])
    block = np.repeat(images, -(-call // len(images)), axis=0)[:call]
    bb(block)
    start = time.perf_counter()
    calls = max(1, round(spec["images"] * n / call / 2))
    for _ in range(calls):
        bb(block)
    result["queries_per_second"] = calls * call / (time.perf_counter() - start)

    for method, config in (("lime", daxjax.LIMEConfig(num_samples=n, fill="segment_mean")),
                           ("kernelshap", daxjax.KernelSHAPConfig(num_samples=n, fill="image_mean"))):
        first = time.perf_counter()
        daxjax.explain(bb, images, targets=targets, method=method, config=config, seed=0)
        first = time.perf_counter() - first
        start = time.perf_counter()
        daxjax.explain(bb, images, targets=targets, method=method, config=config, seed=1)
        steady = time.perf_counter() - start
        result["rows"][f"daxjax {method}"] = {"seconds_per_image": steady / len(images),
                                              "compile_seconds": first - steady}

    peers = {"lime package (lime_image)": _lime_package,
             "Captum Lime (Ridge)": functools.partial(_captum, "lime"),
             "Captum KernelShap": functools.partial(_captum, "kernelshap")}
    for name, run in peers.items():
        start = time.perf_counter()
        for image, target in zip(images, targets):
            run(bb, image, segment_images(image[None], "quickshift").segments[0], target, n)
        result["rows"][name] = {"seconds_per_image": (time.perf_counter() - start) / len(images)}
    return result


def report(args, lines) -> None:
    from benchmarks.throughput.common import run_worker

    n = 300 if args.quick else 1000
    setups = (("efficientnet_lite0", "EfficientNet-Lite0, 224 x 224 photos", 1 if args.quick else 3),
              ("fashion", "Fashion-MNIST scenes CNN, 64 x 64", 4 if args.quick else 16),
              ("colour", "bundled colour-patch model (almost free), 224 x 224", 2 if args.quick else 8))
    lines(f"N = {n} queries per image for every method; the peers get our quickshift superpixels (made in "
          f"their timed call, as ours are in ours) and model calls of the size ours have (256 inputs, at "
          f"most 16 MiB); our LIME with the segment-mean fill (the `lime` package's "
          "hide_color=None) and KernelSHAP with the image-mean fill (the peers' baseline here). "
          "Seconds per image, one process, methods in turn.")
    lines()
    lines("| model | images | black box alone, s per N queries | method | s/image | own s/image | "
          "compile s (once per shape) | peer / ours | own: peer / ours |")
    lines("|---|---|---|---|---|---|---|---|---|")
    for model, title, count in setups:
        r = run_worker("peers", {"model": model, "images": count, "num_samples": n})
        floor = n / r["queries_per_second"]
        for name, row in r["rows"].items():
            kind = "daxjax kernelshap" if "shap" in name.lower() else "daxjax lime"
            total, mine = row["seconds_per_image"], r["rows"][kind]["seconds_per_image"]
            # Our own time is a difference of two noisy timings; at or below zero no ratio means anything.
            own_ratio = f"{(total - floor) / (mine - floor):.1f}" if mine > floor else "—"
            ratios = ("", "") if name.startswith("daxjax") else (f"{total / mine:.1f}", own_ratio)
            compile_s = f"{max(0.0, row['compile_seconds']):.1f}" if "compile_seconds" in row else ""
            lines(f"| {title} | {count} | {floor:.2f} | {name} | {total:.2f} | {total - floor:.2f} | {compile_s} | "
                  f"{ratios[0]} | {ratios[1]} |")
    lines()
    lines("Peer / ours: the peer's seconds per image divided by ours for the same kind of method (LIME rows "
          "against our LIME, KernelSHAP rows against our KernelSHAP). Own s/image: seconds per image minus the "
          "black box's own time for N queries (this run's rate on calls of the same size), i.e. what the "
          "explainer itself costs; 'own: peer / ours' compares those.")
