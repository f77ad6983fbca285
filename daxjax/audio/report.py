"""The audio report: a static HTML page of explanations of sound clips (`write_audio_report`).

    import daxjax
    path = daxjax.write_audio_report("out", waveforms, 16000, {"DAX": ax_dax, "RISE": ax_rise},
                                     intervals=truth, class_names=names, bb=bb)   # -> out/report.html

Per clip a card with a row per method: the clip's log-mel spectrogram with the map over it (a
heat strip over all bands and the map as a white curve, or the time x frequency tiles), and the
waveform with the ground-truth intervals (green, upper half) and the explained ones (red, lower
half: the frames above mean + k·std, the threshold of the 1-D IoU in `daxjax.audio.metrics`).
Above the cards, the metrics table: 1-D IoU when ground-truth intervals are given, deletion over
time when the black box is, with a random map and a centred window as reference rows (as in
`benchmarks/quality/audio.py`); below them, the run configuration and the timings. The files, paging and
`embed` option are those of `daxjax.write_report`, whose page machinery this module reuses.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from daxjax.audio import metrics, viz
from daxjax.audio.explain import AudioExplanation
from daxjax.audio.inputs import as_waveforms, check_sample_rate
from daxjax.audio.spectrogram import SpectrogramConfig
from daxjax.inputs import InputError
from daxjax.report.html import (Pictures, capped_note, card_header, check_explanations, check_ids, config_section,
                                figure_html, label_function, method_caption, metrics_chart, metrics_section, positive,
                                render_pages, timings_section, write_pages)
from daxjax.report.images import RANDOM_MAP
from daxjax.report.viz import colour_bar_png

CENTRED_WINDOW = "centred window"
REFERENCE_ROWS = (RANDOM_MAP, CENTRED_WINDOW)
# metric name -> which direction is better; and its name in picture captions.
BETTER = {"1-D IoU": "higher", "deletion AUC": "lower", "deletion AUC / p0": "lower"}
_SHORT = {"1-D IoU": "IoU", "deletion AUC": "del", "deletion AUC / p0": "del/p0"}
# Without ground truth the centred window covers this share of the clip (the benchmark's events
# cover about a third of theirs).
DEFAULT_WINDOW_SHARE = 1 / 3


def write_audio_report(out_dir, waveforms, sample_rate: int, explanations: Mapping[str, AudioExplanation], *,
                       intervals=None, class_names=None, bb=None, ids: Sequence | None = None,
                       title: str = "daxjax audio report", config: Any = None, k: float = 1.0,
                       max_clips: int = 50, per_page: int = 10, embed: bool = False,
                       deletion_steps: int = 50, table: Mapping | None = None) -> Path:
    """Writes the report of explanations of the same B clips by one or more methods.

    Args:
      out_dir: folder to write into (created when missing); as `daxjax.write_report`, only
        report.html, report-page*.html and report_files/ there are replaced.
      waveforms: float [B, S] mono clips at `sample_rate`: the explained clips.
      sample_rate: Hz.
      explanations: display name -> `AudioExplanation` of these clips (`daxjax.explain_audio`),
        in row order; all made with one front end (maps [B, frames]).
      intervals: ground truth, in seconds inside the clip: [B, 2] (one (start, end) per clip) or B
        lists of (start, end) pairs; when given, the 1-D IoU of each map with the frames whose
        centres lie in them is reported.
      class_names: names of the black box's classes (index -> name); None shows "class <index>".
      bb: the black box; when given, deletion AUC over time (and divided by the unperturbed
        probability, p0) is reported: deletion_steps + 1 queries per clip and row, rows =
        methods + two reference maps, each method with its own fill (`metrics.deletion_auc`).
      ids: B names of the clips (e.g. file names); None numbers them from 0.
      title: the page's title.
      config: the run's own settings (a dataclass or a mapping), shown above each method's config.
      k: explained intervals and IoU threshold each map at mean + k·std.
      max_clips: pictures are drawn for the first max_clips clips only (the page says so);
        metrics and timings always cover all B.
      per_page: clips per HTML page.
      embed: pictures as data URIs inside the pages instead of files in report_files/.
      deletion_steps: steps of the deletion curves.
      table: the metrics already computed, row name -> metric name -> [B] (as `audio_metrics`
        returns them; e.g. by a benchmark that scored the clips): shown instead of computing
        them, so `bb` is then not queried.

    Returns:
      The path of report.html.

    Raises:
      InputError / ValueError naming the offending argument: bad clips or sample rate, no
      explanations, maps, targets, spectrograms, sample rates or ids that do not match the clips,
      intervals outside a clip or covering no frame, class names that do not cover a target, a
      table that lacks a method or whose values are not one per clip.
    """
    spec = _front_end(explanations)
    rate = check_sample_rate(sample_rate, spec, bb)
    x = as_waveforms(waveforms, spec, rate)
    batch, samples = x.shape
    explanations = check_explanations(explanations, AudioExplanation, (batch, spec.num_frames(samples)),
                                      "[B, frames]", "clip", REFERENCE_ROWS)
    _check_views(explanations, rate)
    frame_times = next(iter(explanations.values())).frame_times
    spans = None if intervals is None else clip_intervals(intervals, batch, samples / rate)
    truth = None if spans is None else truth_frames(spans, frame_times)
    ids = [str(i) for i in range(batch)] if ids is None else check_ids(ids, batch, "clip")
    labels = label_function(class_names, explanations)
    max_clips, per_page = positive("max_clips", max_clips), positive("per_page", per_page)
    positive("deletion_steps", deletion_steps)

    window, window_note = _centred_window(spans, samples / rate)
    table = (audio_metrics(x, rate, explanations, truth=truth, window_seconds=window, bb=bb, k=k,
                           deletion_steps=deletion_steps) if table is None
             else _check_table(table, explanations, batch))
    pictures = Pictures(embed)
    legend = pictures.add("colour_bar.png", colour_bar_png())
    chart = metrics_chart(pictures, table, BETTER, REFERENCE_ROWS)
    shown = min(batch, max_clips)
    cards = [_card(i, ids[i], x[i], rate, explanations, None if spans is None else spans[i], table, labels,
                   pictures, k) for i in range(shown)]
    top = capped_note(shown, batch, "clip", "max_clips")
    if table:
        note = _metrics_note(table, k, deletion_steps, window_note, batch)
        top += metrics_section(table, BETTER, REFERENCE_ROWS, note, chart)
    bottom = config_section(explanations, config) + timings_section(explanations, batch, "clip")
    card_note = ("Each card, per method: the log-mel spectrogram with the map over it (left) and the waveform "
                 f"with the frames above mean + {k:g}·std of the map (red, lower half)"
                 f"{' and the ground truth (green, upper half)' if spans is not None else ''} (right).")
    pages_html = render_pages(title, cards, per_page, batch, "clip", card_note, legend, (top, bottom))
    return write_pages(Path(out_dir), pages_html, pictures)


def audio_metrics(waveforms, sample_rate: int, explanations: Mapping[str, AudioExplanation], *, truth=None,
                  window_seconds: float, bb=None, k: float = 1.0,
                  deletion_steps: int = 50) -> dict[str, dict[str, np.ndarray]]:
    """Per-clip metrics of each method and of two reference maps: row name -> `row_metrics`.

    Rows: the methods, then RANDOM_MAP and CENTRED_WINDOW (`reference_maps`, a window of
    `window_seconds`), which explain nothing and show what a metric gives for free; the
    reference rows are scored on the targets, scores and config of the first method. Empty when
    neither truth nor bb is given.
    """
    if truth is None and bb is None:
        return {}
    first = next(iter(explanations.values()))
    rows = {name: (ex.maps, ex) for name, ex in explanations.items()}
    references = reference_maps(len(first.maps), first.frame_times, window_seconds)
    rows.update({name: (maps, first) for name, maps in references.items()})
    return {name: row_metrics(waveforms, sample_rate, maps, ex.targets, ex.scores, ex.config, truth=truth, bb=bb,
                              k=k, deletion_steps=deletion_steps)
            for name, (maps, ex) in rows.items()}


def row_metrics(waveforms, sample_rate: int, maps, targets, scores, config, *, truth=None, bb=None,
                k: float = 1.0, deletion_steps: int = 50) -> dict[str, np.ndarray]:
    """The metrics of one row of maps [B, frames] of B clips: metric name -> float32 [B].

    "1-D IoU" at mean + k·std with truth (bool [B, frames]) when it is given; with the black box,
    "deletion AUC" over time (`metrics.deletion_auc` with the `AudioConfig` config, for the
    targets [B]) and "deletion AUC / p0", divided by scores [B], the unperturbed probabilities.
    """
    values = {}
    if truth is not None:
        values["1-D IoU"] = metrics.iou(maps, truth, k=k)
    if bb is not None:
        deletion = metrics.deletion_auc(bb, waveforms, maps, targets, sample_rate, config, steps=deletion_steps)
        values["deletion AUC"] = deletion
        values["deletion AUC / p0"] = (deletion / np.maximum(scores, 1e-12)).astype(np.float32)
    return values


def reference_maps(count: int, frame_times: np.ndarray, window_seconds: float, seed: int = 0) -> dict[str, np.ndarray]:
    """The reference rows' maps for `count` clips of frames at `frame_times` [F] seconds:
    name -> float32 [count, F]: uniform noise, and 1 on the frames whose centres lie within
    window_seconds / 2 of the clip's middle (0 elsewhere)."""
    rng = np.random.default_rng(seed)
    centre = (frame_times[0] + frame_times[-1]) / 2
    window = (np.abs(frame_times - centre) < window_seconds / 2).astype(np.float32)
    return {RANDOM_MAP: rng.uniform(size=(count, frame_times.size)).astype(np.float32),
            CENTRED_WINDOW: np.repeat(window[None], count, axis=0)}


def clip_intervals(intervals, count: int, duration: float) -> list[np.ndarray]:
    """The ground truth as float64 [n_i, 2] (start, end) seconds per clip, after checking it.

    intervals: [B, 2] (one interval per clip) or B sequences of (start, end) pairs, each with
    0 <= start < end <= duration (the clips' length in seconds).
    """
    if len(intervals) != count:
        raise InputError(f"intervals has {len(intervals)} entries for {count} clips")
    spans = []
    for i, clip in enumerate(intervals):
        clip = np.asarray(clip, np.float64)
        clip = clip[None] if clip.shape == (2,) else clip
        if clip.ndim != 2 or clip.shape[1] != 2 or not len(clip):
            raise InputError(f"intervals[{i}] must be one (start, end) pair or a non-empty list of them "
                             f"(seconds); got shape {clip.shape}")
        for start, end in clip:
            if not (np.isfinite(start) and np.isfinite(end) and 0.0 <= start < end <= duration):
                raise InputError(f"intervals[{i}] has ({start:g}, {end:g}) s: need 0 <= start < end <= "
                                 f"{duration:g} s, the length of clip {i}")
        spans.append(clip)
    return spans


def truth_frames(spans: Sequence[np.ndarray], frame_times: np.ndarray) -> np.ndarray:
    """bool [B, F]: the frames whose centres lie in any of each clip's intervals (`clip_intervals`)."""
    truth = np.stack([metrics.interval_masks(clip, frame_times).any(axis=0) for clip in spans])
    empty = np.flatnonzero(~truth.any(axis=1))
    if empty.size:
        hop = frame_times[1] - frame_times[0]
        raise InputError(f"intervals of clip(s) {empty.tolist()} contain no frame centre (frames every "
                         f"{hop:g} s): the ground truth would be empty")
    return truth


def _centred_window(spans: Sequence[np.ndarray] | None, duration: float) -> tuple[float, str]:
    """(seconds, how they were chosen) of the centred-window reference: as long as the clips'
    mean ground truth (`clip_intervals`), else DEFAULT_WINDOW_SHARE of the clips' `duration`."""
    if spans is None:
        window = duration * DEFAULT_WINDOW_SHARE
        return window, f"{window:.2f} s long, {DEFAULT_WINDOW_SHARE:.0%} of the clip"
    window = float(np.mean([np.sum(clip[:, 1] - clip[:, 0]) for clip in spans]))
    return window, f"{window:.2f} s long, the mean ground truth"


def _front_end(explanations) -> SpectrogramConfig:
    """The spectrogram config of the first explanation, which counts the clips' frames.

    Anything that is not a mapping of AudioExplanations gets the config of no front end in
    particular here; `check_explanations` then says what is wrong with it.
    """
    first = next(iter(explanations.values()), None) if isinstance(explanations, Mapping) else None
    return first.config.spectrogram if isinstance(first, AudioExplanation) else SpectrogramConfig(sample_rate=None)


def _check_views(explanations: Mapping[str, AudioExplanation], sample_rate: int) -> None:
    """Checks what the pictures are drawn from: the sample rate, frame grid, spectrograms and tiles."""
    first_name, first = next(iter(explanations.items()))
    for name, ex in explanations.items():
        batch, frames = np.shape(ex.maps)
        bands = np.shape(ex.spectrograms)[1] if np.ndim(ex.spectrograms) == 3 else None
        if ex.sample_rate != sample_rate:
            raise InputError(f"explanations[{name!r}] was made at {ex.sample_rate} Hz; the waveforms are "
                             f"given at {sample_rate} Hz")
        if not np.array_equal(ex.frame_times, first.frame_times):
            raise InputError(f"explanations[{name!r}] has other frame times than explanations[{first_name!r}]: "
                             "explain every method with one spectrogram config")
        if np.shape(ex.spectrograms) != (batch, bands, frames):
            raise InputError(f"explanations[{name!r}].spectrograms has shape {np.shape(ex.spectrograms)}; "
                             f"expected [B, bands, frames] with B = {batch}, frames = {frames}")
        if ex.tf_maps is not None and np.shape(ex.tf_maps) != (batch, frames, bands):
            raise InputError(f"explanations[{name!r}].tf_maps has shape {np.shape(ex.tf_maps)}; expected "
                             f"({batch}, {frames}, {bands}) ([B, frames, bands])")


def _card(i: int, clip_id: str, waveform: np.ndarray, sample_rate: int,
          explanations: Mapping[str, AudioExplanation], spans: np.ndarray | None, table, labels,
          pictures: Pictures, k: float) -> str:
    """One clip's card: per method a row, the spectrogram overlay beside the waveform's intervals."""
    header, same_target = card_header(i, clip_id, explanations, labels)
    truth = [] if spans is None else [tuple(span) for span in spans]
    duration = waveform.size / sample_rate
    cells = []
    for j, (name, ex) in enumerate(explanations.items()):
        tf_map = None if ex.tf_maps is None else ex.tf_maps[i]
        spectrogram = viz.spectrogram_png(ex.spectrograms[i], ex.frame_times, ex.maps[i], tf_map)
        explained = metrics.explained_intervals(ex.maps[i], ex.frame_times, k)
        covered = sum(end - start for start, end in explained)
        cells.append(figure_html(pictures.add(f"m{j}_spectrogram_{i}.png", spectrogram), f"{name} map #{i}",
                                 method_caption(i, name, ex, same_target, labels, table, _SHORT),
                                 viz.VIEW_WIDTH, raw_caption=True))
        cells.append(figure_html(pictures.add(f"m{j}_waveform_{i}.png",
                                              viz.waveform_png(waveform, sample_rate, truth, explained)),
                                 f"{name} intervals #{i}",
                                 f"explained > mean+{k:g}σ · {covered:.2f} s of {duration:.2f} s", viz.VIEW_WIDTH))
    # Rows stand apart, so that each caption reads as the row's above it rather than the next's.
    style = f"--cols:2; --tile:{viz.VIEW_WIDTH}px; row-gap:18px"
    return (f'<section class="card" id="clip-{i}"><h3>{header}</h3>'
            f'<div class="grid" style="{style}">{"".join(cells)}</div></section>')


def _check_table(table, explanations: Mapping[str, AudioExplanation], batch: int) -> dict:
    """A given metrics table as a dict of float arrays, after checking it covers the methods, per clip."""
    if not isinstance(table, Mapping):
        raise InputError(f"table must be a mapping of row name -> metric name -> [B]; got {type(table).__name__}")
    missing = [name for name in explanations if name not in table]
    if missing:
        raise InputError(f"table has no row for the method(s) {missing}")
    first_row = next(iter(table))
    checked = {}
    for row, values in table.items():
        if list(values) != list(table[first_row]):
            raise InputError(f"table[{row!r}] has the metrics {list(values)}, table[{first_row!r}] has "
                             f"{list(table[first_row])}: every row needs the same")
        checked[row] = {}
        for metric, per_clip in values.items():
            if metric not in BETTER:
                raise InputError(f"table[{row!r}] has the metric {metric!r}; known: {list(BETTER)}")
            if np.shape(per_clip) != (batch,):
                raise InputError(f"table[{row!r}][{metric!r}] has shape {np.shape(per_clip)}; expected "
                                 f"({batch},), one per clip")
            checked[row][metric] = np.asarray(per_clip, np.float32)
    return checked


def _metrics_note(table, k: float, steps: int, window_note: str, batch: int) -> str:
    """The text under the metrics table: what each metric present and the reference rows mean."""
    present = {metric for values in table.values() for metric in values}
    notes = []
    if "1-D IoU" in present:
        notes.append(f"1-D IoU of the frames above mean + {k:g}·std of each map with the frames whose centres "
                     "lie in the ground-truth intervals.")
    if "deletion AUC" in present:
        notes.append(f"Deletion AUC: the black box's probability of the target while frames are removed in "
                     f"order of importance ({steps} steps; removed frames hear the method's fill, by default "
                     "the clip's noise floor); / p0: divided by the probability on the whole clip.")
    notes.append(f"Mean ± std over {batch} clips; the reference rows explain nothing and show what a metric "
                 f"gives for free (the centred window is {window_note}).")
    return " ".join(notes)
