"""The result store under damage: checksums, unreadable files, fsync before commit, retries, changed images."""

import json
import os
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import daxjax
from daxjax.store import StoreError, StoreWarning
from planted import red_and_distractor_scene, red_fraction_box

CONFIG = daxjax.RISEConfig(num_samples=32, cells=4)
BATCH = 2


def scenes(count: int = 6, size: int = 16) -> np.ndarray:
    return np.stack([red_and_distractor_scene(seed, size)[0] for seed in range(count)])


def run(out: Path, source, bb=red_fraction_box, **kwargs):
    return daxjax.explain_dataset(bb, source, out, method="rise", config=CONFIG, batch_size=BATCH, workers=0,
                                  progress=False, **kwargs)


def assert_same(a, b):
    assert a.ids == b.ids and a.errors == b.errors and a.complete and b.complete
    np.testing.assert_array_equal(a.maps, b.maps)
    np.testing.assert_array_equal(a.scores, b.scores)
    np.testing.assert_array_equal(a.targets, b.targets)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An undamaged store of 6 images in 3 batches, and its results."""
    out = tmp_path_factory.mktemp("reference") / "store"
    run(out, scenes())
    return out, daxjax.load_results(out)


@pytest.fixture
def store(reference, tmp_path):
    """A fresh copy of the reference store (to damage)."""
    import shutil

    out = tmp_path / "store"
    shutil.copytree(reference[0], out)
    return out


def chunk(out: Path, column: str, batch: int) -> Path:
    row_dims = {"maps": 2, "targets": 0, "scores": 0, "timings": 1}[column]
    return out / "parts" / "p00000.zarr" / column / "c" / str(batch) / Path(*["0"] * row_dims)


@pytest.mark.parametrize("damage", ["deleted", "truncated", "altered"])
def test_a_damaged_chunk_is_named_left_out_and_recomputed_on_resume(reference, store, damage):
    path = chunk(store, "maps", 1)
    if damage == "deleted":
        path.unlink()  # zarr would read NaN rows, which used to come back as ok maps
    elif damage == "truncated":
        path.write_bytes(path.read_bytes()[:20])
    else:
        data = bytearray(path.read_bytes())
        data[-5] ^= 0xFF
        path.write_bytes(bytes(data))
    with pytest.warns(StoreWarning, match=r"batch 1 \(index/b00000001.json, parts/p00000.zarr rows 2-3, "
                                          r"images '2', '3'\): column 'maps'"):
        res = daxjax.load_results(store)
    assert res.ids == ["0", "1", "4", "5"] and not res.complete
    assert set(res.damaged) == {"2", "3"} and np.isfinite(res.maps).all()
    with pytest.warns(StoreWarning, match="batch 1 .*explaining it again"):
        summary = run(store, scenes())
    assert (summary.skipped, summary.recomputed, summary.explained) == (4, 2, 2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert_same(daxjax.load_results(store), reference[1])


def test_stores_without_checksums_never_give_nan_maps_as_ok(store):
    index = store / "index" / "b00000002.json"
    record = json.loads(index.read_text())
    del record["checksums"]  # as written before checksums existed
    index.write_text(json.dumps(record))
    chunk(store, "maps", 2).unlink()
    with pytest.warns(StoreWarning, match="maps marked ok hold NaN"):
        res = daxjax.load_results(store)
    assert set(res.damaged) == {"4", "5"} and np.isfinite(res.maps).all()


@pytest.mark.parametrize("damage", [b'{"batch": 0, "par', b"", b'{"batch": 7}'])
def test_an_unreadable_index_file_counts_as_uncommitted(reference, store, damage):
    (store / "index" / "b00000000.json").write_bytes(damage)
    with pytest.warns(StoreWarning, match=r"b00000000.json.*counts as not committed"):
        res = daxjax.load_results(store)
    assert res.ids == ["2", "3", "4", "5"] and not res.complete
    with pytest.warns(StoreWarning, match="b00000000.json"):
        summary = run(store, scenes())
    assert (summary.skipped, summary.explained) == (4, 2)
    assert_same(daxjax.load_results(store), reference[1])


def test_an_unreadable_meta_file_is_a_store_error_naming_it(store, capsys):
    meta = store / "meta.json"
    meta.write_text(meta.read_text()[:30])
    for attempt in (lambda: daxjax.load_results(store), lambda: run(store, scenes())):
        with pytest.raises(StoreError, match=r"meta.json is unreadable \(JSONDecodeError"):
            attempt()
    from daxjax.cli import main

    assert main(["report", str(store), "--source", "x"]) == 2
    assert "meta.json is unreadable" in capsys.readouterr().err


def test_rows_and_directories_are_fsynced_before_the_index_commits(tmp_path, monkeypatch):
    events = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        return real_fsync(fd)

    def replace(src, dst):
        events.append(("replace", str(dst)))
        return real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    out = tmp_path / "store"
    run(out, scenes(2))
    commit = events.index(("replace", str(out / "index" / "b00000000.json")))
    synced = {path for kind, path in events[:commit] if kind == "fsync"}
    for column in ("maps", "targets", "scores", "timings"):
        path = chunk(out, column, 0)
        assert str(path) in synced
        assert {str(p) for p in path.parents if out in p.parents or p == out} - {str(out.parent)} <= synced
    assert ("fsync", str(out / "index")) in events[commit:]  # the rename itself, then made durable


def test_an_out_that_cannot_be_created_is_a_store_error_naming_it(tmp_path):
    (tmp_path / "file").write_text("a file, not a folder")
    with pytest.raises(StoreError, match=rf"--out {tmp_path}/file/store: cannot create the store there"):
        run(tmp_path / "file" / "store", scenes(2))


class FlakyBox:
    """red_fraction_box, but answering NaN for one image while `broken` (a transient failure)."""

    def __init__(self, victim: np.ndarray):
        self.victim, self.broken, self.num_classes = victim, True, 2

    def __call__(self, x):
        probs = red_fraction_box(x)
        if self.broken:
            probs[np.all(x == self.victim, axis=(1, 2, 3))] = np.nan
        return probs


def test_retry_errors_explains_error_rows_again(reference, tmp_path):
    images = scenes()
    bb = FlakyBox(images[3])
    out = tmp_path / "store"
    run(out, images, bb)
    assert list(daxjax.load_results(out).errors) == ["3"]
    bb.broken = False
    assert run(out, images, bb).explained == 0  # a plain resume keeps error rows
    summary = run(out, images, bb, retry_errors=True)
    assert (summary.recomputed, summary.explained, summary.skipped) == (2, 2, 4)
    assert_same(daxjax.load_results(out), reference[1])


def test_an_image_changed_under_the_same_name_is_explained_again(tmp_path):
    images = (scenes() * 255).astype(np.uint8)
    folder = tmp_path / "images"
    folder.mkdir()
    for i, image in enumerate(images):
        Image.fromarray(image).save(folder / f"{i}.png")
    out = tmp_path / "store"
    run(out, folder)
    changed = images[2][::-1].copy()  # another picture under the name 2.png
    Image.fromarray(changed).save(folder / "2.png")
    with pytest.warns(StoreWarning, match=r"batch 1: the content of '2.png' changed in the source"):
        summary = run(out, folder)
    assert (summary.recomputed, summary.skipped) == (2, 4)
    res = daxjax.load_results(out)
    fresh = daxjax.explain(red_fraction_box, changed[None], method="rise", config=CONFIG)
    np.testing.assert_allclose(res.maps[2], fresh.maps[0], atol=1e-6)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert run(out, folder).skipped == 6  # nothing changed since



def test_a_map_with_nan_from_the_explainer_becomes_an_error_row(tmp_path, monkeypatch):
    from daxjax import pipeline

    real = pipeline._Run._run_engine

    def nan_for_the_first(self, prep, rows, targets):
        maps, timings, diagnostics = real(self, prep, rows, targets)
        maps = np.array(maps)
        maps[0, 0, 0] = np.nan
        return maps, timings, diagnostics

    monkeypatch.setattr(pipeline._Run, "_run_engine", nan_for_the_first)
    run(tmp_path / "store", scenes(2))
    res = daxjax.load_results(tmp_path / "store")
    assert res.ids == ["1"] and res.errors == {"0": "the explainer gave a map with NaN or inf values"}
