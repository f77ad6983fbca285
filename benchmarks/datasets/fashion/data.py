"""Fashion-MNIST objects pasted onto real photos: scenes with an exact ground-truth object mask.

Data sources (both offline):
- Fashion-MNIST (Zalando SE, MIT licence) from Debian's ``dataset-fashion-mnist`` package
  (``apt-get install -y dataset-fashion-mnist``), read from ``/usr/share/datasets/fashion-mnist``.
- Backgrounds: random crops of the photos bundled inside scikit-image's wheel (``skimage.data``).

A scene is a 64 x 64 RGB image: a dimmed, partly desaturated crop of a photo, the *target*
object (a Fashion-MNIST item, randomly flipped, scaled to 28-40 px, rotated by up to +-30 degrees
and tinted with a random colour) and, in some scenes, a *distractor* item of another class pasted
at about half the size (14-20 px) where it does not touch the target. The label is the target's
class: **the class of the large object**. Every pixel of an object's mask shows the object, and
no pixel outside the masks differs from the background photo.

Everything is a deterministic function of ``(seed, split, index)``: scene i of
``make_scenes(n, seed, split)`` is the same for every n > i.
"""

from __future__ import annotations

import colorsys
import dataclasses
import functools
import gzip
import os
from pathlib import Path

import numpy as np
from scipy import ndimage
from skimage import color, data, transform

APT_PACKAGE = "dataset-fashion-mnist"
DEFAULT_DIR = Path("/usr/share/datasets/fashion-mnist")
# Where the Debian package puts the files; FASHION_MNIST_DIR overrides it (same file names).
ENV_DIR = "FASHION_MNIST_DIR"
_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
_SPLIT_ID = {"train": 0, "test": 1}

# The ten Fashion-MNIST classes, in the dataset's label order.
FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                   "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
# The classes the benchmark uses (dataset labels). T-shirt/top (0), Pullover (2), Coat (4) and
# Shirt (6) are left out: the four upper-body garments are hard to tell apart from each other (and
# sleeveless tops from dresses) even for a CNN on clean 28 x 28 images, and the benchmark needs a
# black box that is right >= 90 % of the time on cluttered scenes. Scene labels are indices into
# this tuple (0..5).
BENCH_LABELS = (1, 3, 5, 7, 8, 9)
CLASS_NAMES = tuple(FASHION_CLASSES[i] for i in BENCH_LABELS)

# Photos bundled with scikit-image (no download at run time), colour and greyscale, each public
# domain or CC0 according to its skimage.data docstring (see MODEL_CARD.md for the sources).
BACKGROUND_PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "immunohistochemistry",
                     "hubble_deep_field", "retina", "camera", "coins", "grass", "gravel",
                     "brick", "clock")
# Photos are first shrunk so their shorter side has this many pixels; crops are taken from that.
_PHOTO_SIDE = 256

TARGET_SIDE = (28, 40)      # side in px (of `size`=64) of the scaled 28x28 source box
DISTRACTOR_SIDE = (14, 20)  # distractors are always about half the target's size
MAX_ROTATION = 30.0         # degrees, both directions
ALPHA_THRESHOLD = 0.1       # object pixels: resampled intensity > this (then holes filled)
SEPARATION = 2              # distractor mask stays this many px (chessboard) away from the target's
_PLACEMENT_TRIES = 50


@dataclasses.dataclass(frozen=True)
class Scenes:
    """A batch of scenes.

    images: float32 [n, size, size, 3] in [0, 1].
    masks: bool [n, size, size], the target object's pixels (never empty).
    labels: int64 [n], the target's class, an index into ``CLASS_NAMES``.
    distractor_masks: bool [n, size, size], the distractor's pixels (all False when none).
    distractor_labels: int64 [n], the distractor's class index, -1 when there is none.
    """

    images: np.ndarray
    masks: np.ndarray
    labels: np.ndarray
    distractor_masks: np.ndarray
    distractor_labels: np.ndarray

    def __len__(self) -> int:
        return int(self.labels.shape[0])


def data_dir() -> Path:
    return Path(os.environ.get(ENV_DIR, DEFAULT_DIR))


def dataset_available() -> bool:
    """True when all four Fashion-MNIST files are installed (plain or .gz)."""
    return all(_find(name) is not None for pair in _FILES.values() for name in pair)


def _find(name: str) -> Path | None:
    for candidate in (data_dir() / name, data_dir() / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    return None


def _read_idx(name: str) -> np.ndarray:
    """An IDX file (plain or gzipped) as a numpy array."""
    path = _find(name)
    if path is None:
        raise FileNotFoundError(
            f"Fashion-MNIST file {name}[.gz] not found in {data_dir()}. Install it with "
            f"`apt-get update && apt-get install -y {APT_PACKAGE}` (or run benchmarks/datasets/fashion/setup.sh), "
            f"or point {ENV_DIR} at a folder holding the four idx files."
        )
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        raw = f.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise ValueError(f"{path}: not an unsigned-byte IDX file")
    ndim = raw[3]
    dims = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    body = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(dims)):
        raise ValueError(f"{path}: header says {dims}, body has {body.size} bytes")
    return body.reshape(dims)


@functools.lru_cache(maxsize=2)
def load_fashion(split: str) -> tuple[np.ndarray, np.ndarray]:
    """Fashion-MNIST ``split`` ("train": 60k, "test": 10k) as (images uint8 [n, 28, 28], labels uint8 [n]).

    Labels are the dataset's own 0..9 (see ``FASHION_CLASSES``). The arrays are read-only.
    """
    if split not in _FILES:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    images_name, labels_name = _FILES[split]
    images, labels = _read_idx(images_name), _read_idx(labels_name)
    if images.shape[0] != labels.shape[0] or images.shape[1:] != (28, 28):
        raise ValueError(f"Fashion-MNIST {split}: images {images.shape} and labels {labels.shape} disagree")
    images.flags.writeable = False
    labels.flags.writeable = False
    return images, labels


@functools.lru_cache(maxsize=1)
def _photos() -> tuple[np.ndarray, ...]:
    """The background photos as float32 RGB in [0, 1], shorter side _PHOTO_SIDE px."""
    out = []
    for name in BACKGROUND_PHOTOS:
        photo = np.asarray(getattr(data, name)())
        if photo.ndim == 2:
            photo = np.stack([photo] * 3, axis=-1)
        photo = photo[..., :3].astype(np.float32) / 255.0
        scale = _PHOTO_SIDE / min(photo.shape[:2])
        shape = (round(photo.shape[0] * scale), round(photo.shape[1] * scale))
        out.append(transform.resize(photo, shape, anti_aliasing=True).astype(np.float32))
    return tuple(out)


@functools.lru_cache(maxsize=2)
def _by_class(split: str) -> tuple[np.ndarray, ...]:
    """For each benchmark class, the indices of the split's images of that class."""
    _, labels = load_fashion(split)
    return tuple(np.flatnonzero(labels == label) for label in BENCH_LABELS)


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    photos = _photos()
    photo = photos[rng.integers(len(photos))]
    side = int(rng.integers(64, int(0.8 * min(photo.shape[:2])) + 1))
    top = rng.integers(photo.shape[0] - side + 1)
    left = rng.integers(photo.shape[1] - side + 1)
    crop = transform.resize(photo[top:top + side, left:left + side], (size, size), anti_aliasing=True)
    grey = color.rgb2gray(crop)[..., None]
    keep = rng.uniform(0.2, 0.7)        # fraction of the photo's colour kept
    dim = rng.uniform(0.35, 0.65)       # brightness scale: objects stay the brightest things
    return ((keep * crop + (1.0 - keep) * grey) * dim).astype(np.float32)


def _object(rng: np.random.Generator, source: np.ndarray, side_range: tuple[int, int]):
    """A Fashion-MNIST item flipped, scaled, rotated and tinted.

    Returns (rgb float32 [h, w, 3], mask bool [h, w]) cropped to the mask's bounding box.
    """
    item = source.astype(np.float32) / 255.0
    if rng.random() < 0.5:
        item = item[:, ::-1]
    side = int(rng.integers(side_range[0], side_range[1] + 1))
    item = transform.resize(item, (side, side), order=1, anti_aliasing=side < 28)
    angle = rng.uniform(-MAX_ROTATION, MAX_ROTATION)
    item = transform.rotate(item, angle, resize=True, order=1, mode="constant", cval=0.0)
    mask = ndimage.binary_fill_holes(item > ALPHA_THRESHOLD)
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    box = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
    item, mask = item[box], mask[box]
    hue, sat, val = rng.random(), rng.uniform(0.0, 0.6), rng.uniform(0.8, 1.0)
    tint = np.array(colorsys.hsv_to_rgb(hue, sat, val), np.float32)
    rgb = tint * (0.3 + 0.7 * np.clip(item, 0.0, 1.0))[..., None]
    return rgb.astype(np.float32), mask


def _paste(image: np.ndarray, full_mask: np.ndarray, rgb: np.ndarray, mask: np.ndarray, top: int, left: int):
    h, w = mask.shape
    region = (slice(top, top + h), slice(left, left + w))
    image[region][mask] = rgb[mask]
    full_mask[region] = mask


def _scene(seed: int, split: str, index: int, size: int, distractor_prob: float):
    rng = np.random.default_rng([seed, _SPLIT_ID[split], index])
    images, _ = load_fashion(split)
    by_class = _by_class(split)
    image = _background(rng, size)

    label = int(rng.integers(len(BENCH_LABELS)))
    rgb, mask = _object(rng, images[rng.choice(by_class[label])], TARGET_SIDE)
    if max(mask.shape) > size:
        raise ValueError(f"size={size} is too small for {TARGET_SIDE[1]} px objects")
    target = np.zeros((size, size), bool)
    top, left = (int(rng.integers(size - s + 1)) for s in mask.shape)
    _paste(image, target, rgb, mask, top, left)

    distractor = np.zeros((size, size), bool)
    distractor_label = -1
    if rng.random() < distractor_prob:
        other = int(rng.integers(len(BENCH_LABELS) - 1))
        other += other >= label
        d_rgb, d_mask = _object(rng, images[rng.choice(by_class[other])], DISTRACTOR_SIDE)
        keep_out = ndimage.binary_dilation(target, np.ones((3, 3), bool), iterations=SEPARATION)
        h, w = d_mask.shape
        for _ in range(_PLACEMENT_TRIES):
            d_top, d_left = int(rng.integers(size - h + 1)), int(rng.integers(size - w + 1))
            if not np.any(keep_out[d_top:d_top + h, d_left:d_left + w] & d_mask):
                _paste(image, distractor, d_rgb, d_mask, d_top, d_left)
                distractor_label = other
                break
    return np.clip(image, 0.0, 1.0), target, label, distractor, distractor_label


def make_scenes(count: int, seed: int = 0, split: str = "test", size: int = 64,
                distractor_prob: float = 0.5) -> Scenes:
    """``count`` scenes drawn from Fashion-MNIST's ``split`` ("train" or "test") objects.

    Args:
        count: number of scenes.
        seed: scene i depends only on (seed, split, i).
        split: which Fashion-MNIST split the objects come from (backgrounds are shared).
        size: image side in px (>= 64 recommended; objects are 28-40 px).
        distractor_prob: chance that a scene gets a distractor. A distractor that finds no free
            place after 50 random tries is left out (rare; ``distractor_labels`` is then -1).
    """
    if count < 0:
        raise ValueError(f"count must be >= 0, got {count}")
    if split not in _SPLIT_ID:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    if not 0.0 <= distractor_prob <= 1.0:
        raise ValueError(f"distractor_prob must be in [0, 1], got {distractor_prob}")
    images = np.empty((count, size, size, 3), np.float32)
    masks = np.zeros((count, size, size), bool)
    d_masks = np.zeros((count, size, size), bool)
    labels = np.empty(count, np.int64)
    d_labels = np.empty(count, np.int64)
    for i in range(count):
        images[i], masks[i], labels[i], d_masks[i], d_labels[i] = _scene(seed, split, i, size, distractor_prob)
    return Scenes(images, masks, labels, d_masks, d_labels)
