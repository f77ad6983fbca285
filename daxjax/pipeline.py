"""The former name of `daxjax.dataset.pipeline`, kept so that existing imports keep working: the same module."""

import sys

from daxjax.dataset import pipeline as _moved

sys.modules[__name__] = _moved
