"""The black-box adapters, as `daxjax.blackbox` (the same objects as `blackbox_adapters`).

    from daxjax.blackbox import OnnxBlackBox, CallableBlackBox, JaxBlackBox, as_blackbox
"""

from blackbox_adapters import *  # noqa: F403 - the adapters' public names (their __all__)
from blackbox_adapters import __all__  # noqa: F401
