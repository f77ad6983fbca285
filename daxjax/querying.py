"""The former name of `daxjax.device.querying`, kept so that existing imports keep working: the same module."""

import sys

from daxjax.device import querying as _moved

sys.modules[__name__] = _moved
