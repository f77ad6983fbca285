"""The result store of `explain_dataset`: zarr arrays plus an index, written batch by batch.

Layout of a store directory OUT:

    OUT/meta.json                 what made the store: method, config, seed, image size, batch B,
                                  number of images (when known); written once, atomically
    OUT/parts/pNNNNN.zarr/        one zarr group per writing process (multi-host: process NNNNN):
        maps     float32 [n, H, W]   chunk = one batch (B, H, W); NaN rows for error images
        targets  int32   [n]         the explained class; -1 for error images
        scores   float32 [n]         black-box probability of the target on the image; NaN for errors
        timings  float32 [n, 2]      seconds per image: TIMING_FIELDS
    OUT/amortised.npz, .json      method "dax-amortised" only: the fitted explainer and its record
                                  (SHA-256, fit set), the record written last (`daxjax.dataset.amortised`)
    OUT/index/bNNNNNNNN.json      one file per finished batch: its positions, ids, status, error
                                  reasons, which part holds its rows, seconds per phase, a SHA-256
                                  per column of its rows ("checksums"), a digest per image of its
                                  content in the source ("digests", `sources.content_digest`)

The arrays of a part are a table with one row per image (`columns`: name -> row shape, dtype,
fill); a new per-image column is one more entry there, checksummed and verified like the others.
Rows are indexed by the image's position in input order; batch k holds positions
[k B, (k + 1) B), exactly chunk k of every array. A batch is committed by writing its chunks
first and its index file last, each by write-to-temporary-then-`os.replace`, so a process killed
at any moment leaves either a committed batch or none: uncommitted chunks are rewritten by the
next run. Before the index file is renamed into place, the chunk files, the index file and every
directory they were created in are fsynced: once a batch's index file survives an OS crash or
power loss, so do its rows (on file systems that honour fsync).

The index is the source of truth: `load_results` reads only what it lists, and checks each batch
against its checksums. A batch whose chunks are missing, truncated or altered is *damaged*:
`load_results` leaves its images out (listed in `Results.damaged` with the reason, naming the
files and images) and warns; a resumed run recomputes it. An index file that cannot be read is
treated as not committed, with a `StoreWarning` naming it, so a resumed run recomputes that batch.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import time
import warnings
from pathlib import Path
from typing import Any, Mapping

import numpy as np

FORMAT = "daxjax-results/1"
TIMING_FIELDS = ("host_seconds", "device_seconds")  # read + resize + segment; this image's share of its batch's device step
#: Former config fields that change speed and memory only (now `daxjax.Execution`): stores made
#: before they left the configs record them; they are dropped when a record is read.
EXECUTION_FIELDS = ("query_chunk", "image_batch", "vmap_width")
#: Config fields renamed since a store may have been made: old name -> new name.
RENAMED_FIELDS = {"batch_size": "minibatch_size"}
#: Meta fields a resumed run must match exactly ("amortised": dax-amortised's fit share and
#: refinement budget, `daxjax.dataset.amortised`; absent for the other methods).
IDENTITY_FIELDS = ("method", "config", "seed", "size", "channels", "amortised")


class StoreError(ValueError):
    """A store that cannot be used as asked (another config, another dataset, not a store)."""


class StoreWarning(UserWarning):
    """A store that is usable but damaged: what it names is recomputed by a resumed run."""


def columns(meta: dict) -> dict[str, tuple[tuple[int, ...], np.dtype, Any]]:
    """The per-image columns of a store: name -> (shape of one row, dtype, fill of unwritten rows).

    "diagnostics" exists when the method reports per-image diagnostics (meta["diagnostics"] names
    them, e.g. DAX's held-out fit, every query-only method's `informative`; `daxjax.explain.DIAGNOSTICS`),
    stored as float32 (flags as 0 / 1), NaN where unknown.
    """
    height, width = meta["size"]
    table = {"maps": ((height, width), np.dtype(np.float32), np.nan),
             "targets": ((), np.dtype(np.int32), -1),
             "scores": ((), np.dtype(np.float32), np.nan),
             "timings": ((len(TIMING_FIELDS),), np.dtype(np.float32), np.nan)}
    if meta.get("diagnostics"):
        table["diagnostics"] = ((len(meta["diagnostics"]),), np.dtype(np.float32), np.nan)
    return table


def diagnostics_table(fields, diagnostics: Mapping[str, np.ndarray], count: int) -> np.ndarray:
    """Per-image diagnostics {name: [count]} as the store's float32 [count, len(fields)] rows."""
    table = np.full((count, len(fields)), np.nan, np.float32)
    for k, name in enumerate(fields):
        if name in diagnostics:
            table[:, k] = np.asarray(diagnostics[name], np.float32)
    return table


def checksum(rows: np.ndarray) -> str:
    """SHA-256 (hex) of rows as stored: C-order bytes, with their shape (so rows of a wrong shape differ)."""
    h = hashlib.sha256(np.asarray(rows.shape, np.int64).tobytes())
    h.update(np.ascontiguousarray(rows).tobytes())
    return h.hexdigest()


def fsync_path(path: Path) -> None:
    """Flushes a file's data, or a directory's entries (new names, renames), to the disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_json_atomic(path: Path, data: Any) -> None:
    """Writes JSON to path via a temporary file and os.replace: readers see all of it or nothing,
    and after an OS crash too (the data is fsynced before the rename, the directory after it)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w") as f:
        json.dump(data, f, indent=1, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_path(path.parent)


def read_json(path: Path) -> Any:
    """The JSON in a file; StoreError naming the file when it cannot be read or parsed."""
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise StoreError(f"{path} is unreadable ({type(err).__name__}: {err})") from None


def config_record(config) -> dict:
    """A config as JSON-ready data (its fields; execution settings are not among them)."""
    return json.loads(json.dumps(dataclasses.asdict(config), default=list))


def current_config_record(record: dict) -> dict:
    """A recorded config in today's field names: former execution fields dropped, renamed fields renamed."""
    return {RENAMED_FIELDS.get(name, name): value for name, value in record.items() if name not in EXECUTION_FIELDS}


def part_name(process_index: int) -> str:
    return f"p{process_index:05d}"


class ResultStore:
    """An open store directory (see the module docstring)."""

    def __init__(self, root: str | os.PathLike, meta: dict):
        self.root = Path(root)
        self.meta = meta
        self._arrays: dict[str, Any] = {}

    # -- opening ----------------------------------------------------------------------------

    @classmethod
    def open(cls, root: str | os.PathLike) -> "ResultStore":
        """Opens an existing store for reading."""
        meta_path = Path(root) / "meta.json"
        if not meta_path.is_file():
            raise StoreError(f"{root} is not a daxjax result store (no meta.json)")
        try:
            meta = read_json(meta_path)
        except StoreError as err:
            raise StoreError(f"{err}: it records what made the store, which cannot be recovered from the "
                             "rest; explain again into a new --out") from None
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
            found = meta.get("format") if isinstance(meta, dict) else type(meta).__name__
            raise StoreError(f"{meta_path}: unknown store format {found!r} (this is {FORMAT})")
        return cls(root, meta)

    @classmethod
    def open_for_run(cls, root: str | os.PathLike, meta: dict, *, create: bool,
                     wait_seconds: float = 600.0) -> "ResultStore":
        """Opens (or, when `create`, creates) the store for a run described by `meta`.

        meta: this run's identity (IDENTITY_FIELDS) plus "batch" and "num_images". Where the
        store exists, its identity must match (else StoreError naming the fields) and its batch
        and image size are adopted when this run left them open (None). Processes that may not
        create wait up to `wait_seconds` for the one that does (process 0 of a multi-host run).
        """
        root = Path(root)
        meta_path = root / "meta.json"
        if not meta_path.exists() and create:
            if root.exists() and not root.is_dir():
                raise StoreError(f"--out {root} exists and is not a directory")
            try:
                root.mkdir(parents=True, exist_ok=True)
                if any(root.iterdir()):
                    raise StoreError(f"{root} is not empty and is not a daxjax result store; choose a new --out")
                (root / "index").mkdir()
                (root / "parts").mkdir()
                write_json_atomic(meta_path, {"format": FORMAT, **meta, "created": time.time()})
            except OSError as err:  # unwritable, read-only, full: the user's choice of --out
                raise StoreError(f"--out {root}: cannot create the store there ({err.strerror or err})") from None
        deadline = time.monotonic() + wait_seconds
        while not meta_path.exists():
            if time.monotonic() > deadline:
                raise StoreError(f"{root}: process 0 did not create the store within {wait_seconds:.0f} s")
            time.sleep(0.2)
        store = cls.open(root)
        store._check_identity(meta)
        return store

    def _check_identity(self, meta: dict) -> None:
        stored = self.meta
        wrong = []
        for name in IDENTITY_FIELDS:
            mine = meta.get(name)
            if mine is None and name in ("size", "channels"):
                continue  # this run adopts the store's
            theirs = current_config_record(stored[name]) if name == "config" else stored.get(name)
            if _normal(mine) != _normal(theirs):
                if name == "config":
                    diff = sorted(k for k in set(mine) | set(theirs) if _normal(mine.get(k)) != _normal(theirs.get(k)))
                    wrong.append("config fields " + ", ".join(
                        f"{k} (store: {theirs.get(k)!r}, now: {mine.get(k)!r})" for k in diff))
                else:
                    wrong.append(f"{name} (store: {theirs!r}, now: {mine!r})")
        if meta.get("batch") not in (None, stored["batch"]):
            wrong.append(f"batch (store: {stored['batch']}, now: {meta['batch']})")
        if None not in (meta.get("num_images"), stored.get("num_images")) and meta["num_images"] != stored["num_images"]:
            wrong.append(f"number of images (store: {stored['num_images']}, now: {meta['num_images']}): "
                         "the dataset changed")
        if wrong:
            raise StoreError(f"{self.root} was made by another run; to resume, use the same settings, "
                             "or choose a new --out. Differs: " + "; ".join(wrong))

    # -- index --------------------------------------------------------------------------------

    def committed(self) -> dict[int, dict]:
        """The finished batches: batch number -> its index record.

        An index file that cannot be read, or whose record does not match its name, is left out
        (its batch counts as not finished) with a StoreWarning naming it.
        """
        records = {}
        for path in sorted((self.root / "index").glob("b*.json")):
            try:
                record = read_json(path)
                problem = _record_problem(record, path.name)
            except StoreError as err:
                problem = str(err)
            if problem is not None:
                warnings.warn(f"{problem}; its batch counts as not committed (a resumed run recomputes it)",
                              StoreWarning, stacklevel=2)
                continue
            records[record["batch"]] = record
        return records

    def index_path(self, batch: int) -> Path:
        return self.root / "index" / f"b{batch:08d}.json"

    def read_batch(self, record: dict) -> tuple[dict[str, np.ndarray] | None, str | None]:
        """(rows, None): a committed batch's rows, column -> [stop - start, ...], verified against
        the record's checksums; (None, reason) for a damaged batch, the reason naming the batch's
        index file, part, rows, images and what is wrong. Maps marked ok must be finite too (what an
        unwritten row reads as is NaN: the only check left for records written before checksums)."""
        import zarr

        where = (f"batch {record['batch']} ({self.index_path(record['batch']).relative_to(self.root)}, "
                 f"parts/{record['part']}.zarr rows {record['start']}-{record['stop'] - 1}, images "
                 f"{some_ids(record['ids'])})")
        rows = slice(record["start"], record["stop"])
        values = {}
        try:
            group = zarr.open_group(self.root / "parts" / f"{record['part']}.zarr", mode="r")
            for name in columns(self.meta):
                values[name] = group[name][rows]
        except Exception as err:  # noqa: BLE001 - zarr, codecs and the OS fail in many ways on damaged files
            return None, f"{where}: column {name!r} is unreadable ({type(err).__name__}: {err})"
        sums = record.get("checksums")
        for name, value in values.items():
            if sums is not None and sums.get(name) != checksum(value):
                return None, f"{where}: column {name!r} does not match its checksum (missing or altered chunk)"
        ok = np.asarray(record["status"]) == "ok"
        if not np.isfinite(values["maps"][ok]).all():
            return None, f"{where}: maps marked ok hold NaN (a missing chunk)"
        return values, None

    # -- writing ------------------------------------------------------------------------------

    def _array(self, part: str, name: str, capacity: int):
        """Column `name` of `part`, created or grown to hold `capacity` rows."""
        import zarr

        key = f"{part}/{name}"
        if key not in self._arrays:
            group = zarr.open_group(self.root / "parts" / f"{part}.zarr", mode="a")
            if name in group:
                self._arrays[key] = group[name]
            else:
                row, dtype, fill = columns(self.meta)[name]
                self._arrays[key] = group.create_array(name, shape=(capacity, *row), chunks=(self.meta["batch"], *row),
                                                       dtype=dtype, fill_value=fill)
        array = self._arrays[key]
        if array.shape[0] < capacity:  # a source of unknown length: grow (atomic metadata write)
            array.resize((capacity,) + array.shape[1:])
        return array

    def _chunk_path(self, part: str, name: str, batch: int) -> Path:
        """The file of chunk `batch` (the batch's rows) of column `name` of `part`."""
        array = self._arrays[f"{part}/{name}"]
        key = array.metadata.encode_chunk_key((batch,) + (0,) * (array.ndim - 1))
        return self.root / "parts" / f"{part}.zarr" / name / key

    def commit(self, batch: int, part: str, positions: range, ids: list[str], status: list[str],
               reasons: dict[str, str], values: Mapping[str, np.ndarray], phases: dict[str, float],
               digests: list[str | None] | None = None) -> None:
        """Writes one finished batch: its rows of every column (`values`: name -> [len(positions), ...],
        see `columns`), fsynced, then its index file (the commit). A batch committed before (being
        recomputed) has its chunks replaced whole: damaged ones are never read back."""
        n = self.meta.get("num_images")
        capacity = n if n is not None else _grow(positions.stop, self.meta["batch"])
        rows = slice(positions.start, positions.stop)
        part_dir = self.root / "parts" / f"{part}.zarr"
        written, sums = [part_dir / "zarr.json"], {}
        for name, (_, dtype, _) in columns(self.meta).items():
            array = self._array(part, name, capacity)
            chunk = self._chunk_path(part, name, batch)
            chunk.unlink(missing_ok=True)  # a partial last chunk would otherwise be read and merged
            value = np.asarray(values[name], dtype)
            array[rows] = value
            sums[name] = checksum(value)
            written += [chunk, part_dir / name / "zarr.json"]
        self._fsync_written(written)
        write_json_atomic(self.index_path(batch), {
            "batch": batch, "part": part, "start": positions.start, "stop": positions.stop,
            "ids": ids, "status": status, "reasons": reasons, "phases": phases, "checksums": sums,
            "digests": digests})

    def _fsync_written(self, files: list[Path]) -> None:
        """fsyncs files and every directory from theirs up to the store root (new entries included)."""
        directories = set()
        for path in files:
            if path.exists():
                fsync_path(path)
            for parent in path.parents:
                directories.add(parent)
                if parent == self.root:
                    break
        for directory in sorted(directories, key=lambda d: -len(d.parts)):
            if directory.exists():
                fsync_path(directory)

    def close_count(self, total: int) -> None:
        """Records the number of images of a source whose length became known only at its end."""
        if self.meta.get("num_images") is None:
            self.meta["num_images"] = total
            write_json_atomic(self.root / "meta.json", self.meta)


def _record_problem(record: Any, file_name: str) -> str | None:
    """What makes an index record unusable (None when nothing does)."""
    needed = ("batch", "part", "start", "stop", "ids", "status", "reasons")
    if not isinstance(record, dict) or any(key not in record for key in needed):
        return f"index file {file_name} lacks fields of a batch record"
    if file_name != f"b{record['batch']:08d}.json" or len(record["ids"]) != record["stop"] - record["start"]:
        return f"index file {file_name} does not describe its batch"
    return None


def some_ids(ids: list[str], shown: int = 3) -> str:
    """A few ids for a message: 'a, b, c and 13 more'."""
    more = f" and {len(ids) - shown} more" if len(ids) > shown else ""
    return ", ".join(map(repr, ids[:shown])) + more


def _grow(needed: int, batch: int) -> int:
    """Capacity for a growing array: doubling, in whole batches."""
    capacity = batch
    while capacity < needed:
        capacity *= 2
    return capacity


def _normal(value):
    return json.loads(json.dumps(value, default=list, sort_keys=True))


@dataclasses.dataclass
class Results:
    """What `load_results` returns; rows in input order.

    ids: names of the explained images [n]; maps: float32 [n, H, W] in [0, 1]; targets: int32 [n];
    scores: float32 [n]; timings: float32 [n, 2] (TIMING_FIELDS); errors: id -> reason for the
    images that could not be explained (not in `ids`); damaged: id -> reason for the images of
    damaged batches (`ResultStore.read_batch`; in neither `ids` nor `errors`; a resumed run
    recomputes them); complete: every image of the source is either explained or an error;
    method, config, seed: what made the maps. diagnostics: name -> [n] per-image diagnostics of
    the explainer when it reports any (`daxjax.explain.DIAGNOSTICS`: every query-only method's
    `answer_spread` and `informative`, DAX's own; the flags `methods.base.FLAGS`, "trusted" and
    "informative", as bool), else {}.
    """

    ids: list[str]
    maps: np.ndarray
    targets: np.ndarray
    scores: np.ndarray
    timings: np.ndarray
    errors: dict[str, str]
    complete: bool
    method: str
    config: Any
    seed: int
    timing_fields: tuple[str, ...] = TIMING_FIELDS
    damaged: dict[str, str] = dataclasses.field(default_factory=dict)
    diagnostics: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)

    @property
    def trusted(self) -> np.ndarray | None:
        """bool [n]: maps whose every flag holds (see `Explanation.trusted`); None if the method cannot tell."""
        from daxjax.methods.base import trusted_maps  # JAX: only when results are read

        return trusted_maps(self.diagnostics)


def load_results(out: str | os.PathLike) -> Results:
    """Reads a store written by `explain_dataset` (all its parts), in input order.

    Every batch is verified (`ResultStore.read_batch`); a damaged one is left out, its images
    listed in `Results.damaged`, with a StoreWarning naming it. Raises StoreError when `out` is not
    a store or its meta.json is unreadable.
    """
    store = ResultStore.open(out)
    meta = store.meta
    names = list(columns(meta))
    records = sorted(store.committed().values(), key=lambda r: r["start"])
    ids, errors, damaged = [], {}, {}
    picked: dict[str, list[np.ndarray]] = {name: [] for name in names}
    done = 0
    for record in records:
        values, problem = store.read_batch(record)
        if problem is not None:
            warnings.warn(f"{problem}; left out (a resumed run recomputes it)", StoreWarning, stacklevel=2)
            damaged.update((image_id, problem) for image_id in record["ids"])
            continue
        done += record["stop"] - record["start"]
        ok = np.asarray(record["status"]) == "ok"
        errors.update((record["ids"][i], record["reasons"][record["ids"][i]]) for i in np.flatnonzero(~ok))
        ids.extend(record["ids"][i] for i in np.flatnonzero(ok))
        for name in names:
            picked[name].append(values[name][ok])
    stacked = {name: np.concatenate(picked[name]) if picked[name] else np.zeros((0, *row), dtype)
               for name, (row, dtype, _) in columns(meta).items()}
    num_images = meta.get("num_images")
    config_type = _config_type_of(meta["method"])
    try:
        if hasattr(config_type, "from_dict"):  # grouped configs (dax-amortised's AmortisedConfig)
            config = config_type.from_dict(meta["config"])
        else:
            config = config_type(**current_config_record(meta["config"]))
    except (TypeError, ValueError):  # a config from another version of daxjax: keep the record
        config = meta["config"]
    return Results(
        ids=ids, maps=stacked["maps"], targets=stacked["targets"], scores=stacked["scores"],
        timings=stacked["timings"], errors=errors, complete=num_images is not None and done == num_images,
        method=meta["method"], config=config, seed=meta["seed"], damaged=damaged,
        diagnostics=_diagnostics_of(meta, stacked))


def _diagnostics_of(meta: dict, stacked: dict) -> dict[str, np.ndarray]:
    """The "diagnostics" column as name -> [n] (the flags, `methods.base.FLAGS`, back to bool)."""
    from daxjax.methods.base import FLAGS

    fields = meta.get("diagnostics") or []
    table = stacked.get("diagnostics")
    return {name: (table[:, k] > 0.5 if name in FLAGS else table[:, k]) for k, name in enumerate(fields)}


def _config_type_of(name: str) -> type:
    """The config dataclass of method `name`, a registry method or one of DATASET_METHODS; an
    InputError listing the names otherwise. Imports the engines (JAX, Flax): only when results are read."""
    from daxjax.inputs import InputError
    from daxjax.methods.registry import DATASET_METHODS, NAMES, REGISTRY

    if name in DATASET_METHODS:
        from daxjax.amortised.config import AmortisedConfig

        return AmortisedConfig
    if name not in REGISTRY:
        raise InputError(f"unknown method {name!r}; choose one of {NAMES + DATASET_METHODS}")
    return REGISTRY[name].config_type
