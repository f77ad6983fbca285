"""The former name of `daxjax.methods.gradients`, kept so that existing imports keep working: the same module."""

import sys

from daxjax.methods import gradients as _moved

sys.modules[__name__] = _moved
