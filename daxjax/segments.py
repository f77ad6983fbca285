"""The former name of `daxjax.perturbation.segments`, kept so that existing imports keep working: the same module."""

import sys

from daxjax.perturbation import segments as _moved

sys.modules[__name__] = _moved
