"""The former name of `daxjax.methods.lime`, kept so that existing imports keep working: the same module."""

import sys

from daxjax.methods import lime as _moved

sys.modules[__name__] = _moved
