"""The `daxjax` command line: a run from options and a TOML file, and one-line errors with exit code 2."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import daxjax
from blackbox_adapters import bundled_model_path
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
