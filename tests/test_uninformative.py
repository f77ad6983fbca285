"""Black boxes whose answer does not change under perturbation: every query-only method flags the map.

The flag (`methods.base.ANSWER_DIAGNOSTICS`: `answer_spread`, `informative`) is computed once, from
the answers `query_targets` returns, for every method; these tests check it reaches every place a
map goes: `explain` (and its warning), `explain_audio`, the dataset store, the CLI summary and the
HTML report. Non-finite answers, the other way a black box says nothing, are errors naming the image.
"""

import re
import warnings
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

import daxjax
from blackbox_adapters import BlackBoxError, JaxBlackBox, OnnxBlackBox
from daxjax import UninformativeWarning
from daxjax.audio import AudioConfig, SpectrogramConfig, explain_audio
from daxjax.explain import DIAGNOSTICS
from daxjax.methods.base import SPREAD_FLOOR, answer_diagnostics
from planted import SOUND_RATE, red_and_distractor_scene, red_fraction_box, span_energy_box, span_tone_clips

SIZE = 32
CONFIGS = {
    "dax": daxjax.DAXConfig(num_samples=64, steps=3, minibatch_size=32, resolution=16, mask_cells=4,
                            segmentation="grid", restarts=1),
    "rise": daxjax.RISEConfig(num_samples=64, cells=4),
    "lime": daxjax.LIMEConfig(num_samples=64, segmentation="grid"),
    "kernelshap": daxjax.KernelSHAPConfig(num_samples=64, segmentation="grid"),
    "occlusion": daxjax.OcclusionConfig(window=8, stride=8),
}
METHODS = tuple(CONFIGS)


def constant_box(x: np.ndarray) -> np.ndarray:
    """Two classes, the same answer whatever the input."""
    return np.tile(np.array([[0.3, 0.7]], np.float32), (len(x), 1))


def mixed_scenes() -> np.ndarray:
    """float32 [3, 32, 32, 3]: scenes 0 and 2 hold the red square `red_fraction_box` looks for; in
    scene 1 it is painted over, so no perturbation of it changes P(class 1) (no fill is red)."""
    images = np.stack([red_and_distractor_scene(seed, SIZE)[0] for seed in range(3)])
    images[1] = np.where(images[1] > 0.9, 0.5, images[1])
    return images


def explain_quietly(bb, images, method, **kwargs) -> tuple[daxjax.Explanation, list[str]]:
    """`explain` with the given method's tiny config; (explanation, UninformativeWarning messages)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ex = daxjax.explain(bb, images, method=method, config=CONFIGS[method], **kwargs)
    return ex, [str(w.message) for w in caught if issubclass(w.category, UninformativeWarning)]


@pytest.mark.parametrize("method", METHODS)
def test_a_constant_black_box_is_flagged_by_every_method(method):
    ex, messages = explain_quietly(constant_box, mixed_scenes(), method)  # 3 images: DAX compiles once here
    np.testing.assert_array_equal(ex.diagnostics["answer_spread"], [0.0, 0.0, 0.0])
    assert ex.diagnostics["informative"].dtype == bool and not ex.diagnostics["informative"].any()
    assert not ex.trusted.any()
    assert len(messages) == 1 and re.search(r"^3 of 3 maps are uninformative.*positions \[0, 1, 2\]", messages[0])
    assert set(DIAGNOSTICS[method]) >= {"answer_spread", "informative"}


@pytest.mark.parametrize("method", METHODS)
def test_only_the_image_whose_answer_never_changes_is_flagged(method):
    """red_fraction_box answers every perturbation of scenes 0 and 2 differently, of scene 1 alike."""
    ex, messages = explain_quietly(red_fraction_box, mixed_scenes(), method, targets=1)
    np.testing.assert_array_equal(ex.diagnostics["informative"], [True, False, True])
    spread = ex.diagnostics["answer_spread"]
    assert spread[0] > 0.01 and spread[2] > 0.01 and spread[1] == 0.0
    assert len(messages) == 1 and re.search(r"^1 of 3 maps .*positions \[1\]", messages[0])
    # The map is kept as computed: the flag, not the map, says it is empty of meaning.
    assert ex.maps.shape == (3, SIZE, SIZE) and np.isfinite(ex.maps).all()


def test_an_informative_batch_warns_nothing():
    with warnings.catch_warnings():
        warnings.simplefilter("error", UninformativeWarning)
        ex = daxjax.explain(red_fraction_box, mixed_scenes()[[0, 2]], targets=1, method="rise",
                            config=CONFIGS["rise"])
    assert ex.trusted.all()


def test_the_flag_is_the_same_on_every_query_path():
    from daxjax.device.querying import forced_path
    import torch
    from blackbox_adapters import TorchBlackBox

    class Constant(torch.nn.Module):
        def forward(self, x):
            return torch.zeros(x.shape[0], 2) + torch.tensor([0.3, 0.7])

    images = mixed_scenes()[:2]
    boxes = {"host": constant_box, "jax": JaxBlackBox(lambda x: jnp.tile(jnp.array([[0.3, 0.7]]), (x.shape[0], 1)), 2),
             "dlpack": TorchBlackBox(Constant(), output="probs", num_classes=2)}
    for path, bb in boxes.items():
        with forced_path(path):
            ex, _ = explain_quietly(bb, images, "rise")
        assert not ex.diagnostics["informative"].any(), path


def test_gradient_references_report_no_answer_diagnostics():
    bb = JaxBlackBox(lambda x: jnp.stack([x.mean((1, 2, 3)), 1 - x.mean((1, 2, 3))], axis=1), 2)
    ex = daxjax.explain(bb, mixed_scenes()[:1], method="gradient")
    assert ex.diagnostics == {} and ex.trusted is None and "gradient" not in DIAGNOSTICS


def test_the_floor_is_relative_to_the_answers_scale():
    rng = np.random.default_rng(0)
    rounding = 0.5 + 1e-7 * rng.standard_normal((1, 100))  # ~ float32 rounding of an answer near 0.5
    small_but_moving = 1e-6 * rng.uniform(0.0, 1.0, (1, 100))  # a rare class whose answer does change
    flags = answer_diagnostics([np.concatenate([rounding, small_but_moving])])
    np.testing.assert_array_equal(flags["informative"], [False, True])
    assert flags["answer_spread"][0] <= SPREAD_FLOOR * 0.5
    # Answers of several query_targets calls are pooled; all-zero answers are flagged.
    pooled = answer_diagnostics([np.zeros((2, 3)), np.array([[0.0, 0.0], [0.0, 1.0]])])
    np.testing.assert_array_equal(pooled["informative"], [False, True])


def test_audio_maps_are_flagged_the_same_way():
    clips = span_tone_clips(2)
    config = AudioConfig(spectrogram=SpectrogramConfig(sample_rate=SOUND_RATE, n_fft=256, hop_length=128, n_mels=32),
                         explainer=daxjax.RISEConfig(num_samples=64, cells=4))
    with pytest.warns(UninformativeWarning, match=r"2 of 2 maps .* clips at positions \[0, 1\]"):
        flat = explain_audio(constant_box, clips, SOUND_RATE, method="rise", config=config)
    assert not flat.diagnostics["informative"].any()
    with warnings.catch_warnings():
        warnings.simplefilter("error", UninformativeWarning)
        heard = explain_audio(span_energy_box, clips, SOUND_RATE, method="rise", config=config, targets=1)
    assert heard.diagnostics["informative"].all()


# -- the dataset store, the CLI, the report -----------------------------------------------------

def write_pngs(folder: Path, images: np.ndarray) -> Path:
    folder.mkdir()
    for i, image in enumerate(images):
        Image.fromarray((image * 255).round().astype(np.uint8)).save(folder / f"scene{i}.png")
    return folder


@pytest.mark.parametrize("method", METHODS)
def test_the_flag_survives_the_store(method, tmp_path):
    folder = write_pngs(tmp_path / "images", mixed_scenes())
    with pytest.warns(UninformativeWarning, match=r"1 of 3 maps .* ids \['scene1.png'\]"):
        summary = daxjax.explain_dataset(red_fraction_box, folder, tmp_path / "out", method=method,
                                         config=CONFIGS[method], targets={f"scene{i}.png": 1 for i in range(3)},
                                         batch_size=3, workers=0, progress=False)
    res = daxjax.load_results(tmp_path / "out")
    assert res.ids == ["scene0.png", "scene1.png", "scene2.png"]
    np.testing.assert_array_equal(res.diagnostics["informative"], [True, False, True])
    assert res.diagnostics["answer_spread"][1] == 0.0 and (res.diagnostics["answer_spread"][[0, 2]] > 0.01).all()
    assert not res.trusted[1]
    assert summary.uninformative == 1 and summary.untrusted == int((~res.trusted).sum())


def constant_onnx(path: Path) -> Path:
    """An ONNX model NCHW [N, 3, 32, 32] -> probabilities [N, 2] = (0.3, 0.7) whatever the input."""
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Flatten", ["x"], ["flat"]),
         helper.make_node("Gemm", ["flat", "w", "b"], ["probs"])],
        "constant", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, SIZE, SIZE])],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["N", 2])],
        [helper.make_tensor("w", TensorProto.FLOAT, [3 * SIZE * SIZE, 2], np.zeros(3 * SIZE * SIZE * 2)),
         helper.make_tensor("b", TensorProto.FLOAT, [2], [0.3, 0.7])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), path)
    return path


def test_the_cli_summary_counts_uninformative_maps(tmp_path, capsys):
    from daxjax.cli import main

    folder = write_pngs(tmp_path / "images", mixed_scenes())
    model = constant_onnx(tmp_path / "constant.onnx")
    with pytest.warns(UninformativeWarning):
        code = main(["explain", "--model", str(model), "--layout", "NCHW", "--output", "probs", "--images",
                     str(folder), "--out", str(tmp_path / "out"), "--method", "rise", "--num-samples", "32",
                     "--workers", "0", "--no-progress"])
    err = capsys.readouterr().err
    assert code == 0, err
    assert "3 explained (3 flagged untrusted, 3 of them uninformative: the black box's answer did not change" in err


def test_the_report_says_uninformative(tmp_path):
    images = mixed_scenes()
    ex, _ = explain_quietly(red_fraction_box, images, "dax", targets=1)
    text = daxjax.write_report(tmp_path, images, {"DAX": ex}).read_text(encoding="utf-8")
    notes = re.findall(r'<span class="untrusted">([^<]*)</span>', text)
    uninformative = [note for note in notes if note.startswith("uninformative:")]
    assert len(uninformative) == 1, notes
    assert "did not change under perturbation" in uninformative[0]


# -- non-finite answers: an error naming the image, whatever the adapter ------------------------

def nan_on_zero_onnx(path: Path) -> Path:
    """An ONNX model NCHW [N, 3, 32, 32] -> logits [N, 2]; NaN for images with a pixel below 0.01
    (a zero-filled perturbation): sqrt(min(x) - 0.01)."""
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("ReduceMin", ["x"], ["low"], axes=[1, 2, 3], keepdims=1),
         helper.make_node("Sub", ["low", "eps"], ["shifted"]),
         helper.make_node("Sqrt", ["shifted"], ["root"]),
         helper.make_node("Reshape", ["root", "column"], ["col"]),
         helper.make_node("Mul", ["col", "signs"], ["logits"])],
        "nan_on_zero", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, SIZE, SIZE])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 2])],
        [helper.make_tensor("eps", TensorProto.FLOAT, [], [0.01]),
         helper.make_tensor("column", TensorProto.INT64, [2], [-1, 1]),
         helper.make_tensor("signs", TensorProto.FLOAT, [1, 2], [1.0, -1.0])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), path)
    return path


def test_nan_answers_of_an_onnx_model_name_the_image(tmp_path):
    bb = OnnxBlackBox(nan_on_zero_onnx(tmp_path / "nan.onnx"), layout="NCHW", output="logits")
    images = np.clip(mixed_scenes(), 0.2, 0.8)  # no pixel near zero: the unperturbed answers are finite
    images[1, :4, :4] = 0.0  # image 1 already shows zero pixels: NaN on its unperturbed answer
    with pytest.raises(BlackBoxError, match=r"NaN or inf logits: row 1 "):
        daxjax.explain(bb, images, method="rise", config=CONFIGS["rise"])
    with pytest.raises(BlackBoxError, match=r"NaN.*image\(s\) \[0, 1\]"):
        daxjax.explain(bb, images[[0, 2]], method="rise", config=CONFIGS["rise"])


def test_nan_answers_of_a_jax_black_box_are_errors_on_every_entry_point(tmp_path):
    """A JaxBlackBox answering NaN for one image: explain names the image, the dataset pipeline makes
    it an error row and explains the others (NaN during the queries: tests/test_query_paths.py)."""
    tag = 250 / 255  # green 250 at pixel (0, 0): no scene has it there, and PNG keeps it exactly

    def nan_on_tagged(x):
        probs = jnp.stack([x.mean((1, 2, 3)), 1 - x.mean((1, 2, 3))], axis=1)
        return jnp.where((jnp.abs(x[:, 0, 0, 1] - tag) < 1e-6)[:, None], jnp.nan, probs)

    bb = JaxBlackBox(nan_on_tagged, 2)
    images = mixed_scenes()
    images[1, 0, 0, 1] = tag
    with pytest.raises(BlackBoxError, match=r"NaN or inf.*row 1 "):
        daxjax.explain(bb, images, method="rise", config=CONFIGS["rise"])
    folder = write_pngs(tmp_path / "images", images)
    summary = daxjax.explain_dataset(bb, folder, tmp_path / "out", method="rise", config=CONFIGS["rise"],
                                     batch_size=3, workers=0, progress=False)
    res = daxjax.load_results(tmp_path / "out")
    assert summary.errors == 1 and res.ids == ["scene0.png", "scene2.png"]
    assert "NaN or inf" in res.errors["scene1.png"], res.errors
