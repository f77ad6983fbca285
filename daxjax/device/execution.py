"""How many at once: the execution settings, decided in one place.

An `Execution` says how the work of explaining is cut up: images per group (one vmapped
computation), black-box inputs per call, and rows (images x restarts) per vectorised training step.
It is never part of a method's config: a map depends only on the image, the target, the seed and
the config (the determinism contract), never on these settings, which change speed and memory only.

A field left None is decided here, from the backend and the memory budget:
  * images per group: `images_per_group` (16 for `explain`); the dataset pipeline plans it with
    the query chunk from a memory budget (`plan`).
  * inputs per black-box call: `call_inputs` for the platform (measurements in docs/call-sizes.md),
    split over the group's images (`query_chunk`).
  * rows per training step (DAX): `rows_per_step`, one at a time for the image student on a CPU,
    all at once otherwise.

`plan_execution` plans both counts from what was measured instead: the black box's seconds per
call at a few call sizes (`measure_call_seconds`), a memory budget and the method's working bytes.
"""

from __future__ import annotations

import dataclasses
import time
import warnings
from typing import Callable, Mapping, Sequence

import jax
import numpy as np

from daxjax._checks import Replace, check_fields

#: Images explained side by side in one group when neither the caller nor a plan says otherwise.
IMAGES_PER_GROUP = 16

#: Inputs per black-box call the engines aim at on a CPU: larger calls cost more per sample on a
#: CPU (docs/call-sizes.md, "CPU: inputs per call").
CALL_INPUTS = 256
#: ... unless that many inputs would exceed this many bytes (float32): glibc maps blocks over its
#: mmap threshold (32 MiB at most) afresh at every call, so larger calls pay page faults each time
#: (docs/call-sizes.md, "CPU: bytes per call").
CALL_BYTES = 16 * 2**20
#: On an accelerator (JAX's default backend is not the CPU): larger calls answer more queries per
#: second there (docs/call-sizes.md, "Accelerators").
ACCELERATOR_CALL_INPUTS = 1024
#: ... and at most this many bytes of inputs per call (1,024 images of 224 x 224 x 3 take 588 MiB);
#: the device holds two chunks (one built while the black box answers the other) and the black
#: box's own copy, as `daxjax.dataset.budget` counts.
ACCELERATOR_CALL_BYTES = 2**30

#: Images per group a plan goes up to: on a CPU the DAX rows are looped and larger groups buy
#: nothing; an accelerator fills its cores with more.
MAX_IMAGES_PER_GROUP = {"cpu": 16}
ACCELERATOR_MAX_IMAGES_PER_GROUP = 64
#: Copies of one call's inputs in memory while it is answered: two chunks of perturbations (one built
#: while the black box answers the other) and the black box's normalised copy (`dataset.budget`).
QUERY_COPIES = 3
#: A call size is as good as the fastest measured when its rate is within this fraction of it; the
#: smallest such size is planned (it leaves the most memory to the images).
RATE_TOLERANCE = 0.05


@dataclasses.dataclass(frozen=True)
class Execution(Replace):
    """Execution settings: speed and memory only, never the maps. None: decided by this module.

    images_per_group: images explained side by side in one vmapped computation (memory grows
      with it); None: `IMAGES_PER_GROUP` for `explain`, the memory plan for `explain_dataset`.
    queries_per_call: black-box inputs per call, over the group's images (each image sends its
      perturbations in chunks of max(1, queries_per_call // images in the group)); None:
      `call_inputs` for the platform.
    rows_per_step: rows (images x restarts) vectorised together in one DAX training step, the rest
      looped; None: `rows_per_step`'s backend rule.
    """

    images_per_group: int | None = None
    queries_per_call: int | None = None
    rows_per_step: int | None = None

    def __post_init__(self):
        check_fields(self, optional_positive=("images_per_group", "queries_per_call", "rows_per_step"))


def resolve(execution: Execution | None) -> Execution:
    """`execution`, or the all-None `Execution()`; a TypeError for anything else."""
    if execution is None:
        return Execution()
    if not isinstance(execution, Execution):
        raise TypeError(f"execution must be a daxjax.Execution or None, got {type(execution).__name__}")
    return execution


def images_per_group(execution: Execution | None) -> int:
    """Images per group: the caller's, or `IMAGES_PER_GROUP`."""
    execution = resolve(execution)
    return IMAGES_PER_GROUP if execution.images_per_group is None else int(execution.images_per_group)


def call_inputs(input_elements: int, platform: str | None = None) -> int:
    """Inputs per black-box call for inputs of `input_elements` float32 values on `platform`.

    platform: a JAX platform ("cpu", "gpu", "tpu"); None: JAX's default backend. The CPU aims at
    `CALL_INPUTS` within `CALL_BYTES`, an accelerator at `ACCELERATOR_CALL_INPUTS` within
    `ACCELERATOR_CALL_BYTES` (the measurements are at the constants).
    """
    platform = platform or jax.default_backend()
    inputs, limit = ((CALL_INPUTS, CALL_BYTES) if platform == "cpu"
                     else (ACCELERATOR_CALL_INPUTS, ACCELERATOR_CALL_BYTES))
    return max(1, min(inputs, limit // (4 * max(1, int(input_elements)))))


def query_chunk(execution: Execution | int | None, batch: int, input_elements: int) -> int:
    """Perturbations per input in one black-box call, for a group of `batch` inputs.

    execution: an `Execution` (its `queries_per_call` split over the group, or `call_inputs` for
    JAX's default backend when None), or an int: the chunk itself (as `daxjax.metrics` takes it).
    input_elements: float32 values in one black-box input (H * W * C for images).
    """
    if isinstance(execution, int):
        return int(execution)
    per_call = resolve(execution).queries_per_call
    return max(1, (call_inputs(input_elements) if per_call is None else int(per_call)) // int(batch))


def rows_per_step(execution: Execution | None, image_student: bool) -> int | None:
    """Rows per vectorised pass inside a DAX training step (None: all rows at once).

    The caller's `rows_per_step`, else: the image student on CPU goes one row at a time, which keeps
    a row's activations in cache (measured on 2 cores by `python -m benchmarks.probes.dax_floor
    steps` / `rows`: one row at a time was as fast per row as 3 and faster than 12); the segment
    student's step is a few small matrix products per row, so all rows go at once; accelerators
    take all rows at once.
    """
    execution = resolve(execution)
    if execution.rows_per_step is not None:
        return int(execution.rows_per_step)
    return 1 if jax.default_backend() == "cpu" and image_student else None


def max_images_per_group(backend: str) -> int:
    """The most images per group a plan chooses on `backend` (a JAX platform: "cpu", "gpu", "tpu")."""
    return MAX_IMAGES_PER_GROUP.get(backend, ACCELERATOR_MAX_IMAGES_PER_GROUP)


def measure_call_seconds(bb: Callable, input_shape: Sequence[int], sizes: Sequence[int] | None = None,
                         repeats: int = 2, seed: int = 0) -> dict[int, float]:
    """Seconds the black box takes per call of each size: {inputs per call: best of `repeats` calls}.

    bb: any black box (called as bb(x), x float32 [size, *input_shape] uniform in [0, 1]).
    sizes: call sizes to time; None: 16, 64 and 256 inputs on a CPU, 64, 256 and 1,024 on an
      accelerator (JAX's default backend). Each size is called once untimed first (a session's
      first call of a shape sets it up), so this costs (repeats + 1) * sum(sizes) black-box inputs.
    """
    if sizes is None:
        sizes = (16, 64, 256) if jax.default_backend() == "cpu" else (64, 256, 1024)
    rng = np.random.default_rng(seed)
    seconds = {}
    for size in sorted({int(s) for s in sizes}):
        if size < 1:
            raise ValueError(f"call sizes must be >= 1, got {size}")
        x = rng.random((size, *input_shape), dtype=np.float32)
        np.asarray(bb(x))
        best = float("inf")
        for _ in range(max(1, int(repeats))):
            t0 = time.perf_counter()
            np.asarray(bb(x))
            best = min(best, time.perf_counter() - t0)
        seconds[size] = max(best, 1e-9)
    return seconds


def call_size_from_rates(call_seconds: Mapping[int, float], input_bytes: int, byte_limit: int,
                         tolerance: float = RATE_TOLERANCE) -> int:
    """Inputs per call from measured seconds per call: the smallest measured size whose rate
    (inputs per second) is within `tolerance` of the best rate among the sizes whose QUERY_COPIES
    copies fit in `byte_limit`; when none fits, as many inputs as fit. A ValueError when not one fits.

    call_seconds: {inputs per call: seconds per call} (`measure_call_seconds`). input_bytes: bytes
    of one black-box input (4 H W C for float32 images).
    """
    if not call_seconds:
        raise ValueError("call_seconds is empty: measure at least one call size")
    for size, seconds in call_seconds.items():
        if int(size) < 1 or not seconds > 0:
            raise ValueError(f"call_seconds needs sizes >= 1 and seconds > 0, got {size}: {seconds}")
    fit = int(byte_limit) // (QUERY_COPIES * max(1, int(input_bytes)))
    if fit < 1:
        raise ValueError(f"one black-box input ({QUERY_COPIES} x {input_bytes} bytes in flight) does not fit "
                         f"in {byte_limit} bytes")
    rates = {int(size): int(size) / float(seconds) for size, seconds in call_seconds.items() if int(size) <= fit}
    if not rates:
        return fit
    best = max(rates.values())
    return min(size for size, rate in rates.items() if rate >= (1.0 - tolerance) * best)


def plan_execution(backend: str, memory_budget: int, call_seconds: Mapping[int, float], working_bytes: int,
                   image_shape: Sequence[int], images: int | None = None) -> Execution:
    """An `Execution` planned from the black box's measured call rate and a memory budget (pure).

    backend: the JAX platform the group runs on ("cpu", "gpu", "tpu"). memory_budget: bytes one
    group may use on its device. call_seconds: {inputs per call: seconds per call}
    (`measure_call_seconds`). working_bytes: what the method needs per image beyond the image, its
    fill and its segment map (`Method.working_bytes(config, H, W, C)`). image_shape: (H, W, C).
    images: how many images there are to explain (None: no cap from it).

    queries_per_call: `call_size_from_rates` within half the budget (the calls' inputs are the
    part that does not grow with the group). images_per_group: as many images as the rest of the
    budget holds, each also keeping at least one query in flight, up to `max_images_per_group`.
    rows_per_step stays None (the backend rule). Like any `Execution`, the plan never changes a
    map; a ValueError names the bytes when one image does not fit.
    """
    height, width, channels = (int(d) for d in image_shape)
    input_bytes = 4 * height * width * channels
    queries_per_call = call_size_from_rates(call_seconds, input_bytes, int(memory_budget) // 2)
    query_bytes = QUERY_COPIES * queries_per_call * input_bytes
    per_image = 4 * height * width * (2 * channels + 1) + int(working_bytes)
    group = min((int(memory_budget) - query_bytes) // per_image,
                int(memory_budget) // (per_image + QUERY_COPIES * input_bytes),
                max_images_per_group(backend))
    if images is not None:
        group = min(group, max(1, int(images)))
    if group < 1:
        raise ValueError(f"memory budget too small: one image of {height}x{width}x{channels} needs ~{per_image} "
                         f"bytes beside {query_bytes} bytes of black-box calls ({queries_per_call} inputs), "
                         f"budget {int(memory_budget)} bytes")
    return Execution(images_per_group=int(group), queries_per_call=int(queries_per_call))


#: The former config fields that are execution settings, and the `Execution` field each became.
MOVED_FIELDS = {"image_batch": "images_per_group", "query_chunk": "queries_per_call (inputs per call, "
                "over the group's images)", "vmap_width": "rows_per_step"}


def warn_moved_fields(config, **values) -> None:
    """A DeprecationWarning when a config was given former execution fields (`MOVED_FIELDS`):
    they are ignored, since they never changed a map; the caller should pass `execution=`."""
    given = [name for name, value in values.items() if value is not None]
    if given:
        moved = "; ".join(f"{name} -> Execution.{MOVED_FIELDS[name]}" for name in given)
        warnings.warn(f"{type(config).__name__}({', '.join(f'{n}=' for n in given)}) is deprecated and ignored: "
                      f"execution settings are not part of a method's config; pass "
                      f"execution=daxjax.Execution(...) to explain / explain_dataset instead ({moved})",
                      DeprecationWarning, stacklevel=4)


@dataclasses.dataclass(frozen=True)
class MovedExecutionFields:
    """Base of the method configs: takes the former execution fields (`MOVED_FIELDS`) as keyword-only
    InitVars, warns (`warn_moved_fields`) and ignores them, then runs the config's own `_check`."""

    query_chunk: dataclasses.InitVar[int | None] = dataclasses.field(default=None, kw_only=True)
    image_batch: dataclasses.InitVar[int | None] = dataclasses.field(default=None, kw_only=True)
    vmap_width: dataclasses.InitVar[int | None] = dataclasses.field(default=None, kw_only=True)

    def __post_init__(self, query_chunk=None, image_batch=None, vmap_width=None):
        warn_moved_fields(self, query_chunk=query_chunk, image_batch=image_batch, vmap_width=vmap_width)
        self._check()

    def _check(self) -> None:
        """The config's field checks (choices from the fields' Literal annotations by default)."""
        check_fields(self)
