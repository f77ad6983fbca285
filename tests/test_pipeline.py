"""explain_dataset / load_results: resumable after SIGKILL, error rows, shares, devices, hosts."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import pytest
from PIL import Image

import daxjax
from blackbox_adapters import OnnxBlackBox, bundled_model_path
from daxjax.budget import plan_batches
from daxjax.explain import DIAGNOSTICS, EXPLAINERS
from daxjax.pipeline import process_share
from daxjax.store import StoreError
from planted import red_and_distractor_scene

RUNNER = str(Path(__file__).with_name("pipeline_run.py"))
ROOT = str(Path(__file__).resolve().parents[1])
# Tiny but real: grid segments, a few Adam steps; RISE with few masks.
DAX_SMALL = dict(num_samples=64, steps=3, minibatch_size=16, resolution=16, mask_cells=4, segmentation="grid",
                 mask_channels=4, student_channels=(4, 4), student_hidden=8)
RISE_SMALL = dict(num_samples=32, cells=4)


def scenes(count: int, size: int = 32) -> np.ndarray:
    """uint8 [count, size, size, 3] photos-with-a-red-patch (the bundled model's evidence)."""
    return (np.stack([red_and_distractor_scene(s, size)[0] for s in range(count)]) * 255).astype(np.uint8)


def write_pngs(folder: Path, images: np.ndarray) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    names = [f"img{i:03d}.png" for i in range(len(images))]
    for name, image in zip(names, images):
        Image.fromarray(image).save(folder / name)
    return names


def run_subprocess(spec: dict, env_extra: dict | None = None, **popen) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": ROOT, **(env_extra or {})}
    return subprocess.Popen([sys.executable, RUNNER, json.dumps(spec)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **popen)


def finish(proc: subprocess.Popen, timeout: float = 300) -> dict:
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err[-3000:]
    return json.loads(out.strip().splitlines()[-1])


def store_files(out: Path) -> dict[str, tuple[int, bytes]]:
    """Every file of a store but meta.json (it records its creation time): path -> (mtime_ns, bytes)."""
    return {p.relative_to(out).as_posix(): (p.stat().st_mtime_ns, p.read_bytes())
            for p in sorted(out.rglob("*")) if p.is_file() and p.name != "meta.json"}


def assert_same_results(a, b, exact: bool = True):
    assert a.ids == b.ids and a.errors == b.errors and a.complete and b.complete
    np.testing.assert_array_equal(a.targets, b.targets)
    np.testing.assert_array_equal(a.scores, b.scores)
    if exact:
        np.testing.assert_array_equal(a.maps, b.maps)
    else:  # the determinism contract's tolerance (tests/test_dax.py)
        np.testing.assert_allclose(a.maps, b.maps, atol=1e-5)


@pytest.mark.parametrize("method, config", [("rise", RISE_SMALL), ("dax", DAX_SMALL)])
def test_killed_run_resumes_to_exactly_the_uninterrupted_store(tmp_path, method, config):
    images = write_pngs(tmp_path / "images", scenes(12))
    spec = {"source": str(tmp_path / "images"), "method": method, "config": config, "batch": 2}
    bb = OnnxBlackBox(bundled_model_path("colour_nchw"))
    whole = daxjax.explain_dataset(bb, tmp_path / "images", tmp_path / "whole", method=method, batch_size=2,
                                   config=EXPLAINERS[method][0](**config), workers=0, progress=False)
    assert (whole.explained, whole.skipped, whole.errors) == (12, 0, 0)

    # A slow black box keeps the run going long enough to be killed between commits.
    killed = run_subprocess({**spec, "out": str(tmp_path / "resumed"), "slow": 0.3}, start_new_session=True)
    index = tmp_path / "resumed" / "index"
    deadline = time.monotonic() + 240
    while len(list(index.glob("b*.json"))) < 2:
        assert killed.poll() is None and time.monotonic() < deadline, killed.stderr.read()[-3000:]
        time.sleep(0.02)
    os.killpg(killed.pid, signal.SIGKILL)
    killed.wait()
    done_before = {p.name for p in index.glob("b*.json")}
    assert 2 <= len(done_before) < 6, "the run should have been killed mid-way"
    before = store_files(tmp_path / "resumed")

    resumed = finish(run_subprocess({**spec, "out": str(tmp_path / "resumed")}))
    assert resumed["skipped"] == 2 * len(done_before)
    assert resumed["explained"] == 12 - 2 * len(done_before)
    after = store_files(tmp_path / "resumed")
    # Nothing finished before the kill was written again (index files and their chunks).
    for name, (mtime, content) in before.items():
        if name.startswith("index/"):
            assert after[name] == (mtime, content), name

    a, b = daxjax.load_results(tmp_path / "whole"), daxjax.load_results(tmp_path / "resumed")
    assert a.ids == images
    assert_same_results(a, b, exact=True)


def test_unreadable_images_become_error_rows_and_the_rest_are_explained(tmp_path):
    images = scenes(5)
    folder = tmp_path / "images"
    names = write_pngs(folder, images)
    (folder / "img001.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")  # corrupt
    np.save(folder / "img005.npy", np.full((32, 32, 3), 2.0, np.float32))  # floats outside [0, 1]
    (folder / "notes.txt").write_text("not an image")
    bb = OnnxBlackBox(bundled_model_path("colour_nchw"))
    config = daxjax.RISEConfig(**RISE_SMALL)
    summary = daxjax.explain_dataset(bb, folder, tmp_path / "out", method="rise", config=config, batch_size=2,
                                     workers=1, progress=False)
    res = daxjax.load_results(tmp_path / "out")
    good = [0, 2, 3, 4]
    assert res.ids == [names[i] for i in good]
    assert set(res.errors) == {"img001.png", "img005.npy"}
    assert "decode" in res.errors["img001.png"] and "outside [0, 1]" in res.errors["img005.npy"]
    assert (summary.explained, summary.errors) == (4, 2)
    assert res.maps.shape == (4, 32, 32) and res.timings.shape == (4, 2) and res.complete
    # The same maps as daxjax.explain on the good images (determinism contract).
    ref = daxjax.explain(bb, images[good], method="rise", config=config)
    np.testing.assert_allclose(res.maps, ref.maps, atol=1e-5)
    np.testing.assert_array_equal(res.targets, ref.targets)


def test_resume_with_another_config_or_seed_is_refused(tmp_path):
    bb = OnnxBlackBox(bundled_model_path("colour_nchw"))
    images = scenes(2)
    run = dict(method="rise", batch_size=2, workers=0, progress=False)
    daxjax.explain_dataset(bb, images, tmp_path / "out", config=daxjax.RISEConfig(**RISE_SMALL), **run)
    with pytest.raises(StoreError, match="num_samples"):
        daxjax.explain_dataset(bb, images, tmp_path / "out", config=daxjax.RISEConfig(num_samples=16, cells=4), **run)
    with pytest.raises(StoreError, match="seed"):
        daxjax.explain_dataset(bb, images, tmp_path / "out", config=daxjax.RISEConfig(**RISE_SMALL), seed=1, **run)
    again = daxjax.explain_dataset(bb, images, tmp_path / "out", config=daxjax.RISEConfig(**RISE_SMALL), **run)
    assert (again.explained, again.skipped) == (0, 2)


@pytest.mark.parametrize("count", [1, 2, 3, 5])
def test_process_shares_are_disjoint_and_cover_every_batch(count):
    batches = range(23)
    shares = [{k for k in batches if process_share(k, p, count)} for p in range(count)]
    assert sum(len(s) for s in shares) == len(batches)
    assert set().union(*shares) == set(batches)


def test_process_parts_merge_into_the_single_process_store(tmp_path):
    bb = OnnxBlackBox(bundled_model_path("colour_nchw"))
    images = scenes(7)
    run = dict(method="rise", config=daxjax.RISEConfig(**RISE_SMALL), batch_size=2, workers=0, progress=False)
    daxjax.explain_dataset(bb, images, tmp_path / "one", **run)
    shares = [daxjax.explain_dataset(bb, images, tmp_path / "two", process_index=p, process_count=2, **run)
              for p in (0, 1)]
    assert sorted(s.explained for s in shares) == [3, 4]
    assert sorted(p.name for p in (tmp_path / "two" / "parts").iterdir()) == ["p00000.zarr", "p00001.zarr"]
    assert_same_results(daxjax.load_results(tmp_path / "one"), daxjax.load_results(tmp_path / "two"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_with_jax_distributed_write_the_single_process_store(tmp_path):
    np.savez(tmp_path / "data.npz", images=scenes(7))
    spec = {"source": str(tmp_path / "data.npz"), "method": "rise", "config": RISE_SMALL, "batch": 2}
    coordinator = f"127.0.0.1:{_free_port()}"
    procs = [run_subprocess({**spec, "out": str(tmp_path / "two"), "coordinator": coordinator,
                             "num_processes": 2, "process_id": i}) for i in range(2)]
    results = [finish(p) for p in procs]
    assert [r["process_count"] for r in results] == [2, 2]
    assert sorted(r["explained"] for r in results) == [3, 4]
    bb = OnnxBlackBox(bundled_model_path("colour_nchw"))
    daxjax.explain_dataset(bb, tmp_path / "data.npz", tmp_path / "one", method="rise",
                           config=daxjax.RISEConfig(**RISE_SMALL), batch_size=2, workers=0, progress=False)
    assert_same_results(daxjax.load_results(tmp_path / "one"), daxjax.load_results(tmp_path / "two"))


def test_four_devices_give_the_maps_of_one(tmp_path):
    np.savez(tmp_path / "data.npz", images=scenes(8))
    spec = {"source": str(tmp_path / "data.npz"), "method": "dax", "config": DAX_SMALL, "batch": 4}
    four = finish(run_subprocess({**spec, "out": str(tmp_path / "four")},
                                 {"XLA_FLAGS": "--xla_force_host_platform_device_count=4"}))
    assert four["devices"] == 4
    bb = OnnxBlackBox(bundled_model_path("colour_nchw"))
    daxjax.explain_dataset(bb, tmp_path / "data.npz", tmp_path / "one", method="dax", batch_size=4,
                           config=daxjax.DAXConfig(**DAX_SMALL), workers=0, progress=False, devices=[jax.devices()[0]])
    assert_same_results(daxjax.load_results(tmp_path / "one"), daxjax.load_results(tmp_path / "four"), exact=False)


def test_batch_plan_follows_the_memory_budget():
    config = daxjax.DAXConfig()
    # What DAX needs per image comes from its networks' shapes (a few MiB at 224 px; `Method.working_bytes`).
    small = plan_batches(config, 224, 224, 3, devices=1, num_images=None, host_budget=1 << 30,
                         device_budget=1 << 26, max_batch=1024)
    large = plan_batches(config, 224, 224, 3, devices=1, num_images=None, host_budget=1 << 34,
                         device_budget=1 << 30, max_batch=1024)
    assert small.batch < large.batch
    for plan in (small, large):
        assert plan.device_bytes <= plan.device_budget and plan.host_bytes <= plan.host_budget
        assert plan.batch * plan.query_chunk <= 256
    four = plan_batches(config, 64, 64, 3, devices=4, num_images=None, host_budget=1 << 32, device_budget=1 << 30)
    assert four.batch % 4 == 0
    assert plan_batches(config, 64, 64, 3, devices=1, num_images=3, host_budget=1 << 32,
                        device_budget=1 << 30).batch == 3
    with pytest.raises(ValueError, match="memory budget too small"):
        plan_batches(config, 224, 224, 3, devices=1, num_images=None, host_budget=1 << 30, device_budget=1 << 20)


def test_a_generator_of_unknown_length_is_streamed_and_its_count_recorded(tmp_path):
    bb = OnnxBlackBox(bundled_model_path("colour_nchw"))
    images = scenes(5)
    daxjax.explain_dataset(bb, (image for image in images), tmp_path / "out", method="rise",
                           config=daxjax.RISEConfig(**RISE_SMALL), batch_size=2, workers=0, progress=False)
    res = daxjax.load_results(tmp_path / "out")
    assert res.complete and res.ids == ["0", "1", "2", "3", "4"] and res.maps.shape == (5, 32, 32)


def test_dax_diagnostics_are_stored_and_loaded(tmp_path):
    """Each image's held-out fit, mask state, trust flag and chosen fill reach the store, as explain gives them."""
    folder = tmp_path / "images"
    write_pngs(folder, scenes(5))
    bb = OnnxBlackBox(bundled_model_path("colour_nchw"), layout="NCHW", output="logits")
    config = daxjax.DAXConfig(**{**DAX_SMALL, "steps": 20})
    summary = daxjax.explain_dataset(bb, folder, tmp_path / "out", method="dax", config=config, batch_size=4,
                                     workers=0, progress=False)
    results = daxjax.load_results(tmp_path / "out")
    assert set(results.diagnostics) == set(DIAGNOSTICS["dax"])
    assert results.trusted.dtype == bool and results.trusted.shape == (5,)
    assert summary.untrusted == int((~results.trusted).sum())
    images = np.stack([np.asarray(Image.open(folder / f"img{i:03d}.png"), np.float32) / 255 for i in range(5)])
    direct = daxjax.explain(bb, images, targets=results.targets, config=config,
                            execution=daxjax.Execution(images_per_group=4))
    for name in ("heldout_fit", "surrogate_fit", "mask_area", "answer_spread", "fill_choice"):
        np.testing.assert_allclose(results.diagnostics[name], direct.diagnostics[name], atol=1e-5, err_msg=name)
    np.testing.assert_array_equal(results.trusted, direct.trusted)
    # The other query-only methods store the diagnostics they have: whether the answers changed.
    daxjax.explain_dataset(bb, folder, tmp_path / "rise", method="rise", config=daxjax.RISEConfig(**RISE_SMALL),
                           batch_size=4, workers=0, progress=False)
    rise = daxjax.load_results(tmp_path / "rise").diagnostics
    assert set(rise) == {"answer_spread", "informative"} and rise["informative"].dtype == bool
