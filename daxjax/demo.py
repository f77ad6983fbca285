"""`make demo`: explain scikit-image's bundled photos with a real ImageNet classifier; write a report.

    python -m daxjax.demo --out out [--photos chelsea,coffee,camera,rocket] [--num-samples 1000]

The black box is the bundled EfficientNet-Lite0 (`blackbox_adapters.efficientnet_lite0`, ONNX,
1000 ImageNet classes). Each photo (bundled with scikit-image, never fetched) is resized to
224 x 224 and its top-1 class is explained by DAX and by RISE side by side. Written to --out:
  report.html (+ report_files/)  the report: pictures, deletion/insertion AUC with reference rows,
                                 configuration and timings (`daxjax.write_report`)
  overlay_<photo>.png            input, then per method its heat-map overlay and region
  demo.png                       one picture of all photos and both methods (the README's picture)
  maps.npz                       maps per method, targets, scores, images, photo names
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

# Bundled with scikit-image (no download) and recognised by EfficientNet-Lite0 with a readable
# top-1: chelsea -> Egyptian Mau (0.79), coffee -> espresso (0.91), camera -> tripod (0.95),
# rocket -> drilling rig (0.54: wrong, and the maps show what it looked at), measured with this model.
PHOTOS = ("chelsea", "coffee", "camera", "rocket")
# Photos that scikit-image ships in its wheel (the others of skimage.data are downloaded on first
# use, which the demo must not need).
BUNDLED_PHOTOS = ("astronaut", "camera", "chelsea", "coffee", "coins", "hubble_deep_field",
                  "immunohistochemistry", "moon", "retina", "rocket")
# Perturbations per image and method: the queries dominate the run (EfficientNet-Lite0 answers some
# tens of images/s on 2 CPU cores: 4 photos x 2 methods x 1000 queries take a few minutes). Half
# DAX's default N (2000) and a quarter of RISE's (4000), to keep the demo short.
DEFAULT_SAMPLES = 1000
# Deletion/insertion curve steps in the report: 4 rows x 2 curves x (20 + 1) queries per photo
# (about 15 s for 4 photos), against 101 points per curve at the library's default.
DEFAULT_AUC_STEPS = 20


def load_photos(names) -> np.ndarray:
    """scikit-image's bundled photos, RGB float32 [n, 224, 224, 3] in [0, 1] (grey ones as RGB)."""
    from skimage import data

    from blackbox_adapters import resize_images

    unknown = [name for name in names if name not in BUNDLED_PHOTOS]
    if unknown or not names:
        raise SystemExit(f"--photos: {', '.join(map(repr, unknown)) or 'none given'}; "
                         f"choose from {', '.join(BUNDLED_PHOTOS)}")
    photos = []
    for name in names:
        photo = getattr(data, name)()
        if photo.ndim == 2:
            photo = np.repeat(photo[..., None], 3, axis=-1)
        photos.append(resize_images(photo[None, ..., :3])[0])
    return np.stack(photos)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="out", help="output folder (default: out)")
    parser.add_argument("--photos", default=",".join(PHOTOS),
                        help=f"comma-separated skimage.data photos (default: {','.join(PHOTOS)})")
    parser.add_argument("--num-samples", type=int, default=DEFAULT_SAMPLES,
                        help=f"perturbations per photo for DAX and for RISE (default {DEFAULT_SAMPLES})")
    parser.add_argument("--auc-steps", type=int, default=DEFAULT_AUC_STEPS,
                        help=f"steps of the deletion/insertion curves in the report (default {DEFAULT_AUC_STEPS})")
    args = parser.parse_args(argv)

    from blackbox_adapters import efficientnet_lite0
    from daxjax.explain import explain
    from daxjax.methods.dax.config import DAXConfig
    from daxjax.methods.dax.engine import probe_queries
    from daxjax.methods.rise import RISEConfig
    from daxjax.report.images import write_report
    from daxjax.report.viz import save_grid, save_panel

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    names = [n.strip() for n in args.photos.split(",") if n.strip()]
    images = load_photos(names)
    # JAX waits while the black box runs (queries are host callbacks), so ORT may use both cores.
    bb = efficientnet_lite0(threads=2)
    configs = {"DAX": ("dax", DAXConfig(num_samples=args.num_samples)),
               "RISE": ("rise", RISEConfig(num_samples=args.num_samples))}

    start = time.perf_counter()
    bb(images)
    rate = len(images) / (time.perf_counter() - start)
    queries = len(images) * (2 * args.num_samples + probe_queries(configs["DAX"][1]) + 4 * 2 * (args.auc_steps + 1))
    print(f"Explaining {len(images)} photos ({', '.join(names)}) at 224x224 with EfficientNet-Lite0 "
          f"[{', '.join(bb.providers)}]: DAX and RISE, N={args.num_samples} perturbations each "
          f"(defaults: DAX 2000, RISE 4000; fewer keep the demo within a few minutes on 2 CPU cores). "
          f"About {queries} black-box queries; at the {rate:.0f} images/s just measured, "
          f"~{queries / rate:.0f} s of queries plus DAX's training.", flush=True)

    explanations = {}
    for display, (method, config) in configs.items():
        ex = explain(bb, images, method=method, config=config, seed=0)
        explanations[display] = ex
        print(f"  {display}: {ex.timings['total']:.1f} s", flush=True)
        if "heldout_fit" in ex.diagnostics:  # DAX's own diagnostics
            for name, fit, surrogate, trusted in zip(names, ex.diagnostics["heldout_fit"],
                                                     ex.diagnostics["surrogate_fit"], ex.trusted):
                print(f"    {name}: the student predicts {fit:.2f} of the held-out answers' variation (a linear "
                      f"surrogate {surrogate:.2f}){'' if trusted else ' -- flagged untrusted'}", flush=True)
    targets, scores = explanations["DAX"].targets, explanations["DAX"].scores
    labels = [f"{bb.class_names[t]} (p={s:.2f})" for t, s in zip(targets, scores)]

    report = write_report(
        out, images, explanations, class_names=bb.class_names, bb=bb, ids=names,
        auc_steps=args.auc_steps, title="daxjax demo: EfficientNet-Lite0 on scikit-image's photos",
        config={"black box": "EfficientNet-Lite0 (blackbox_adapters.efficientnet_lite0, ONNX Runtime)",
                "photos": ", ".join(names), "image size": "224 x 224", "targets": "top-1 class",
                "seed": 0})
    np.savez_compressed(out / "maps.npz", **{f"{d.lower()}_maps": ex.maps for d, ex in explanations.items()},
                        targets=targets, scores=scores, images=images, photos=np.array(names))
    maps_by_method = {d: ex.maps for d, ex in explanations.items()}
    for i, name in enumerate(names):
        path = save_panel(out / f"overlay_{name}.png", images[i], {d: m[i] for d, m in maps_by_method.items()},
                          f"{name}: EfficientNet-Lite0 says {labels[i]}")
        print(f"  {path}  {labels[i]}")
    grid = save_grid(out / "demo.png", images, maps_by_method, [f"{n}: {lab}" for n, lab in zip(names, labels)],
                     colours=256)
    seconds = time.perf_counter() - start
    print(f"Done in {seconds:.0f} s. Maps: {out / 'maps.npz'}; overview picture: {grid}")
    print(f"Report: {report.resolve()}  (open it in a browser)")


if __name__ == "__main__":
    main()
