"""Bundled planted black boxes (tiny ONNX files) and the numpy references they implement."""

from .colour_reference import COLOUR_CLASSES, colour_logits, colour_probs

__all__ = ["COLOUR_CLASSES", "colour_logits", "colour_probs"]
