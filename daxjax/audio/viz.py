"""Pictures of audio explanations (matplotlib's `Figure`, no pyplot), for reports and benchmarks.

Each plotting function draws on a caller's axes, so a report can lay out its own figure;
`spectrogram_png` and `waveform_png` are one view each as PNG bytes (the report's pictures), and
`save_audio_panel` writes a ready-made PNG with both views.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
from matplotlib.figure import Figure

from daxjax.audio.metrics import explained_intervals
from daxjax.report.viz import figure_png, save_png

# One view in the report: inches at VIEW_DPI, wide for time and low for the bands; its pixel width.
VIEW_SIZE = (4.6, 1.9)
VIEW_DPI = 100
VIEW_WIDTH = round(VIEW_SIZE[0] * VIEW_DPI)


def plot_spectrogram_explanation(ax, spectrogram_db: np.ndarray, frame_times: np.ndarray,
                                 time_map: np.ndarray | None = None, tf_map: np.ndarray | None = None,
                                 *, alpha: float = 0.45, cmap: str = "jet", title: str | None = None):
    """The log-mel spectrogram [bands, frames] (dB, grey) with the explanation over it.

    time_map [frames] in [0, 1] is drawn as a heat strip over all bands (and as a curve);
    tf_map [frames, bands] in [0, 1] as a heat map per tile. Returns the axes.
    """
    spectrogram_db = np.asarray(spectrogram_db)
    bands, frames = spectrogram_db.shape
    hop = float(frame_times[1] - frame_times[0]) if frames > 1 else 1.0
    extent = (frame_times[0] - hop / 2, frame_times[-1] + hop / 2, 0, bands)
    top = spectrogram_db.max()
    ax.imshow(spectrogram_db, origin="lower", aspect="auto", extent=extent, cmap="gray",
              vmin=top - 80.0, vmax=top, interpolation="nearest")
    if tf_map is not None:
        ax.imshow(np.asarray(tf_map).T, origin="lower", aspect="auto", extent=extent, cmap=cmap,
                  vmin=0.0, vmax=1.0, alpha=alpha, interpolation="nearest")
    elif time_map is not None:
        strip = np.broadcast_to(np.asarray(time_map)[None, :], (bands, frames))
        ax.imshow(strip, origin="lower", aspect="auto", extent=extent, cmap=cmap, vmin=0.0, vmax=1.0,
                  alpha=alpha, interpolation="nearest")
    if time_map is not None:
        ax.plot(frame_times, np.asarray(time_map) * (bands - 1), color="white", linewidth=1.0)
    ax.set_xlabel("time (s)")
    ax.set_ylabel("mel band")
    if title:
        ax.set_title(title, fontsize=9)
    return ax


def plot_waveform_intervals(ax, waveform: np.ndarray, sample_rate: int,
                            truth: Sequence[tuple[float, float]] = (),
                            explained: Sequence[tuple[float, float]] = (),
                            *, title: str | None = None):
    """The waveform with the ground-truth intervals (green, above the axis) and the explained
    intervals (red, below), as (start, end) seconds. Returns the axes."""
    waveform = np.asarray(waveform)
    times = np.arange(waveform.shape[-1]) / sample_rate
    peak = float(np.max(np.abs(waveform))) or 1.0
    ax.plot(times, waveform / peak, color="#7f7f7f", linewidth=0.4)
    # Intervals over the waveform, not under it: a loud clip's trace would hide them.
    for i, (start, end) in enumerate(truth):
        ax.axvspan(start, end, ymin=0.5, ymax=1.0, color="#2ca02c", alpha=0.35, zorder=3,
                   label=None if i else "ground truth")
    for i, (start, end) in enumerate(explained):
        ax.axvspan(start, end, ymin=0.0, ymax=0.5, color="#d62728", alpha=0.35, zorder=3,
                   label=None if i else "explained")
    ax.set_xlim(0, waveform.shape[-1] / sample_rate)
    ax.set_ylim(-1.05, 1.05)
    ax.set_xlabel("time (s)")
    ax.set_yticks([])
    if truth or explained:
        ax.legend(loc="upper right", fontsize=7)
    if title:
        ax.set_title(title, fontsize=9)
    return ax


def spectrogram_png(spectrogram_db: np.ndarray, frame_times: np.ndarray, time_map: np.ndarray | None = None,
                    tf_map: np.ndarray | None = None, size: tuple[float, float] = VIEW_SIZE) -> bytes:
    """`plot_spectrogram_explanation` (spectrogram [bands, frames], maps [frames] / [frames, bands])
    as one PNG of `size` inches at VIEW_DPI."""
    return _view_png(size, plot_spectrogram_explanation, spectrogram_db, frame_times, time_map, tf_map)


def waveform_png(waveform: np.ndarray, sample_rate: int, truth: Sequence[tuple[float, float]] = (),
                 explained: Sequence[tuple[float, float]] = (), size: tuple[float, float] = VIEW_SIZE) -> bytes:
    """`plot_waveform_intervals` (waveform [S], intervals as (start, end) seconds) as one PNG of
    `size` inches at VIEW_DPI."""
    return _view_png(size, plot_waveform_intervals, waveform, sample_rate, truth, explained)


def _view_png(size: tuple[float, float], plot, *args) -> bytes:
    """PNG of one figure of `size` inches with a single axes drawn by `plot(ax, *args)`."""
    fig = Figure(figsize=size, dpi=VIEW_DPI)
    ax = fig.subplots()
    plot(ax, *args)
    fig.tight_layout(pad=0.3)
    return figure_png(fig)


def save_audio_panel(path, waveform: np.ndarray, sample_rate: int, spectrogram_db: np.ndarray,
                     frame_times: np.ndarray, maps: dict, truth: Sequence[tuple[float, float]] = (),
                     tf_maps: dict | None = None, title: str = "", k: float = 1.0) -> Path:
    """One PNG: per method (maps: name -> time map [frames]) its spectrogram overlay and the
    waveform with the ground truth and its explained intervals (map > mean + k std)."""
    rows = max(1, len(maps))
    fig = Figure(figsize=(11, 2.3 * rows))
    axes = fig.subplots(rows, 2, squeeze=False)
    for row, (name, time_map) in enumerate(maps.items()):
        tf_map = None if tf_maps is None else tf_maps.get(name)
        plot_spectrogram_explanation(axes[row, 0], spectrogram_db, frame_times, time_map, tf_map,
                                     title=f"{name}: map over the log-mel spectrogram")
        plot_waveform_intervals(axes[row, 1], waveform, sample_rate, truth,
                                explained_intervals(time_map, frame_times, k),
                                title=f"{name}: explained (mean+{k:g}std) vs ground truth")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return save_png(fig, path)
