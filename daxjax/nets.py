"""The former name of `daxjax.methods.dax.nets`, kept so that existing imports keep working: the same module."""

import sys

from daxjax.methods.dax import nets as _moved

sys.modules[__name__] = _moved
