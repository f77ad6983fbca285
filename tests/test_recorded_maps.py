"""Maps recorded from the engines, to hold a refactoring to its word: the same inputs give the same maps.

The recorded values (tests/data/recorded_maps.npz) were made by `record()` below on the commit
before the house-plan refactoring (issue 21). A test fails when an engine's maps (or DAX's
diagnostics) move by more than round-off. Regenerate only on purpose, for a change that is meant to
alter the maps: `python tests/test_recorded_maps.py --write`, and say why in the commit.
"""

import sys
from pathlib import Path

import numpy as np
import pytest

import daxjax
from planted import red_and_distractor_scene, red_fraction_box

RECORDED = Path(__file__).parent / "data" / "recorded_maps.npz"


def _images() -> np.ndarray:
    return np.stack([red_and_distractor_scene(seed, size=48)[0] for seed in (3, 4)])


def _cases() -> dict:
    """name -> (method, config). Small budgets: the point is equality, not quality."""
    return {
        "lime": ("lime", daxjax.LIMEConfig(num_samples=200)),
        "lime_grid_signed": ("lime", daxjax.LIMEConfig(num_samples=150, segmentation="grid", fill="image_mean",
                                                       positive_only=False)),
        "kernelshap": ("kernelshap", daxjax.KernelSHAPConfig(num_samples=200)),
        "kernelshap_grid_signed": ("kernelshap", daxjax.KernelSHAPConfig(num_samples=150, segmentation="grid",
                                                                         fill="zero", positive_only=False)),
        "rise": ("rise", daxjax.RISEConfig(num_samples=200)),
        "occlusion": ("occlusion", daxjax.OcclusionConfig(window=12, stride=6)),
        # Recorded under the map rule of the time (the mask's grid x effects^0.1); the default since
        # 2026-12-05 paints the same training as the mask's mean per segment: "dax_segment_means".
        # Both with the image-mean fill, the default when they were recorded; "dax_auto" has today's.
        "dax": ("dax", daxjax.DAXConfig(num_samples=300, steps=60, validations=3, map_on_segments=False,
                                        fill="image_mean")),
        "dax_segment_means": ("dax", daxjax.DAXConfig(num_samples=300, steps=60, validations=3, map_on_segments=True,
                                                      fill="image_mean")),
        "dax_auto": ("dax", daxjax.DAXConfig(num_samples=300, steps=60, validations=3, fill="auto")),
        "dax_image_student": ("dax", daxjax.DAXConfig.paper_v2(num_samples=200, resolution=16, mask_channels=4,
                                                               student_channels=(4, 8), student_hidden=8,
                                                               epochs=2, minibatch_size=32)),
    }


def _explain(name: str):
    method, config = _cases()[name]
    return daxjax.explain(red_fraction_box, _images(), targets=1, method=method, config=config, seed=7)


def record(names=None) -> dict[str, np.ndarray]:
    arrays = {}
    for name in names or _cases():
        ex = _explain(name)
        arrays[f"{name}/maps"] = ex.maps
        for key, value in ex.diagnostics.items():
            arrays[f"{name}/diagnostics/{key}"] = np.asarray(value)
    return arrays


@pytest.fixture(scope="module")
def recorded():
    with np.load(RECORDED) as data:
        return dict(data)


@pytest.mark.parametrize("name", ["lime", "lime_grid_signed", "kernelshap", "kernelshap_grid_signed"])
def test_lime_and_kernelshap_maps_are_the_recorded_ones(recorded, name):
    np.testing.assert_allclose(_explain(name).maps, recorded[f"{name}/maps"], atol=1e-5, rtol=0)


@pytest.mark.parametrize("name", ["rise", "occlusion"])
def test_rise_and_occlusion_maps_are_the_recorded_ones(recorded, name):
    np.testing.assert_allclose(_explain(name).maps, recorded[f"{name}/maps"], atol=1e-5, rtol=0)


@pytest.mark.parametrize("name", ["dax", "dax_segment_means", "dax_image_student", "dax_auto"])
def test_dax_maps_and_diagnostics_are_the_recorded_ones(recorded, name):
    ex = _explain(name)
    np.testing.assert_allclose(ex.maps, recorded[f"{name}/maps"], atol=1e-6, rtol=0)
    names = sorted(key.split("/")[-1] for key in recorded if key.startswith(f"{name}/diagnostics/"))
    # Recorded before the answer diagnostics every query-only method has (tests/test_uninformative.py)
    # and before fill_choice: DAX's own ones must match; those are compared when a recording holds them.
    answer = {"answer_spread", "informative", "fill_choice"}
    assert sorted(set(names) - answer) == sorted(set(ex.diagnostics) - answer)
    for key in names:
        np.testing.assert_allclose(np.asarray(ex.diagnostics[key], np.float64),
                                   recorded[f"{name}/diagnostics/{key}"].astype(np.float64), atol=1e-6, rtol=0)


if __name__ == "__main__":
    if "--write" not in sys.argv:
        sys.exit("usage: python tests/test_recorded_maps.py --write [case ...]   (records the current engines' maps; "
                 "of the named cases only, the others kept, when cases are named)")
    RECORDED.parent.mkdir(exist_ok=True)
    only = [a for a in sys.argv[1:] if a != "--write"]  # case names: add (or redo) only these
    kept = {}
    if only and RECORDED.is_file():
        with np.load(RECORDED) as data:
            kept = {key: data[key] for key in data.files if key.split("/")[0] not in only}
    np.savez_compressed(RECORDED, **kept, **record(only or None))
    print(f"wrote {RECORDED}")
