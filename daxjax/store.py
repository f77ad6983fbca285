"""The former name of `daxjax.dataset.store`, kept so that existing imports keep working: the same module."""

import sys

from daxjax.dataset import store as _moved

sys.modules[__name__] = _moved
