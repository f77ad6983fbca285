"""GLANCE-lite: a GLANCE-inspired global-to-local concept explainer (Kori, Glocker, Toni,
arXiv 2207.01917), re-implemented from the method's description and tested on planted causes.

The DAX core never imports this subpackage. Modules, one idea each:
    morphosynth    planted SCM + stroke renderer of MNIST-like digits (exact counterfactuals)
    morphometrics  thickness, intensity, slant, width, area on scikit-image (Morpho-MNIST definitions)
"""
