"""The former name of `daxjax.methods.kernelshap`, kept so that existing imports keep working: the same module."""

import sys

from daxjax.methods import kernelshap as _moved

sys.modules[__name__] = _moved
