"""The former name of `daxjax.perturbation.fills`, kept so that existing imports keep working: the same module."""

import sys

from daxjax.perturbation import fills as _moved

sys.modules[__name__] = _moved
