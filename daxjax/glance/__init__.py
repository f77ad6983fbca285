"""GLANCE-lite: a GLANCE-inspired global-to-local concept explainer (Kori, Glocker, Toni,
arXiv 2207.01917), re-implemented from the method's description and tested on planted causes.

    from daxjax import glance
    model = glance.fit(bb, images, context, glance.GlanceConfig())
    model.graph                       # global: causal graph over concepts, latents, f's log-odds
    ex = model.explain(images)        # local: ex.importances [B, concepts], ex.counterfactuals

The DAX core never imports this subpackage. Modules, one idea each:
    morphosynth    planted SCM + stroke renderer of MNIST-like digits (exact counterfactuals)
    morphometrics  thickness, intensity, slant, width, area on scikit-image (Morpho-MNIST definitions)
    classifier     the CNNs to explain (committed ONNX models) and how they were trained
    surrogate      encoder E + StyleGAN2-style generator G (non-fused modulated convolutions)
    discovery      linear NOTEARS in JAX (+ causal-learn PC/GES cross-check)
    local          batched interventions: concept effects and counterfactual images
    api            fit / GlanceModel / load
    evaluation     scores against MorphoSynth's planted ground truth
    plots          graph picture, importance bars, counterfactual strip, HTML page
"""

from daxjax.glance.api import GlanceConfig, GlanceModel, fit, load
from daxjax.glance.discovery import CausalGraph, NotearsConfig
from daxjax.glance.local import LocalExplanation
from daxjax.glance.surrogate import SurrogateConfig

__all__ = ["CausalGraph", "GlanceConfig", "GlanceModel", "LocalExplanation", "NotearsConfig", "SurrogateConfig",
           "fit", "load"]
