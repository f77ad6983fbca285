"""The explainer contract: what a method is (`Method`), what its group function does
(`ExplainGroup`), what it returns (`GroupResult`), and the group loop every caller shares.

An explainer explains one group of images side by side and returns a `GroupResult`: the maps,
the seconds spent per phase and, for explainers that can tell, per-image diagnostics of how far
each map can be trusted (DAX: the student's held-out fit, whether the mask is alive;
`daxjax.methods.dax.engine.DIAGNOSTICS`). Every caller runs a group through `call_group`, which adds
to the diagnostics of every query-only method, from the black box's answers to the image's own
queries, whether those answers changed at all (`ANSWER_DIAGNOSTICS`): a method gets this for free
by querying through `device.querying.query_targets`. The facts the rest of the package needs about a method
(its config type, whether it perturbs segments, how many queries and how much memory an image
costs) are fields of its `Method` record (`daxjax.methods.registry.REGISTRY`), never found out by
looking at a config's type name or attributes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import warnings
from typing import Any, Callable, Mapping, NamedTuple, Protocol, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from daxjax.device.execution import Execution, images_per_group
from daxjax.device.querying import recording_answers
from daxjax.device.sharding import image_mesh, padded_count, padded_positions, shard_images
from daxjax.perturbation.fills import fill_images
from daxjax.perturbation.segments import HostSegments


class GroupResult(NamedTuple):
    """maps float32 [B, H, W] in [0, 1]; timings {phase: seconds}; diagnostics {name: array [B]}."""

    maps: np.ndarray
    timings: dict
    diagnostics: dict = {}


class ExplainGroup(Protocol):
    """Explains a group of B images side by side: a method's `explain_images`.

    Args:
      device_bb: the black box as a traceable function (`daxjax.device.querying.DeviceBlackBox`).
      images: float32 [B, H, W, C] in [0, 1] (for audio: spectrogram images on the mask grid).
      targets: int32 [B], the classes to explain.
      digests: uint32 [B], `inputs.image_digest` of each (image, target): with the seed, the
        image's only source of randomness (the determinism contract).
      config: the method's config (`Method.config_type`).
      seed: int.
      image_ids: the caller's names of the B images, for error messages.
      segmented: (methods that perturb segments) `perturbation.segments.HostSegments` made ahead
        of time, which replace the config's segmentation.
      queries: (query-only methods) `device.querying.RenderedQueries` when the black box takes
        inputs other than the images (audio).
      execution: a `device.execution.Execution`: how many inputs go in one black-box call (and for
        DAX rows per training step); speed and memory only, never the maps. None: the defaults.

    Returns:
      A `GroupResult`.
    """

    def __call__(self, device_bb: Any, images: np.ndarray, targets: np.ndarray, digests: np.ndarray, config: Any,
                 seed: int, image_ids: list, **options: Any) -> GroupResult: ...


class Method(NamedTuple):
    """One explainer, as the rest of the package sees it.

    name: the `method=` string.
    config_type: its frozen config dataclass: what shapes the maps, nothing of execution (images
      per group, inputs per call: `device.execution.Execution`, passed beside the config).
    explain_group: the group function (`ExplainGroup`).
    perturbs_segments: it switches segments on and off: takes `segmentation=` names or callables,
      label maps given by the caller (`segments=`) and segments made ahead (`segmented=`).
    query_only: it only queries the black box (through `device.querying.query_targets`), so any
      black box will do and it takes `queries=` (audio); False for the gradient references, which
      differentiate a `JaxBlackBox`.
    queries_per_image: (config, height, width) -> black-box inputs evaluated per image.
    working_bytes: (config, height, width, channels) -> device bytes one image needs while it is
      explained, beyond the image, its fill and its segment map (the samples, and for DAX the
      networks, their optimiser state and one step's activations).
    diagnostics: names of the per-image diagnostics its own `GroupResult` carries (may be empty);
      `diagnostics_of` adds those `call_group` computes for every query-only method.
    splits_itself: its group function takes the group on the host and splits it over the devices
      itself (dax-amortised: the explainer pads and shards its own parts), so a caller hands it
      numpy arrays rather than sharding them first (which would cost a device-to-host copy back).
    """

    name: str
    config_type: type
    explain_group: ExplainGroup
    perturbs_segments: bool
    query_only: bool
    queries_per_image: Callable[[Any, int, int], int]
    working_bytes: Callable[[Any, int, int, int], int]
    diagnostics: tuple[str, ...] = ()
    splits_itself: bool = False


#: Bytes a query-only method keeps per black-box query of an image besides its perturbation's
#: keep-vector (the answer y, the proximity weight pi, indices), as `dataset.budget` counts.
QUERY_BYTES = 12


def pixel_mask_inputs(images: np.ndarray, fill: str, queries: Any = None) -> tuple[Any, Any, Any]:
    """(render, sources, fills) of an explainer that masks pixels (RISE, Occlusion): no render, the
    images and their `fill` images (`fills.fill_images`; these fills ignore segments), or, for a
    black box that takes other inputs, `queries`' own (`querying.RenderedQueries`; `fill` unused)."""
    if queries is not None:
        return queries.render, queries.sources, queries.fills
    batch, height, width = images.shape[:3]
    return None, images, fill_images(images, np.zeros((batch, height, width), np.int32), fill)


def sample_bytes(num_queries: int, segments: int = 0) -> int:
    """Device bytes of an image's samples: per query its answer and weights, and a keep-vector of
    `segments` bytes for methods that perturb segments."""
    return int(num_queries) * (int(segments) + QUERY_BYTES)


# ---------------------------------------------------------------------------------------------
# Diagnostics every query-only method gets: did the black box's answer change under perturbation?

#: Per-image diagnostics of every query-only method (`Explanation.diagnostics`, the dataset store,
#: `load_results(out).diagnostics`), computed by `call_group` from the black box's answers to the
#: image's own queries (`answer_diagnostics`), each [B]:
#:   answer_spread  float32: standard deviation of the target probability over the image's queries
#:                  (all of them: RISE's masks, LIME's and DAX's samples, Occlusion's windows and
#:                  its unperturbed query; DAX with fill="auto": the N answers its map is built
#:                  from, the chosen fill's, not the probe's answers under the other fill).
#:   informative    bool: answer_spread > SPREAD_FLOOR * the largest |answer| of the image. False:
#:                  the black box's answer did not change under perturbation (e.g. a constant
#:                  black box), so the map, however much contrast it shows, is built from rounding
#:                  noise or from nothing and says nothing about the black box.
#: Such a map is kept as computed (the determinism contract: a map depends on its image, target,
#: seed and config only, never on a threshold of a diagnostic; zeroing it would also hide what the
#: method did); the flag is the contract: `explain` warns, the store keeps it, the CLI counts it and
#: the HTML report marks the map "uninformative".
ANSWER_DIAGNOSTICS = ("answer_spread", "informative")
#: Relative floor of `answer_spread`: 1e-5 of the answers' magnitude is about 80 float32 rounding
#: steps (eps = 1.2e-7), below which a change of the answer cannot be told from the rounding of the
#: black box's own arithmetic (softmax, normalisation).
SPREAD_FLOOR = 1e-5
#: The boolean diagnostics: False marks a map not to be read as confident (`trusted_maps`). DAX's
#: `trusted` (held-out fit and a living mask) and every query-only method's `informative`.
FLAGS = ("trusted", "informative")


class UninformativeWarning(UserWarning):
    """Some maps come from a black box whose answer did not change under perturbation (`ANSWER_DIAGNOSTICS`)."""


def answer_diagnostics(answers: Sequence[Any]) -> dict[str, np.ndarray]:
    """`ANSWER_DIAGNOSTICS` of B images from the black box's answers to their queries.

    answers: arrays [B, N_k] of target probabilities (one per `query_targets` call of the group,
      joined along the query axis). Returns {"answer_spread": float32 [B], "informative": bool [B]}.
    """
    y = np.concatenate([np.asarray(part, np.float64) for part in answers], axis=1)
    spread = y.std(axis=1)
    return {"answer_spread": spread.astype(np.float32),
            "informative": spread > SPREAD_FLOOR * np.abs(y).max(axis=1)}


def call_group(explain_group: ExplainGroup, device_bb: Any, images: Any, targets: Any, digests: Any, config: Any,
               seed: int, image_ids: list, **options: Any) -> GroupResult:
    """`explain_group(device_bb, images, ..., image_ids, **options)` with `ANSWER_DIAGNOSTICS` added
    to its diagnostics when it queried the black box through `query_targets` (every query-only
    method; the gradient references, which do not, get none), unless the group computed them
    itself from the answers its map is built from (DAX's fill="auto", whose probe also asks under
    a fill it then drops). The one way callers run a group."""
    with recording_answers() as answers:
        result = explain_group(device_bb, images, targets, digests, config, seed, image_ids, **options)
    if not answers:
        return result
    return GroupResult(result.maps, result.timings, {**answer_diagnostics(answers), **result.diagnostics})


def diagnostics_of(method: Method) -> tuple[str, ...]:
    """Names of the per-image diagnostics explanations by `method` carry: its own, then
    `ANSWER_DIAGNOSTICS` for a query-only method."""
    return tuple(method.diagnostics) + (ANSWER_DIAGNOSTICS if method.query_only else ())


def trusted_maps(diagnostics: Mapping[str, np.ndarray]) -> np.ndarray | None:
    """bool [B]: maps whose every flag (`FLAGS` present in `diagnostics`) is True; None when none is present."""
    flags = [np.asarray(diagnostics[name], bool) for name in FLAGS if name in diagnostics]
    return np.logical_and.reduce(flags) if flags else None


def uninformative(diagnostics: Mapping[str, np.ndarray]) -> np.ndarray:
    """Positions of the maps flagged `informative` False (int [k]; empty when not reported)."""
    if "informative" not in diagnostics:
        return np.zeros(0, np.int64)
    return np.flatnonzero(~np.asarray(diagnostics["informative"], bool))


def warn_uninformative(flagged: Sequence[Any], total: int, what: str = "the images at positions") -> None:
    """One `UninformativeWarning` saying that `len(flagged)` of `total` maps are uninformative and
    naming their inputs (`flagged`: positions or ids, as `what` says; at most 10 listed). Nothing
    when `flagged` is empty."""
    if not len(flagged):
        return
    listed = list(flagged[:10]) + (["..."] if len(flagged) > 10 else [])
    warnings.warn(
        f"{len(flagged)} of {total} maps are uninformative: the black box's answer did not change "
        f"under perturbation (answer_spread <= {SPREAD_FLOOR:g} x the answer) for {what} {listed}; "
        f"their maps are kept as computed but say nothing about the black box "
        f"(diagnostics['informative'] is False)", UninformativeWarning, stacklevel=3)


def run_groups(explain_group: ExplainGroup, device_bb: Any, images: np.ndarray, targets: np.ndarray,
               digests: np.ndarray, config: Any, seed: int, *, execution: Execution | None = None,
               per_group: Callable[[np.ndarray], dict] | None = None, devices: Sequence[Any] | None = None,
               image_ids: Sequence[Any] | None = None) -> GroupResult:
    """Explains B images `execution.images_per_group` at a time (`device.execution.images_per_group`)
    through `call_group`; the maps [B, *images.shape[1:3]], seconds per phase summed over groups, and
    the diagnostics gathered (`gather_diagnostics`). Every group gets the same `execution`.

    per_group: positions int [G] of a group's images (padding copies included) -> extra keyword
      arguments of that group's call (`segmented=`, `queries=`); a `HostSegments` or a numpy array
      among them is split over the devices like the images, anything else is passed as it is.
    devices: local devices to split each group's image axis over (`device.sharding.image_mesh`):
      groups of images_per_group rounded up to a multiple of D, the last padded to a multiple of D
      with copies of its first image (computed and queried, then dropped: `sharding.padded_count`).
      None: no mesh, JAX's default device, no padding.
    image_ids: the caller's names of the B images, for error messages (default: positions 0 .. B - 1).
    """
    batch = images.shape[0]
    width = 1 if devices is None else len(devices)
    maps = np.zeros(images.shape[:3], np.float32)
    timings: dict[str, float] = {}
    diagnostics: dict[str, np.ndarray] = {}
    group_size = padded_count(images_per_group(execution), width)
    names = list(range(batch)) if image_ids is None else list(image_ids)
    with contextlib.nullcontext() if devices is None else image_mesh(devices) as mesh:
        for lo in range(0, batch, group_size):
            rows = slice(lo, min(batch, lo + group_size))
            take = padded_positions(rows.start, rows.stop, width)
            extra = per_group(take) if per_group is not None else {}
            extra = {name: _on_mesh(mesh, value) for name, value in extra.items()}
            result = call_group(explain_group, device_bb, _on_mesh(mesh, images[take]), _on_mesh(mesh, targets[take]),
                                _on_mesh(mesh, digests[take]), config, seed, [names[i] for i in take],
                                execution=execution, **extra)
            size = rows.stop - rows.start
            maps[rows] = np.asarray(result.maps)[:size]
            gather_diagnostics(diagnostics, {name: np.asarray(values)[:size]
                                             for name, values in result.diagnostics.items()}, rows, batch)
            for phase, seconds in result.timings.items():
                timings[phase] = timings.get(phase, 0.0) + seconds
    return GroupResult(maps, timings, diagnostics)


def _on_mesh(mesh: Any, value: Any) -> Any:
    """A group's array (image axis first) or `HostSegments` split over the mesh; with no mesh, or
    any other extra argument, `value` as it is (host arrays stay on the host, as without devices)."""
    if mesh is None or not isinstance(value, (HostSegments, np.ndarray)):
        return value
    if isinstance(value, np.ndarray):
        return shard_images(mesh, value)
    return HostSegments(shard_images(mesh, value.segments), shard_images(mesh, value.fills),
                        shard_images(mesh, value.num_segments), value.max_segments)


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


def normalise(maps: jax.Array) -> jax.Array:
    """Min-max scales each map [..., H, W] to [0, 1]; a constant map becomes all zeros."""
    low = maps.min(axis=(-2, -1), keepdims=True)
    high = maps.max(axis=(-2, -1), keepdims=True)
    return jnp.where(high > low, (maps - low) / jnp.maximum(high - low, 1e-12), 0.0)


@dataclasses.dataclass
class Explanation:
    """What `explain` returns for a batch of B images of H x W pixels.

    maps: float32 [B, H, W] in [0, 1], higher = more important for the target class.
    targets: int32 [B], the explained class of each image.
    scores: float32 [B], the black box's probability of the target on the unperturbed image.
    method, config: what produced the maps.
    timings: seconds spent per phase (for DAX "segmentation", "queries", "training"; all "total").
    diagnostics: per-image arrays [B] saying how far each map can be trusted (`daxjax.explain.DIAGNOSTICS`
      names them per method). Every query-only method: `answer_spread` and `informative`
      (`daxjax.methods.base.ANSWER_DIAGNOSTICS`: False when the black box's answer did not change
      under perturbation, e.g. a constant black box; such a map is kept as computed but says
      nothing). DAX also: `daxjax.methods.dax.engine.DIAGNOSTICS` (the student's held-out fit, a linear
      surrogate's, the mask's area and contrast, and `trusted`). Empty for the gradient references.
    """

    maps: np.ndarray
    targets: np.ndarray
    scores: np.ndarray
    method: str
    config: Any
    timings: dict = dataclasses.field(default_factory=dict)
    diagnostics: dict = dataclasses.field(default_factory=dict)

    @property
    def trusted(self) -> np.ndarray | None:
        """bool [B]: maps whose every flag holds (`methods.base.trusted_maps`: `informative` for every
        query-only method, and DAX's `trusted`: fit and a living mask); None if the method cannot tell."""
        return trusted_maps(self.diagnostics)
