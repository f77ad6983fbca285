"""Could DAX choose its fill per image? A probe of one rule (issue 18's insertion target).

    python -m benchmarks.probes.dax_fill_choice           # both parts, about 15 min on 2 CPU cores
    python -m benchmarks.probes.dax_fill_choice removal   # the rule's measure alone (a few minutes)

Why: on the 10 bundled photos DAX with the blur fill reaches insertion AUC 0.459, above LIME's and
KernelSHAP's (0.450, 0.452), and on the real-model cases it localises as well as with its default
image-mean fill; on the Fashion scenes the blur fill costs 0.2 IoU (RESULTS.md, "Real photos, a real
model" and "..., fills blur"). A rule that gives each image the blur unless blur does not remove
what the model sees would keep both, if the images where blur fails were the Fashion scenes.

The rule measured: with p the target's probability on the image, p_blur on the whole image blurred
(`fills.fill_images(..., "blur")`) and p_mean on the image's mean colour everywhere,
    r = (p_blur - p_mean) / (p - p_mean)
is the share of the target's evidence that blurring leaves beyond what the mean fill leaves (0: blur
removes as much, 1: blur removes nothing). The rule: blur where r <= delta, else the image mean. It
costs three queries an image (p is one of them).

  removal   the distribution of r (quantiles; share of images at r <= 0.1, 0.25, 0.5) on the 10
            bundled photos (EfficientNet-Lite0), the Fashion scenes (fashion_cnn) and the real-model
            cases (composites and restricted views; Lite0 and Lite2)
  fashion   DAX at N = 2000 on the Fashion scenes with each fill (the default config but for the
            fill); IoU per scene; the rule's IoU for several delta is each scene's IoU under the fill
            the rule gives it (an image's map depends on nothing else, so this is exactly what the
            rule would give)

This rule gave blur to too many Fashion scenes (RESULTS.md, "Could DAX choose its fill per image?").
The rule DAX adopted, fill="auto", asks instead under which fill the black box's answers to the
image's first perturbations spread more (`daxjax.methods.dax.engine.choose_fills`; RESULTS.md,
"DAX's fill chosen per image: fill="auto"").
"""

from __future__ import annotations

import sys
import time

import numpy as np

DELTAS = (0.05, 0.1, 0.25, 0.5)


def blur_share(bb, images: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """r [n] (module docstring) of `images` [n, H, W, C] under the black box(es) `bb` (one callable,
    or one per image)."""
    from daxjax.perturbation.fills import fill_images

    boxes = bb if isinstance(bb, list) else [bb] * len(images)
    flat = np.zeros(images.shape[:3], np.int32)
    inputs = (images, fill_images(images, flat, "blur"), fill_images(images, flat, "image_mean"))
    p, p_blur, p_mean = (np.array([np.asarray(box(x[i:i + 1]))[0, targets[i]] for i, box in enumerate(boxes)])
                         for x in inputs)
    return (p_blur - p_mean) / np.maximum(p - p_mean, 1e-6)


def _line(name: str, r: np.ndarray) -> str:
    quantiles = " / ".join(f"{q:.3f}" for q in np.quantile(r, [0.05, 0.25, 0.5, 0.75, 0.95]))
    shares = " | ".join(f"{(r <= d).mean():.2f}" for d in (0.1, 0.25, 0.5))
    return f"| {name} | {len(r)} | {quantiles} | {shares} |"


def _fashion_scenes():
    """(black box, images, masks, targets) of the Fashion tables' 245 scenes (260 drawn)."""
    from benchmarks.quality.fashion import correct_scenes

    bb, scenes = correct_scenes(260)
    return bb, scenes.images, scenes.masks, scenes.labels.astype(np.int32)


def part_removal() -> None:
    from benchmarks.datasets.realmodels import models as model_zoo
    from benchmarks.datasets.realmodels.cases import make_cases
    from benchmarks.throughput.common import photos
    from blackbox_adapters import efficientnet_lite0

    print("| images | n | r: 5 / 25 / 50 / 75 / 95 % quantiles | share r <= 0.1 | <= 0.25 | <= 0.5 |")
    print("|---|---|---|---|---|---|")
    lite0 = efficientnet_lite0(threads=2)
    images = photos(10)
    print(_line("10 bundled photos, Lite0", blur_share(lite0, images, np.asarray(lite0(images)).argmax(1))), flush=True)
    bb, images, _, targets = _fashion_scenes()
    print(_line("Fashion scenes, fashion_cnn", blur_share(bb, images, targets)), flush=True)
    for name in ("lite0", "lite2"):
        model = model_zoo.load(name)
        cases = make_cases(model, model_zoo.SIDES[name], 60, 40, seed=0)
        kinds = np.array(cases.kinds)
        for kind in ("composite", "restricted"):
            rows = np.flatnonzero(kinds == kind)
            boxes = [cases.black_box(model, int(i)) for i in rows]
            r = blur_share(boxes, cases.images[rows], cases.targets[rows])
            label = {"composite": "composites", "restricted": "restricted views"}[kind]
            print(_line(f"real-model {label}, {model_zoo.NAMES[name]}", r), flush=True)


def part_fashion() -> None:
    import daxjax

    bb, images, masks, targets = _fashion_scenes()
    r = blur_share(bb, images, targets)
    iou = {}
    for fill in ("image_mean", "blur"):
        start = time.perf_counter()
        config = daxjax.DAXConfig(num_samples=2000, fill=fill)
        ex = daxjax.explain(bb, images, targets=targets, method="dax", config=config, seed=0)
        iou[fill] = np.asarray(daxjax.metrics.iou(ex.maps, masks))
        print(f"{len(images)} Fashion scenes, fill {fill}: IoU {iou[fill].mean():.3f} "
              f"({(time.perf_counter() - start) / len(images):.2f} s per scene)", flush=True)
    print("| delta | scenes given blur | IoU under the rule | on those scenes: image-mean fill | blur |")
    print("|---|---|---|---|---|")
    for delta in DELTAS:
        blur = r <= delta
        rule = np.where(blur, iou["blur"], iou["image_mean"])
        print(f"| {delta:g} | {blur.mean():.2f} | {rule.mean():.3f} | {iou['image_mean'][blur].mean():.3f} | "
              f"{iou['blur'][blur].mean():.3f} |", flush=True)


def main(argv=None) -> None:
    parts = (argv if argv is not None else sys.argv[1:]) or ["removal", "fashion"]
    for part in parts:
        {"removal": part_removal, "fashion": part_fashion}[part]()


if __name__ == "__main__":
    main()
