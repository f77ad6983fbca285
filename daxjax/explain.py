"""`daxjax.explain`: one entry point for every explainer, switched by `method`."""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from blackbox_adapters import as_blackbox, check_probabilities
from daxjax.device.execution import resolve as resolve_execution
from daxjax.device.querying import device_blackbox
from daxjax.inputs import as_float_images, as_targets, check_seed, image_digest
from daxjax.methods.base import Explanation, diagnostics_of, run_groups, uninformative, warn_uninformative
from daxjax.methods.registry import NAMES, REGISTRY, check_takes_segments, resolve_config
from daxjax.perturbation.segments import given_segments, select_segments

#: The method names (`daxjax.methods.registry.REGISTRY` holds each one's `Method` record).
METHODS = NAMES
#: method -> (config type, group function): the registry's records as pairs, for existing callers.
EXPLAINERS = {name: (method.config_type, method.explain_group) for name, method in REGISTRY.items()}
#: method -> the per-image diagnostics its explanations carry (`Explanation.diagnostics`;
#: `methods.base.diagnostics_of`): DAX's own, and for every query-only method
#: `methods.base.ANSWER_DIAGNOSTICS`; the gradient references: none.
DIAGNOSTICS = {name: diagnostics_of(method) for name, method in REGISTRY.items() if diagnostics_of(method)}
#: `Explanation` (what `explain` returns) lives with the explainer contract in `daxjax.methods.base`,
#: so that explainers above the registry (`daxjax.amortised`) return it without importing this module.
__all__ = ["DIAGNOSTICS", "EXPLAINERS", "METHODS", "Explanation", "explain"]


#: The former private name of `registry.resolve_config`.
_resolve_config = resolve_config


def explain(bb, images, targets=None, method: str = "dax", config=None, seed: int = 0,
            segments=None, execution=None) -> Explanation:
    """Explains the black box's decision on each image.

    Args:
      bb: a black box (`blackbox_adapters`) or any callable x [n, H, W, C] float32 in [0, 1]
        -> probabilities [n, K].
      images: float32 [B, H, W, C] in [0, 1] or uint8 [B, H, W, C]; C in {1, 3}.
      targets: int [B] classes to explain, a single int for all, or None for the top-1 class.
      method: one of METHODS.
      config: the method's config dataclass (e.g. `DAXConfig`); None takes its defaults.
      seed: with the image and target, fixes the explanation (the determinism contract).
      segments: None, or label maps int [B, H, W] (one per image, segment ids >= 0) that replace
        the config's segmentation ("dax", "lime", "kernelshap" only); each map is checked
        (`segmentation.check_label_map`: shape, integer dtype, no negative ids, 2 to H*W/16
        segments) and its image's map then depends on it too.
      execution: a `daxjax.Execution` (images per group, inputs per black-box call, rows per DAX
        training step); None: `daxjax.device.execution`'s defaults for the backend. It changes speed
        and memory only: the maps depend on images, targets, method, config, seed (and segments).

    Returns:
      An `Explanation`. When some maps come from answers that did not change under perturbation
      (`diagnostics["informative"]` False), one `methods.base.UninformativeWarning` names their
      positions.
    """
    config = resolve_config(method, config)
    execution = resolve_execution(execution)
    seed = check_seed(seed)
    user_bb, bb = bb, as_blackbox(bb)
    start = time.perf_counter()
    x = as_float_images(images)
    batch = x.shape[0]
    given = None
    if segments is not None:
        check_takes_segments(method)
        given = given_segments(config, x, segments)
    probs = check_probabilities(bb(x), batch, what="black box on the unperturbed images")
    num_classes = probs.shape[1]
    targets = as_targets(targets, batch, num_classes, default=probs.argmax(axis=1))
    scores = probs[np.arange(batch), targets].astype(np.float32)
    digests = np.array([image_digest(img, t) for img, t in zip(x, targets)], np.uint32)

    result = run_groups(REGISTRY[method].explain_group, device_blackbox(user_bb, bb, num_classes), x, targets,
                        digests, config, seed, execution=execution,
                        per_group=None if given is None else lambda rows: {"segmented": select_segments(given, rows)})
    timings = dict(result.timings, total=time.perf_counter() - start)
    warn_uninformative([int(i) for i in uninformative(result.diagnostics)], batch)
    return Explanation(result.maps, targets, scores, method, config, timings, result.diagnostics)
