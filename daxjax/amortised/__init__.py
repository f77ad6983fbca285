"""Amortised DAX: one mask network for a whole dataset, from black-box queries only (issue 22).

    from daxjax import amortised
    explainer = amortised.fit(bb, train_images, amortised.AmortisedConfig(), seed=0)
    ex = explainer.explain(new_images)            # one forward pass, zero black-box queries
    ex = explainer.refine(bb, new_images, queries_per_image=100)   # K queries an image, diagnostics
    explainer.save("explainer.npz"); explainer = amortised.load("explainer.npz")

Design (and why). The first design trained the mask network and an image-conditioned student
directly from the black box's answers to grid perturbations of all fitted images at once (DAX's
objective, amortised). At scale it failed: on 400 Fashion scenes (300 queries each) its held-out
maps scored IoU 0.060, below a random map's 0.081, and its shared student's held-out fit was
-0.28 (benchmarks/RESULTS.md, "Amortised DAX: quality against queries per explained image"). Per-image
DAX fits each image's answers well and needs few queries for it (its maps at N = 250 equal those at
N = 2000 on the Fashion scenes). So the amortised explainer is distilled from it:

- The teacher: per-image DAX (`Teacher.queries_per_image`, default 250) explains every fitted
  image for the black box's top-1 class, through the project's query path. Its maps are the
  only use of the black box; maps DAX does not trust (its held-out fit, a live mask) are left out
  of training (`AmortisedExplainer.report["trained_on"]`).
- The mask network (`daxjax.amortised.nets.MapNet`, a small U-Net) learns to draw those maps from
  the image alone: binary cross-entropy against the teacher's [0, 1] maps, left-right flips,
  held-out images choosing the checkpoint (`daxjax.amortised.training`). No gradient of the black
  box, pixel-level maps, one network for the dataset.
- Explaining a new image is one forward pass of the network: no queries.
- `refine` spends K queries an image on the teacher itself (DAX at N = K): where DAX trusts its
  map and it contradicts the amortised one (`Refine.agreement_floor`), DAX's map replaces it;
  it reports DAX's held-out fit, the two maps' agreement and `trusted`.

Devices: `fit`, `explain` and `refine` split their images over the local devices (`devices=`, all
of `jax.local_devices()` by default): the teacher's groups along the image axis, the network's
training data-parallel; an explainer is bit for bit the same for the same device count, and
`explain` draws the same maps bit for bit on any number of a process's devices (one image at a
time on each device).

Limits of this version: one process (no multi-host fit); the map explains the black
box's top-1 class only; the network reads images at `Nets.resolution` (64 px by default), so its
outlines are those of a 64 x 64 map upsampled. A whole dataset:
`explain_dataset(method="dax-amortised")` and `daxjax explain --method dax-amortised` fit on a share
of it, keep the explainer in the store and explain every image (`daxjax.dataset.amortised`).

Modules: config (AmortisedConfig, grouped by concern), nets (the mask network), training (the
teacher, the training step and checkpoints), explainer (fit, explain, refine, save and load).
"""

from daxjax.amortised.config import AmortisedConfig, Nets, Refine, Teacher, Training
from daxjax.amortised.explainer import METHOD, REFINE_DIAGNOSTICS, AmortisedExplainer, fit, load

__all__ = ["AmortisedConfig", "AmortisedExplainer", "METHOD", "Nets", "REFINE_DIAGNOSTICS", "Refine", "Teacher",
           "Training", "fit", "load"]
