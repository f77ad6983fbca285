"""Checks of config fields and arguments, in one place: every message names the config and the
field, or the argument (`positive_int`).

    check_fields(config, positive=("num_samples", "cells"), optional_positive=("steps",),
                 greater_than_zero=("kernel_width",), open_unit=("keep_prob",))

Choices are never listed by hand: a field annotated with a `Literal` (`FillMethod`,
`Literal["v1", "v2"]`, ...) may only hold one of its values (`check_choices`, from
`typing.get_args`), so the annotation is the one list. Every config inherits `Replace` for its
`replace(**changes)`. Images are checked in one place too: `daxjax.inputs.as_float_images`.
"""

from __future__ import annotations

import dataclasses
import functools
import typing
from typing import Any, Literal

import numpy as np


def check_fields(config: Any, *, positive: tuple[str, ...] = (), optional_positive: tuple[str, ...] = (),
                 non_negative: tuple[str, ...] = (), greater_than_zero: tuple[str, ...] = (),
                 open_unit: tuple[str, ...] = ()) -> None:
    """ValueError naming the first field of `config` (a dataclass) that breaks its rule, after the
    Literal choices (`check_choices`).

    positive: integers >= 1; optional_positive: None or integers >= 1; non_negative: integers >= 0;
    greater_than_zero: numbers > 0; open_unit: numbers in (0, 1).
    """
    check_choices(config)
    owner = type(config).__name__
    for name in positive:
        _check(int(getattr(config, name)) >= 1, owner, name, getattr(config, name), ">= 1")
    for name in optional_positive:
        value = getattr(config, name)
        _check(value is None or int(value) >= 1, owner, name, value, "None or >= 1")
    for name in non_negative:
        _check(int(getattr(config, name)) >= 0, owner, name, getattr(config, name), ">= 0")
    for name in greater_than_zero:
        _check(getattr(config, name) > 0, owner, name, getattr(config, name), "> 0")
    for name in open_unit:
        value = getattr(config, name)
        if not 0.0 < value < 1.0:
            raise ValueError(f"{owner}.{name} must be in (0, 1), got {value!r}")


def positive_int(name: str, value: Any) -> int:
    """`value` as an int, or a ValueError naming the argument `name` when it is not a positive integer
    (booleans are not integers here)."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def _check(ok: bool, owner: str, name: str, value: Any, rule: str) -> None:
    if not ok:
        raise ValueError(f"{owner}.{name} must be {rule}, got {value!r}")


def check_choices(config: Any) -> None:
    """ValueError naming the first field whose annotation is a `Literal` and whose value is not one of it."""
    for name, choices in literal_fields(type(config)).items():
        value = getattr(config, name)
        if value not in choices:
            raise ValueError(f"{type(config).__name__}.{name}={value!r} is not one of {choices}")


@functools.lru_cache(maxsize=None)
def literal_fields(config_type: type) -> dict[str, tuple]:
    """field name -> its allowed values, for the fields of a dataclass annotated with a `Literal`."""
    hints = typing.get_type_hints(config_type)
    return {field.name: typing.get_args(hints[field.name]) for field in dataclasses.fields(config_type)
            if typing.get_origin(hints[field.name]) is Literal}


class Replace:
    """`config.replace(**changes)`: a copy with some fields changed (`dataclasses.replace`), checked again."""

    def replace(self, **changes):
        return dataclasses.replace(self, **changes)
