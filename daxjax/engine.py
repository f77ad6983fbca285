"""What every explainer's group function returns (`explain_images` of each method).

An engine explains one group of images side by side and returns a `GroupResult`: the maps, the
seconds spent per phase and, for explainers that can tell, per-image diagnostics of how far each
map can be trusted (DAX: the student's held-out fit, whether the mask is alive; see
`daxjax.dax.DIAGNOSTICS`). `daxjax.explain`, `explain_audio` and the dataset pipeline gather
them the same way.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np


class GroupResult(NamedTuple):
    """maps float32 [B, H, W] in [0, 1]; timings {phase: seconds}; diagnostics {name: array [B]}."""

    maps: np.ndarray
    timings: dict
    diagnostics: dict = {}


def gather_diagnostics(into: dict, part: dict, rows: slice, total: int) -> None:
    """Writes a group's per-image diagnostics `part` into rows `rows` of arrays of length `total`.

    Arrays are created on first sight with the part's dtype: floats start as NaN, booleans as
    False, so images of groups that reported nothing are told apart from reported values.
    """
    for name, values in part.items():
        values = np.asarray(values)
        if name not in into:
            fill = np.nan if np.issubdtype(values.dtype, np.floating) else 0
            into[name] = np.full((total,), fill, values.dtype)
        into[name][rows] = values
