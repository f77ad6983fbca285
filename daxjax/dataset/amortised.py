"""`explain_dataset(method="dax-amortised")`: fit one amortised DAX explainer on a share of the
dataset, keep it in the store, then explain every image of the dataset with it.

    stats = daxjax.explain_dataset(bb, "photos/", "out/", method="dax-amortised",
                                   config=amortised.AmortisedConfig(), fit_images=500, refine_queries=0)
    res = daxjax.load_results("out/")                  # as for every method
    explainer = daxjax.amortised.load("out/amortised.npz")

Why a mode of the pipeline and not an entry of `methods.registry.REGISTRY`: a registry `Method`
explains any group of images on its own (`ExplainGroup`: images, targets, seed, config -> maps), so
`daxjax.explain`, audio and the batch loop can call it anywhere. dax-amortised cannot: its maps come
from an explainer fitted first on a share of the *dataset*, which no group holds. So the fit is a
phase of `explain_dataset` (this module), and the batch loop then runs an ordinary `Method` record
whose group function closes over the fitted explainer (`run_method`): everything after the fit
(batches, worker processes, error rows, commits, resume, progress, `load_results`, the report) is
the pipeline's own, unchanged. `daxjax.explain` does not take "dax-amortised" (use
`daxjax.amortised.fit(...).explain(...)`).

How a run flows (one process; `explain_dataset` refuses process_count > 1 for this method):
  1. The store is opened as for any method; its identity (meta.json) holds the `AmortisedConfig`
     and `{"fit_images", "refine_queries"}` (meta field "amortised"), so a resumed run with another
     config, seed, fit share or refinement budget is refused (`StoreError` naming the field).
  2. The fit set (`fit_order`): the source's images in the order of the SHA-256 of their ids; the
     first `fit_images` of them that can be read (at the store's size and channels, exactly as they
     are explained) and whose unperturbed answer the black box gives become the fit set. An image
     that fails is skipped with its reason (recorded in amortised.json, "skipped") and the next
     one in that order takes its place; it is still explained (and so becomes an error row when it
     cannot be read). The order is fixed by the ids alone: the same on every run and machine, not
     the input order (a directory sorted by class does not fit on its first classes only), and
     independent of the seed. The fit set's images are held in host memory while fitting
     (fit_images x H x W x C float32).
  3. `daxjax.amortised.fit` over the run's local devices (`devices=`; progress bars: queries, then
     training steps), then the explainer is
     written to OUT/amortised.npz (`AmortisedExplainer.save`: no pickle) and OUT/amortised.json
     (`FIT_RECORD`): the npz's SHA-256, the fitted ids with each one's `sources.content_digest`,
     the skipped ids with their reasons, the fit report. Both are written to a temporary file,
     fsynced and renamed into place, the record last: the record is the commit. A run killed
     before it leaves no record and the resumed run fits again (bit for bit the same explainer on
     the same device count); a record whose npz is missing or does not match its checksum is
     damaged: `StoreWarning`, fitted again. A record whose fit set no longer matches the source
     (other ids, or a fitted image whose content changed) is a `StoreError`: the maps already
     stored came from an explainer of other images. A black box that fails on a perturbation
     while fitting (not on one image's unperturbed query) stops the run before anything is
     committed; the rerun fits again.
  4. The batch loop explains every image, fitted ones too: `AmortisedExplainer.explain` (one forward
     pass, zero black-box queries beyond the pipeline's one unperturbed query per image for the
     target and score), or with `refine_queries` = K > 0 `AmortisedExplainer.refine(bb, images, K,
     seed)` (K + 1 more queries an image). Maps explain the black box's top-1 class only
     (`targets=` is refused). An image's map depends only on (image, seed, config, the fitted
     explainer) and, refined, on K; the explainer only on (fit images, seed, config).

Diagnostics stored per image (`load_results(out).diagnostics`, `run_diagnostics`): "mask_area",
"mask_contrast" and "in_fit_set" (1.0 for an image of the fit set, else 0.0: only the others are
held out); refined runs add `amortised.REFINE_DIAGNOSTICS` ("refined" as 1.0 / 0.0; "trusted" a
flag) and the query-only methods' "answer_spread" and "informative".
"""

from __future__ import annotations

import hashlib
import os
import warnings
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np

from blackbox_adapters import BlackBoxError, check_probabilities
from daxjax.amortised.config import AmortisedConfig
from daxjax.dataset.sources import ImageReadError, Item, content_digest, read_image
from daxjax.dataset.store import ResultStore, StoreError, StoreWarning, fsync_path, read_json, write_json_atomic
from daxjax.inputs import InputError
from daxjax.methods.base import GroupResult, Method

NAME = "dax-amortised"
#: The fitted explainer and its record (the commit of the fit) in a store directory.
EXPLAINER_FILE, FIT_RECORD = "amortised.npz", "amortised.json"
RECORD_FORMAT = "daxjax-amortised-fit/1"
#: Images fitted on when `fit_images` is None (or all images of a smaller dataset).
DEFAULT_FIT_IMAGES = 512
#: Images per black-box call when checking the fit set's unperturbed answers.
_CHECK_GROUP = 16


def check_options(config, fit_images, refine_queries, *, num_images: int | None, targets, segments,
                  process_count: int) -> tuple[AmortisedConfig, dict]:
    """The run's config and its "amortised" identity {"fit_images": F, "refine_queries": K}, or an
    InputError naming the argument that dax-amortised cannot take.

    fit_images: None (min(DEFAULT_FIT_IMAGES, images of the source)) or an int >= 2 (capped at the
    source's length); refine_queries: 0 (no refinement) or an int >= 16.
    """
    if config is None:
        config = AmortisedConfig()
    if not isinstance(config, AmortisedConfig):
        raise InputError(f"method={NAME!r} takes a daxjax.amortised.AmortisedConfig; got {type(config).__name__}")
    if num_images is None:
        raise InputError(f"method={NAME!r} needs a source of known length (a directory, glob, .npz or array): it "
                         "chooses its fit set among all the images before explaining any")
    if targets is not None:
        raise InputError(f"method={NAME!r} explains the black box's top-1 class only; targets= cannot be given")
    if segments is not None:
        raise InputError(f"method={NAME!r} draws its maps with one network fitted on the dataset; it takes no "
                         "label maps (segments=)")
    if process_count != 1:
        raise InputError(f"method={NAME!r} runs in one process (process_count={process_count}): the fit is one "
                         "fit over this process's local devices in this version")
    if fit_images is not None and (isinstance(fit_images, bool) or not isinstance(fit_images, (int, np.integer))
                                   or fit_images < 2):
        raise InputError(f"fit_images must be an integer >= 2 or None; got {fit_images!r}")
    if isinstance(refine_queries, bool) or not isinstance(refine_queries, (int, np.integer)) \
            or not (refine_queries == 0 or refine_queries >= 16):
        raise InputError(f"refine_queries must be 0 (no refinement) or an integer >= 16; got {refine_queries!r}")
    count = min(DEFAULT_FIT_IMAGES if fit_images is None else int(fit_images), num_images)
    if count < 2:
        raise InputError(f"method={NAME!r} fits on at least 2 images; the source holds {num_images}")
    return config, {"fit_images": int(count), "refine_queries": int(refine_queries)}


def run_diagnostics(refine_queries: int) -> tuple[str, ...]:
    """The per-image diagnostics of a run's own group function (the `Method` record's `diagnostics`)."""
    if refine_queries:
        from daxjax.amortised import REFINE_DIAGNOSTICS

        return (*REFINE_DIAGNOSTICS, "in_fit_set")
    return ("mask_area", "mask_contrast", "in_fit_set")


def run_method(config: AmortisedConfig, refine_queries: int,
               explain_group: Callable[..., GroupResult] | None = None) -> Method:
    """The `Method` record of a dax-amortised run: what the batch plan and the store need to know,
    and `explain_group` (None before the fit: a group function that refuses to run).

    query_only: True when it refines (DAX then queries through `query_targets`, so `call_group`
    adds the answer diagnostics); without refinement it asks the black box nothing per map.
    working_bytes: the network's activations at `nets.resolution` (forward pass) plus, refined,
    what DAX at K queries needs (its own `working_bytes`; a bound, not a measurement).
    """
    from daxjax.methods.registry import REGISTRY

    resolution, channels = config.nets.resolution, config.nets.channels
    teacher = config.teacher.dax_config(refine_queries) if refine_queries else None

    def working_bytes(cfg, height, width, image_channels) -> int:
        activations = 4 * resolution * resolution * (image_channels + 2 * sum(channels))
        refine = 0 if teacher is None else REGISTRY["dax"].working_bytes(teacher, height, width, image_channels)
        return int(activations + refine)

    def not_fitted(*args, **kwargs):
        raise RuntimeError("dax-amortised: the explainer is fitted by explain_dataset before any group runs")

    return Method(NAME, AmortisedConfig, explain_group or not_fitted, perturbs_segments=False,
                  query_only=bool(refine_queries), queries_per_image=lambda cfg, h, w: max(1, refine_queries),
                  working_bytes=working_bytes, diagnostics=run_diagnostics(refine_queries), splits_itself=True)


def group_function(explainer, user_bb, refine_queries: int, fit_ids: Iterable[str],
                   devices: list | None = None) -> Callable[..., GroupResult]:
    """The `ExplainGroup` of a run: `explainer.explain(images)` (refine_queries = 0) or
    `explainer.refine(user_bb, images, refine_queries, seed)`, plus "in_fit_set" per image. It
    takes the group on the host and splits it over `devices` itself (`Method.splits_itself`).

    It ignores the pipeline's targets (the top-1 class, which the explainer explains by
    construction) and digests (the explainer derives its own keys from each image and the seed)."""
    fitted = frozenset(fit_ids)

    def explain_group(device_bb, images, targets, digests, config, seed, image_ids, **options) -> GroupResult:
        x = np.asarray(images)
        if refine_queries:
            ex = explainer.refine(user_bb, x, queries_per_image=refine_queries, seed=seed, devices=devices)
        else:
            ex = explainer.explain(x, devices=devices)
        diagnostics = {**ex.diagnostics,
                       "in_fit_set": np.array([str(i) in fitted for i in image_ids], np.float32)}
        return GroupResult(ex.maps, {"explain": float(ex.timings.get("total", 0.0))}, diagnostics)

    return explain_group


def fit_order(items: Iterable[Item]) -> list[Item]:
    """The source's items in the order of the SHA-256 of their ids (ties, impossible in practice, by
    position): the order in which images are taken into the fit set."""
    return sorted(items, key=lambda item: (hashlib.sha256(item.id.encode("utf-8")).digest(), item.position))


def fitted_explainer(user_bb, bb, items: list[Item], store: ResultStore, config: AmortisedConfig, seed: int,
                     fit_images: int, progress: bool, devices: list | None = None):
    """(explainer, fit record): the store's explainer when it holds a sound one for this run, else
    one fitted now on the fit set (module doc, steps 2-3) and committed to the store."""
    from daxjax.amortised import load

    root = store.root
    order = fit_order(items)
    record_path, npz_path = root / FIT_RECORD, root / EXPLAINER_FILE
    if record_path.exists():
        explainer = _recorded_explainer(record_path, npz_path, config, seed, order)
        if explainer is not None:
            return explainer, read_json(record_path)
    for stale in (*root.glob(f".{EXPLAINER_FILE}.*.tmp"), *root.glob(f".{FIT_RECORD}.*.tmp")):
        stale.unlink(missing_ok=True)  # left by a run killed while writing
    images, fit_ids, digests, skipped = fit_set(bb, order, fit_images, tuple(store.meta["size"]),
                                                 store.meta["channels"])
    if len(fit_ids) < 2:
        raise InputError(f"method={NAME!r}: fewer than 2 images of the source can be fitted on "
                         f"({len(fit_ids)} of {len(order)}); skipped: "
                         + "; ".join(f"{k}: {v}" for k, v in list(skipped.items())[:3]))
    explainer = _fit_with_progress(user_bb, images, config, seed, progress, f"{NAME} fit -> {root.name}", devices)
    del images
    _write_atomic(npz_path, explainer.save)
    record = {"format": RECORD_FORMAT, "sha256": _sha256(npz_path), "fit_ids": fit_ids, "digests": digests,
              "skipped": skipped, "report": explainer.report}
    write_json_atomic(record_path, record)
    loaded = load(npz_path)   # what a resumed run will use: the maps come from the saved explainer
    return loaded, record


def fit_set(bb, order: list[Item], count: int, size: tuple[int, int], channels: int
            ) -> tuple[np.ndarray, list[str], list[str | None], dict[str, str]]:
    """The first `count` items of `order` that can be read (at `size`, `channels`) and that the
    black box answers: (images float32 [n, H, W, C], their ids [n], their content digests [n],
    skipped {id: reason}), n <= count (fewer only when the source runs out)."""
    images: list[np.ndarray] = []
    ids: list[str] = []
    digests: list[str | None] = []
    skipped: dict[str, str] = {}
    position = 0
    while len(ids) < count and position < len(order):
        chunk: list[tuple[Item, np.ndarray]] = []
        while len(ids) + len(chunk) < count and len(chunk) < _CHECK_GROUP and position < len(order):
            item = order[position]
            position += 1
            try:
                chunk.append((item, read_image(item.raw, size, channels)))
            except ImageReadError as err:
                skipped[item.id] = f"cannot be read: {err}"
            except Exception as err:  # noqa: BLE001 - a decoder failing on one image
                skipped[item.id] = f"cannot be read: {type(err).__name__}: {err}"
        if not chunk:
            continue
        bad = _unanswered(bb, np.stack([image for _, image in chunk]))
        for r, (item, image) in enumerate(chunk):
            if r in bad:
                skipped[item.id] = f"black box on the unperturbed image: {bad[r]}"
                continue
            images.append(image)
            ids.append(item.id)
            digests.append(content_digest(item.raw))
    stacked = np.stack(images) if images else np.zeros((0, *size, channels), np.float32)
    return stacked, ids, digests, skipped


def _unanswered(bb, x: np.ndarray) -> dict[int, str]:
    """Rows of x [n, H, W, C] whose unperturbed answer the black box does not give: {row: reason}.
    A fault not tied to rows (a black box unusable on any image) is raised."""
    try:
        check_probabilities(bb(x), len(x), bb.num_classes, what="black box on the unperturbed image")
        return {}
    except BlackBoxError as err:
        if not err.rows:
            raise
        bad = {int(r): str(err) for r in err.rows}
    rest = [r for r in range(len(x)) if r not in bad]
    if rest:
        bad.update({rest[r]: reason for r, reason in _unanswered(bb, x[rest]).items()})
    return bad


def _fit_with_progress(user_bb, images: np.ndarray, config: AmortisedConfig, seed: int, enabled: bool,
                       description: str, devices: list | None = None):
    """`amortised.fit` with two progress bars (tqdm, stderr): images queried, then training steps."""
    from tqdm.auto import tqdm

    from daxjax.amortised import fit

    bars: dict[str, Any] = {}

    def progress(phase: str, done: int, total: int) -> None:
        if phase not in bars:
            for bar in bars.values():
                bar.close()
            unit = "img" if phase == "queries" else "step"
            bars[phase] = tqdm(total=total, unit=unit, desc=f"{description}: {phase}", disable=not enabled,
                               dynamic_ncols=True, smoothing=0.1)
        bar = bars[phase]
        bar.update(done - bar.n)

    try:
        return fit(user_bb, images, config, seed, devices=devices, progress=progress)
    finally:
        for bar in bars.values():
            bar.close()


def _recorded_explainer(record_path: Path, npz_path: Path, config: AmortisedConfig, seed: int,
                        order: list[Item]):
    """The store's explainer when its record is sound and matches this run; None (with a
    StoreWarning) when it is damaged and must be fitted again; StoreError when it belongs to other
    images or another run."""
    from daxjax.amortised import load

    try:
        record = read_json(record_path)
    except StoreError as err:
        warnings.warn(f"{err}; the explainer is fitted again", StoreWarning, stacklevel=3)
        return None
    needed = ("format", "sha256", "fit_ids", "digests", "skipped")
    if not isinstance(record, dict) or any(k not in record for k in needed) or record["format"] != RECORD_FORMAT:
        warnings.warn(f"{record_path} is not a fit record of this version; the explainer is fitted again",
                      StoreWarning, stacklevel=3)
        return None
    if not npz_path.is_file() or _sha256(npz_path) != record["sha256"]:
        what = "is missing" if not npz_path.is_file() else "does not match its checksum in " + record_path.name
        warnings.warn(f"{npz_path} {what}; the explainer is fitted again (the same explainer: same fit images, "
                      "seed and config)", StoreWarning, stacklevel=3)
        return None
    considered = set(record["fit_ids"]) | set(record["skipped"])
    first = order[:len(considered)]
    if {item.id for item in first} != considered:
        raise StoreError(f"{record_path.parent}: the source's images changed since its explainer was fitted "
                         f"(fit set {record['fit_ids'][:3]}...); to resume, give the same images, or choose a "
                         "new --out")
    by_id = {item.id: item for item in first}
    changed = [i for i, digest in zip(record["fit_ids"], record["digests"])
               if digest is not None and content_digest(by_id[i].raw) != digest]
    if changed:
        raise StoreError(f"{record_path.parent}: image(s) {changed[:3]} of the fit set changed in the source since "
                         "the explainer was fitted; choose a new --out")
    explainer = load(npz_path)
    if explainer.config != config or explainer.seed != seed:
        raise StoreError(f"{npz_path} was fitted with another config or seed than this run's; choose a new --out")
    return explainer


def _write_atomic(path: Path, write: Callable[[Path], Any]) -> None:
    """write(temporary path), fsync, rename to `path`, fsync the directory: `path` holds all or nothing."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(tmp)
        fsync_path(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    fsync_path(path.parent)


def _sha256(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()
