"""The one path by which every explainer queries the black box from jitted code.

`query_targets` picks one of three paths per call (`query_path`), and the explainers do not know
which was taken:
  * "jax" (a `JaxBlackBox`, i.e. a black box with a `jax_fn`): the black box is called inside the
    jitted program that builds the perturbations; nothing leaves the device.
  * "dlpack" (a black box with `device_feed`/`device_forward`, e.g. an `OnnxBlackBox` or
    `TorchBlackBox` on the same device as JAX): a jitted program builds a chunk of perturbations
    and the black box's own input preparation; the array is handed to the black box by DLPack
    (no copy) and its answer comes back by DLPack; a second jitted program checks the answer and
    keeps each image's target. The next chunk is built while the black box answers the current one.
  * "host" (anything else: ONNX Runtime on the CPU by default, HTTP, plain callables): the chunk's
    program reaches the black box through `jax.pure_callback` with `vmap_method="expand_dims"`: the
    per-image query function is vmapped over images, so one host call receives the whole
    [B, chunk, H, W, C] block of perturbations and ONNX Runtime sees one large batch.

Every path applies the checks of `blackbox_adapters.check_probabilities` (shape, NaN/inf, negative
entries, row sums) and names the images whose perturbations failed. Errors raised by the black box
inside a callback would surface as an opaque XLA runtime error; instead the callback records them
and returns NaNs, and `raise_pending` re-raises them on the host with the images they concern.
The device paths find bad answers with a flag computed on the device and then run the same host
check on the chunk's answers, so the messages are the same.

Within `recording_answers()` every `query_targets` call also hands its answers [B, N] to the
context: `methods.base.call_group` computes from them, for every query-only method alike, whether
the black box's answer changed at all under perturbation (`methods.base.ANSWER_DIAGNOSTICS`).

Call sizes (`daxjax.device.execution.call_inputs`) follow a documented rule per platform: measured on the 2-core CPU for
host black boxes, measured on an H200 for black boxes on an accelerator.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import threading
from typing import Any, Callable, Iterator, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental.buffer_callback import buffer_callback

from blackbox_adapters import BlackBoxError, check_probabilities
from blackbox_adapters.base import ROW_SUM_TOLERANCE, to_probabilities
from daxjax.device.execution import (  # noqa: F401 (the call-size rule, re-exported for existing callers)
    ACCELERATOR_CALL_BYTES, ACCELERATOR_CALL_INPUTS, CALL_BYTES, CALL_INPUTS, call_inputs, query_chunk)
from daxjax.device.sharding import current_image_devices, over_images

def input_elements(images, queries: "RenderedQueries | None" = None) -> int:
    """float32 values in one black-box input: an image of `images` [B, ...], or a rendered query."""
    shape = np.shape(images)[1:] if queries is None else np.shape(queries.sources)[1:]
    return int(np.prod(shape))


class DeviceBlackBox:
    """A black box as a JAX-traceable function x [..., H, W, C] -> probabilities [..., K].

    input_rank: axes of one black-box input (3 for images [H, W, C]; 1 for waveforms [S]).
    Attributes: `jax_fn` (the black box's JAX function, None for others) and `takes_dlpack`
    (True when the black box has `dlpack_device`, `device_feed` and `device_forward`, the
    device path of `query_targets`; see `OnnxBlackBox.device_forward`).
    """

    def __init__(self, bb, num_classes: int, input_rank: int = 3):
        self.bb = bb
        self.num_classes = int(num_classes)
        self.input_rank = int(input_rank)
        self.jax_fn: Callable | None = getattr(bb, "jax_fn", None)
        self.takes_dlpack = all(callable(getattr(bb, name, None))
                                for name in ("dlpack_device", "device_feed", "device_forward"))
        self._lock = threading.Lock()
        self._pending: list[BlackBoxError] = []

    def __call__(self, x: jax.Array) -> jax.Array:
        """Traced: on the device for a JAX black box, else through the host callback."""
        return self.on_device(x) if self.jax_fn is not None else self.via_host(x)

    def on_device(self, x: jax.Array) -> jax.Array:
        """Traced: `jax_fn` on x [..., H, W, C] -> [..., K] (unchecked; `query_targets` checks)."""
        lead, image = x.shape[:-self.input_rank], x.shape[-self.input_rank:]
        probs = self.jax_fn(x.reshape((-1,) + image))
        return probs.reshape(lead + (self.num_classes,))

    def via_host(self, x: jax.Array) -> jax.Array:
        """Traced: the black box called on the host with x [..., H, W, C] -> checked [..., K]."""
        shape = jax.ShapeDtypeStruct(x.shape[:-self.input_rank] + (self.num_classes,), jnp.float32)
        if current_image_devices() > 1 and jax.default_backend() == "cpu":
            # pure_callback copies its arguments onto CPU device 0 before calling; when device 0
            # is itself running the sharded program that waits for the callback, that copy
            # never completes (measured: a deadlock within seconds on 4 host devices). A buffer
            # callback reads each device's own buffer in place.
            return buffer_callback(self._buffer_call, shape, vmap_method="expand_dims")(x)
        return jax.pure_callback(self._host_call, shape, x, vmap_method="expand_dims")

    def _buffer_call(self, ctx, out, x) -> None:
        """`_host_call` for a buffer callback: reads x's buffer, writes the answer into out's."""
        del ctx
        np.asarray(out)[...] = self._host_call(np.asarray(x))

    def _host_call(self, x: np.ndarray) -> np.ndarray:
        """x: [B, n, H, W, C] when vmapped over images (or [n, H, W, C]) -> [B, n, K]."""
        x = np.asarray(x)  # a jax.Array on CPU from pure_callback; NumPy from here on
        lead, image = x.shape[:-self.input_rank], x.shape[-self.input_rank:]
        rows = int(np.prod(lead))
        try:
            probs = check_probabilities(self.bb(np.ascontiguousarray(x.reshape((rows,) + image))),
                                        rows, self.num_classes, what="black box on perturbations")
            return probs.reshape(lead + (self.num_classes,))
        except Exception as err:  # noqa: BLE001 - re-raised on the host by raise_pending
            err = _as_blackbox_error(err)
            if len(lead) > 1:
                err.batch_positions = _image_positions(err, lead[-1], lead[0])
            with self._lock:
                self._pending.append(err)
            return np.full(lead + (self.num_classes,), np.nan, np.float32)

    def raise_pending(self, image_ids: list) -> None:
        """Re-raises the first recorded callback error, naming images by the caller's ids."""
        with self._lock:
            pending, self._pending = self._pending, []
        if not pending:
            return
        err = pending[0]
        positions = getattr(err, "batch_positions", None)
        if positions is not None:
            raise _naming_images(err, positions, image_ids) from err
        raise err


def _as_blackbox_error(err: Exception) -> BlackBoxError:
    """err itself when it is a BlackBoxError, else a BlackBoxError saying what the black box raised."""
    if isinstance(err, BlackBoxError):
        return err
    return BlackBoxError(f"black box raised {type(err).__name__}: {err}")


def _image_positions(err: BlackBoxError, per_image: int, images: int) -> list[int]:
    """Positions in the group of the images concerned by err, for a call holding `per_image`
    perturbations of each of `images` images in turn: the images of err's rows, or every image
    when the error names no rows (the whole call failed)."""
    if err.rows is None:
        return list(range(images))
    return sorted({row // per_image for row in err.rows})


def _naming_images(err: BlackBoxError, positions: list[int], image_ids: list) -> BlackBoxError:
    """err with the caller's names of the images at `positions` appended."""
    names = [image_ids[p] for p in positions if p < len(image_ids)]
    return BlackBoxError(f"{err}; these are perturbations of image(s) {names}", err.rows)


_RECENT_DEVICE_BLACK_BOXES: list[tuple[object, DeviceBlackBox]] = []


def device_blackbox(user_bb, bb, num_classes: int, input_rank: int = 3) -> DeviceBlackBox:
    """The `DeviceBlackBox` for a caller's black box, reused across calls with the same object.

    Jitted query programs take the DeviceBlackBox as a static argument; reusing it means a second
    `explain` call with the same black box and shapes compiles nothing.
    """
    for known, device_bb in _RECENT_DEVICE_BLACK_BOXES:
        if (known is user_bb and device_bb.num_classes == num_classes
                and device_bb.input_rank == input_rank):
            return device_bb
    device_bb = DeviceBlackBox(bb, num_classes, input_rank)
    _RECENT_DEVICE_BLACK_BOXES.insert(0, (user_bb, device_bb))
    del _RECENT_DEVICE_BLACK_BOXES[8:]
    return device_bb


class RenderedQueries(NamedTuple):
    """Perturbations that reach the black box as something other than blended images (audio).

    Every explainer perturbs an input with masks m over its H x W grid (1 keeps the input, 0
    removes it); by default a mask becomes the image m * x + (1 - m) * fill. A modality whose
    black box takes other inputs passes this to an engine's `explain_images(..., queries=)`,
    while the engine still segments, trains and paints maps on the H x W images it is given:
      render: render(masks float32 [n, H, W] in [0, 1], source, fill) -> black-box inputs [n, ...],
        traced inside jit; hashable (a frozen dataclass: it keys the compile cache), with
        `render.grid` = (H, W).
      sources, fills: [B, ...] arrays, one row per input, handed to `render` input by input
        (audio: the waveform and what removed frames are replaced with).
    """

    render: Callable
    sources: Any
    fills: Any


def mask_grid(render: Callable | None, image) -> tuple[int, int]:
    """(H, W) of the masks that perturb `image`: its own sides, or `render.grid` when `render`
    (`RenderedQueries.render`) makes the queries."""
    return tuple(image.shape[:2]) if render is None else render.grid


def masked_queries(render: Callable | None, masks, image, fill):
    """The black box's inputs for masks float32 [n, H, W] in [0, 1] (1 keeps the input): `render(masks,
    image, fill)` when given, else the blended images m * x + (1 - m) * fill [n, H, W, C]."""
    if render is not None:
        return render(masks, image, fill)
    return masks[..., None] * image[None] + (1.0 - masks[..., None]) * fill[None]


#: `query_targets`' paths (the module docstring describes them).
PATHS = ("jax", "dlpack", "host")
#: Whether an ONNX Runtime or torch black box on the CPU is fed by DLPack when JAX runs on the
#: CPU too. Off: on 2 shared CPU cores, `python -m benchmarks.throughput --part gpu --adapters onnx
#: --no-write` (EfficientNet-Lite0, RISE on 4 photos, N = 300, the two paths alternated twice)
#: measured host callback / DLPack = 1.00 (best of two runs each; the runs within 1 %), and torch
#: 0.92 in the --quick run (1 photo, one run each): no gain that would justify a second CPU path.
#: `forced_path("dlpack")` still takes it (the tests do).
DLPACK_ON_CPU = False

_FORCED_PATH: list[str | None] = [None]


@contextlib.contextmanager
def forced_path(path: str | None) -> Iterator[None]:
    """Within this context `query_targets` takes `path` (one of PATHS; None: its own choice) and
    raises BlackBoxError where the black box cannot take it. For tests and benchmarks that compare
    the paths; process-wide, not per thread."""
    if path is not None and path not in PATHS:
        raise ValueError(f"path must be one of {PATHS} or None, got {path!r}")
    previous, _FORCED_PATH[0] = _FORCED_PATH[0], path
    try:
        yield
    finally:
        _FORCED_PATH[0] = previous


def _same_device(home: tuple[str, int], device: jax.Device) -> bool:
    """Whether a black box taking DLPack arrays at `home` ("cpu", 0) / ("cuda", i) can read an
    array on the JAX device `device` in place."""
    kind, index = home
    if kind == "cpu":
        return device.platform == "cpu"  # every JAX CPU device is host memory
    return kind == "cuda" and device.platform == "gpu" and device.local_hardware_id == index


def query_path(device_bb: DeviceBlackBox, device: jax.Device, devices: int = 1) -> str:
    """The path `query_targets` takes for perturbations on `device`, one of `devices` sharing a group.

    "jax" for a JAX black box; "dlpack" for a black box that takes DLPack arrays where they are,
    when the group is on that one device and it is an accelerator (on a CPU only if
    `DLPACK_ON_CPU`); else "host". Inside `forced_path(path)`: that path, or BlackBoxError saying
    why it is not possible.
    """
    possible = ["host"]
    if device_bb.jax_fn is not None:
        possible.insert(0, "jax")
    if device_bb.takes_dlpack and devices == 1 and _same_device(device_bb.bb.dlpack_device(), device):
        possible.insert(0, "dlpack")
    forced = _FORCED_PATH[0]
    if forced is not None:
        if forced not in possible:
            raise BlackBoxError(f"query path {forced!r} is not possible for {device_bb.bb!r} with perturbations "
                                f"on {devices} device(s) ({device}); possible: {possible}")
        return forced
    if "jax" in possible:
        return "jax"
    if "dlpack" in possible and (device.platform != "cpu" or DLPACK_ON_CPU):
        return "dlpack"
    return "host"


def _placement(arrays) -> tuple[jax.Device, int]:
    """(a device holding the group's arrays, how many devices the group is split over)."""
    devices = next((sorted(leaf.sharding.device_set, key=lambda d: d.id) for leaf in jax.tree.leaves(arrays)
                    if isinstance(leaf, jax.Array)), None) or [jax.devices()[0]]
    return devices[0], max(len(devices), current_image_devices())


def _probability_rows(raw: jax.Array, output: str) -> tuple[jax.Array, jax.Array]:
    """raw [..., K] (logits or probabilities, as `output` says) -> (probabilities [..., K] float32,
    ok bool [...]: the row passes `check_probabilities`: finite, non-negative, summing to 1)."""
    raw = raw.astype(jnp.float32)
    probs = jax.nn.softmax(raw, axis=-1) if output == "logits" else raw
    ok = (jnp.isfinite(raw).all(-1) & (probs >= 0).all(-1)
          & (jnp.abs(probs.sum(-1) - 1.0) <= ROW_SUM_TOLERANCE))
    return probs, ok


def _perturbations(per_image, start, build: Callable, size: int) -> jax.Array:
    """Traced: perturbations [start, start + size) of every image, [B * size, ...] image-major."""
    x = jax.vmap(lambda args: build(*args, start, size))(per_image)
    return x.reshape((-1,) + x.shape[2:])


@functools.partial(jax.jit, static_argnames=("build", "device_bb", "size", "path"))
def _chunk_target_probabilities(per_image, targets, start, *, build, device_bb, size, path):
    """One chunk in one program ("jax" or "host" path): (target probabilities [B, size],
    bad bool [B]: some answer for the image is not a probability row; the host path checked its
    answers in the callback already)."""
    def group(per_image, targets, start):
        def one(args, target):
            x = build(*args, start, size)
            probs = device_bb.on_device(x) if path == "jax" else device_bb.via_host(x)
            return probs[:, target], ~_probability_rows(probs, "probs")[1].all()
        return jax.vmap(one)(per_image, targets)
    # Under an image mesh each device queries the black box for its own images (a host callback
    # outside shard_map would run on one device with the whole group gathered there).
    return over_images(group, replicated=(2,))(per_image, targets, start)


@functools.partial(jax.jit, static_argnames=("build", "device_bb", "size"))
def _chunk_probabilities(per_image, start, *, build, device_bb, size):
    """All answers [B * size, K] of one chunk on the "jax" path; computed only to report a bad one."""
    return device_bb.on_device(_perturbations(per_image, start, build, size))


@functools.partial(jax.jit, static_argnames=("build", "device_bb", "size"))
def _chunk_feed(per_image, start, *, build, device_bb, size):
    """The black box's input for one chunk on the "dlpack" path: perturbations [B * size, ...]
    passed through its `device_feed` (normalisation, layout) in the same program."""
    return device_bb.bb.device_feed(_perturbations(per_image, start, build, size))


@functools.partial(jax.jit, static_argnames=("output",))
def _chunk_answers(raw, targets, *, output):
    """raw [B * size, K] from the black box -> (target probabilities [B, size], bad bool: some
    row is not a probability distribution)."""
    probs, ok = _probability_rows(raw, output)
    probs = probs.reshape(targets.shape[0], -1, probs.shape[-1])
    return jnp.take_along_axis(probs, targets[:, None, None], axis=2)[..., 0], ~ok.all()


def _check_answers(raw, output: str, num_classes: int, size: int, image_ids: list, what: str) -> None:
    """Runs the host check on one chunk's answers raw [B * size, K] (`size` per image); raises its
    BlackBoxError naming the images of the offending rows."""
    rows = size * len(image_ids)
    try:
        to_probabilities(np.asarray(raw), output, rows, num_classes, what=what)
    except BlackBoxError as err:
        raise _naming_images(err, _image_positions(err, size, len(image_ids)), image_ids) from err


def _check_flagged(bad: jax.Array, answers: Callable[[], jax.Array], output: str, num_classes: int, size: int,
                   image_ids: list, what: str) -> None:
    """When the device flagged a chunk (`bad` holds a True), fetches its answers (`answers()`,
    [B * size, K]) and raises the host check's error for them, naming the images."""
    if bool(jnp.any(bad)):
        _check_answers(answers(), output, num_classes, size, image_ids, what)


def _query_in_jit(device_bb: DeviceBlackBox, build, per_image, targets, chunks, image_ids, path) -> list:
    """The "jax" and "host" paths: [B, size] per chunk, one program per chunk.

    On the host path each chunk is checked for black-box errors before the next is issued, so a
    failure stops at once and one chunk of perturbed images exists at a time. On the jax path the
    next chunk is issued before the current one's flag is read, so the device never waits for
    the host; a bad answer stops the run one chunk later.
    """
    parts, unchecked = [], None
    for start, size in chunks:
        part, bad = _chunk_target_probabilities(per_image, targets, start, build=build, device_bb=device_bb,
                                                size=size, path=path)
        if path == "host":
            part.block_until_ready()
            device_bb.raise_pending(image_ids)
        else:
            if unchecked is not None:
                unchecked()
            answers = functools.partial(_chunk_probabilities, per_image, start, build=build, device_bb=device_bb,
                                        size=size)
            unchecked = functools.partial(_check_flagged, bad, answers, "probs", device_bb.num_classes, size,
                                          image_ids, f"{device_bb.bb!r} on perturbations")
        parts.append(part)
    if unchecked is not None:
        unchecked()
    return parts


def _query_by_dlpack(device_bb: DeviceBlackBox, build, per_image, targets, chunks, image_ids) -> list:
    """The "dlpack" path: [B, size] per chunk. Chunk k + 1 is built on the device while the black box
    answers chunk k (so two chunks of perturbations exist at a time); chunk k's answers are checked
    after chunk k + 1 has been handed over, so a bad answer stops the run one chunk later."""
    bb = device_bb.bb
    what = f"{bb!r} on perturbations"

    def feed(chunk):
        start, size = chunk
        return _chunk_feed(per_image, start, build=build, device_bb=device_bb, size=size)

    def forward(x, size):
        try:
            raw = bb.device_forward(x)
        except Exception as err:  # noqa: BLE001 - every failure of the black box names the images
            err = _as_blackbox_error(err)
            raise _naming_images(err, _image_positions(err, size, len(image_ids)), image_ids) from err
        if tuple(raw.shape) != (size * len(image_ids), device_bb.num_classes):
            _check_answers(raw, bb.output, device_bb.num_classes, size, image_ids, what)  # raises
        return raw

    parts, unchecked = [], None
    following = feed(chunks[0])
    for k, (_, size) in enumerate(chunks):
        current, following = following, feed(chunks[k + 1]) if k + 1 < len(chunks) else None
        raw = forward(current, size)
        part, bad = _chunk_answers(raw, targets, output=bb.output)
        if unchecked is not None:
            unchecked()
        unchecked = functools.partial(_check_flagged, bad, lambda raw=raw: raw, bb.output, device_bb.num_classes,
                                      size, image_ids, what)
        parts.append(part)
    unchecked()
    return parts


def query_targets(device_bb: DeviceBlackBox, build: Callable, per_image: tuple, targets: jax.Array,
                  num_samples: int, chunk: int, image_ids: list) -> jax.Array:
    """The black box's probability of each image's target on N perturbations of it: [B, N].

    Args:
      device_bb: the black box (`device_blackbox`).
      build: build(*args, start, size) -> [size, H, W, C], perturbations [start, start + size) of
        one image, traced inside jit. A module-level function: it keys the compile cache.
      per_image: arrays with a leading image axis [B, ...], passed to `build` image by image.
      targets: int [B].
      num_samples: N; chunk: perturbations per image in one black-box call.
      image_ids: the caller's names for the B images, used in error messages.

    The path ("jax", "dlpack" or "host") is `query_path`'s choice for where the arrays are; every
    path gives the same answers and checks them the same way (module docstring). At most two
    chunks of perturbed images exist at a time.
    """
    chunks = [(start, min(chunk, num_samples - start)) for start in range(0, num_samples, chunk)]
    path = query_path(device_bb, *_placement((per_image, targets)))
    if path == "dlpack":
        parts = _query_by_dlpack(device_bb, build, per_image, jnp.asarray(targets), chunks, image_ids)
    else:
        parts = _query_in_jit(device_bb, build, per_image, targets, chunks, image_ids, path)
    answers = jnp.concatenate(parts, axis=1)
    record = _RECORDED_ANSWERS.get()
    if record is not None:
        record.append(answers)
    return answers


#: The list `recording_answers` collects into, None outside it (a context variable: per thread).
_RECORDED_ANSWERS: contextvars.ContextVar[list | None] = contextvars.ContextVar("daxjax_recorded_answers",
                                                                                default=None)


@contextlib.contextmanager
def recording_answers() -> Iterator[list]:
    """Within this context every `query_targets` call (in this thread) appends its answers to the
    yielded list: one float32 [B, N] array of target probabilities per call, as it returned them
    (no copy). Contexts nest; the innermost one collects."""
    record: list = []
    token = _RECORDED_ANSWERS.set(record)
    try:
        yield record
    finally:
        _RECORDED_ANSWERS.reset(token)
