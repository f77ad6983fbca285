"""Demo and benchmark images: crops of scikit-image's bundled photos with a planted pure-colour patch.

The bundled colour-patch black box (`blackbox_adapters/models`) decides by the pure-colour pixels,
so the planted patch is the exact ground truth of what it looks at.
"""

from __future__ import annotations

import numpy as np
from skimage import data, transform

PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "immunohistochemistry")
PATCH_COLOURS = {"red": (0.95, 0.05, 0.05), "green": (0.05, 0.95, 0.05), "blue": (0.05, 0.05, 0.95)}


def _photos() -> list[np.ndarray]:
    return [getattr(data, name)().astype(np.float32) / 255.0 for name in PHOTOS]


def colour_patch_scenes(count: int, size: int, seed: int = 0, colour: str = "red"):
    """Returns (images float32 [count, size, size, 3] in [0, 1], masks bool [count, size, size]).

    Each image is a random crop of a bundled photo, resized to size x size, with a square patch
    of the given pure colour covering 6-12 % of the image at a random position.
    """
    rng = np.random.default_rng(seed)
    photos = _photos()
    images = np.empty((count, size, size, 3), np.float32)
    masks = np.zeros((count, size, size), bool)
    for i in range(count):
        photo = photos[rng.integers(len(photos))]
        crop = int(min(photo.shape[:2]) * rng.uniform(0.5, 1.0))
        top = rng.integers(photo.shape[0] - crop + 1)
        left = rng.integers(photo.shape[1] - crop + 1)
        images[i] = transform.resize(photo[top:top + crop, left:left + crop], (size, size),
                                     anti_aliasing=True)
        side = int(size * np.sqrt(rng.uniform(0.06, 0.12)))
        r, c = rng.integers(size - side + 1, size=2)
        images[i, r:r + side, c:c + side] = PATCH_COLOURS[colour]
        masks[i, r:r + side, c:c + side] = True
    return np.clip(images, 0.0, 1.0), masks
