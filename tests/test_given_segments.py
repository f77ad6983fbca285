"""Segments from any segmenter (the paper's V3): a callable `segmentation=`, label maps given to
`explain(..., segments=)` and `explain_dataset(..., segments=)`, their checks, and the determinism
contract with them."""

import json

import numpy as np
import pytest
from PIL import Image
from skimage.segmentation import slic

import daxjax
from daxjax import DAXConfig, InputError, KernelSHAPConfig, LIMEConfig
from daxjax.segmentation import grid_segments, resize_label_map, segment_images
from daxjax.sources import read_image
from planted import red_and_distractor_scene, red_fraction_box

SIZE = 32
# Tiny configs: what is tested is which segments are used, not the quality of the maps.
CONFIGS = {
    "dax": DAXConfig(num_samples=96, steps=3, minibatch_size=32, resolution=16, mask_cells=4, restarts=1,
                     mask_channels=4, student_channels=(4, 4), student_hidden=8, segmentation="grid"),
    "lime": LIMEConfig(num_samples=64, segmentation="grid"),
    "kernelshap": KernelSHAPConfig(num_samples=64, segmentation="grid"),
}


def scenes(count: int, size: int = SIZE) -> np.ndarray:
    """float32 [count, size, size, 3]: textured scenes with a red square (the planted cause)."""
    return np.stack([red_and_distractor_scene(s, size)[0] for s in range(count)])


def grids(cells, size: int = SIZE) -> np.ndarray:
    """One grid label map per entry of `cells`, int32 [len(cells), size, size] (segment counts differ)."""
    return np.stack([grid_segments(size, size, c) for c in cells])


def slic_segmenter(image, **options):
    """scikit-image's slic with the options daxjax's "slic" uses, as a user would pass it."""
    return slic(image, **{"n_segments": 50, "compactness": 10, "start_label": 0, **options}, channel_axis=-1)


def stripes(image):
    """Four vertical stripes, labelled 10, 20, 30, 40 (relabelled to 0..3 by daxjax)."""
    return np.broadcast_to((np.arange(image.shape[1]) * 4 // image.shape[1] + 1) * 10, image.shape[:2]).copy()


# -- a callable segmenter --------------------------------------------------------------------------


@pytest.mark.parametrize("options", [None, {"n_segments": 12, "compactness": 5}])
def test_a_callable_slic_gives_the_segments_and_maps_of_the_slic_name(options):
    images = scenes(3)
    named = segment_images(images, "slic", options=options)
    called = segment_images(images, slic_segmenter, options=options)
    np.testing.assert_array_equal(called.segments, named.segments)
    np.testing.assert_array_equal(called.num_segments, named.num_segments)
    by_name = LIMEConfig(num_samples=64, segmentation="slic", segmentation_options=options)
    ex_name = daxjax.explain(red_fraction_box, images, method="lime", config=by_name)
    ex_call = daxjax.explain(red_fraction_box, images, method="lime",
                             config=by_name.replace(segmentation=slic_segmenter))
    np.testing.assert_array_equal(ex_call.maps, ex_name.maps)


def test_the_callables_segments_are_the_ones_perturbed():
    images = scenes(2)
    for method in ("lime", "kernelshap"):
        ex = daxjax.explain(red_fraction_box, images, method=method,
                            config=CONFIGS[method].replace(segmentation=stripes))
        # A segment-space map is constant on each of the callable's four stripes, and differs between them.
        for b in range(2):
            columns = ex.maps[b].reshape(SIZE, 4, SIZE // 4)
            assert np.ptp(columns, axis=(0, 2)).max() == 0.0
            assert np.ptp(columns[0, :, 0]) > 0.0
    # DAX on the callable's segments is DAX on the same maps given as label maps.
    config = CONFIGS["dax"]
    called = daxjax.explain(red_fraction_box, images, config=config.replace(segmentation=stripes))
    given = daxjax.explain(red_fraction_box, images, config=config, segments=np.stack([stripes(i) for i in images]))
    np.testing.assert_array_equal(called.maps, given.maps)


def test_paper_v3_is_paper_v2_on_the_given_segmenter():
    config = DAXConfig.paper_v3(slic_segmenter, num_samples=500)
    assert config == DAXConfig.paper_v2(segmentation=slic_segmenter, num_samples=500)
    assert config.segmentation is slic_segmenter and config.variant == "v2" and config.lambda_area == 0.0
    assert hash(config) == hash(DAXConfig.paper_v2(segmentation=slic_segmenter, num_samples=500))
    # The segmenter acts before training: the compiled programs' cache key does not hold it.
    assert config.program_key() == DAXConfig.paper_v2(num_samples=500).program_key()


# -- the determinism contract with label maps --------------------------------------------------


@pytest.mark.parametrize("method", ["dax", "lime", "kernelshap"])
def test_an_images_map_with_label_maps_does_not_depend_on_its_batch(method):
    images = scenes(3)
    labels = grids([3, 8, 5])  # 9, 64 and 25 segments: S_max is 16 alone, 64 in the batch
    config = CONFIGS[method]
    alone = daxjax.explain(red_fraction_box, images[2:], method=method, config=config, seed=4,
                           segments=labels[2:]).maps[0]
    batch = daxjax.explain(red_fraction_box, images, method=method, config=config, seed=4, segments=labels).maps[2]
    np.testing.assert_allclose(batch, alone, atol=1e-5)
    if method != "dax":  # DAX compiles per S_max; two more shapes would double this test's time
        reordered = daxjax.explain(red_fraction_box, images[::-1], method=method, config=config, seed=4,
                                   segments=labels[::-1]).maps[0]
        np.testing.assert_allclose(reordered, alone, atol=1e-5)
    # ... but it does depend on its own label map.
    other = daxjax.explain(red_fraction_box, images[2:], method=method, config=config, seed=4,
                           segments=labels[1:2]).maps[0]
    assert np.abs(other - alone).max() > 1e-3


# -- checks ----------------------------------------------------------------------------------


def _with_map_1(map_1) -> np.ndarray:
    labels = list(grids([4, 4, 4]))
    labels[1] = map_1
    return labels


def _raises(image):
    raise RuntimeError("no SAM weights here")


@pytest.mark.parametrize("segments, message", [
    (grids([4, 4, 4], size=SIZE + 1), r"label map of image 0 has shape \(33, 33\); it must be \[H, W\] = \(32, 32\)"),
    (grids([4, 4, 4])[..., None], r"segments must be label maps int \[B, H, W\] = \[3, 32, 32\]"),
    (grids([4, 4]), r"one per image; got shape \[2, 32, 32\]"),
    (grids([4, 4, 4]).astype(np.float32), "segments has dtype float32; label maps must hold integer"),
    (np.stack(_with_map_1(grid_segments(SIZE, SIZE, 4) - 1)), "label map of image 1 has negative labels"),
    (np.stack(_with_map_1(np.full((SIZE, SIZE), 7))), "label map of image 1 has a single segment"),
    (np.stack(_with_map_1(np.arange(SIZE * SIZE).reshape(SIZE, SIZE) // 8)),
     "label map of image 1 has 128 segments, more than 64"),
])
def test_bad_label_maps_are_errors_naming_the_image(segments, message):
    with pytest.raises(InputError, match=message):
        daxjax.explain(red_fraction_box, scenes(3), method="lime", config=CONFIGS["lime"], segments=segments)


@pytest.mark.parametrize("segmenter, message", [
    (_raises, "segmenter test_given_segments._raises failed on image 0: RuntimeError: no SAM weights here"),
    (lambda image: np.zeros(image.shape[:2], np.int64), "gave for image 0 has a single segment"),
    (lambda image: stripes(image)[:-1], r"gave for image 0 has shape \(31, 32\)"),
    (lambda image: stripes(image) / 10, "gave for image 0 has dtype float64"),
])
def test_a_failing_or_bad_segmenter_is_an_error_naming_the_image(segmenter, message):
    with pytest.raises(InputError, match=message):
        daxjax.explain(red_fraction_box, scenes(2), method="kernelshap",
                       config=CONFIGS["kernelshap"].replace(segmentation=segmenter))


@pytest.mark.parametrize("method", ["rise", "occlusion"])
def test_label_maps_for_a_method_without_segments_are_refused(method):
    with pytest.raises(InputError, match=f"method='{method}' does not perturb segments"):
        daxjax.explain(red_fraction_box, scenes(2), method=method, segments=grids([4, 4]))


class _Unhashable:
    __hash__ = None  # as a class that defines __eq__ but not __hash__

    def __call__(self, image):
        return stripes(image)


@pytest.mark.parametrize("make", [DAXConfig, LIMEConfig, KernelSHAPConfig])
def test_a_segmentation_neither_named_nor_callable_is_refused_naming_the_field(make):
    name = make.__name__
    for value in ("sam", 3, None):
        with pytest.raises(ValueError, match=rf"{name}\.segmentation=.* is not one of \('quickshift'.* or a callable"):
            make(segmentation=value)
    with pytest.raises(ValueError, match=rf"{name}\.segmentation: the segmenter .* is not hashable"):
        make(segmentation=_Unhashable())


# -- label maps from a second source, through explain_dataset -----------------------------------


def test_label_maps_from_npy_files_match_the_images_by_id(tmp_path):
    images = (scenes(4) * 255).astype(np.uint8)
    labels = grids([3, 5, 8, 4])
    for i, (image, label) in enumerate(zip(images, labels)):
        (tmp_path / "images" / "sub").mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(tmp_path / "images" / "sub" / f"img{i}.png")
        (tmp_path / "labels" / "sub").mkdir(parents=True, exist_ok=True)
        if i != 3:  # image 3 has no label map
            np.save(tmp_path / "labels" / "sub" / f"img{i}.npy", label)
    np.save(tmp_path / "labels" / "sub" / "img1.npy", np.full((SIZE, SIZE), 5))  # a single segment
    config = CONFIGS["lime"]
    summary = daxjax.explain_dataset(red_fraction_box, tmp_path / "images", tmp_path / "out", method="lime",
                                     config=config, segments=tmp_path / "labels", batch_size=2, workers=1,
                                     progress=False)
    res = daxjax.load_results(tmp_path / "out")
    assert (summary.explained, summary.errors) == (2, 2)
    assert res.ids == ["sub/img0.png", "sub/img2.png"]
    assert "label map of image 'sub/img1.png' has a single segment" in res.errors["sub/img1.png"]
    assert "no label map for this image" in res.errors["sub/img3.png"]
    ref = daxjax.explain(red_fraction_box, images[[0, 2]], method="lime", config=config, segments=labels[[0, 2]])
    np.testing.assert_allclose(res.maps, ref.maps, atol=1e-5)
    meta = json.loads((tmp_path / "out" / "meta.json").read_text())
    assert meta["config"]["segmentation"].startswith("label maps from directory")


def test_label_maps_from_an_npz_in_input_order_are_resized_with_their_images(tmp_path):
    images = (scenes(3) * 255).astype(np.uint8)
    labels = grids([3, 5, 4])
    np.savez(tmp_path / "labels.npz", segments=labels)
    config = CONFIGS["kernelshap"]
    daxjax.explain_dataset(red_fraction_box, images, tmp_path / "out", method="kernelshap", config=config,
                           segments=f"{tmp_path / 'labels.npz'}:segments", size=24, workers=0, progress=False)
    res = daxjax.load_results(tmp_path / "out")
    assert res.ids == ["0", "1", "2"] and not res.errors
    resized = np.stack([read_image(image, (24, 24), 3) for image in images])
    ref = daxjax.explain(red_fraction_box, resized, method="kernelshap", config=config,
                         segments=np.stack([resize_label_map(m, (24, 24)) for m in labels]))
    np.testing.assert_allclose(res.maps, ref.maps, atol=1e-5)


def test_resize_label_map_samples_pixel_centres():
    labels = np.arange(36).reshape(6, 6)
    # Output pixel centres 1.5 and 4.5 (in input pixels) fall in input rows and columns 1 and 4.
    np.testing.assert_array_equal(resize_label_map(labels, (2, 2)), [[7, 10], [25, 28]])
    np.testing.assert_array_equal(resize_label_map(labels, (12, 18))[::2, ::3], labels)


def test_explain_dataset_refuses_unusable_label_sources_or_segmenters(tmp_path):
    images = (scenes(2) * 255).astype(np.uint8)
    run = dict(batch_size=2, progress=False)
    with pytest.raises(InputError, match="method='rise' does not perturb segments"):
        daxjax.explain_dataset(red_fraction_box, images, tmp_path / "a", method="rise", segments=grids([4, 4]),
                               workers=0, **run)
    (tmp_path / "labels").mkdir()
    np.save(tmp_path / "labels" / "other.npy", grid_segments(SIZE, SIZE, 4))
    with pytest.raises(InputError, match="has no label map for the first image '0', looked up as '0'"):
        daxjax.explain_dataset(red_fraction_box, images, tmp_path / "b", method="lime", config=CONFIGS["lime"],
                               segments=tmp_path / "labels", workers=0, **run)
    with pytest.raises(InputError, match="cannot be sent to worker processes"):
        daxjax.explain_dataset(red_fraction_box, images, tmp_path / "c", method="lime", workers=1,
                               config=CONFIGS["lime"].replace(segmentation=lambda image: stripes(image)), **run)


def test_a_callable_segmenter_runs_in_explain_dataset_and_is_recorded_by_name(tmp_path):
    images = (scenes(2) * 255).astype(np.uint8)
    config = CONFIGS["lime"].replace(segmentation=stripes)
    daxjax.explain_dataset(red_fraction_box, images, tmp_path / "out", method="lime", config=config, workers=0,
                           progress=False)
    res = daxjax.load_results(tmp_path / "out")
    ref = daxjax.explain(red_fraction_box, images, method="lime", config=config)
    np.testing.assert_allclose(res.maps, ref.maps, atol=1e-5)
    meta = json.loads((tmp_path / "out" / "meta.json").read_text())
    assert meta["config"]["segmentation"] == "callable test_given_segments.stripes"


def test_the_cli_takes_label_maps_with_segments(tmp_path, capsys):
    from blackbox_adapters import bundled_model_path
    from daxjax.cli import main

    images = (scenes(2) * 255).astype(np.uint8)
    (tmp_path / "images").mkdir()
    (tmp_path / "labels").mkdir()
    for i, image in enumerate(images):
        Image.fromarray(image).save(tmp_path / "images" / f"s{i}.png")
        np.save(tmp_path / "labels" / f"s{i}.npy", stripes(image))
    code = main(["explain", "--model", str(bundled_model_path("colour_nchw")), "--images", str(tmp_path / "images"),
                 "--segments", str(tmp_path / "labels"), "--out", str(tmp_path / "out"), "--method", "lime",
                 "--num-samples", "32", "--workers", "0", "--no-progress"])
    assert code == 0, capsys.readouterr().err
    res = daxjax.load_results(tmp_path / "out")
    # LIME's maps are constant on the given stripes.
    assert np.ptp(res.maps.reshape(2, SIZE, 4, SIZE // 4), axis=(1, 3)).max() == 0.0
