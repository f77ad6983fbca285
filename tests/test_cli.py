"""The `daxjax` command line: a run from options and a TOML file, and one-line errors with exit code 2."""

import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import daxjax
from blackbox_adapters import OnnxBlackBox, bundled_model_path
from daxjax.cli import COMMANDS, main
from planted import red_and_distractor_scene

MODEL = str(bundled_model_path("colour_nchw"))
FIXED_NHWC = str(bundled_model_path("colour_nhwc_b8"))  # NHWC, batch 8, 32 x 32 x 3, probabilities


@pytest.fixture(scope="module")
def image_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("images")
    for s in range(3):
        image = (red_and_distractor_scene(s, 32)[0] * 255).astype(np.uint8)
        Image.fromarray(image).save(folder / f"scene{s}.png")
    return folder


def run_cli(argv, capsys) -> tuple[int, str]:
    code = main(argv)
    return code, capsys.readouterr().err


def test_explain_from_a_toml_file_with_targets_and_command_line_overrides(tmp_path, image_dir, capsys):
    (tmp_path / "labels.csv").write_text("id,class\nscene0.png,1\nscene1.png,2\nscene2.png,0\n")
    (tmp_path / "run.toml").write_text(
        f'model = "{MODEL}"\nimages = "{image_dir}"\nmethod = "rise"\nseed = 3\nworkers = 0\n'
        f'[config]\nnum_samples = 48\ncells = 4\n')
    out = tmp_path / "out"
    code, err = run_cli(["explain", "--config", str(tmp_path / "run.toml"), "--out", str(out), "--num-samples",
                         "32", "--targets", str(tmp_path / "labels.csv"), "--no-progress"], capsys)
    assert code == 0, err
    assert "3 explained, 0 errors" in err
    res = daxjax.load_results(out)
    assert res.ids == ["scene0.png", "scene1.png", "scene2.png"]
    np.testing.assert_array_equal(res.targets, [1, 2, 0])
    assert res.method == "rise" and res.seed == 3 and res.config.num_samples == 32 and res.config.cells == 4


@pytest.mark.parametrize("argv, message", [
    (["--images", "{images}", "--model", "/no/such/model.onnx"], "--model: no such file"),
    (["--images", "/no/such/dir", "--model", MODEL], "no such file or directory: /no/such/dir"),
    (["--images", "{images}", "--model", "{images}/scene0.png"], "cannot load it as a model"),
    (["--images", "{images}", "--model", MODEL, "--method", "magic"], "unknown method 'magic'"),
    (["--images", "{images}", "--model", FIXED_NHWC, "--layout", "NHWC", "--output", "probs", "--size", "64"],
     "the model takes 32x32 images"),
    (["--images", "{images}", "--model", MODEL, "--config", "{images}/none.toml"], "--config: no such file"),
])
def test_user_errors_are_one_line_with_exit_code_2(argv, message, tmp_path, image_dir, capsys):
    argv = [a.replace("{images}", str(image_dir)) for a in argv]
    code, err = run_cli(["explain", "--out", str(tmp_path / "out"), "--no-progress", *argv], capsys)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("daxjax explain: error: "), err
    assert message in lines[0]
    assert "Traceback" not in err


def test_unknown_config_field_names_the_field(tmp_path, image_dir, capsys):
    (tmp_path / "bad.toml").write_text("[config]\nnum_sample = 10\n")
    code, err = run_cli(["explain", "--model", MODEL, "--images", str(image_dir), "--out", str(tmp_path / "o"),
                         "--config", str(tmp_path / "bad.toml")], capsys)
    assert code == 2 and "no field(s) ['num_sample']" in err


def test_debug_shows_the_traceback(tmp_path, image_dir):
    with pytest.raises(Exception, match="no such file or directory"):
        main(["--debug", "explain", "--model", MODEL, "--images", "/no/such/dir", "--out", str(tmp_path / "o")])


def test_help_explains_every_option_and_names_every_command(capsys):
    for argv in (["explain", "--help"], ["--help"]):
        with pytest.raises(SystemExit) as exit_:
            main(argv)
        assert exit_.value.code == 0
    out = capsys.readouterr().out
    for option in ("--model", "--images", "--out", "--method", "--targets", "--config", "load_results", *COMMANDS):
        assert option in out


# -- report, evaluate, demo -------------------------------------------------------------------


@pytest.fixture(scope="module")
def store(tmp_path_factory, image_dir) -> Path:
    """A small store of RISE maps (tiny N) of the three scenes of `image_dir`."""
    out = tmp_path_factory.mktemp("store") / "results"
    bb = OnnxBlackBox(MODEL, intra_op_threads=1)
    daxjax.explain_dataset(bb, str(image_dir), out, method="rise", config=daxjax.RISEConfig(num_samples=32, cells=4),
                           workers=0, progress=False)
    return out


@pytest.fixture(scope="module")
def red_masks() -> np.ndarray:
    """Ground truth (the red squares) of the scenes, bool [3, 32, 32] in input order."""
    return np.stack([red_and_distractor_scene(s, 32)[1] for s in range(3)])


def assert_one_line_error(code: int, err: str, command: str, message: str) -> None:
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"daxjax {command}: error: "), err
    assert message in lines[0], err


def test_report_of_a_store_draws_every_explained_image(store, image_dir, tmp_path, capsys):
    code = main(["report", str(store), "--source", str(image_dir), "--out-dir", str(tmp_path / "rep"),
                 "--max-images", "2"])
    out, err = capsys.readouterr()
    assert code == 0, err
    page = (tmp_path / "rep" / "report.html").read_text()
    assert str((tmp_path / "rep" / "report.html").resolve()) in out
    assert "scene0.png" in page and "scene1.png" in page and "scene2.png" not in page  # --max-images 2
    for src in re.findall(r'src="([^"]+)"', page):
        assert (tmp_path / "rep" / src).is_file(), src


def test_report_with_masks_shows_the_iou_of_the_stores_maps(store, image_dir, red_masks, tmp_path, capsys):
    np.savez(tmp_path / "masks.npz", red=red_masks)
    code = main(["report", str(store), "--source", str(image_dir), "--out-dir", str(tmp_path / "rep"),
                 "--masks", str(tmp_path / "masks.npz")])
    assert code == 0, capsys.readouterr().err
    page = (tmp_path / "rep" / "report.html").read_text()
    mean_iou = float(np.mean(daxjax.metrics.iou(daxjax.load_results(store).maps, red_masks)))
    assert "IoU" in page and f"{mean_iou:.3f}" in page


def test_evaluate_equals_the_metrics_on_the_same_maps(store, red_masks, tmp_path, capsys):
    np.savez(tmp_path / "masks.npz", red=red_masks)
    code = main(["evaluate", str(store), "--masks", str(tmp_path / "masks.npz"), "--json", str(tmp_path / "m.json"),
                 "--tolerance", "2"])
    out, err = capsys.readouterr()
    assert code == 0, err
    res = daxjax.load_results(store)
    record = json.loads((tmp_path / "m.json").read_text())
    assert record["ids"] == res.ids
    np.testing.assert_allclose(record["per_image"]["rise"]["IoU"], daxjax.metrics.iou(res.maps, red_masks), atol=1e-6)
    np.testing.assert_allclose(record["per_image"]["rise"]["pointing game"],
                               daxjax.metrics.pointing_game(res.maps, red_masks, tolerance=2), atol=1e-6)
    assert {"rise", "random map", "centred Gaussian"} <= set(record["mean"])
    mean_iou = float(np.mean(daxjax.metrics.iou(res.maps, red_masks)))
    assert f"{mean_iou:.3f}" in out.splitlines()[2] and out.splitlines()[2].startswith("rise")

    # The same masks keyed by id give the same numbers.
    np.savez(tmp_path / "by_id.npz", **{f"scene{s}.png": red_masks[s] for s in range(3)})
    assert main(["evaluate", str(store), "--masks", str(tmp_path / "by_id.npz"), "--json", str(tmp_path / "b.json"),
                 "--tolerance", "2"]) == 0
    assert json.loads((tmp_path / "b.json").read_text())["per_image"] == record["per_image"]


def test_evaluate_with_the_model_adds_deletion_and_insertion_auc(store, image_dir, red_masks, tmp_path, capsys):
    np.savez(tmp_path / "masks.npz", red=red_masks)
    code = main(["evaluate", str(store), "--masks", str(tmp_path / "masks.npz"), "--model", MODEL,
                 "--source", str(image_dir), "--auc-steps", "4", "--json", str(tmp_path / "m.json")])
    assert code == 0, capsys.readouterr().err
    res = daxjax.load_results(store)
    images = np.stack([np.asarray(Image.open(image_dir / i), np.float32) / 255 for i in res.ids])
    bb = OnnxBlackBox(MODEL, intra_op_threads=1)
    per_image = json.loads((tmp_path / "m.json").read_text())["per_image"]["rise"]
    np.testing.assert_allclose(per_image["deletion AUC"],
                               daxjax.metrics.deletion_auc(bb, images, res.maps, res.targets, steps=4), atol=1e-5)
    np.testing.assert_allclose(per_image["insertion AUC"],
                               daxjax.metrics.insertion_auc(bb, images, res.maps, res.targets, steps=4), atol=1e-5)


@pytest.mark.parametrize("argv, message", [
    (["report", "{store}"], "--source is required"),
    (["report", "{tmp}", "--source", "{images}"], "is not a daxjax result store"),
    (["report", "{tmp}/none", "--source", "{images}"], "no such store directory"),
    (["report", "{store}", "--source", "{tmp}/other"], "has no image(s) ['scene0.png'"),
    (["report", "{store}", "--source", "{tmp}/empty"], "no image files"),
    (["report", "{store}", "--source", "{images}", "--max-images", "0"], "--max-images must be at least 1"),
    (["evaluate", "{store}", "--masks", "{tmp}/none.npz"], "--masks: no such file"),
    (["evaluate", "{store}", "--masks", "{tmp}/small.npz"], "masks are 16x16 but the store's maps are 32x32"),
    (["evaluate", "{store}", "--masks", "{tmp}/few.npz"], "has 2 masks"),
    (["evaluate", "{store}", "--masks", "{tmp}/keyed.npz"], "no mask for image(s) ['scene2.png']"),
    (["evaluate", "{store}", "--masks", "{tmp}/empty.npz"], "empty mask (no object, IoU undefined) for image(s) ['scene1.png']"),
    (["evaluate", "{store}", "--masks", "{tmp}/small.npz", "--source", "{images}"], "need --model too"),
    (["evaluate", "{store}", "--masks", "{tmp}/few.npz", "--model", "{images}/scene0.png", "--source", "{images}"],
     "cannot load it as a model"),
    (["report", "{store}", "--source", "{images}", "--masks", "{tmp}/small.npz"], "masks are 16x16"),
    (["demo", "--photos", "chelsea,nope"], "--photos: 'nope'"),
])
def test_new_commands_report_user_errors_in_one_line_with_exit_code_2(argv, message, store, image_dir, tmp_path,
                                                                        capsys):
    np.savez(tmp_path / "small.npz", m=np.ones((3, 16, 16), bool))
    (tmp_path / "other").mkdir()
    (tmp_path / "empty").mkdir()
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(tmp_path / "other" / "another.png")
    np.savez(tmp_path / "few.npz", m=np.ones((2, 32, 32), bool))
    np.savez(tmp_path / "empty.npz", m=np.ones((3, 32, 32), bool) * np.array([1, 0, 1], bool)[:, None, None])
    np.savez(tmp_path / "keyed.npz", **{"scene0.png": np.ones((32, 32), bool), "scene1.png": np.ones((32, 32), bool)})
    argv = [a.replace("{store}", str(store)).replace("{images}", str(image_dir)).replace("{tmp}", str(tmp_path))
            for a in argv]
    code, err = run_cli(argv, capsys)
    assert_one_line_error(code, err, argv[0], message)
    assert "Traceback" not in err


def test_there_is_no_bench_command(capsys):
    # The installed package holds no benchmarks (tests/test_layers.py: daxjax never imports benchmarks/);
    # they run as `python -m benchmarks.throughput` from a source checkout.
    assert "bench" not in COMMANDS
    with pytest.raises(SystemExit) as exit_info:
        main(["bench", "--quick"])
    assert exit_info.value.code == 2
    assert "invalid choice: 'bench'" in capsys.readouterr().err


@pytest.mark.parametrize("command", list(COMMANDS))
def test_every_command_has_help_with_examples(command, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([command, "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert f"usage: daxjax {command}" in out and "examples:" in out and f"daxjax {command}" in out.split("examples:")[1]
