"""Pictures of explanations: heat-map overlays, regions, per-image panels.

matplotlib's object API (`Figure`) only: no pyplot, so no backend is chosen and the caller's is
left as it is; figures are drawn straight to PNG.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Mapping, Sequence

import matplotlib
import matplotlib.cm
import matplotlib.image
import numpy as np
from matplotlib.figure import Figure

from daxjax.metrics import binarize

# Share of brightness kept outside a region, so that the region stands out but the context stays.
_DIM = 0.15


def as_rgb(image: np.ndarray) -> np.ndarray:
    """An image [H, W, C] in [0, 1] with C in {1, 3} as RGB [H, W, 3]."""
    return np.repeat(image, 3, axis=-1) if image.shape[-1] == 1 else image


def overlay(image: np.ndarray, saliency: np.ndarray, alpha: float = 0.5, cmap: str = "jet") -> np.ndarray:
    """Blends a [H, W] map in [0, 1] over an image [H, W, C] in [0, 1]; returns RGB float [H, W, 3]."""
    heat = matplotlib.colormaps[cmap](np.clip(saliency, 0.0, 1.0))[..., :3]
    return (1.0 - alpha) * as_rgb(image) + alpha * heat


def region_view(image: np.ndarray, region: np.ndarray) -> np.ndarray:
    """The image [H, W, C] with the pixels outside the bool region [H, W] darkened; RGB [H, W, 3]."""
    rgb = as_rgb(image)
    return np.where(region[..., None], rgb, _DIM * rgb)


def png_bytes(rgb: np.ndarray) -> bytes:
    """Encodes an RGB float image [H, W, 3] in [0, 1] as PNG at its own size (one pixel per pixel)."""
    pixels = np.round(np.clip(rgb, 0.0, 1.0) * 255).astype(np.uint8)
    buffer = io.BytesIO()
    matplotlib.image.imsave(buffer, pixels, format="png")
    return buffer.getvalue()


def colour_bar_png(cmap: str = "jet") -> bytes:
    """A small horizontal colour bar (PNG) that reads the overlays' colours as map values 0..1."""
    fig = Figure(figsize=(3.4, 0.8), dpi=100)
    ax = fig.subplots()
    fig.colorbar(matplotlib.cm.ScalarMappable(cmap=cmap), cax=ax, orientation="horizontal")
    ax.tick_params(labelsize=8)
    ax.set_xlabel("map value: 0 = least, 1 = most important", fontsize=8)
    fig.subplots_adjust(left=0.05, right=0.95, top=0.95, bottom=0.62)
    return figure_png(fig)


def metrics_chart_png(values: Mapping[str, Mapping[str, np.ndarray]], better: Mapping[str, str],
                      references: Sequence[str] = ()) -> bytes:
    """One panel per metric: the mean per row as a bar, each image as a dot (PNG).

    values: row name (a method or a reference map) -> metric name -> per-image values [B].
    better: metric name -> "higher" or "lower" (written under the panel).
    references: rows drawn in grey (reference maps, not explainers).
    """
    rows = list(values)
    metric_names = list(better)
    fig = Figure(figsize=(3.1 * len(metric_names), 0.5 + 0.38 * len(rows)), dpi=100)
    axes = fig.subplots(1, len(metric_names), squeeze=False, sharey=True)
    positions = np.arange(len(rows))[::-1]
    colours = ["#b0b0b0" if row in references else "#3b6fb6" for row in rows]
    for ax, metric in zip(axes[0], metric_names):
        per_image = [np.asarray(values[row][metric], np.float64) for row in rows]
        ax.barh(positions, [v.mean() for v in per_image], color=colours, height=0.6)
        for y, v in zip(positions, per_image):
            ax.plot(v, np.full(v.shape, y), "o", color="#222222", markersize=2.5, alpha=0.6)
        ax.set_title(metric, fontsize=9)
        ax.set_xlabel(f"{better[metric]} is better", fontsize=8)
        ax.tick_params(labelsize=8)
        ax.spines[["top", "right"]].set_visible(False)
    axes[0, 0].set_yticks(positions, rows)
    fig.tight_layout()
    return figure_png(fig)


def figure_png(fig) -> bytes:
    """Encodes a matplotlib figure as PNG (at its own size and dpi)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


def save_png(fig: Figure, path, dpi: int = 100, colours: int | None = None) -> Path:
    """Writes `fig` as a PNG at `path` (its folder created); returns the path.

    colours: when given, a palette PNG of that many colours (about 4x smaller, e.g. for a README).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if colours is None:
        fig.savefig(path, dpi=dpi)
        return path
    from PIL import Image  # matplotlib's own dependency

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    rgb = Image.open(buffer).convert("RGB")
    rgb.quantize(colours, method=Image.Quantize.MEDIANCUT).save(path, optimize=True)
    return path


def save_grid(path, images: np.ndarray, maps: Mapping[str, np.ndarray], row_titles: Sequence[str],
              tile_inches: float = 1.9, dpi: int = 90, colours: int | None = None) -> Path:
    """Writes one PNG: a row per image, the input (titled row_titles[i]) then each method's overlay.

    images: [B, H, W, C] in [0, 1]; maps: method name -> [B, H, W] maps in [0, 1] (column order).
    colours: when given, a palette PNG of that many colours (`save_png`).
    """
    batch = len(images)
    columns = 1 + len(maps)
    fig = Figure(figsize=(tile_inches * columns, (tile_inches + 0.25) * batch), dpi=dpi)
    axes = fig.subplots(batch, columns, squeeze=False)
    for i in range(batch):
        axes[i, 0].imshow(as_rgb(images[i]))
        axes[i, 0].set_title(row_titles[i], fontsize=8)
        for j, (name, method_maps) in enumerate(maps.items(), 1):
            axes[i, j].imshow(overlay(images[i], method_maps[i]))
            axes[i, j].set_title(name, fontsize=8)
    for ax in axes.ravel():
        ax.axis("off")
    fig.tight_layout(pad=0.3)
    return save_png(fig, path, dpi=dpi, colours=colours)


def save_panel(path, image: np.ndarray, maps: dict[str, np.ndarray], title: str, k: float = 1.0) -> Path:
    """Writes one PNG: the input, then per method its overlay and its region above mean + k*std.

    maps: method name -> [H, W] map in [0, 1].
    """
    columns = 1 + 2 * len(maps)
    fig = Figure(figsize=(2.4 * columns, 2.8))
    axes = fig.subplots(1, columns, squeeze=False)
    axes[0, 0].imshow(as_rgb(image))
    axes[0, 0].set_title("input", fontsize=9)
    for i, (name, saliency) in enumerate(maps.items()):
        region = binarize(saliency[None], k=k)[0]
        axes[0, 1 + 2 * i].imshow(overlay(image, saliency))
        axes[0, 1 + 2 * i].set_title(f"{name} map", fontsize=9)
        axes[0, 2 + 2 * i].imshow(region_view(image, region))
        axes[0, 2 + 2 * i].set_title(f"{name} region (mean+{k:g}std)", fontsize=9)
    for ax in axes.ravel():
        ax.axis("off")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return save_png(fig, path)
