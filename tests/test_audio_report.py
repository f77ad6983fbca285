"""The audio report: written with every picture, it renders in Chromium, its metrics are the audio
metrics, and bad input names what is wrong."""

from __future__ import annotations

import re
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

import daxjax
from browser import PNG_SIGNATURE, loaded_pictures, screenshot
from daxjax.audio import AudioConfig, SpectrogramConfig
from daxjax.audio import metrics as audio_metrics
from daxjax.audio.report import CENTRED_WINDOW, truth_frames
from daxjax.report import FILES_DIR, RANDOM_MAP
from planted import SOUND_RATE, SOUND_SPAN, span_energy_box, span_tone_clips

# Short frames keep the clips small: 2 s at 8 kHz, 126 frames of 16 ms.
SPEC = SpectrogramConfig(sample_rate=SOUND_RATE, n_fft=256, hop_length=128, n_mels=32)
CLASSES = ("other", "tone")
DELETION_STEPS = 8
WINDOW = (1280, 1400)


@pytest.fixture(scope="module")
def explained():
    """Two planted clips explained by Occlusion (time) and RISE (time x frequency tiles)."""
    x = span_tone_clips(2)
    occlusion = AudioConfig(spectrogram=SPEC, explainer=daxjax.OcclusionConfig(window=8, stride=4))
    tiles = AudioConfig(spectrogram=SPEC, segments="time_frequency", explainer=daxjax.RISEConfig(num_samples=64))
    explanations = {"Occlusion": daxjax.explain_audio(span_energy_box, x, SOUND_RATE, method="occlusion",
                                                      config=occlusion),
                    "RISE": daxjax.explain_audio(span_energy_box, x, SOUND_RATE, method="rise", config=tiles)}
    return SimpleNamespace(x=x, explanations=explanations)


@pytest.fixture(scope="module")
def report(explained, tmp_path_factory) -> Path:
    return daxjax.write_audio_report(tmp_path_factory.mktemp("audio"), explained.x, SOUND_RATE,
                                     explained.explanations, intervals=[SOUND_SPAN, [SOUND_SPAN]],
                                     class_names=CLASSES, bb=span_energy_box, ids=["tone <a>", "tone b"],
                                     config={"black box": "planted span"}, deletion_steps=DELETION_STEPS)


def test_every_picture_is_written_referenced_and_loads_in_chromium(report, chromium, tmp_path):
    page = report.read_text(encoding="utf-8")
    sources = re.findall(r'<img [^>]*src="([^"]+)"', page)
    # Per clip and method a spectrogram and a waveform; the colour bar and the metrics chart.
    assert len(sources) == 2 * 2 * 2 + 2
    files = {f"{FILES_DIR}/{p.name}" for p in (report.parent / FILES_DIR).iterdir()}
    assert set(sources) == files
    for src in sources:
        assert (report.parent / src).read_bytes()[:8] == PNG_SIGNATURE

    data = loaded_pictures(chromium, report)
    assert data["images-loaded"] == "true", data
    assert data["images-total"] == str(len(sources)) and data["images-broken"] == "0"
    screenshot(chromium, report, tmp_path / "audio_report.png", WINDOW)


def test_page_says_what_it_shows_with_the_audio_metrics(report, explained):
    page = report.read_text(encoding="utf-8")
    for row in ("Occlusion", "RISE", RANDOM_MAP, CENTRED_WINDOW):
        assert f"<th>{row}</th>" in page
    truth = truth_frames([np.array([SOUND_SPAN])] * 2, explained.explanations["RISE"].frame_times)
    for name, ex in explained.explanations.items():
        iou = audio_metrics.iou(ex.maps, truth).mean()
        deletion = audio_metrics.deletion_auc(span_energy_box, explained.x, ex.maps, ex.targets, SOUND_RATE,
                                              ex.config, steps=DELETION_STEPS).mean()
        row = re.search(rf"<tr><th>{name}</th>(.*?)</tr>", page).group(1)
        assert f"{iou:.3f}" in row and f"{deletion:.3f}" in row
    assert audio_metrics.iou(explained.explanations["Occlusion"].maps, truth).min() > 0.5  # it found the span
    assert page.count('<span class="label">tone</span>') == 2 and "tone &lt;a&gt;" in page
    assert page.count("explained &gt; mean+1σ") == 4 and "planted span" in page
    assert "Timings" in page and "per clip" in page and "the mean ground truth" in page


def test_embedded_report_without_metrics_is_one_file(explained, tmp_path):
    page = daxjax.write_audio_report(tmp_path, explained.x, SOUND_RATE, explained.explanations, embed=True,
                                     max_clips=1).read_text(encoding="utf-8")
    assert not (tmp_path / FILES_DIR).exists()
    sources = re.findall(r'<img [^>]*src="([^"]+)"', page)
    assert len(sources) == 2 * 2 + 1 and all(s.startswith("data:image/png;base64,") for s in sources)
    assert "Metrics" not in page and "first 1 of 2 clips (max_clips=1)" in page


def test_a_given_table_is_shown_and_the_black_box_not_queried(explained, tmp_path):
    def no_queries(waveforms):
        raise AssertionError("the black box was queried")

    table = {name: {"1-D IoU": np.full(2, 0.25 + i / 10)} for i, name in enumerate(explained.explanations)}
    page = daxjax.write_audio_report(tmp_path, explained.x, SOUND_RATE, explained.explanations, bb=no_queries,
                                     table=table).read_text(encoding="utf-8")
    assert re.search(r"<tr><th>RISE</th><td[^>]*>0.350", page)


def test_bad_input_names_the_offending_argument(explained, tmp_path):
    x, explanations = explained.x, explained.explanations
    write = lambda **changes: daxjax.write_audio_report(  # noqa: E731
        tmp_path, changes.pop("x", x), SOUND_RATE, changes.pop("explanations", explanations), **changes)
    occlusion = explanations["Occlusion"]
    with pytest.raises(daxjax.InputError, match=r"explanations\['Occlusion'\]\.maps has shape \(2, 126\); "
                                                r"the clips need \(3, 126\)"):
        write(x=np.concatenate([x, x[:1]]))
    short = SimpleNamespace(**{**vars(occlusion), "maps": occlusion.maps[:, :100]})
    with pytest.raises(daxjax.InputError, match=r"explanations\['Short'\] must be a daxjax.AudioExplanation"):
        write(explanations={"Short": short})
    with pytest.raises(daxjax.InputError, match=r"maps has shape \(2, 100\); the clips need \(2, 126\)"):
        write(explanations={"Short": daxjax.AudioExplanation(**{**vars(occlusion), "maps": occlusion.maps[:, :100]})})
    with pytest.raises(daxjax.InputError, match=r"intervals has 1 entries for 2 clips"):
        write(intervals=[SOUND_SPAN])
    with pytest.raises(daxjax.InputError, match=r"intervals\[1\] has \(1.5, 2.5\) s: .* <= 2 s, the length of clip 1"):
        write(intervals=[SOUND_SPAN, (1.5, 2.5)])
    with pytest.raises(daxjax.InputError, match=r"intervals of clip\(s\) \[0\] contain no frame centre"):
        write(intervals=[(1.001, 1.002), SOUND_SPAN])
    with pytest.raises(daxjax.InputError, match="ids has 3 entries for 2 clips"):
        write(ids=["a", "b", "c"])
    with pytest.raises(daxjax.InputError, match=r"sample_rate=16000 Hz, but the spectrogram config expects 8000"):
        daxjax.write_audio_report(tmp_path, x, 16000, explanations)
    with pytest.raises(daxjax.InputError, match=r"table\['RISE'\]\['1-D IoU'\] has shape \(3,\)"):
        write(table={"Occlusion": {"1-D IoU": np.zeros(2)}, "RISE": {"1-D IoU": np.zeros(3)}})
    with pytest.raises(daxjax.InputError, match=r"table\['RISE'\] has the metrics \[\], table\['Occlusion'\] has"):
        write(table={"Occlusion": {"1-D IoU": np.zeros(2)}, "RISE": {}})
    assert not (tmp_path / "report.html").exists()
