"""Amortised DAX: one mask network for a whole dataset, from black-box queries only (issue 22).

    from daxjax import amortised
    explainer = amortised.fit(bb, train_images, amortised.AmortisedConfig(), seed=0)
    ex = explainer.explain(new_images)            # one forward pass, zero black-box queries
    ex = explainer.refine(bb, new_images, queries_per_image=100)   # K queries an image, diagnostics
    explainer.save("explainer.npz"); explainer = amortised.load("explainer.npz")

Design (and why). Per-image DAX on a real ImageNet model failed while its student read pixels (it
could not fit the black box's answers) and worked once the student read *segment space* (which
segments a perturbation shows), fitted *logits*, and the mask acted through *hard-concrete gates*
(benchmarks/RESULTS.md, issue 18). The amortised explainer keeps exactly that and amortises what
was per image:

- Perturbations are keep-vectors z over a fixed cells x cells grid (`Sampling.cells`), not
  superpixels: the grid is the same S-vector for every image, so one network can read every
  image's perturbations and its mask is one S-vector per image (superpixels would change S and
  the meaning of each entry from image to image). The black box answers y = f(image ⊙ z + fill)
  through the project's query path (`daxjax.device.querying`, `perturbation.segments`).
- One encoder reads the image and gives each grid cell a feature vector E [S, F]
  (`daxjax.amortised.nets`). The student is DAX's segment student with its per-image weights
  read off E: g(E, shown) = b(E) + shown·w(E) + MLP(pooled E of what is shown); it fits the
  logit of the black box's top-1 class, across all images at once. The mask head gives each
  cell a keep-logit from E. Both are trained with DAX's normalised V2 objective (DAX's own
  `loss_v2`, gates from `sampling.hard_concrete_gates`), student first, with held-out
  checkpoint selection (`daxjax.amortised.training`).
- Explaining a new image is the encoder and the mask head: no queries. `refine` spends K queries
  an image on a per-image copy of the student head (anchored to the amortised one) and the
  keep-logits, and keeps the refined map only where its held-out DAX loss is not higher.

A FastSHAP-like additive explainer phi(image)·z ≈ y is what the student's linear term w(E) is;
the mask, not phi, gives the map because DAX's objective (what a small region must keep) is the
one that found the objects in the per-image benchmark, where the additive surrogates (LIME,
KernelSHAP) trailed. Limits of this first version: one device (no sharding over local devices);
the map explains the black box's top-1 class only; it is a grid map (cells x cells, bilinearly
upsampled), so its outlines are coarse. A whole dataset: `explain_dataset(method="dax-amortised")`
and `daxjax explain --method dax-amortised` fit on a share of it, keep the explainer in the store
and explain every image (`daxjax.dataset.amortised`).

Modules: config (AmortisedConfig, grouped by concern), nets (encoder, mask head, student head),
training (queries, loss, the training step and checkpoints), explainer (fit, explain, refine,
save and load).
"""

from daxjax.amortised.config import AmortisedConfig, Loss, Nets, Refine, Sampling, Training
from daxjax.amortised.explainer import METHOD, REFINE_DIAGNOSTICS, AmortisedExplainer, fit, load

__all__ = ["AmortisedConfig", "AmortisedExplainer", "Loss", "METHOD", "Nets", "REFINE_DIAGNOSTICS", "Refine",
           "Sampling", "Training", "fit", "load"]
