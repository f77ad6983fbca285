"""`make demo` end to end on one photo at a small N: report, pictures and maps are written and readable."""

import numpy as np
from skimage import io

from daxjax import demo
from daxjax.report import FILES_DIR

DOMESTIC_CATS = range(281, 286)  # ImageNet-1k: tabby, tiger cat, Persian, Siamese, Egyptian cat


def test_demo_writes_report_overlays_and_maps(tmp_path, capsys):
    demo.main(["--out", str(tmp_path), "--photos", "chelsea", "--num-samples", "80", "--auc-steps", "4"])
    saved = np.load(tmp_path / "maps.npz")
    assert saved["dax_maps"].shape == saved["rise_maps"].shape == (1, 224, 224)
    assert saved["targets"][0] in DOMESTIC_CATS and saved["photos"].tolist() == ["chelsea"]
    for name in ("overlay_chelsea.png", "demo.png"):
        picture = io.imread(tmp_path / name)
        assert picture.ndim == 3 and picture.shape[0] > 100 and picture.std() > 10
    page = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert "Egyptian Mau" in page and "deletion AUC" in page
    assert page.count('class="card"') == 1 and (tmp_path / FILES_DIR / "m1_region_0.png").is_file()
    printed = capsys.readouterr().out
    assert "N=80" in printed and f"Report: {(tmp_path / 'report.html').resolve()}" in printed
