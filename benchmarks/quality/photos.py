"""Real photos, a real ImageNet model: do the maps rank what the model uses first?

    python -m benchmarks.quality.photos                 # 10 bundled photos, N=2000 (~30 min on 2 CPU cores)
    python -m benchmarks.quality.photos --photos 4 --budget 500 --no-write   # a smoke run

No ground truth exists for what EfficientNet-Lite0 looks at in a photo, so the maps are judged by
the model's own answers: deletion AUC (pixels removed in the map's order, zero fill: lower is
better) and insertion AUC (pixels restored into a blurred photo: higher is better), both of the
top-1 class, RISE protocol with `--auc-steps` steps. Photos: scikit-image's bundled ones
(`benchmarks.throughput.common.photos`: some, like coins or the retina, are far from ImageNet and
get a low top-1 probability; they are kept: a user's data is not chosen for the model either).

Every method gets the same N (Occlusion: the nearest window count). The black box's answers are
cached by query (each distinct input is answered once), which matters only when rows share inputs.
References: a random map and a centred Gaussian. `--methods` can add rows with the fills swapped
(`SWAPPED_FILLS`: DAX with the blur fill alone, LIME and KernelSHAP with the image-mean fill): insertion
starts from a blurred photo, and these rows tell how much of a method's insertion AUC is its fill.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import time

import numpy as np

from benchmarks.quality import fill_choice_note
from benchmarks.results import write_section

SECTION = "## Real photos, a real model: deletion and insertion (issues 3 and 5)"


class AnswerCache:
    """The black box's probabilities, each distinct query answered once (keyed by its bytes)."""

    def __init__(self, bb):
        self.bb, self.answers, self.calls = bb, {}, 0

    def __call__(self, x):
        x = np.ascontiguousarray(x, np.float32)
        keys = [hashlib.blake2b(row.tobytes(), digest_size=16).digest() for row in x]
        missing = [i for i, key in enumerate(keys) if key not in self.answers]
        if missing:
            self.calls += len(missing)
            for i, answer in zip(missing, np.asarray(self.bb(x[missing]))):
                self.answers[keys[i]] = answer
        return np.stack([self.answers[key] for key in keys])


#: Rows with one fill each (DAX's default chooses the image mean or the blur per image; LIME's and
#: KernelSHAP's default is the blur insertion starts from): DAX with the blur alone, LIME and
#: KernelSHAP with the image mean; run only when named in --methods, to tell the fill from the method.
SWAPPED_FILLS = ("DAX (ours) with blur fill", "LIME with image-mean fill", "KernelSHAP with image-mean fill")


def methods(budget: int) -> dict:
    """Every method at the same budget (Occlusion: the stride whose window count is closest to it),
    then the `SWAPPED_FILLS` rows."""
    import daxjax
    from benchmarks.quality.realmodels import occlusion_config

    return {
        "DAX (ours)": ("dax", daxjax.DAXConfig(num_samples=budget)),
        "RISE": ("rise", daxjax.RISEConfig(num_samples=budget)),
        "LIME": ("lime", daxjax.LIMEConfig(num_samples=budget)),
        "KernelSHAP": ("kernelshap", daxjax.KernelSHAPConfig(num_samples=budget)),
        "Occlusion": ("occlusion", occlusion_config(224, budget)),
        SWAPPED_FILLS[0]: ("dax", daxjax.DAXConfig(num_samples=budget, fill="blur")),
        SWAPPED_FILLS[1]: ("lime", daxjax.LIMEConfig(num_samples=budget, fill="image_mean")),
        SWAPPED_FILLS[2]: ("kernelshap", daxjax.KernelSHAPConfig(num_samples=budget, fill="image_mean")),
    }


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photos", type=int, default=10, help="photos (default 10: each bundled photo once)")
    parser.add_argument("--budget", type=int, default=2000, help="queries per photo and method (default 2000)")
    parser.add_argument("--auc-steps", type=int, default=50, help="steps of the deletion/insertion curves (default 50)")
    parser.add_argument("--methods", default=None,
                        help="comma-separated rows to run (default: all but the swapped-fill rows: "
                             f"{'; '.join(SWAPPED_FILLS)}); without RISE the column that compares with it is empty")
    parser.add_argument("--no-write", action="store_true", help="print only, do not update RESULTS.md")
    args = parser.parse_args(argv)
    every = methods(args.budget)
    chosen = [name for name in every if name not in SWAPPED_FILLS] if args.methods is None else \
        [name.strip() for name in args.methods.split(",")]
    unknown = sorted(set(chosen) - set(every))
    if unknown:
        raise SystemExit(f"--methods: unknown {unknown}; choose from {'; '.join(every)}")
    chosen = [name for name in every if name in chosen]  # the table's order

    import daxjax
    from benchmarks.quality.fashion import reference_maps
    from benchmarks.throughput.common import photos
    from blackbox_adapters import CallableBlackBox, efficientnet_lite0

    images = photos(args.photos)
    model = efficientnet_lite0(threads=2)
    cache = AnswerCache(model)
    bb = CallableBlackBox(cache, num_classes=1000, output="probs")
    probabilities = np.asarray(bb(images))
    targets = probabilities.argmax(axis=1).astype(np.int32)
    command = "python -m benchmarks.quality.photos " + " ".join(argv if argv is not None else sys.argv[1:])
    lines = [SECTION, "",
             f"Command: `{command.strip()}` — 2 CPU cores (x86-64, shared), {time.strftime('%Y-%m-%d')}.", "",
             f"{len(images)} photos 224 x 224 (scikit-image's bundled photos), black box EfficientNet-Lite0 "
             f"(ONNX Runtime, {', '.join(model.providers)}), target its top-1 class (probability "
             f"{np.median(probabilities.max(axis=1)):.2f} median, {probabilities.max(axis=1).min():.2f} to "
             f"{probabilities.max(axis=1).max():.2f}); N = {args.budget} queries per photo and method; "
             f"AUC curves of {args.auc_steps} steps. Columns: see the docstring of `benchmarks/quality/photos.py`.", "",
             "| method | deletion AUC mean (std) | insertion AUC mean (std) | photos where deletion beats RISE's | "
             "s/photo |", "|---|---|---|---|---|"]
    for line in lines:
        print(line, flush=True)

    def scored(maps):
        deletion = np.asarray(daxjax.metrics.deletion_auc(bb, images, maps, targets, steps=args.auc_steps))
        insertion = np.asarray(daxjax.metrics.insertion_auc(bb, images, maps, targets, steps=args.auc_steps))
        return deletion, insertion

    rows = {name: scored(maps) + (None,) for name, maps in reference_maps(len(images), 224, seed=0).items()}
    for name in chosen:
        method, config = every[name]
        start = time.perf_counter()
        ex = daxjax.explain(bb, images, targets=targets, method=method, config=config, seed=0)
        rows[name] = scored(ex.maps) + ((time.perf_counter() - start) / len(images),)
        note = fill_choice_note(name, ex.diagnostics)
        if note:
            print(note, flush=True)
    rise_deletion = rows["RISE"][0] if "RISE" in rows else None
    for name, (deletion, insertion, seconds) in rows.items():
        wins = "—" if name == "RISE" or rise_deletion is None else \
            f"{int((deletion < rise_deletion).sum())} of {len(images)}"
        line = (f"| {name} | {deletion.mean():.3f} ({deletion.std():.3f}) | {insertion.mean():.3f} "
                f"({insertion.std():.3f}) | {wins} | {'—' if seconds is None else f'{seconds:.1f}'} |")
        print(line, flush=True)
        lines.append(line)
    lines += ["", f"Seconds per photo are wall clock on a shared machine ({cache.calls} distinct queries answered "
              "in all).", ""]
    if not args.no_write:
        write_section(SECTION, "\n".join(lines))


if __name__ == "__main__":
    main()
