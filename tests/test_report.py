"""The HTML report: it renders in a real browser with every picture loaded, and says what it should."""

from __future__ import annotations

import base64
import html
import re
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

import daxjax
from blackbox_adapters import COLOUR_CLASSES, OnnxBlackBox, bundled_model_path
from browser import PNG_SIGNATURE, body_data, loaded_pictures, run_chromium, screenshot
from daxjax.report import CENTRED_GAUSSIAN, FILES_DIR, RANDOM_MAP
from daxjax.scenes import colour_patch_scenes

SIZE = 64
AUC_STEPS = 8
WINDOW = (1280, 1600)


@pytest.fixture(scope="module")
def explained():
    """Three 64 px scenes (red, green, blue patch), explained by RISE and Occlusion."""
    parts = [colour_patch_scenes(1, SIZE, seed=i, colour=c) for i, c in enumerate(("red", "green", "blue"))]
    images = np.concatenate([p[0] for p in parts])
    masks = np.concatenate([p[1] for p in parts])
    bb = OnnxBlackBox(bundled_model_path("colour_nchw"), intra_op_threads=2)
    explanations = {
        "RISE": daxjax.explain(bb, images, method="rise", config=daxjax.RISEConfig(num_samples=128)),
        "Occlusion": daxjax.explain(bb, images, method="occlusion"),
    }
    return SimpleNamespace(images=images, masks=masks, bb=bb, explanations=explanations)


@pytest.fixture(scope="module")
def report(explained, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("report")
    return daxjax.write_report(
        out, explained.images, explained.explanations, class_names=COLOUR_CLASSES, masks=explained.masks,
        bb=explained.bb, auc_steps=AUC_STEPS, ids=["<script>alert(1)</script>", "a & b", 'quote"d'],
        errors={"broken<img>": "NaN & inf in <pixels>"}, title="Colour <scenes>",
        config={"black box": "colour_nchw.onnx"})


def test_report_renders_in_chromium_with_every_picture(report, chromium, tmp_path):
    page = report.read_text(encoding="utf-8")
    # Per image: input, ground truth, and a map and a region per method; plus legend and chart.
    expected_pictures = 3 * (2 + 2 * 2) + 2
    assert page.count("<img ") == expected_pictures

    data = loaded_pictures(chromium, report)
    assert data["images-loaded"] == "true", data
    assert data["images-total"] == str(expected_pictures) and data["images-broken"] == "0"
    screenshot(chromium, report, tmp_path / "report.png", WINDOW)


def test_missing_picture_is_detected_and_told(report, chromium, tmp_path):
    """The loaded-check can fail: without one picture the page says so, visibly."""
    copy = tmp_path / "copy"
    shutil.copytree(report.parent, copy)
    (copy / FILES_DIR / "m1_map_2.png").unlink()
    dom = run_chromium(chromium, (copy / report.name).as_uri(), "--dump-dom").stdout
    data = body_data(dom)
    assert data["images-loaded"] == "false" and data["images-broken"] == "1"
    note = re.search(r'<p id="missing"[^>]*>(.*?)</p>', dom)
    assert "hidden" not in note.group(0) and "1 of 20 pictures did not load" in note.group(1)


def test_report_content_is_escaped_and_complete(report, explained):
    page = report.read_text(encoding="utf-8")
    text = html.unescape(re.sub(r"<[^>]+>", " ", page))
    for raw in ("<script>alert(1)</script>", "Colour <scenes>", "broken<img>", "NaN & inf in <pixels>"):
        assert html.escape(raw, quote=True) in page
        assert raw not in page
    assert page.count("<script") == 1  # the page's own loaded-check only
    # The metrics: methods and reference rows, means as daxjax.metrics computes them.
    for row in ("RISE", "Occlusion", RANDOM_MAP, CENTRED_GAUSSIAN):
        assert f"<th>{row}</th>" in page
    for name, ex in explained.explanations.items():
        iou = daxjax.metrics.iou(ex.maps, explained.masks).mean()
        deletion = daxjax.metrics.deletion_auc(explained.bb, explained.images, ex.maps, ex.targets,
                                               steps=AUC_STEPS).mean()
        row = re.search(rf"<tr><th>{name}</th>(.*?)</tr>", page).group(1)
        assert f"{iou:.3f}" in row and f"{deletion:.3f}" in row
    # Labels, scores, thresholded-region captions, config and timings.
    for i, target in enumerate(explained.explanations["RISE"].targets):
        assert f">{COLOUR_CLASSES[target]}</span> <span class=\"score\">p = " \
               f"{explained.explanations['RISE'].scores[i]:.3f}" in page
    assert text.count("region > mean+1σ") == 6
    assert "num_samples=128 (others default)" in page and "all defaults" in page
    assert "colour_nchw.onnx" in text and "Timings" in text and "per image" in text
    assert "1 image(s) could not be explained" in text


def _synthetic(batch: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    images = rng.uniform(0, 1, (batch, 16, 16, 3)).astype(np.float32)
    maps = rng.uniform(0, 1, (batch, 16, 16)).astype(np.float32)
    ex = daxjax.Explanation(maps, np.zeros(batch, np.int32), np.full(batch, 0.5, np.float32), "dax",
                            daxjax.DAXConfig(num_samples=100), {"total": 1.0})
    return images, ex


def test_many_images_are_paged_and_capped(tmp_path):
    images, ex = _synthetic(7)
    first = daxjax.write_report(tmp_path, images, {"DAX": ex}, max_images=5, per_page=2)
    pages = sorted(p.name for p in tmp_path.glob("report*.html"))
    assert pages == ["report-page2.html", "report-page3.html", "report.html"]
    text = first.read_text(encoding="utf-8")
    assert "first 5 of 7 images (max_images=5)" in text
    assert [p.read_text().count('class="card"') for p in
            (first, tmp_path / "report-page2.html", tmp_path / "report-page3.html")] == [2, 2, 1]
    assert 'href="report-page3.html"' in text
    assert len(list((tmp_path / FILES_DIR).glob("input_*.png"))) == 5
    # Rewritten shorter: the stale page and pictures go, nothing else in the folder does.
    (tmp_path / "mine.txt").write_text("keep")
    daxjax.write_report(tmp_path, images[:3], {"DAX": daxjax.Explanation(
        ex.maps[:3], ex.targets[:3], ex.scores[:3], "dax", ex.config)}, per_page=2)
    assert sorted(p.name for p in tmp_path.glob("report*.html")) == ["report-page2.html", "report.html"]
    assert len(list((tmp_path / FILES_DIR).glob("input_*.png"))) == 3
    assert (tmp_path / "mine.txt").read_text() == "keep"


def test_embedded_report_is_one_file(tmp_path):
    images, ex = _synthetic(2)
    page = daxjax.write_report(tmp_path, images, {"DAX": ex}, embed=True).read_text(encoding="utf-8")
    assert not (tmp_path / FILES_DIR).exists()
    sources = re.findall(r'<img src="([^"]+)"', page)
    assert len(sources) == 2 * 3 + 1  # input, map, region per image; the colour bar
    for src in sources:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1])[:8] == PNG_SIGNATURE


def test_store_report_reads_pictures_back_and_lists_failures(explained, tmp_path):
    images, masks = colour_patch_scenes(4, 32, seed=1)
    images[2, 0, 0, 0] = np.nan  # an error row of the store, listed on the page
    store = tmp_path / "store"
    daxjax.explain_dataset(explained.bb, images, store, method="occlusion", workers=0, progress=False)
    page = daxjax.write_store_report(store, images, masks=masks, max_images=2).read_text(encoding="utf-8")
    assert page.count('class="card"') == 2 and "first 2 of the 3 explained images" in page
    assert "1 image(s) could not be explained" in page and "NaN or inf" in page
    results = daxjax.load_results(store)  # the report beside the store leaves it readable
    iou = daxjax.metrics.iou(results.maps[:2], masks[:2]).mean()
    assert re.search(rf"<tr><th>occlusion</th><td[^>]*>{iou:.3f}", page)
    assert (store / FILES_DIR / "input_1.png").is_file() and "host_seconds (sum)" in page
    with pytest.raises(daxjax.InputError, match=r"has no image\(s\) \['3'\]"):
        daxjax.write_store_report(store, images[:3], out_dir=tmp_path / "elsewhere")


def test_bad_arguments_are_named(tmp_path):
    images, ex = _synthetic(2)
    with pytest.raises(daxjax.InputError, match=r"explanations\['DAX'\]\.maps has shape \(2, 16, 16\).*\(3, 16, 16\)"):
        daxjax.write_report(tmp_path, np.concatenate([images, images[:1]]), {"DAX": ex})
    with pytest.raises(daxjax.InputError, match="non-empty mapping"):
        daxjax.write_report(tmp_path, images, {})
    with pytest.raises(daxjax.InputError, match=r"masks has shape \(2, 8, 8\)"):
        daxjax.write_report(tmp_path, images, {"DAX": ex}, masks=np.ones((2, 8, 8), bool))
    with pytest.raises(daxjax.InputError, match="ids has 1 entries for 2 images"):
        daxjax.write_report(tmp_path, images, {"DAX": ex}, ids=["only one"])
    ex.targets[1] = 3
    with pytest.raises(daxjax.InputError, match=r"targets\[1\] = 3 has no name: class_names has 2"):
        daxjax.write_report(tmp_path, images, {"DAX": ex}, class_names=["a", "b"])
    with pytest.raises(ValueError, match="per_page must be a positive integer"):
        daxjax.write_report(tmp_path, images, {"DAX": ex}, per_page=0)
    assert not (tmp_path / "report.html").exists()


def test_untrusted_maps_are_flagged_in_words(tmp_path):
    images, ex = _synthetic(3)
    ex.diagnostics = {"heldout_fit": np.array([0.8, 0.05, 0.7], np.float32),
                      "surrogate_fit": np.array([0.7, 0.02, 0.6], np.float32),
                      "mask_area": np.array([0.2, 0.3, 0.0], np.float32),
                      "mask_contrast": np.array([0.9, 0.8, 0.0], np.float32),
                      "trusted": np.array([True, False, False])}
    text = daxjax.write_report(tmp_path, images, {"DAX": ex}).read_text(encoding="utf-8")
    assert text.count('class="untrusted"') == 2
    assert "held-out fit 0.80 (linear 0.70)" in text
    assert "the student predicts little of the black box&#x27;s answers" in text or \
           "the student predicts little of the black box's answers" in text
    assert "the mask is dead or flat (area 0.00, contrast 0.00)" in text
