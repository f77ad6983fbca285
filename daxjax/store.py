"""The result store of `explain_dataset`: zarr arrays plus an index, written batch by batch.

Layout of a store directory OUT:

    OUT/meta.json                 what made the store: method, config, seed, image size, batch B,
                                  number of images (when known); written once, atomically
    OUT/parts/pNNNNN.zarr/        one zarr group per writing process (multi-host: process NNNNN):
        maps     float32 [n, H, W]   chunk = one batch (B, H, W); NaN rows for error images
        targets  int32   [n]         the explained class; -1 for error images
        scores   float32 [n]         black-box probability of the target on the image; NaN for errors
        timings  float32 [n, 2]      seconds per image: TIMING_FIELDS
    OUT/index/bNNNNNNNN.json      one file per finished batch: its positions, ids, status, error
                                  reasons, which part holds its rows, seconds per phase

Rows are indexed by the image's position in input order; batch k holds positions
[k B, (k + 1) B). A batch is committed by writing its array chunks first and its index file
last, by write-to-temporary-then-`os.replace` (zarr's local store writes chunks the same way), so
a process killed at any moment leaves either a committed batch or none: uncommitted chunks are
rewritten by the next run. The index is the source of truth: `load_results` reads only what it
lists.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

FORMAT = "daxjax-results/1"
TIMING_FIELDS = ("host_seconds", "device_seconds")  # read + resize + segment; this image's share of its batch's device step
#: Config fields that change speed and memory only: a resumed run may use other values.
EXECUTION_FIELDS = ("query_chunk", "image_batch", "vmap_width")
#: Meta fields a resumed run must match exactly.
IDENTITY_FIELDS = ("method", "config", "seed", "size", "channels")


class StoreError(ValueError):
    """A store that cannot be used as asked (another config, another dataset, not a store)."""


def write_json_atomic(path: Path, data: Any) -> None:
    """Writes JSON to path via a temporary file and os.replace: readers see all of it or nothing."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w") as f:
        json.dump(data, f, indent=1, sort_keys=True)
    os.replace(tmp, path)


def config_record(config) -> dict:
    """A config as JSON-ready data, without the execution-only fields."""
    record = json.loads(json.dumps(dataclasses.asdict(config), default=list))
    for name in EXECUTION_FIELDS:
        record.pop(name, None)
    return record


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
        meta = json.loads(meta_path.read_text())
        if meta.get("format") != FORMAT:
            raise StoreError(f"{root}: unknown store format {meta.get('format')!r} (this is {FORMAT})")
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
            root.mkdir(parents=True, exist_ok=True)
            if any(root.iterdir()):
                raise StoreError(f"{root} is not empty and is not a daxjax result store; choose a new --out")
            (root / "index").mkdir()
            (root / "parts").mkdir()
            write_json_atomic(meta_path, {"format": FORMAT, **meta, "created": time.time()})
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
            if _normal(mine) != _normal(stored.get(name)):
                if name == "config":
                    diff = sorted(k for k in set(mine) | set(stored[name])
                                  if _normal(mine.get(k)) != _normal(stored[name].get(k)))
                    wrong.append("config fields " + ", ".join(
                        f"{k} (store: {stored[name].get(k)!r}, now: {mine.get(k)!r})" for k in diff))
                else:
                    wrong.append(f"{name} (store: {stored.get(name)!r}, now: {mine!r})")
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
        """The finished batches: batch number -> its index record."""
        records = {}
        for path in sorted((self.root / "index").glob("b*.json")):
            record = json.loads(path.read_text())
            records[record["batch"]] = record
        return records

    # -- writing ------------------------------------------------------------------------------

    def _array(self, part: str, name: str, capacity: int):
        import zarr

        key = f"{part}/{name}"
        if key not in self._arrays:
            group = zarr.open_group(self.root / "parts" / f"{part}.zarr", mode="a")
            height, width = self.meta["size"]
            batch = self.meta["batch"]
            shapes = {"maps": ((capacity, height, width), (batch, height, width), np.float32, np.nan),
                      "targets": ((capacity,), (batch,), np.int32, -1),
                      "scores": ((capacity,), (batch,), np.float32, np.nan),
                      "timings": ((capacity, len(TIMING_FIELDS)), (batch, len(TIMING_FIELDS)), np.float32, np.nan)}
            if name in group:
                self._arrays[key] = group[name]
            else:
                shape, chunks, dtype, fill = shapes[name]
                self._arrays[key] = group.create_array(name, shape=shape, chunks=chunks, dtype=dtype,
                                                       fill_value=fill)
        array = self._arrays[key]
        if array.shape[0] < capacity:  # a source of unknown length: grow (atomic metadata write)
            array.resize((capacity,) + array.shape[1:])
        return array

    def commit(self, batch: int, part: str, positions: range, ids: list[str], status: list[str],
               reasons: dict[str, str], maps: np.ndarray, targets: np.ndarray, scores: np.ndarray,
               timings: np.ndarray, phases: dict[str, float]) -> None:
        """Writes one finished batch: array rows at `positions`, then its index file (the commit)."""
        n = self.meta.get("num_images")
        capacity = n if n is not None else _grow(positions.stop, self.meta["batch"])
        rows = slice(positions.start, positions.stop)
        self._array(part, "maps", capacity)[rows] = maps
        self._array(part, "targets", capacity)[rows] = targets
        self._array(part, "scores", capacity)[rows] = scores
        self._array(part, "timings", capacity)[rows] = timings
        write_json_atomic(self.root / "index" / f"b{batch:08d}.json", {
            "batch": batch, "part": part, "start": positions.start, "stop": positions.stop,
            "ids": ids, "status": status, "reasons": reasons, "phases": phases})

    def close_count(self, total: int) -> None:
        """Records the number of images of a source whose length became known only at its end."""
        if self.meta.get("num_images") is None:
            self.meta["num_images"] = total
            write_json_atomic(self.root / "meta.json", self.meta)


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
    images that could not be explained (not in `ids`); complete: every image of the source is
    either explained or an error; method, config, seed: what made the maps.
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


def load_results(out: str | os.PathLike) -> Results:
    """Reads a store written by `explain_dataset` (all its parts), in input order."""
    import zarr

    store = ResultStore.open(out)
    meta = store.meta
    height, width = meta["size"]
    records = sorted(store.committed().values(), key=lambda r: r["start"])
    ids, maps, targets, scores, timings, errors = [], [], [], [], [], {}
    groups: dict[str, Any] = {}
    done = 0
    for record in records:
        done += record["stop"] - record["start"]
        ok = [i for i, s in enumerate(record["status"]) if s == "ok"]
        for i, s in enumerate(record["status"]):
            if s != "ok":
                errors[record["ids"][i]] = record["reasons"][record["ids"][i]]
        if not ok:
            continue
        part = record["part"]
        if part not in groups:
            groups[part] = zarr.open_group(store.root / "parts" / f"{part}.zarr", mode="r")
        group = groups[part]
        rows = slice(record["start"], record["stop"])
        pick = np.asarray(ok)
        maps.append(group["maps"][rows][pick])
        targets.append(group["targets"][rows][pick])
        scores.append(group["scores"][rows][pick])
        timings.append(group["timings"][rows][pick])
        ids.extend(record["ids"][i] for i in ok)
    num_images = meta.get("num_images")
    from daxjax.explain import EXPLAINERS

    config_type = EXPLAINERS[meta["method"]][0]
    try:
        config = config_type(**meta["config"])
    except (TypeError, ValueError):  # a config from another version of daxjax: keep the record
        config = meta["config"]
    return Results(
        ids=ids,
        maps=np.concatenate(maps) if maps else np.zeros((0, height, width), np.float32),
        targets=np.concatenate(targets) if targets else np.zeros((0,), np.int32),
        scores=np.concatenate(scores) if scores else np.zeros((0,), np.float32),
        timings=np.concatenate(timings) if timings else np.zeros((0, len(TIMING_FIELDS)), np.float32),
        errors=errors,
        complete=num_images is not None and done == num_images,
        method=meta["method"], config=config, seed=meta["seed"])
