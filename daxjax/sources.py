"""The former name of `daxjax.dataset.sources`, kept so that existing imports keep working: the same module."""

import sys

from daxjax.dataset import sources as _moved

sys.modules[__name__] = _moved
