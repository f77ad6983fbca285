"""The former name of `daxjax.methods.dax.config`, kept so that existing imports keep working: the same module."""

import sys

from daxjax.methods.dax import config as _moved

sys.modules[__name__] = _moved
