"""`explain_dataset`: explain a whole dataset, streamed, on every local device, resumable.

    stats = daxjax.explain_dataset(bb, "photos/", "out/", method="dax")
    res = daxjax.load_results("out/")         # .ids, .maps [n, H, W], .targets, .scores, .errors

How a run flows:
  1. The source (`daxjax.dataset.sources`) lists images in input order; they are cut into batches of B
     (batch k = positions [k B, (k + 1) B)), B chosen from a memory budget (`daxjax.dataset.budget`)
     when the store is created and kept for its lifetime.
  2. Batches are dealt to processes round robin (batch k to process k mod P, `process_share`):
     with `jax.distributed` every process takes a disjoint share and the shares cover the
     dataset exactly once; each process writes its own part of the store (`daxjax.dataset.store`).
  3. Worker processes read, convert, resize and (for segment-based methods) segment and fill the
     images of the next batches while the devices explain the current one; at most `prefetch`
     prepared batches wait, so host memory is bounded by prefetch x B images, not the dataset.
  4. The main process asks the black box for the targets and scores of the unperturbed images,
     then runs the method's engine on the batch, split over all local devices along the image
     axis (`daxjax.device.sharding`, shard_map), and commits the batch to the store.
  5. A rerun with the same arguments skips committed batches: nothing is recomputed, and since
     batches have the same composition and each map depends only on (image, target, seed,
     config), the store ends exactly as an uninterrupted run leaves it.

An image that cannot be read, has no target, or makes the black box fail becomes an error row
with its reason; the rest of its batch goes on.

method="dax-amortised" adds a fit phase before step 1 (`daxjax.dataset.amortised`): one explainer
is fitted on a share of the dataset and kept in the store, and the batches are then explained with it.
"""

from __future__ import annotations

import collections
import dataclasses
import multiprocessing
import numbers
import os
import pickle
import select
import threading
import time
import warnings
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from itertools import islice
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np

from blackbox_adapters import BlackBoxError, as_blackbox, check_probabilities
from daxjax.dataset import amortised as amortised_mode
from daxjax.dataset.budget import Plan, plan_batches
from daxjax.methods.base import (Method, diagnostics_of, gather_diagnostics, run_groups, trusted_maps, uninformative,
                                 warn_uninformative)
from daxjax.methods.registry import REGISTRY, check_takes_segments, resolve_config
from daxjax.inputs import InputError, check_seed, check_target, image_digest
from daxjax.device.execution import Execution, resolve as resolve_execution
from daxjax.device.querying import device_blackbox
from daxjax.device.sharding import padded_count
from daxjax.perturbation.segmentation import bucket_size, resize_label_map, segmenter_name
from daxjax.perturbation.segments import HostSegments, host_segments, select_segments
from daxjax.dataset.sources import (ImageReadError, Item, LabelMapSource, content_digest, first_items, image_shape,
                            open_source, read_image, read_label_map, source_length)
from daxjax.dataset.store import (ResultStore, StoreWarning, config_record, diagnostics_table, load_results, part_name,
                          some_ids)

__all__ = ["RunSummary", "explain_dataset", "load_results", "process_share"]


@dataclasses.dataclass
class RunSummary:
    """What one `explain_dataset` call did (this process only).

    explained: images explained in this call; errors: error rows written in this call;
    skipped: images of this process's share already in the store; recomputed: images of batches
    committed before and explained again in this call (damaged in the store, changed in the source,
    or `retry_errors`; counted in explained/errors too); not_images: files of the source that are
    not read as images (a directory's files without an image extension; neither explained nor error
    rows); untrusted: images explained in this call whose maps are flagged as not to be trusted
    (`methods.base.trusted_maps`: DAX's `trusted` is False, a poor held-out fit or a dead mask, or,
    for every query-only method, `informative` is False; stored, see `Results.diagnostics`);
    uninformative: those of them whose black box's answer did not change under perturbation
    (`informative` False; one `UninformativeWarning` at the end of the call names them by id);
    seconds: wall time of the call;
    images_per_second: (explained + errors) / seconds; phases: seconds per phase summed over
    batches ("wait" = the device loop waiting for prepared batches, "targets" = unperturbed
    queries, then the engine's own phases, "commit" = store writes; "fit" = dax-amortised's fit
    phase, fitting or loading its explainer); plan: the batch plan.
    """

    out: str
    explained: int
    errors: int
    skipped: int
    seconds: float
    images_per_second: float
    phases: dict
    plan: Plan
    process_index: int
    process_count: int
    recomputed: int = 0
    not_images: list[str] = dataclasses.field(default_factory=list)
    untrusted: int = 0
    uninformative: int = 0


def process_share(batch: int, process_index: int, process_count: int) -> bool:
    """True when batch number `batch` belongs to this process (round robin over processes)."""
    return batch % process_count == process_index


# ---------------------------------------------------------------------------------------------
# Host side: reading and segmenting a batch (runs in worker processes).


@dataclasses.dataclass
class _Task:
    batch: int
    start: int
    ids: list[str]
    raws: list[Any]
    size: tuple[int, int]
    channels: int
    segment_config: Any  # the method's config when it segments, else None
    labels: list[Any] | None = None  # raw label maps (`read_label_map`), one per image or None if missing


@dataclasses.dataclass
class _Prepared:
    batch: int
    start: int
    ids: list[str]
    valid: list[int]            # positions within the batch of the images that were read
    images: np.ndarray          # float32 [len(valid), H, W, C]
    segmented: HostSegments | None
    errors: dict[int, str]      # position within the batch -> reason
    host_seconds: np.ndarray    # [len(ids)] read + resize + segment, per image
    digests: list[str | None]   # [len(ids)] `content_digest` of each image as the source holds it


def _prepare(task: _Task) -> _Prepared:
    """Reads, resizes and segments one batch; failures become per-image errors."""
    valid, images, segs, errors, digests = [], [], [], {}, []
    seconds = np.zeros(len(task.ids), np.float32)
    for i, (image_id, raw) in enumerate(zip(task.ids, task.raws)):
        t0 = time.perf_counter()
        digests.append(content_digest(raw))
        try:
            if task.labels is None:
                image, labels = read_image(raw, task.size, task.channels), None
            else:
                image, labels = _read_with_labels(raw, task.labels[i], task.size, task.channels)
            if task.segment_config is not None:
                segs.append(host_segments(image[None], task.segment_config, [image_id],
                                          None if labels is None else labels[None]))
            images.append(image)
            valid.append(i)
        except ImageReadError as err:
            errors[i] = str(err)
        except Exception as err:  # noqa: BLE001 - a decoder or segmenter failing on one image
            errors[i] = f"{type(err).__name__}: {err}"
        seconds[i] = time.perf_counter() - t0
    segmented = _stack_segments(segs) if task.segment_config is not None and segs else None
    stacked = np.stack(images) if images else np.zeros((0, *task.size, task.channels), np.float32)
    return _Prepared(task.batch, task.start, task.ids, valid, stacked, segmented, errors, seconds, digests)


def _read_with_labels(raw: Any, label_raw: Any, size: tuple[int, int], channels: int
                      ) -> tuple[np.ndarray, np.ndarray]:
    """An image at the run's size, float32 [H, W, C], and its label map resized with it (nearest),
    int [H, W]. The map must have the image's shape as stored. Raises ImageReadError."""
    if label_raw is None:
        raise ImageReadError("no label map for this image in the segments source (matched by id without "
                             "extension for files, by position for .npz or array maps)")
    stored = read_image(raw, None, channels)
    labels = read_label_map(label_raw)
    if labels.shape != stored.shape[:2]:
        raise ImageReadError(f"its label map has shape {list(labels.shape)}; the image is "
                             f"{list(stored.shape[:2])} (H, W as stored, before resizing)")
    # Resizing the read image is what read_image(raw, size, channels) does after reading it.
    return read_image(stored, size, channels), resize_label_map(labels, size)


def _stack_segments(parts: list[HostSegments]) -> HostSegments:
    """Per-image segmentations as one group (the same as segmenting the group at once)."""
    num = np.concatenate([p.num_segments for p in parts]).astype(np.int32)
    return HostSegments(np.concatenate([p.segments for p in parts]), np.concatenate([p.fills for p in parts]),
                        num, bucket_size(int(num.max())))


class _InProcess(Executor):
    """`workers=0`: prepare batches in the calling process (debugging; sources that cannot be pickled)."""

    def submit(self, fn, /, *args, **kwargs):
        future: Future = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as err:  # noqa: BLE001 - delivered through the future
            future.set_exception(err)
        return future


def _worker_pool(workers: int) -> Executor:
    if workers == 0:
        return _InProcess()
    # Not fork: the parent runs JAX's threads. The fork server imports the readers once.
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["daxjax.dataset.sources", "daxjax.perturbation.segments"])
    return ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=_end_with,
                               initargs=(os.getpid(),))


def _end_with(pid: int) -> None:
    """Worker initializer: the worker ends when process `pid` (the run's main process) does, even
    when that is killed with SIGKILL and cannot shut its pool down. The fork server and the
    resource tracker live as long as any process they serve, so they end with the last worker."""
    threading.Thread(target=_exit_after, args=(pid,), daemon=True, name="daxjax-end-with-parent").start()


def _exit_after(pid: int) -> None:
    """Blocks until process `pid` has ended, then ends this process at once."""
    try:
        handle = os.pidfd_open(pid)  # Linux: readable once the process has ended
    except ProcessLookupError:
        os._exit(1)
    except (AttributeError, OSError):  # no pidfd here: poll
        handle = None
    if handle is not None:
        select.select([handle], [], [])
    else:
        while _alive(pid):
            time.sleep(1.0)
    os._exit(1)  # no cleanup: nothing of a worker outlives its batch, and the parent waits for no answer


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by another user (a reused pid)
        return True
    return True


def default_workers() -> int:
    """Worker processes for reading and segmenting: half the cores (at least 1, at most 8)."""
    return max(1, min(8, (os.cpu_count() or 2) // 2))


# ---------------------------------------------------------------------------------------------
# Device side: explaining a prepared batch.


class _Run:
    """The state of one explain_dataset call in this process."""

    def __init__(self, bb, user_bb, method: Method, config, seed, targets, store, devices, batch,
                 rows_per_step: int | None, query_chunk: int):
        self.bb, self.method, self.config, self.seed = bb, method, config, seed
        self.targets = targets
        self.store = store
        self.devices = devices
        self.padded = padded_count(batch, len(devices))
        # Every engine call explains `padded` images, each sending `query_chunk` perturbations per call.
        self.execution = Execution(images_per_group=self.padded, queries_per_call=self.padded * query_chunk,
                                   rows_per_step=rows_per_step)
        self.user_bb = user_bb
        self.device_bb = None  # made at the first answer: a plain callable's K is known only then
        self.phases: dict[str, float] = collections.defaultdict(float)

    def _target_of(self, image_id: str, position: int, top1: int):
        given = self.targets
        if given is None:
            return top1
        if isinstance(given, Mapping):
            if image_id not in given:
                raise InputError(f"no target given for image {image_id!r}")
            value = given[image_id]
        elif np.ndim(given) == 0:
            value = given
        else:
            if position >= len(given):
                raise InputError(f"no target for image {image_id!r}: targets has {len(given)} entries")
            value = given[position]
        return check_target(value, self.bb.num_classes, repr(image_id))

    def explain(self, prep: _Prepared) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[int, str], np.ndarray, dict]:
        """Maps [b, H, W], targets [b], scores [b], errors, device seconds [b] and the explainer's
        per-image diagnostics {name: [b]} (NaN where an image has none) for a whole batch."""
        b = len(prep.ids)
        height, width = prep.images.shape[1:3] if len(prep.images) else self.store.meta["size"]
        maps = np.full((b, height, width), np.nan, np.float32)
        diagnostics: dict[str, np.ndarray] = {}
        targets = np.full(b, -1, np.int32)
        scores = np.full(b, np.nan, np.float32)
        device_seconds = np.zeros(b, np.float32)
        errors = dict(prep.errors)
        rows = list(range(len(prep.valid)))  # indices into prep.images

        t0 = time.perf_counter()
        probs = self._unperturbed(prep, rows, errors)
        for r in list(rows):
            pos = prep.valid[r]
            try:
                targets[pos] = self._target_of(prep.ids[pos], prep.start + pos, int(probs[r].argmax()))
                scores[pos] = probs[r, targets[pos]]
            except InputError as err:
                errors[pos] = str(err)
                rows.remove(r)
        self.phases["targets"] += time.perf_counter() - t0

        t0 = time.perf_counter()
        self._explain_rows(prep, rows, targets, maps, errors, diagnostics)
        seconds = time.perf_counter() - t0
        for r in rows:
            device_seconds[prep.valid[r]] = seconds / max(1, len(rows))
        return maps, targets, scores, errors, device_seconds, diagnostics

    def _unperturbed(self, prep, rows, errors) -> np.ndarray:
        """The black box's probabilities on the batch's images [len(valid), K]; bad rows -> errors."""
        x = prep.images
        if not len(x):
            return np.zeros((0, 1), np.float32)
        try:
            return check_probabilities(self.bb(x), len(x), self.bb.num_classes,
                                       what="black box on the unperturbed images")
        except BlackBoxError as err:
            if not err.rows:
                raise  # the black box itself is unusable (wrong input size, ...): stop the run
            for r in err.rows:
                errors[prep.valid[r]] = f"black box on the unperturbed image: {err}"
                rows.remove(r)
            probs = np.full((len(x), self.bb.num_classes), np.nan, np.float32)
            if rows:
                probs[rows] = check_probabilities(self.bb(x[rows]), len(rows), self.bb.num_classes,
                                                  what="black box on the unperturbed images")
            return probs

    def _explain_rows(self, prep, rows, targets, maps, errors, diagnostics) -> None:
        """Explains images prep.images[rows] (in place into maps and diagnostics); a black-box failure
        in a group is narrowed down image by image, so that only the images concerned become errors."""
        if not rows:
            return
        positions = [prep.valid[r] for r in rows]
        try:
            group_maps, timings, group_diagnostics = self._run_engine(prep, rows, targets[positions])
        except BlackBoxError as err:
            if len(rows) == 1:
                errors[positions[0]] = f"black box failed on perturbations: {err}"
                rows.clear()
                return
            for r in list(rows):
                single = [r]
                self._explain_rows(prep, single, targets, maps, errors, diagnostics)
                if not single:
                    rows.remove(r)
            return
        maps[positions] = group_maps
        gather_diagnostics(diagnostics, group_diagnostics, positions, len(maps))
        for phase, seconds in timings.items():
            self.phases[phase] += seconds

    def _run_engine(self, prep, rows, targets) -> tuple[np.ndarray, dict, dict]:
        """The method's engine on images[rows], padded to the fixed batch (repeats of the first
        image: every image's map is independent of the others, so padding changes nothing)."""
        if self.device_bb is None:
            self.device_bb = device_blackbox(self.user_bb, self.bb, self.bb.num_classes)
        count = len(rows)
        take = np.asarray(rows + [rows[0]] * (self.padded - count))
        images = prep.images[take]
        targets = np.concatenate([targets, np.repeat(targets[:1], self.padded - count)]).astype(np.int32)
        digests = np.array([image_digest(img, t) for img, t in zip(images, targets)], np.uint32)

        def per_group(positions: np.ndarray) -> dict:
            return {} if prep.segmented is None else {"segmented": select_segments(prep.segmented, take[positions])}

        # `padded` is a multiple of the device count and the execution's group: one call, no more padding.
        # A method that splits its groups itself gets them on the host (`Method.splits_itself`).
        devices = None if self.method.splits_itself else self.devices
        result = run_groups(self.method.explain_group, self.device_bb, images, targets, digests, self.config,
                            self.seed, execution=self.execution, per_group=per_group, devices=devices,
                            image_ids=[prep.ids[prep.valid[r]] for r in take])
        return (result.maps[:count], result.timings,
                {name: values[:count] for name, values in result.diagnostics.items()})


# ---------------------------------------------------------------------------------------------
# The driver.


def _batches(items: Iterator[Item], batch: int) -> Iterator[tuple[int, list[Item]]]:
    for k in range(1 << 62):
        chunk = list(islice(items, batch))
        if not chunk:
            return
        yield k, chunk


def _model_hwc(bb) -> tuple[int | None, int | None, int | None]:
    hwc = getattr(bb, "expected_hwc", None)
    return tuple(hwc) if hwc is not None else (None, None, None)  # type: ignore[return-value]


def _first_image_shape(src) -> tuple[int, int, int]:
    """(H, W, C) of the first readable image in input order."""
    reasons = []
    for item in first_items(src, 20):
        try:
            return image_shape(item.raw)
        except ImageReadError as err:
            reasons.append(f"{item.id}: {err}")
    raise InputError("no readable image to take the size from; " + "; ".join(reasons[:3]))


def _resolve_size(bb, src, size) -> tuple[tuple[int, int], int]:
    """(H, W) and C of the store: `size` if given, else the model's fixed input, else the first image's."""
    model_h, model_w, model_c = _model_hwc(bb)
    if size is not None:
        size = (int(size), int(size)) if np.ndim(size) == 0 else tuple(int(s) for s in size)
        if len(size) != 2 or min(size) < 8:
            raise InputError(f"size must be (H, W) or one side, each at least 8; got {size}")
        if None not in (model_h, model_w) and size != (model_h, model_w):
            raise InputError(f"size={size} but the model takes {model_h}x{model_w} images")
    first = None
    if size is None:
        if None not in (model_h, model_w):
            size = (model_h, model_w)
        else:
            first = _first_image_shape(src)
            size = first[:2]
    channels = model_c
    if channels is None:
        channels = (first or _first_image_shape(src))[2]
    return size, channels


def explain_dataset(bb, source, out, method: str = "dax", config=None, seed: int = 0, targets=None, *,
                    segments=None, size: int | Sequence[int] | None = None, batch_size: int | None = None,
                    memory_budget: int | None = None, device_memory_budget: int | None = None,
                    workers: int | None = None, prefetch: int = 2, progress: bool = True, execution=None,
                    devices: Sequence | None = None, process_index: int | None = None,
                    process_count: int | None = None, retry_errors: bool = False, fit_images: int | None = None,
                    refine_queries: int = 0) -> RunSummary:
    """Explains every image of `source` and writes the results to the store `out`.

    Args:
      bb: a black box or callable x [n, H, W, C] float32 in [0, 1] -> probabilities [n, K].
      source: a directory, glob pattern, .npz file (``FILE.npz`` or ``FILE.npz:KEY``), NumPy array
        [n, H, W, C] or iterable of images (`daxjax.dataset.sources.open_source`).
      out: the store directory (created; or resumed when it holds a store of the same run).
      method, config, seed: as in `daxjax.explain`.
      targets: None (the black box's top-1 class), one int for all, a sequence in input order,
        or a mapping id -> class (an image without an entry becomes an error row).
      segments: None, or a second source of label maps that replace config.segmentation ("dax",
        "lime", "kernelshap"; `daxjax.dataset.sources.LabelMapSource`): a directory of .npy files named
        as the images (``a/cat.png`` -> ``a/cat.npy``), or an .npz array / NumPy array [n, H, W]
        or iterable of maps in the images' input order. A map has its image's shape as stored
        and is resized with it (nearest); integer ids >= 0, 2 to H*W/16 segments. An image
        without a map, or with a bad one, becomes an error row.
      size: (H, W) or one side every image is resized to (the aspect ratio is not kept); None:
        the model's fixed input size, else the first readable image's size. Channels follow the
        model's fixed C, else the first image.
      batch_size: images per step over all local devices (the same as
        `execution.images_per_group`); None: from the memory budget (`daxjax.dataset.budget.plan_batches`).
        Fixed for the store's lifetime once created.
      memory_budget, device_memory_budget: bytes of host memory / memory per device to plan
        for (None: a quarter of the available host memory / half of each device's memory).
      workers: processes reading and segmenting images (None: `default_workers()`; 0: in
        this process; a callable `config.segmentation` runs in the workers, so it must pickle, and
        0 keeps a segmentation model such as SAM in this process). prefetch: prepared batches allowed to wait.
      progress: a progress bar (tqdm, on stderr) with images/s and the time left.
      devices: local devices to split each batch over (None: all of `jax.local_devices()`).
      process_index, process_count: this process's share (None: from `jax.process_index()` and
        `jax.process_count()`, i.e. after `jax.distributed.initialize`).
      execution: a `daxjax.Execution`; its fields left None are planned from the memory budget
        (images per group, inputs per black-box call within the platform's limit) or by the
        backend (rows per DAX training step). Speed and memory only, never the maps, so a resumed
        run may use other values (images per group excepted: the store fixes its batch).
      retry_errors: on resume, explain again the committed batches that hold error rows (a batch
        is the unit of commit, so its other images are recomputed too, to the same maps).
      fit_images, refine_queries: method "dax-amortised" only (`daxjax.dataset.amortised`): the
        explainer is fitted first on `fit_images` images of the source (None: min(512, all); the
        first in the SHA-256 order of their ids that can be read and answered), saved in the store
        (OUT/amortised.npz, committed by OUT/amortised.json; a resumed run loads it), then every
        image is explained with it in one forward pass, or with `refine_queries` = K >= 8 refined
        with K more black-box queries each (0: none). config: a `daxjax.amortised.AmortisedConfig`.
        The maps explain the top-1 class (no `targets`), no `segments`, one process and one device.

    Resuming: a committed batch is skipped unless it must be explained again, which happens
    when its rows in the store are damaged (`ResultStore.read_batch`), when an image's content
    in the source changed since (its `content_digest` differs from the stored one; the batch is
    re-explained with a StoreWarning naming the images), or with `retry_errors`.

    Returns:
      A `RunSummary` of this call. Results: `daxjax.load_results(out)`.

    Raises:
      InputError, SourceError, StoreError: unusable arguments, source or store (a resumed store
      made with another method, config, seed or image size); BlackBoxError: a black box that
      fails on every image.
    """
    import jax

    start_time = time.perf_counter()
    amortised = method == amortised_mode.NAME
    if not amortised:
        if method not in REGISTRY:
            raise InputError(f"unknown method {method!r}; choose one of {(*REGISTRY, amortised_mode.NAME)}")
        config = resolve_config(method, config)
        method_record = REGISTRY[method]
        if fit_images is not None or refine_queries:
            raise InputError(f"fit_images and refine_queries are options of method={amortised_mode.NAME!r}, "
                             f"not of method={method!r}")
    seed = check_seed(seed)
    _check_counts(batch_size=(batch_size, 1), workers=(workers, 0), prefetch=(prefetch, 1))
    execution = resolve_execution(execution)
    if batch_size is None:
        batch_size = execution.images_per_group
    elif execution.images_per_group not in (None, batch_size):
        raise InputError(f"batch_size={batch_size} and execution.images_per_group={execution.images_per_group} "
                         "are the same setting; give one")
    src = open_source(source)
    num_images = source_length(src)
    fit_identity = None
    if amortised:
        config, fit_identity = amortised_mode.check_options(
            config, fit_images, refine_queries, num_images=num_images, targets=targets, segments=segments,
            process_count=jax.process_count() if process_count is None else int(process_count))
        method_record = amortised_mode.run_method(config, fit_identity["refine_queries"])
    user_bb, bb = bb, as_blackbox(bb)
    devices = list(devices) if devices is not None else jax.local_devices()
    pid = jax.process_index() if process_index is None else int(process_index)
    pcount = jax.process_count() if process_count is None else int(process_count)
    if not 0 <= pid < pcount:
        raise InputError(f"process_index={pid} is outside [0, process_count={pcount})")
    out = Path(out)

    labels = None
    if segments is not None:
        check_takes_segments(method)
        labels = LabelMapSource(segments)
        _check_first_image_matched(src, labels)
    num_workers = default_workers() if workers is None else int(workers)
    if num_workers:
        _check_segmenter_picklable(method_record, config)

    identity = {"method": method, "config": _config_record(method_record, config, labels), "seed": int(seed), "size": None,
                "channels": None, "batch": batch_size, "num_images": num_images,
                "diagnostics": list(diagnostics_of(method_record))}
    if fit_identity is not None:
        identity["amortised"] = fit_identity
    if size is not None or not (out / "meta.json").exists():
        hw, channels = _resolve_size(bb, src, size)
        identity.update(size=list(hw), channels=int(channels))
    if pid == 0 and not (out / "meta.json").exists():
        plan = plan_batches(config, *identity["size"], identity["channels"], devices=len(devices),
                            num_images=None if num_images is None else -(-num_images // pcount),
                            host_budget=memory_budget, device_budget=device_memory_budget,
                            queries_per_call=execution.queries_per_call, batch=batch_size, prefetch=prefetch,
                            method=method_record)
        identity["batch"] = plan.batch
    store = ResultStore.open_for_run(out, identity, create=pid == 0)
    height, width = store.meta["size"]
    channels = store.meta["channels"]
    batch = store.meta["batch"]
    plan = plan_batches(config, height, width, channels, devices=len(devices), num_images=None,
                        host_budget=memory_budget, device_budget=device_memory_budget, batch=batch,
                        queries_per_call=execution.queries_per_call, prefetch=prefetch, method=method_record)
    fit_seconds = 0.0
    if amortised:  # the fit phase: fitted now, or loaded from the store (`daxjax.dataset.amortised`)
        fit_start = time.perf_counter()
        explainer, fit_record = amortised_mode.fitted_explainer(
            user_bb, bb, list(src.items()), store, config, seed, fit_identity["fit_images"], progress, devices)
        method_record = method_record._replace(explain_group=amortised_mode.group_function(
            explainer, user_bb, fit_identity["refine_queries"], fit_record["fit_ids"], devices))
        fit_seconds = time.perf_counter() - fit_start
    run = _Run(bb, user_bb, method_record, config, seed, targets, store, devices, batch, execution.rows_per_step,
               plan.query_chunk)
    if amortised:
        run.phases["fit"] = fit_seconds
    committed = store.committed()
    part = part_name(pid)
    segment_config = config if method_record.perturbs_segments else None
    mine_total = None if num_images is None else sum(
        min(batch, num_images - k * batch) for k in range(-(-num_images // batch)) if process_share(k, pid, pcount))
    already = sum(r["stop"] - r["start"] for k, r in committed.items() if process_share(k, pid, pcount))
    bar = _progress_bar(progress, mine_total, already, f"{method} -> {out.name}")
    explained = errors_written = skipped = recomputed = untrusted = 0
    uninformative_ids: list[str] = []
    seen = 0
    pending: collections.deque = collections.deque()
    pool = _worker_pool(num_workers)

    def finish(future) -> None:
        nonlocal explained, errors_written, untrusted
        t0 = time.perf_counter()
        prep = future.result()
        run.phases["wait"] += time.perf_counter() - t0
        maps, targets_, scores, errors, device_seconds, diagnostics = run.explain(prep)
        for i in np.flatnonzero(~np.isfinite(maps).all(axis=(1, 2))):  # never stored as explained
            errors.setdefault(int(i), "the explainer gave a map with NaN or inf values")
        t0 = time.perf_counter()
        status = ["error" if i in errors else "ok" for i in range(len(prep.ids))]
        timings = np.stack([prep.host_seconds, device_seconds], axis=1)
        store.commit(prep.batch, part, range(prep.start, prep.start + len(prep.ids)), prep.ids, status,
                     {prep.ids[i]: reason for i, reason in errors.items()},
                     {"maps": maps, "targets": targets_, "scores": scores, "timings": timings,
                      "diagnostics": diagnostics_table(store.meta.get("diagnostics") or [], diagnostics, len(prep.ids))},
                     dict(run.phases), prep.digests)
        run.phases["commit"] += time.perf_counter() - t0
        explained += status.count("ok")
        errors_written += len(errors)
        trusted = trusted_maps(diagnostics)
        if trusted is not None:
            untrusted += sum(1 for i, state in enumerate(status) if state == "ok" and not trusted[i])
        uninformative_ids.extend(prep.ids[i] for i in uninformative(diagnostics) if status[i] == "ok")
        bar.update(len(prep.ids))
        bar.set_postfix(errors=errors_written, refresh=False)

    try:
        for k, chunk in _batches(src.items(), batch):
            seen += len(chunk)
            if not process_share(k, pid, pcount):
                continue
            ids = [item.id for item in chunk]
            if k in committed:
                if committed[k]["ids"] != ids:
                    raise InputError(
                        f"the images changed since {out} was written: batch {k} held "
                        f"{committed[k]['ids'][:3]}..., the source now gives {ids[:3]}...; use a new --out")
                redo = _redo_reason(store, committed[k], chunk)
                if redo is not None:
                    warnings.warn(f"{redo}: explaining it again", StoreWarning, stacklevel=2)
                elif not (retry_errors and "error" in committed[k]["status"]):
                    skipped += len(chunk)
                    continue
                recomputed += len(chunk)
                bar.update(-len(chunk))  # counted as done when the bar was made
            task = _Task(k, k * batch, ids, [item.raw for item in chunk], (height, width), channels, segment_config,
                         None if labels is None else [labels.raw_for(item) for item in chunk])
            pending.append(pool.submit(_prepare, task))
            while len(pending) > plan.prefetch:
                finish(pending.popleft())
        while pending:
            finish(pending.popleft())
    finally:
        for future in pending:
            future.cancel()
        pool.shutdown(wait=True, cancel_futures=True)
        bar.close()
    if num_images is None and pid == 0:
        store.close_count(seen)
    seconds = time.perf_counter() - start_time
    warn_uninformative(uninformative_ids, explained, what="the images with ids")
    return RunSummary(str(out), explained, errors_written, skipped, seconds,
                      (explained + errors_written) / seconds if seconds > 0 else 0.0, dict(run.phases), plan,
                      pid, pcount, recomputed, list(getattr(src, "skipped", [])), untrusted,
                      len(uninformative_ids))


def _redo_reason(store: ResultStore, record: dict, chunk: list[Item]) -> str | None:
    """Why committed batch `record` must be explained again, unasked (None: it is sound): its rows
    in the store are damaged, or an image of `chunk` (its items now) has another content in the
    source than when it was explained."""
    _, damage = store.read_batch(record)
    if damage is not None:
        return damage
    stored = record.get("digests") or [None] * len(chunk)  # stores written before digests: not checked
    changed = [item.id for item, digest in zip(chunk, stored)
               if digest is not None and content_digest(item.raw) != digest]
    if changed:
        return (f"batch {record['batch']}: the content of {some_ids(changed)} changed in the source since it "
                "was explained")
    return None


def _check_counts(**counts: tuple[Any, int]) -> None:
    """InputError naming the first option whose value (when given) is not an integer >= its minimum.
    counts: option name -> (value or None, minimum)."""
    for name, (value, low) in counts.items():
        if value is not None and (isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low):
            raise InputError(f"{name} must be an integer >= {low}; got {value!r}")


def _config_record(method: Method, config, labels: LabelMapSource | None) -> dict:
    """The config as the store records it; JSON cannot hold a callable segmenter, so it is named
    (a resumed run checks the name only), and label maps given instead are named by their source."""
    segmenter = config.segmentation if method.perturbs_segments else None
    if labels is None and (segmenter is None or isinstance(segmenter, str)):
        return config_record(config)
    record = config_record(config.replace(segmentation="grid"))
    record["segmentation"] = (f"label maps from {labels.description}" if labels is not None
                              else f"callable {segmenter_name(segmenter)}")
    return record


def _check_segmenter_picklable(method: Method, config) -> None:
    """An InputError when the config's callable segmenter cannot reach the worker processes."""
    segmenter = config.segmentation if method.perturbs_segments else None
    if segmenter is None or isinstance(segmenter, str):
        return
    try:
        pickle.dumps(segmenter)
    except Exception as err:  # noqa: BLE001 - pickling fails with many types (lambdas, locks, ...)
        raise InputError(f"the segmenter {segmenter_name(segmenter)} cannot be sent to worker processes "
                         f"({type(err).__name__}: {err}); define it at module level, or pass workers=0 "
                         "to segment in this process") from None


def _check_first_image_matched(src, labels: LabelMapSource) -> None:
    """An InputError when the first image has no label map: the two sources are not aligned at all."""
    first = first_items(src, 1)
    if first and labels.raw_for(first[0]) is None:
        how = "by position" if labels.by_position else f"as {labels.key(first[0])!r} (its id without extension)"
        raise InputError(f"segments: {labels.description} has no label map for the first image {first[0].id!r}, "
                         f"looked up {how}")


def _progress_bar(enabled: bool, total: int | None, initial: int, description: str):
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, unit="img", desc=description, disable=not enabled,
                dynamic_ncols=True, smoothing=0.1)
