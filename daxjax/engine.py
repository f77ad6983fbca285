"""The former name of `daxjax.methods.base`, kept so that existing imports keep working: the same module."""

import sys

from daxjax.methods import base as _moved

sys.modules[__name__] = _moved
