"""`make demo` end to end at a small size: pictures and maps are written and readable."""

import numpy as np
from skimage import io

from daxjax import demo


def test_demo_writes_overlays_and_maps(tmp_path, capsys):
    demo.main(["--out", str(tmp_path), "--num-samples", "256", "--images", "2", "--size", "64"])
    saved = np.load(tmp_path / "maps.npz")
    assert saved["maps"].shape == (2, 64, 64)
    assert saved["targets"].tolist() == [0, 1]  # a red patch, then a green one
    for i in range(2):
        picture = io.imread(tmp_path / f"overlay_{i:02d}.png")
        assert picture.ndim == 3 and picture.shape[0] > 100 and picture.std() > 10
    assert "Mean IoU" in capsys.readouterr().out
