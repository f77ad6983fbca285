"""The former name of `daxjax.methods.occlusion`, kept so that existing imports keep working: the same module."""

import sys

from daxjax.methods import occlusion as _moved

sys.modules[__name__] = _moved
