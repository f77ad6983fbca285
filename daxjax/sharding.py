"""The former name of `daxjax.device.sharding`, kept so that existing imports keep working: the same module."""

import sys

from daxjax.device import sharding as _moved

sys.modules[__name__] = _moved
