"""Execution settings (`daxjax.Execution`) live outside the method configs and never change a map.

The determinism contract says a map depends only on the image, the target, the seed and the config;
images per group, inputs per black-box call and rows per DAX training step are not in the config,
so here every method gives the same maps under different `Execution`s (the contract's tolerance,
as in tests/test_dax.py and tests/test_baselines.py).
"""

import dataclasses
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import daxjax
from blackbox_adapters import JaxBlackBox
from daxjax.dataset.store import current_config_record
from daxjax.device import execution as ex_module
from daxjax.methods.registry import REGISTRY
from planted import red_and_distractor_scene, red_fraction_box

SIZE = 24
TINY_DAX = dict(num_samples=64, steps=30, minibatch_size=16, resolution=16, mask_cells=4, segmentation="grid",
                mask_channels=4, student_channels=(4, 4), student_hidden=8)
CASES = {
    "dax": ("dax", daxjax.DAXConfig(**TINY_DAX)),
    "dax_image_student": ("dax", daxjax.DAXConfig(**TINY_DAX, student="image", target="probability")),
    "rise": ("rise", daxjax.RISEConfig(num_samples=40, cells=4)),
    "lime": ("lime", daxjax.LIMEConfig(num_samples=40, segmentation="grid")),
    "kernelshap": ("kernelshap", daxjax.KernelSHAPConfig(num_samples=40, segmentation="grid")),
    "occlusion": ("occlusion", daxjax.OcclusionConfig(window=8, stride=4)),
    "gradient": ("gradient", daxjax.GradientConfig()),
    "input_x_gradient": ("input_x_gradient", daxjax.InputXGradientConfig()),
    "smoothgrad": ("smoothgrad", daxjax.SmoothGradConfig(num_samples=4, sample_chunk=2)),
    "integrated_gradients": ("integrated_gradients", daxjax.IntegratedGradientsConfig(steps=4, sample_chunk=2)),
}
#: Against the defaults (both images in one group, the CPU's 256 inputs per call): one image per
#: group, and 6 inputs per call (3 perturbations per image per call).
EXECUTIONS = [daxjax.Execution(images_per_group=1), daxjax.Execution(queries_per_call=6)]
#: DAX also trains its rows (images x restarts) the other way than the backend's default: one row at
#: a time against all rows vectorised (the image student goes one at a time on a CPU, the segment
#: student all at once; accelerators all at once).
DAX_ROWS = {"dax": 1, "dax_image_student": 2}


def smooth_red(x):
    redness = jax.nn.sigmoid(10.0 * (x[..., 0] - x[..., 1] - x[..., 2] - 0.8))
    p1 = jax.nn.sigmoid(40.0 * (redness.reshape(x.shape[0], -1).mean(axis=1) - 0.03))
    return jnp.stack([1.0 - p1, p1], axis=1)


def images(count=2):
    return np.stack([red_and_distractor_scene(seed, SIZE)[0] for seed in range(count)])


def test_every_method_is_covered():
    assert {method for method, _ in CASES.values()} == set(REGISTRY)


@pytest.mark.parametrize("case", list(CASES))
def test_maps_do_not_depend_on_the_execution(case):
    method, config = CASES[case]
    bb = red_fraction_box if REGISTRY[method].query_only else JaxBlackBox(smooth_red, 2)
    x = images()

    def explain(execution):
        return daxjax.explain(bb, x, targets=1, method=method, config=config, seed=3, execution=execution)

    reference = explain(None)
    default = reference.maps
    assert default.std() > 0.01  # the maps are not trivially equal
    executions = EXECUTIONS
    if case == "dax":
        executions = [EXECUTIONS[0], EXECUTIONS[1].replace(rows_per_step=DAX_ROWS[case])]
    elif case in DAX_ROWS:  # the groups are DAX's own code, covered above; here the rows (one compile less)
        executions = [EXECUTIONS[1].replace(rows_per_step=DAX_ROWS[case])]
    for execution in executions:
        ex = explain(execution)
        np.testing.assert_allclose(ex.maps, default, atol=1e-5, err_msg=str(execution))
        for name, value in reference.diagnostics.items():  # DAX's: held-out fit, mask area, ...
            np.testing.assert_allclose(np.asarray(ex.diagnostics[name], np.float64), np.asarray(value, np.float64),
                                       atol=1e-5, err_msg=f"{name}, {execution}")


def test_execution_decides_the_group_and_the_call_size():
    calls = []

    def recording_box(x):
        calls.append(len(x))
        return red_fraction_box(x)

    config = daxjax.RISEConfig(num_samples=40, cells=4)
    daxjax.explain(recording_box, images(3), targets=1, method="rise", config=config,
                   execution=daxjax.Execution(images_per_group=2, queries_per_call=10))
    # The unperturbed images, then a group of 2 images x 5 masks per call, then 1 image x 10 masks.
    assert calls[0] == 3 and set(calls[1:]) == {10}
    assert len(calls) == 1 + 40 // 5 + 40 // 10


def test_rows_per_step_follows_the_backend_unless_given():
    assert ex_module.rows_per_step(daxjax.Execution(rows_per_step=3), image_student=True) == 3
    assert ex_module.rows_per_step(None, image_student=False) is None
    assert ex_module.rows_per_step(None, image_student=True) == (1 if jax.default_backend() == "cpu" else None)
    assert ex_module.images_per_group(None) == ex_module.IMAGES_PER_GROUP
    assert ex_module.query_chunk(daxjax.Execution(queries_per_call=100), 8, 3) == 12
    assert ex_module.query_chunk(None, 4, 32 * 32 * 3) == ex_module.call_inputs(32 * 32 * 3) // 4


@pytest.mark.parametrize("config_type", sorted({m.config_type for m in REGISTRY.values()}, key=lambda t: t.__name__))
def test_configs_hold_no_execution_fields_and_ignore_the_old_ones(config_type):
    names = {field.name for field in dataclasses.fields(config_type)}
    assert not names & {"image_batch", "query_chunk", "vmap_width", "images_per_group", "queries_per_call"}
    old = {"image_batch": 4} if config_type in (daxjax.GradientConfig, daxjax.InputXGradientConfig,
                                                daxjax.SmoothGradConfig, daxjax.IntegratedGradientsConfig) \
        else {"image_batch": 4, "query_chunk": 8}
    with pytest.warns(DeprecationWarning, match=r"ignored.*execution=daxjax\.Execution"):
        config = config_type(**old)
    assert config == config_type()


def test_dax_minibatch_has_its_own_name_and_the_old_one_still_works():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert daxjax.DAXConfig(minibatch_size=32).minibatch_size == 32
    with pytest.warns(DeprecationWarning, match="minibatch_size"):
        old = daxjax.DAXConfig(batch_size=32)
    assert old == daxjax.DAXConfig(minibatch_size=32)
    with pytest.warns(DeprecationWarning, match="minibatch_size"):
        assert daxjax.DAXConfig().replace(batch_size=64).minibatch_size == 64
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # replace() does not bring the old name back
        assert daxjax.DAXConfig(minibatch_size=32).replace(epochs=2).minibatch_size == 32


def test_a_store_made_with_the_old_fields_reads_as_today():
    old = {"num_samples": 64, "batch_size": 16, "query_chunk": None, "image_batch": 16, "vmap_width": None}
    assert current_config_record(old) == {"num_samples": 64, "minibatch_size": 16}


def test_bad_executions_are_refused():
    with pytest.raises(ValueError, match=r"Execution\.images_per_group must be None or >= 1"):
        daxjax.Execution(images_per_group=0)
    with pytest.raises(TypeError, match="daxjax.Execution"):
        daxjax.explain(red_fraction_box, images(), method="rise", execution={"images_per_group": 2})


def test_explain_dataset_takes_the_group_size_once(tmp_path):
    with pytest.raises(daxjax.InputError, match="same setting"):
        daxjax.explain_dataset(red_fraction_box, images(), tmp_path / "out", method="rise", batch_size=2,
                               execution=daxjax.Execution(images_per_group=3), progress=False, workers=0)
