"""The former name of `daxjax.perturbation.segmentation`, kept so that existing imports keep working: the same module."""

import sys

from daxjax.perturbation import segmentation as _moved

sys.modules[__name__] = _moved
