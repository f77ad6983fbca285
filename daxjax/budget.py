"""The former name of `daxjax.dataset.budget`, kept so that existing imports keep working: the same module."""

import sys

from daxjax.dataset import budget as _moved

sys.modules[__name__] = _moved
