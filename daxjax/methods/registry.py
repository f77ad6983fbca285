"""The explainers by name: `REGISTRY` (name -> `Method`), and the checks every entry point shares.

    Query-only, through `device.querying.query_targets` (any black box):
      "dax"          DAX, a mask net distilled from queries          (methods/dax/)
      "rise"         score-weighted random smooth masks              (methods/rise.py)
      "lime"         weighted ridge regression on superpixels        (methods/lime.py)
      "kernelshap"   Shapley values of superpixels                   (methods/kernelshap.py)
      "occlusion"    probability drop under a sliding window         (methods/occlusion.py)
    Gradient references, a JaxBlackBox only (they differentiate jax_fn; methods/gradients.py):
      "gradient", "smoothgrad", "integrated_gradients", "input_x_gradient"
"""

from __future__ import annotations

from typing import Any

from daxjax.inputs import InputError, check_field_types
from daxjax.methods import gradients, kernelshap, lime, occlusion, rise
from daxjax.methods.base import Method
from daxjax.methods.dax import engine as dax

REGISTRY: dict[str, Method] = {method.name: method for method in (
    dax.METHOD, rise.METHOD, lime.METHOD, kernelshap.METHOD, occlusion.METHOD, *gradients.METHODS)}
#: The method names, in the registry's order.
NAMES = tuple(REGISTRY)
#: The methods that perturb segments (`Method.perturbs_segments`).
SEGMENT_METHODS = tuple(name for name, method in REGISTRY.items() if method.perturbs_segments)


def method_named(name: str) -> Method:
    """The `Method` called `name`; an InputError listing the names otherwise."""
    if name not in REGISTRY:
        raise InputError(f"unknown method {name!r}; choose one of {NAMES}")
    return REGISTRY[name]


#: Methods that `explain_dataset` and the CLI take besides REGISTRY's: they fit on a share of the
#: dataset before explaining any image, so no group of images can be explained on its own and they
#: are no registry `Method` (`daxjax.dataset.amortised` says why); `explain` does not take them.
DATASET_METHODS = ("dax-amortised",)


def method_of(config: Any) -> Method:
    """The `Method` whose config type `config` is an instance of; a TypeError otherwise."""
    for method in REGISTRY.values():
        if type(config) is method.config_type:
            return method
    raise TypeError(f"{type(config).__name__} is the config of no method; the configs: "
                    f"{', '.join(m.config_type.__name__ for m in REGISTRY.values())}")


def resolve_config(name: str, config: Any) -> Any:
    """The config to explain with: `config` checked against method `name` (its type and its fields'
    kinds, `inputs.check_field_types`), or the method's defaults when None. InputError otherwise."""
    expected = method_named(name).config_type
    if config is None:
        return expected()
    if not isinstance(config, expected):
        raise InputError(f"method={name!r} takes a {expected.__name__}; got {type(config).__name__}")
    check_field_types(config)
    return config


def check_takes_segments(name: str) -> None:
    """An InputError naming method `name` when it does not perturb segments (label maps are for those that do)."""
    if not method_named(name).perturbs_segments:
        raise InputError(f"method={name!r} does not perturb segments, so it takes no label maps (segments=); "
                         f"they are for {', '.join(SEGMENT_METHODS)}")
