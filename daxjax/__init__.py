"""daxjax: distillation-aided explanations (DAX) of query-only black boxes, batched in JAX.

    import daxjax
    ex = daxjax.explain(bb, images, method="dax")   # ex.maps [B, H, W] in [0, 1]
"""

from daxjax import metrics
from daxjax.config import DAXConfig
from daxjax.explain import METHODS, Explanation, explain
from daxjax.inputs import InputError

__all__ = ["DAXConfig", "Explanation", "InputError", "METHODS", "explain", "metrics"]
