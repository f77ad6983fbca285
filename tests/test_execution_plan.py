"""Planning an `Execution` from the black box's measured call rate and a memory budget
(`daxjax.device.execution.plan_execution`), and the dataset pipeline's plan taking the same rates."""

import numpy as np
import pytest

import daxjax
from daxjax.dataset.budget import plan_batches
from daxjax.device import execution as ex
from planted import red_and_distractor_scene, red_fraction_box

IMAGE = (224, 224, 3)
INPUT_BYTES = 4 * 224 * 224 * 3
#: A black box whose rate (inputs/s) rises to a plateau at 64-256 inputs per call, then falls.
RATES = {16: 0.10, 64: 0.30, 256: 1.20, 1024: 6.0}


def test_the_call_size_is_the_smallest_about_as_fast_as_the_fastest():
    assert ex.call_size_from_rates(RATES, INPUT_BYTES, 2**40) == 64  # 213/s at 64 and 256, 160/s at 16
    assert ex.call_size_from_rates({16: 0.1, 64: 0.2, 256: 0.5}, INPUT_BYTES, 2**40) == 256  # still rising


def test_the_call_size_fits_the_memory():
    limit = 100 * ex.QUERY_COPIES * INPUT_BYTES  # room for 100 inputs in flight
    assert ex.call_size_from_rates({256: 0.5, 1024: 1.0}, INPUT_BYTES, limit) == 100  # no measured size fits
    assert ex.call_size_from_rates({16: 0.2, 64: 0.5, 256: 0.5}, INPUT_BYTES, limit) == 64
    with pytest.raises(ValueError, match="does not fit"):
        ex.call_size_from_rates(RATES, INPUT_BYTES, INPUT_BYTES)
    with pytest.raises(ValueError):
        ex.call_size_from_rates({}, INPUT_BYTES, 2**40)
    with pytest.raises(ValueError):
        ex.call_size_from_rates({64: 0.0}, INPUT_BYTES, 2**40)


def test_images_per_group_come_from_the_rest_of_the_budget_and_the_backend():
    per_image = 4 * 224 * 224 * 7 + 10**6
    budget = 2 * ex.QUERY_COPIES * 64 * INPUT_BYTES + 5 * per_image  # the calls' half, then 5 images
    plan = ex.plan_execution("gpu", budget, RATES, 10**6, IMAGE)
    assert plan == daxjax.Execution(images_per_group=(budget - ex.QUERY_COPIES * 64 * INPUT_BYTES) // per_image,
                                    queries_per_call=64)
    assert plan.images_per_group >= 5
    assert ex.plan_execution("cpu", 2**36, RATES, 10**6, IMAGE).images_per_group == ex.max_images_per_group("cpu")
    assert ex.plan_execution("gpu", 2**36, RATES, 10**6, IMAGE).images_per_group == ex.max_images_per_group("gpu")
    assert ex.plan_execution("gpu", 2**36, RATES, 10**6, IMAGE, images=3).images_per_group == 3
    with pytest.raises(ValueError, match="memory budget too small"):
        ex.plan_execution("cpu", 2 * ex.QUERY_COPIES * INPUT_BYTES, {1: 0.01}, 10**9, IMAGE)


def test_measured_seconds_per_call_size():
    sizes = []

    def bb(x):
        sizes.append(len(x))
        return np.full((len(x), 2), 0.5, np.float32)

    seconds = ex.measure_call_seconds(bb, (8, 8, 3), sizes=(4, 2), repeats=2)
    assert sorted(seconds) == [2, 4] and all(s > 0 for s in seconds.values())
    assert sizes == [2, 2, 2, 4, 4, 4]  # one untimed call per size, then the timed ones


def test_the_dataset_plan_takes_the_measured_call_size():
    config = daxjax.RISEConfig(num_samples=1000)
    kwargs = dict(devices=1, num_images=64, device_budget=2**32, host_budget=2**32, max_batch=4)
    measured = plan_batches(config, *IMAGE, call_seconds=RATES, **kwargs)
    assert (measured.batch, measured.query_chunk) == (4, 64 // 4)
    assert plan_batches(config, *IMAGE, **kwargs).query_chunk == ex.call_inputs(224 * 224 * 3) // 4
    given = plan_batches(config, *IMAGE, call_seconds=RATES, queries_per_call=8, **kwargs)
    assert given.query_chunk == 2  # the caller's queries_per_call wins over the measurement


def test_a_planned_execution_changes_no_map():
    images = np.stack([red_and_distractor_scene(seed, 24)[0] for seed in range(3)])
    config = daxjax.RISEConfig(num_samples=40, cells=4)
    seconds = ex.measure_call_seconds(red_fraction_box, (24, 24, 3), sizes=(2, 8), repeats=1)
    plan = ex.plan_execution("cpu", 2**20, seconds, 0, (24, 24, 3))
    assert plan.queries_per_call in (2, 8)  # not the default 256: the plan is used
    planned = daxjax.explain(red_fraction_box, images, targets=1, method="rise", config=config, execution=plan)
    default = daxjax.explain(red_fraction_box, images, targets=1, method="rise", config=config)
    np.testing.assert_allclose(planned.maps, default.maps, atol=1e-5)
