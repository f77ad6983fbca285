"""`make demo`: explain bundled photos with the bundled ONNX black box, write pictures and maps.

    python -m daxjax.demo --out out [--num-samples 1000]

The black box is the bundled colour-patch classifier (`blackbox_adapters/models`): it decides
"red" / "green" / "blue" / "none" by the pure-colour pixels it sees, so the planted patch is
exactly what it looks at and the pictures can be checked by eye (and are scored by IoU).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="out", help="output folder (default: out)")
    parser.add_argument("--num-samples", type=int, default=1000,
                        help="perturbations per image (default 1000: a quick demo on 2 CPU cores)")
    parser.add_argument("--images", type=int, default=6, help="how many demo images (default 6)")
    parser.add_argument("--size", type=int, default=128, help="image side in pixels (default 128)")
    args = parser.parse_args(argv)

    import daxjax
    from blackbox_adapters import COLOUR_CLASSES, OnnxBlackBox, bundled_model_path
    from daxjax.viz import save_panel
    from daxjax.scenes import colour_patch_scenes

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    bb = OnnxBlackBox(bundled_model_path("colour_nchw"), intra_op_threads=2)
    colours = ("red", "green", "blue")
    parts = [colour_patch_scenes(1, args.size, seed=i, colour=colours[i % 3]) for i in range(args.images)]
    images = np.concatenate([p[0] for p in parts])
    masks = np.concatenate([p[1] for p in parts])
    config = daxjax.DAXConfig(num_samples=args.num_samples)
    print(f"Explaining {len(images)} images of {args.size}x{args.size} with DAX "
          f"(N={config.num_samples} perturbations each, {config.segmentation} segments) "
          f"on black box {bb.path.name} [{', '.join(bb.providers)}] ...", flush=True)
    start = time.perf_counter()
    ex = daxjax.explain(bb, images, method="dax", config=config, seed=0)
    seconds = time.perf_counter() - start
    ious = daxjax.metrics.iou(ex.maps, masks)

    np.savez_compressed(out / "maps.npz", maps=ex.maps, targets=ex.targets, scores=ex.scores,
                        images=images, masks=masks)
    for i in range(len(images)):
        label = COLOUR_CLASSES[ex.targets[i]]
        title = (f"image {i}: black box says '{label}' (p={ex.scores[i]:.2f}); "
                 f"IoU with the planted patch {ious[i]:.2f}")
        path = save_panel(out / f"overlay_{i:02d}.png", images[i], {"DAX": ex.maps[i]}, title)
        print(f"  {path}  {label:5s} p={ex.scores[i]:.2f}  IoU={ious[i]:.2f}")
    print(f"Done in {seconds:.1f} s ({ex.timings['queries']:.1f} s queries, "
          f"{ex.timings['training']:.1f} s training, incl. one-off compilation). "
          f"Mean IoU with the planted patches: {ious.mean():.2f}.")
    print(f"Maps, targets and scores: {out / 'maps.npz'}; pictures: {out}/overlay_*.png")


if __name__ == "__main__":
    main()
