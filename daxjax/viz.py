"""The former name of `daxjax.report.viz`, kept so that existing imports keep working: the same module."""

import sys

from daxjax.report import viz as _moved

sys.modules[__name__] = _moved
