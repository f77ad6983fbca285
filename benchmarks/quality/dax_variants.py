"""DAX's ablation: the default and one change at a time, shared by the quality benchmarks
(`benchmarks.quality.realmodels --parts ablation`, `benchmarks.quality.fashion --parts ablation`)."""

from __future__ import annotations

#: The default before issue 18 (a CNN student on the masked pixels, probabilities, a soft mask,
#: 4 epochs of batch 64, a conv mask net, 3 restarts averaged): the "why it failed" row.
BEFORE = dict(student="image", target="probability", gate="soft", steps=None, epochs=4, minibatch_size=64,
              learning_rate=3e-3, mask_channels=8, restarts=3, lambda_area=1.0, effect_power=0.0)


def ablation_variants() -> dict:
    """Change name -> DAXConfig fields changed from the default, one change at a time.

    Every variant perturbs the same segments with the same fill and keep-vectors, so they share
    the black box's answers (`AnswerCache`): the ablation pays the queries once.
    """
    return {
        "default": {},
        "the default before (image student, probabilities, soft mask, 4 epochs)": BEFORE,
        "student=image (the paper's CNN on masked pixels)": {"student": "image"},
        "target=probability (not logits)": {"target": "probability"},
        "gate=soft (the mask multiplies, no sampled gates)": {"gate": "soft"},
        "student_hidden=0 (a linear student)": {"student_hidden": 0},
        "steps=300": {"steps": 300},
        "steps=2000": {"steps": 2000},
        "restarts=3 (averaged)": {"restarts": 3},
        "lambda_area=1.0": {"lambda_area": 1.0},
        "lambda_area=0.25": {"lambda_area": 0.25},
        "lambda_q=0 (no counterfactual term)": {"lambda_q": 0.0},
        "mask_channels=8 (a conv mask net beside the grid)": {"mask_channels": 8},
        "mask_cells=8": {"mask_cells": 8},
        "effect_power=0 (the mask alone)": {"effect_power": 0.0},
        "effect_power=1 (mask x effect)": {"effect_power": 1.0},
        "student_warmup=0": {"student_warmup": 0.0},
    }
