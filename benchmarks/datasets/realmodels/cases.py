"""Real photos with exact ground truth for a real ImageNet model: composites and restricted views.

Two kinds of case, both made only from scikit-image's bundled photos (offline, deterministic in
the seed):

- *composite*: an object cut out of a bundled photo along an outline drawn once by hand
  (`objects.json`) is pasted, at a random scale (10-35 % of the canvas), position and mirror
  image, onto a random square crop of another bundled photo. Ground truth = the pasted pixels.
  The object's class is the model's top-1 on the cut-out alone on a mid-grey canvas (computed,
  per model, not chosen by hand); a composite is kept only when the model's top-1 on it is that
  class.
- *restricted view*: the model sees only a region R of a bundled photo (or its mirror images):
  outside R every pixel is replaced by mid-grey before the model, a constant that does not depend
  on the input. Nothing outside R can change the answer, so R is exact ground truth. R is a
  rectangle, an ellipse or a connected union of SLIC superpixels (not the explainers' quickshift
  segments) covering 10-40 % of the image; the target is the restricted model's top-1.

Each case carries the black box to explain (the model itself, or the model behind the region).
"""

from __future__ import annotations

import dataclasses
import functools
import json
from pathlib import Path
from typing import Callable

import numpy as np

OBJECTS_FILE = Path(__file__).with_name("objects.json")
GREY = 0.5
# Backgrounds and restricted-view photos: every bundled photo that loads offline and shows a
# scene or a texture (not the synthetic test patterns).
PHOTOS = ("astronaut", "brick", "camera", "chelsea", "coffee", "coins", "grass", "gravel",
          "hubble_deep_field", "immunohistochemistry", "moon", "retina", "rocket", "stereo_motorcycle",
          "clock", "page", "text", "cell")
OBJECT_AREA = (0.10, 0.35)
REGION_AREA = (0.10, 0.40)
REGION_SHAPES = ("rectangle", "ellipse", "superpixels")


@dataclasses.dataclass
class Cases:
    """n cases at side x side pixels.

    kinds: "composite" | "restricted" per case; names: what each case is, for tables and pictures.
    images: float32 [n, side, side, 3] in [0, 1]; masks: bool [n, side, side] ground truth.
    targets: int32 [n] the class to explain; scores: float32 [n] its probability.
    regions: per case None (composites: the model sees everything) or the bool [side, side]
    region the model sees (restricted views; equal to the case's mask).
    """

    kinds: list
    names: list
    images: np.ndarray
    masks: np.ndarray
    targets: np.ndarray
    scores: np.ndarray
    regions: list

    def __len__(self) -> int:
        return len(self.kinds)

    def select(self, indices) -> "Cases":
        indices = list(indices)
        return Cases([self.kinds[i] for i in indices], [self.names[i] for i in indices], self.images[indices],
                     self.masks[indices], self.targets[indices], self.scores[indices],
                     [self.regions[i] for i in indices])

    def black_box(self, model: Callable, index: int) -> Callable:
        """The black box case `index` is explained with: the model, or the model behind its region."""
        region = self.regions[index]
        return model if region is None else RestrictedView(model, region)


class RestrictedView:
    """A model that sees only `region` of its input: x -> model(where(region, x, GREY)).

    region: bool [H, W]. Keeps `num_classes` and `class_names` of the model it wraps.
    """

    def __init__(self, model: Callable, region: np.ndarray):
        self.model = model
        self.region = np.asarray(region, bool)
        self.num_classes = getattr(model, "num_classes", None)
        self.class_names = getattr(model, "class_names", None)
        self.output = "probs"

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, np.float32)
        return self.model(np.where(self.region[None, :, :, None], x, np.float32(GREY)))


@functools.cache
def photo(name: str) -> np.ndarray:
    """A bundled photo, float32 RGB [h, w, 3] in [0, 1] at its own size (grey ones as RGB)."""
    from skimage import data

    image = getattr(data, name)()
    if isinstance(image, tuple):  # stereo_motorcycle: (left, right, disparity)
        image = image[0]
    image = np.asarray(image)
    if image.dtype == bool:
        image = image.astype(np.uint8) * 255
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=-1)
    image = image[..., :3]
    if image.dtype == np.uint8:
        return image.astype(np.float32) / 255.0
    return np.clip(image.astype(np.float32), 0.0, 1.0)


def resize(image: np.ndarray, shape) -> np.ndarray:
    from skimage.transform import resize as sk_resize

    order = 0 if image.dtype == bool else 1
    out = sk_resize(image, shape, order=order, anti_aliasing=image.dtype != bool, preserve_range=True)
    return out.astype(image.dtype)


@functools.cache
def objects() -> dict:
    """name -> (RGB float32 [h, w, 3] of the outline's bounding box, bool [h, w] cut-out mask)."""
    from skimage.draw import polygon2mask

    table = json.loads(OBJECTS_FILE.read_text())["objects"]
    out = {}
    for name, entry in table.items():
        image = photo(entry["photo"])
        xy = np.asarray(entry["outline"], float)
        inside = polygon2mask(image.shape[:2], xy[:, ::-1])
        rows, cols = np.nonzero(inside)
        box = slice(rows.min(), rows.max() + 1), slice(cols.min(), cols.max() + 1)
        out[name] = (image[box], inside[box])
    return out


def _top1(model, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    probs = np.asarray(model(np.asarray(images, np.float32)))
    top = probs.argmax(axis=1)
    return top.astype(np.int32), probs[np.arange(len(top)), top].astype(np.float32)


def object_classes(model, side: int) -> dict:
    """name -> the model's top-1 class of the cut-out alone, as large as fits, on mid-grey."""
    canvases = []
    for name, (image, inside) in objects().items():
        scale = side / max(inside.shape)
        h, w = max(1, round(inside.shape[0] * scale)), max(1, round(inside.shape[1] * scale))
        canvas = np.full((side, side, 3), GREY, np.float32)
        top, left = (side - h) // 2, (side - w) // 2
        patch, keep = resize(image, (h, w, 3)), resize(inside, (h, w))
        canvas[top:top + h, left:left + w] = np.where(keep[..., None], patch, GREY)
        canvases.append(canvas)
    return dict(zip(objects(), _top1(model, np.stack(canvases))[0].tolist()))


def _background(rng: np.random.Generator, exclude: str, side: int) -> tuple[str, np.ndarray]:
    name = rng.choice([p for p in PHOTOS if p != exclude])
    image = photo(name)
    h, w = image.shape[:2]
    crop = int(rng.uniform(0.6, 1.0) * min(h, w))
    top, left = rng.integers(0, h - crop + 1), rng.integers(0, w - crop + 1)
    out = resize(image[top:top + crop, left:left + crop], (side, side, 3))
    return name, out[:, ::-1] if rng.random() < 0.5 else out


def draw_composite(rng: np.random.Generator, side: int) -> tuple[str, str, np.ndarray, np.ndarray, np.ndarray]:
    """(object name, description, image [side, side, 3], mask [side, side], the background before
    pasting [side, side, 3]) of one composite."""
    names = sorted(objects())
    name = names[rng.integers(len(names))]
    image, inside = objects()[name]
    source = json.loads(OBJECTS_FILE.read_text())["objects"][name]["photo"]
    background_name, canvas = _background(rng, source, side)
    area = rng.uniform(*OBJECT_AREA)
    # Scale so that the cut-out covers `area` of the canvas, but its box fits in the canvas.
    scale = min(np.sqrt(area * side * side / inside.sum()), side / max(inside.shape))
    h, w = max(2, round(inside.shape[0] * scale)), max(2, round(inside.shape[1] * scale))
    patch, keep = resize(image, (h, w, 3)), resize(inside, (h, w))
    if rng.random() < 0.5:
        patch, keep = patch[:, ::-1], keep[:, ::-1]
    top, left = rng.integers(0, side - h + 1), rng.integers(0, side - w + 1)
    mask = np.zeros((side, side), bool)
    mask[top:top + h, left:left + w] = keep
    out = canvas.copy()
    out[top:top + h, left:left + w] = np.where(keep[..., None], patch, out[top:top + h, left:left + w])
    return name, f"{name} on {background_name}", np.clip(out, 0, 1).astype(np.float32), mask, canvas


def draw_region(rng: np.random.Generator, image: np.ndarray) -> tuple[str, np.ndarray]:
    """(shape name, bool [H, W] region covering 10-40 % of the image) for a restricted view."""
    side = image.shape[0]
    area = rng.uniform(*REGION_AREA)
    shape = REGION_SHAPES[rng.integers(len(REGION_SHAPES))]
    yy, xx = np.mgrid[:side, :side] + 0.5
    if shape in ("rectangle", "ellipse"):
        aspect = np.exp(rng.uniform(np.log(0.5), np.log(2.0)))
        # Half-axes with (2a)(2b) = area * side^2 for a rectangle, pi a b for an ellipse.
        product = area * side * side / (4.0 if shape == "rectangle" else np.pi)
        a = min(np.sqrt(product * aspect), side / 2 - 1)
        b = min(product / a, side / 2 - 1)
        cy, cx = rng.uniform(b, side - b), rng.uniform(a, side - a)
        if shape == "rectangle":
            return shape, (np.abs(xx - cx) <= a) & (np.abs(yy - cy) <= b)
        return shape, ((xx - cx) / a) ** 2 + ((yy - cy) / b) ** 2 <= 1.0
    from skimage.segmentation import slic

    labels = slic(image, n_segments=int(rng.integers(30, 80)), compactness=10, start_label=0,
                  channel_axis=-1)
    region = labels == labels[rng.integers(side), rng.integers(side)]
    while region.mean() < area:
        # Grow by a random neighbouring superpixel (4-neighbourhood), so the union stays connected,
        # among those that keep the region within REGION_AREA.
        edge = np.zeros_like(region)
        edge[1:] |= region[:-1]
        edge[:-1] |= region[1:]
        edge[:, 1:] |= region[:, :-1]
        edge[:, :-1] |= region[:, 1:]
        candidates = [c for c in np.unique(labels[edge & ~region])
                      if (region | (labels == c)).mean() <= REGION_AREA[1]]
        if not candidates:
            break
        region |= labels == candidates[rng.integers(len(candidates))]
    if region.mean() > REGION_AREA[1]:  # the seed superpixel alone was too large: draw again
        return draw_region(rng, image)
    return shape, region


def make_cases(model, side: int, composites: int, restricted: int, seed: int = 0,
               max_draws: int = 40) -> Cases:
    """`composites` kept composites and `restricted` restricted views for `model` at side x side.

    Deterministic in (model, side, seed). Composites are drawn until `composites` are kept or
    `max_draws` per wanted case have been tried (then fewer are returned, never silently: the
    caller reports the counts).
    """
    rng = np.random.default_rng([seed, side])
    classes = object_classes(model, side)
    kinds, names, images, masks, regions = [], [], [], [], []
    kept, draws = 0, 0
    while kept < composites and draws < max_draws * composites:
        batch = [draw_composite(rng, side) for _ in range(16)]
        draws += len(batch)
        top, _ = _top1(model, np.stack([b[2] for b in batch]))
        for (name, description, image, mask, _), t in zip(batch, top):
            if t == classes[name] and kept < composites:
                kinds.append("composite"), names.append(description), images.append(image)
                masks.append(mask), regions.append(None)
                kept += 1
    variants = [(name, flip) for flip in ("", "mirrored", "upside down") for name in PHOTOS]
    order = rng.permutation(len(variants))
    for i in range(restricted):
        name, flip = variants[order[i % len(variants)]]
        image = resize(photo(name), (side, side, 3))
        image = image[:, ::-1] if flip == "mirrored" else image[::-1] if flip == "upside down" else image
        image = np.ascontiguousarray(image, np.float32)
        shape, region = draw_region(rng, image)
        kinds.append("restricted"), names.append(f"{shape} of {name}{' ' + flip if flip else ''}")
        images.append(image), masks.append(region), regions.append(region)
    images = np.stack(images).astype(np.float32)
    masks = np.stack(masks)
    targets, scores = np.zeros(len(kinds), np.int32), np.zeros(len(kinds), np.float32)
    for i in range(len(kinds)):
        bb = model if regions[i] is None else RestrictedView(model, regions[i])
        top, p = _top1(bb, images[i:i + 1])
        targets[i], scores[i] = top[0], p[0]
    return Cases(kinds, names, images, masks, targets, scores, regions)
