"""The former name of `daxjax.methods.dax.losses`, kept so that existing imports keep working: the same module."""

import sys

from daxjax.methods.dax import losses as _moved

sys.modules[__name__] = _moved
