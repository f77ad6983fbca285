"""The former name of `daxjax.methods.rise`, kept so that existing imports keep working: the same module."""

import sys

from daxjax.methods import rise as _moved

sys.modules[__name__] = _moved
