"""Pictures of explanations: heat-map overlays and per-image panels (matplotlib, no display)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from daxjax.metrics import binarize  # noqa: E402


def overlay(image: np.ndarray, saliency: np.ndarray, alpha: float = 0.5, cmap: str = "jet") -> np.ndarray:
    """Blends a [H, W] map in [0, 1] over an image [H, W, C] in [0, 1]; returns RGB float [H, W, 3]."""
    rgb = np.repeat(image, 3, axis=-1) if image.shape[-1] == 1 else image
    heat = plt.get_cmap(cmap)(np.clip(saliency, 0.0, 1.0))[..., :3]
    return (1.0 - alpha) * rgb + alpha * heat


def save_panel(path, image: np.ndarray, maps: dict[str, np.ndarray], title: str, k: float = 1.0) -> Path:
    """Writes one PNG: the input, then per method its overlay and its region above mean + k*std.

    maps: method name -> [H, W] map in [0, 1].
    """
    columns = 1 + 2 * len(maps)
    fig, axes = plt.subplots(1, columns, figsize=(2.4 * columns, 2.8), squeeze=False)
    rgb = np.repeat(image, 3, axis=-1) if image.shape[-1] == 1 else image
    axes[0, 0].imshow(rgb)
    axes[0, 0].set_title("input", fontsize=9)
    for i, (name, saliency) in enumerate(maps.items()):
        region = binarize(saliency[None], k=k)[0]
        axes[0, 1 + 2 * i].imshow(overlay(image, saliency))
        axes[0, 1 + 2 * i].set_title(f"{name} map", fontsize=9)
        axes[0, 2 + 2 * i].imshow(np.where(region[..., None], rgb, 0.15 * rgb))
        axes[0, 2 + 2 * i].set_title(f"{name} region (mean+{k:g}std)", fontsize=9)
    for ax in axes.ravel():
        ax.axis("off")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
