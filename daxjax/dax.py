"""The former name of `daxjax.methods.dax.engine`, kept so that existing imports keep working: the same module."""

import sys

from daxjax.methods.dax import engine as _moved

sys.modules[__name__] = _moved
