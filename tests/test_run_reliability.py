"""Runs that end cleanly and say what went wrong: worker processes end with their parent, exit
codes (every image failed: 1; a user's mistake: 2, one line naming the option), seeds and targets
checked, the ONNX model's layout read from its input."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import daxjax
from blackbox_adapters import BlackBoxError, bundled_model_path
from blackbox_adapters.onnx import infer_layout
from daxjax.cli import main
from daxjax.explain import EXPLAINERS
from daxjax.inputs import InputError, check_field_types
from planted import red_and_distractor_scene, red_fraction_box

MODEL = str(bundled_model_path("colour_nchw"))
NHWC_MODEL = str(bundled_model_path("colour_nhwc_b8"))  # NHWC, batch 8, 32 x 32 x 3, probabilities
RUNNER = str(Path(__file__).with_name("pipeline_run.py"))
ROOT = str(Path(__file__).resolve().parents[1])
RISE = daxjax.RISEConfig(num_samples=16, cells=4)


@pytest.fixture(scope="module")
def image_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("images")
    for s in range(3):
        Image.fromarray((red_and_distractor_scene(s, 32)[0] * 255).astype(np.uint8)).save(folder / f"scene{s}.png")
    return folder


def run_cli(argv, capsys) -> tuple[int, str]:
    code = main(argv)
    return code, capsys.readouterr().err


def _children() -> dict[int, list[int]]:
    """ppid -> pids of the live (not zombie) processes, from /proc."""
    tree: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if fields[0] != "Z":
                tree.setdefault(int(fields[1]), []).append(int(entry))
    return tree


def descendants(pid: int) -> set[int]:
    tree, found, todo = _children(), set(), [pid]
    while todo:
        for child in tree.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def live(pids: set[int]) -> set[int]:
    alive = set()
    for pid in pids:
        try:
            if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
                alive.add(pid)
        except OSError:
            pass
    return alive


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_worker_processes_end_when_the_main_process_is_killed(tmp_path):
    np.savez(tmp_path / "data.npz", images=(np.stack([red_and_distractor_scene(s, 16)[0] for s in range(40)]) * 255
                                            ).astype(np.uint8))
    spec = {"source": str(tmp_path / "data.npz"), "out": str(tmp_path / "out"), "method": "rise",
            "config": {"num_samples": 16, "cells": 4}, "batch": 2, "slow": 0.5, "workers": 1}
    proc = subprocess.Popen([sys.executable, RUNNER, json.dumps(spec)], env={**os.environ, "PYTHONPATH": ROOT},
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    children: set[int] = set()
    try:
        deadline = time.monotonic() + 120
        while not list((tmp_path / "out" / "index").glob("b*.json")):  # the pool is up and working
            assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read()[-2000:]
            time.sleep(0.05)
        children = descendants(proc.pid)
        assert len(children) >= 3  # fork server, its worker, the resource tracker
        proc.kill()  # SIGKILL: no cleanup in the main process
        proc.wait()
        deadline = time.monotonic() + 15
        while live(children) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not live(children), [Path(f"/proc/{p}/cmdline").read_text()[:100] for p in live(children)]
    finally:
        for pid in live(children):
            os.kill(pid, signal.SIGKILL)
        proc.stderr.close()


def test_a_run_in_which_every_image_failed_exits_1(tmp_path, capsys):
    folder = tmp_path / "broken"
    folder.mkdir()
    for name in ("a.png", "b.png"):
        (folder / name).write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    code, err = run_cli(["explain", "--model", MODEL, "--images", str(folder), "--out", str(tmp_path / "out"),
                         "--method", "rise", "--num-samples", "16", "--size", "32", "--workers", "0",
                         "--no-progress"], capsys)
    assert code == 1
    assert "every image of this run failed (2 errors; the store's first, a.png: cannot decode" in err


@pytest.mark.parametrize("extra, message", [
    (["--batch-size", "0"], "--batch-size must be an integer >= 1; got 0"),
    (["--workers", "-1"], "--workers must be an integer >= 0; got -1"),
    (["--prefetch", "0"], "--prefetch must be an integer >= 1; got 0"),
    (["--num-samples", "0"], "--num-samples must be an integer >= 1; got 0"),
    (["--layout", "NWHC"], "--layout must be NCHW or NHWC"),
])
def test_bad_counts_exit_2_naming_the_option(extra, message, image_dir, tmp_path, capsys):
    code, err = run_cli(["explain", "--model", MODEL, "--images", str(image_dir), "--out", str(tmp_path / "out"),
                         "--no-progress", *extra], capsys)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err


def test_an_out_that_cannot_be_created_exits_2_naming_it(image_dir, tmp_path, capsys):
    (tmp_path / "file").write_text("not a folder")
    code, err = run_cli(["explain", "--model", MODEL, "--images", str(image_dir), "--out",
                         str(tmp_path / "file" / "out"), "--no-progress"], capsys)
    assert code == 2 and f"--out {tmp_path}/file/out: cannot create the store there" in err, err


def test_a_toml_seed_that_is_not_an_integer_exits_2(image_dir, tmp_path, capsys):
    (tmp_path / "run.toml").write_text("seed = 1.5\n")
    code, err = run_cli(["explain", "--config", str(tmp_path / "run.toml"), "--model", MODEL, "--images",
                         str(image_dir), "--out", str(tmp_path / "out"), "--no-progress"], capsys)
    assert code == 2 and "seed must be an integer in [0, 2**32); got 1.5" in err, err


@pytest.mark.parametrize("seed", [1.5, 2**70, -1, True, "3"])
def test_seeds_are_checked(seed, tmp_path):
    images = np.stack([red_and_distractor_scene(0, 16)[0]])
    with pytest.raises(InputError, match=r"seed must be an integer in \[0, 2\*\*32\)"):
        daxjax.explain(red_fraction_box, images, method="rise", config=RISE, seed=seed)
    with pytest.raises(InputError, match=r"seed must be an integer in \[0, 2\*\*32\)"):
        daxjax.explain_dataset(red_fraction_box, images, tmp_path / "out", method="rise", config=RISE, seed=seed,
                               workers=0, progress=False)


def test_targets_that_are_not_classes_are_named(tmp_path):
    images = np.stack([red_and_distractor_scene(s, 16)[0] for s in range(2)])
    with pytest.raises(InputError, match="targets must be integer class indices; got <U3 values such as 'cat'"):
        daxjax.explain(red_fraction_box, images, targets=["cat", "dog"], method="rise", config=RISE)
    daxjax.explain_dataset(red_fraction_box, images, tmp_path / "out", method="rise", config=RISE,
                           targets={"0": "cat", "1": True}, workers=0, progress=False)
    errors = daxjax.load_results(tmp_path / "out").errors
    assert errors == {"0": "target 'cat' of image '0' is not a class in [0, 2)",
                      "1": "target True of image '1' is not a class in [0, 2)"}


def test_the_cli_reads_the_layout_and_size_from_the_model(image_dir, tmp_path, capsys):
    code, err = run_cli(["explain", "--model", NHWC_MODEL, "--output", "probs", "--images", str(image_dir),
                         "--out", str(tmp_path / "out"), "--method", "rise", "--num-samples", "16", "--workers", "0",
                         "--no-progress"], capsys)
    assert code == 0, err
    assert daxjax.load_results(tmp_path / "out").maps.shape == (3, 32, 32)


def test_layout_inference():
    assert infer_layout((None, 3, 224, 224)) == "NCHW"
    assert infer_layout((1, 64, 64, 1)) == "NHWC"
    for shape in [(None, 3, 3, 3), (None, None, None, None), (None, 8, 64, 8)]:
        with pytest.raises(BlackBoxError, match="cannot tell NCHW from NHWC; give the layout"):
            infer_layout(shape)


def test_config_fields_of_the_wrong_kind_are_named(image_dir, tmp_path, capsys):
    images = np.stack([red_and_distractor_scene(0, 16)[0]])
    for config, field in [(daxjax.DAXConfig(num_samples=64.7), "DAXConfig.num_samples must be int; got 64.7"),
                          (daxjax.RISEConfig(num_samples=True), "RISEConfig.num_samples must be int; got True")]:
        with pytest.raises(InputError, match=field):
            daxjax.explain(red_fraction_box, images, method=config.__class__.__name__[:-6].lower(), config=config)
    for config_type, _ in EXPLAINERS.values():  # every default config passes
        check_field_types(config_type())
    (tmp_path / "run.toml").write_text("[config]\nnum_samples = 64.7\n")
    code, err = run_cli(["explain", "--config", str(tmp_path / "run.toml"), "--model", MODEL, "--images",
                         str(image_dir), "--out", str(tmp_path / "out"), "--no-progress"], capsys)
    assert code == 2 and "DAXConfig.num_samples must be int; got 64.7" in err, err
