"""The former name of `daxjax.perturbation.sampling`, kept so that existing imports keep working: the same module."""

import sys

from daxjax.perturbation import sampling as _moved

sys.modules[__name__] = _moved
