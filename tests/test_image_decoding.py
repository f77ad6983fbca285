"""Reading image files keeps their values: wide pixel types scaled from their own range, every
listed file an explained image or an error row, files that are not images counted."""

import os

import numpy as np
import pytest
from PIL import Image

import daxjax
from daxjax.sources import ImageReadError, open_source, read_image
from planted import red_and_distractor_scene, red_fraction_box

GRADIENT = np.linspace(0.0, 1.0, 32 * 32).reshape(32, 32)


def test_sixteen_bit_grey_png_is_scaled_by_its_range(tmp_path):
    path = tmp_path / "g16.png"
    Image.fromarray((GRADIENT * 65535).round().astype(np.uint16)).save(path)
    assert Image.open(path).mode == "I;16"
    image = read_image(str(path), None, None)
    assert image.shape == (32, 32, 1)
    np.testing.assert_allclose(image[..., 0], GRADIENT, atol=1e-5)  # was 99.6 % white


def test_float_tiff_keeps_its_values_or_is_refused(tmp_path):
    good, bad = tmp_path / "f.tif", tmp_path / "wide.tif"
    Image.fromarray(GRADIENT.astype(np.float32)).save(good)
    Image.fromarray((GRADIENT * 300).astype(np.float32)).save(bad)
    np.testing.assert_allclose(read_image(str(good), None, None)[..., 0], GRADIENT, atol=1e-6)  # was black
    with pytest.raises(ImageReadError, match=r"outside \[0, 1\] \(min 0, max 300\).*nothing is clipped"):
        read_image(str(bad), None, None)


def test_integer_pixels_of_unknown_range_are_refused(tmp_path):
    path = tmp_path / "i32.tif"
    Image.fromarray((GRADIENT * 1000).astype(np.int32)).save(path)
    with pytest.raises(ImageReadError, match="dtype int32 is not unsigned integers.*range its values stand for"):
        read_image(str(path), None, None)


def test_sixteen_bit_arrays_are_scaled_too(tmp_path):
    rgb = (np.stack([GRADIENT] * 3, axis=-1) * 65535).round().astype(np.uint16)
    np.savez(tmp_path / "x.npz", images=rgb[None])
    [item] = open_source(tmp_path / "x.npz").items()
    np.testing.assert_allclose(read_image(item.raw, None, None), rgb / 65535, atol=1e-6)


def test_every_listed_file_is_explained_or_an_error_row_and_others_are_counted(tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    for i in range(3):
        image = red_and_distractor_scene(i, 16)[0]
        Image.fromarray((image * 255).astype(np.uint8)).save(folder / f"ok{i}.png")
    os.symlink("missing.png", folder / "dangling.png")
    os.symlink("loop.png", folder / "loop.png")
    (folder / "notes.txt").write_text("not an image")
    out = tmp_path / "out"
    summary = daxjax.explain_dataset(red_fraction_box, folder, out, method="rise",
                                     config=daxjax.RISEConfig(num_samples=16, cells=4), batch_size=5, workers=0,
                                     progress=False)
    res = daxjax.load_results(out)
    assert res.ids == ["ok0.png", "ok1.png", "ok2.png"] and res.complete
    assert res.errors == {"dangling.png": "cannot open the file: No such file or directory",
                          "loop.png": "cannot open the file: Too many levels of symbolic links"}
    assert (summary.explained, summary.errors, summary.not_images) == (3, 2, ["notes.txt"])


@pytest.mark.parametrize("save", [np.savez, np.savez_compressed])
def test_npz_rows_cost_one_row_each(save, tmp_path, monkeypatch):
    import zipfile

    images = np.random.default_rng(0).integers(0, 256, (64, 16, 16, 3), dtype=np.uint8)
    save(tmp_path / "x.npz", images=images)
    items = list(open_source(tmp_path / "x.npz").items())
    read_image(items[0].raw, None, None)  # the array's layout is read once
    decompressed = []
    real_read = zipfile.ZipExtFile.read
    monkeypatch.setattr(zipfile.ZipExtFile, "read", lambda self, n=-1: decompressed.append(
        len(data := real_read(self, n))) or data)
    rows = [read_image(item.raw, None, None) for item in items]
    np.testing.assert_array_equal(np.stack(rows), images / np.float32(255))
    # In input order, every row is read (or decompressed) once: not the O(row) bytes before it.
    assert sum(decompressed) <= images.nbytes + 16 * 1024, sum(decompressed)
