"""Metrics that judge explanation maps.

Maps are float [B, H, W] (higher = more important); ground-truth masks are bool or 0/1
[B, H, W] (nonzero = the object). Input checks run on the host and name the offending image;
the arithmetic is vectorised, jitted JAX.

- Localisation against ground truth: `iou`, `binarize`, `pointing_game`, `sensitivity`.
- Faithfulness to the black box: `deletion_auc`, `insertion_auc` (the RISE protocol).
- Sanity checks: `rank_correlation`, `model_randomisation` (Adebayo et al., 2018).

None of them returns NaN: undefined cases either have a documented value or raise ValueError.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from blackbox_adapters import as_blackbox, check_probabilities
from daxjax._checks import positive_int
from daxjax.perturbation.fills import PIXEL_FILLS, fill_images
from daxjax.inputs import as_float_images, as_targets, image_digest
from daxjax.device.querying import device_blackbox, input_elements, query_chunk, query_targets
from daxjax.perturbation.sampling import image_keys

# Curve points of deletion/insertion: steps + 1 points, 1/steps of the pixels per step. RISE
# used 224 px per step at 224 x 224 (1/224); 100 steps keep the AUC within about 1 % of that
# at less than half the queries.
DEFAULT_STEPS = 100
# What removed pixels show ("deletion") or what the image starts from ("insertion").
AUC_FILLS = PIXEL_FILLS
# Folded into each image's key so that the wrong-class draw of `sensitivity` is a stream of its own.
_WRONG_CLASS_STREAM = 0x5E45


# --------------------------------------------------------------------------------------------
# IoU with ground truth


def binarize(maps: Any, k: float = 1.0, threshold: float | None = None) -> np.ndarray:
    """The "explained" region of each map, bool [B, H, W].

    A pixel is in the region when its value is strictly above the map's threshold:
    mean + k·std of that map, or the fixed `threshold` when given. A constant map has no
    meaningful statistical threshold and yields an empty region (with a fixed threshold it is
    compared like any other map).
    """
    checked = _check_maps(maps)
    return np.asarray(_binarize(jnp.asarray(checked), k, threshold))


def iou(maps: Any, masks: Any, k: float = 1.0, *, threshold: float | None = None) -> np.ndarray:
    """Intersection over union of each binarised map with its ground-truth mask, float32 [B].

    IoU = |E ∧ G| / |E ∨ G| with E = `binarize(maps, k, threshold)` and G = masks ≠ 0.
    A constant map (std 0, so mean + k·std is undefined as a cut) scores 0.0 under the
    statistical threshold; the result never contains NaN.

    Raises:
        ValueError: shapes differ or are not [B, H, W] (message names both shapes), a map
            contains NaN/inf, or a mask is empty (IoU undefined); messages name the image index.
    """
    checked_maps, truth = _check_maps_and_masks(maps, masks, "IoU")
    explained = _binarize(jnp.asarray(checked_maps), k, threshold)
    return np.asarray(_iou_of_regions(explained, jnp.asarray(truth)), dtype=np.float32)


# --------------------------------------------------------------------------------------------
# Pointing game


def pointing_game(maps: Any, masks: Any, *, tolerance: float = 0) -> np.ndarray:
    """Whether each map's maximum points into its ground-truth object, float32 [B] in [0, 1].

    A hit is the map's maximal pixel lying inside the mask dilated by `tolerance` pixels
    (Euclidean: every pixel within distance `tolerance` of the object counts; Zhang et al. used
    15 px at ImageNet resolution). The mean over images is the pointing-game accuracy.

    Ties: when several pixels share the maximum, the score is the fraction of them that hit,
    i.e. the expected hit of a uniformly random choice among them. A unique maximum scores
    exactly 1.0 or 0.0; a constant map (no point indicated) scores the dilated mask's share of the
    image, the hit rate of a blind guess. Maps cannot gain by flat plateaus at their maximum.

    Raises:
        ValueError: shapes differ (naming both), a map holds NaN/inf, a mask is empty, or
            tolerance < 0.
    """
    if not tolerance >= 0:
        raise ValueError(f"tolerance must be >= 0 pixels, got {tolerance}")
    checked_maps, truth = _check_maps_and_masks(maps, masks, "the pointing game")
    region = _dilate(jnp.asarray(truth), float(tolerance)) if tolerance > 0 else jnp.asarray(truth)
    return np.asarray(_pointing_hits(jnp.asarray(checked_maps), region), dtype=np.float32)


@jax.jit
def _pointing_hits(maps: jax.Array, region: jax.Array) -> jax.Array:
    """Share of each map's maximal pixels inside the bool region [B, H, W] -> [B]."""
    peaks = maps == maps.max(axis=(1, 2), keepdims=True)
    return jnp.sum(peaks & region, axis=(1, 2)) / jnp.sum(peaks, axis=(1, 2))


@functools.partial(jax.jit, static_argnames="radius")
def _dilate(masks: jax.Array, radius: float) -> jax.Array:
    """bool [B, H, W] masks grown by every pixel within Euclidean distance `radius`."""
    reach = int(radius)
    offsets = jnp.arange(-reach, reach + 1)
    disk = (offsets[:, None] ** 2 + offsets[None, :] ** 2 <= radius ** 2).astype(jnp.float32)
    covered = jax.lax.conv_general_dilated(masks[:, None].astype(jnp.float32), disk[None, None],
                                           window_strides=(1, 1), padding="SAME")
    # The convolution counts object pixels under the disk; counts are whole numbers.
    return covered[:, 0] > 0.5


# --------------------------------------------------------------------------------------------
# Deletion and insertion (RISE protocol)


def deletion_auc(bb, images: Any, maps: Any, targets: Any, *, steps: int = DEFAULT_STEPS,
                 fill: str = "zero", granularity: Any = None, normalize: bool = False,
                 chunk: int | None = None, blur_sigma: float | None = None) -> np.ndarray:
    """Area under the deletion curve of each map, float32 [B]; lower is better.

    Pixels are removed in descending saliency order, 1/`steps` of the image per step: removed
    pixels show the `fill`. The curve is the black box's probability of the target at each step
    (steps + 1 points, the first on the unperturbed image), integrated with the trapezoid rule
    over the removed fraction in [0, 1].

    Args:
      bb: a black box or any callable x [n, H, W, C] float32 in [0, 1] -> probabilities [n, K].
      images: float32 [B, H, W, C] in [0, 1] or uint8 [B, H, W, C]; C in {1, 3}.
      maps: float [B, H, W] saliency, same H, W as the images.
      targets: int [B] classes (one int for all), or None for the black box's top-1 class.
      steps: curve steps; point i has the first floor(i · H·W / steps) pixels removed, so each
        step removes 1/steps of the image and all of it is gone at the last. Costs steps + 1
        queries per image.
      fill: what removed pixels show: "zero" (black, as RISE), "blur" (Gaussian blur of the
        image, see `blur_sigma`), or "image_mean" (the image's mean colour).
        Zero fill is fooled by scattered maps (a few black pixels everywhere already destroy a
        prediction); report "blur" and a coarse `granularity` beside it.
      granularity: the units removed together. None or "pixel": single pixels (ties in the map
        broken by raster order, first pixel first). An int p: p x p square patches on a grid
        anchored at the top-left. An int array [B, H, W]: one segment map per image (e.g.
        superpixels). Segments are ordered by their mean saliency (ties by segment id, lowest
        first) and removed whole, so a step may remove a little more or less than 1/steps of
        the pixels; the curve's x axis is the fraction of pixels really removed.
      normalize: divide each AUC by the black box's probability of the target on the unperturbed
        image (as `Explanation.scores`): raw AUCs of images with a low target probability are
        tiny. A normalised AUC can exceed 1 when perturbations raise the probability.
      chunk: curve points per image in one black-box call (memory ~ B · chunk · H · W · C);
        None: `querying.query_chunk`.
      blur_sigma: the Gaussian's standard deviation in pixels for fill="blur"; None: max(H, W) / 16
        as everywhere in daxjax (14 px at 224², a stronger blur than RISE's sigma of 5 px).

    Raises:
      ValueError: bad images, targets or options; maps not [B, H, W] of the images' size
        (naming both shapes); NaN/inf in a map (naming the image); a segment map of the wrong
        shape or with negative ids; normalize with a zero unperturbed probability (naming the
        image). `BlackBoxError` when the black box fails, naming the images concerned.
    """
    return _perturbation_auc(bb, images, maps, targets, deleting=True, steps=steps, fill=fill,
                             granularity=granularity, normalize=normalize, chunk=chunk,
                             blur_sigma=blur_sigma)


def insertion_auc(bb, images: Any, maps: Any, targets: Any, *, steps: int = DEFAULT_STEPS,
                  fill: str = "blur", granularity: Any = None, normalize: bool = False,
                  chunk: int | None = None, blur_sigma: float | None = None) -> np.ndarray:
    """Area under the insertion curve of each map, float32 [B]; higher is better.

    The image starts as its `fill` (blurred by default, as RISE) and the original pixels are
    revealed in descending saliency order, 1/`steps` of the image per step; the last of the
    steps + 1 points is the unperturbed image. Trapezoid AUC of the target's probability over the
    revealed fraction in [0, 1]. Arguments, ordering, ties and errors as in `deletion_auc`.
    """
    return _perturbation_auc(bb, images, maps, targets, deleting=False, steps=steps, fill=fill,
                             granularity=granularity, normalize=normalize, chunk=chunk,
                             blur_sigma=blur_sigma)


def _perturbation_auc(bb, images, maps, targets, *, deleting: bool, steps: int, fill: str,
                      granularity, normalize: bool, chunk: int | None,
                      blur_sigma: float | None) -> np.ndarray:
    """Deletion (`deleting`) or insertion AUC [B]; see `deletion_auc`."""
    x = as_float_images(images)
    batch, height, width, _ = x.shape
    saliency = _check_maps_match_images(maps, x)
    steps = positive_int("steps", steps)
    chunk = query_chunk(None if chunk is None else positive_int("chunk", chunk), batch, input_elements(x))
    if fill not in AUC_FILLS:
        raise ValueError(f"unknown fill {fill!r}; valid: {', '.join(AUC_FILLS)}")
    segments, num_segments = _removal_units(granularity, batch, height, width)
    baseline = fill_images(x, np.zeros((batch, height, width), np.int32), fill, blur_sigma=blur_sigma)

    user_bb, bb = bb, as_blackbox(bb)
    probs = check_probabilities(bb(x), batch, what="black box on the unperturbed images")
    num_classes = probs.shape[1]
    targets = as_targets(targets, batch, num_classes, default=probs.argmax(axis=1))

    removal_ends = _removal_ends(jnp.asarray(saliency), jnp.asarray(segments), num_segments)
    schedule = jnp.asarray(_step_schedule(steps, height * width))
    fractions = _removed_fractions(removal_ends, schedule)
    images_d, baseline_d = jnp.asarray(x), jnp.asarray(baseline)
    # Deletion: selected (removed) pixels show the fill. Insertion: selected (revealed) pixels
    # show the image, the rest the fill.
    shown, hidden = (baseline_d, images_d) if deleting else (images_d, baseline_d)
    curves = query_targets(device_blackbox(user_bb, bb, num_classes), _curve_images,
                           (shown, hidden, removal_ends, jnp.broadcast_to(schedule, (batch, steps + 1))),
                           jnp.asarray(targets, jnp.int32), steps + 1, chunk, list(range(batch)))
    areas = np.asarray(_trapezoid(curves, fractions), dtype=np.float32)
    if not normalize:
        return areas
    scores = probs[np.arange(batch), targets]
    zero = np.flatnonzero(scores <= 0)
    if zero.size:
        raise ValueError(f"the black box gives the target probability 0 on unperturbed image(s) "
                         f"{zero.tolist()}; the normalised AUC is undefined")
    return (areas / scores).astype(np.float32)


def _removal_units(granularity, batch: int, height: int, width: int) -> tuple[np.ndarray, int]:
    """The units removed together as (int32 [B, H, W] ids in [0, S), S)."""
    if granularity is None or (isinstance(granularity, str) and granularity == "pixel"):
        pixels = np.arange(height * width, dtype=np.int32).reshape(height, width)
        return np.broadcast_to(pixels, (batch, height, width)), height * width
    if isinstance(granularity, str):
        raise ValueError(f"granularity must be None, 'pixel', a patch size or a segment map [B, H, W]; "
                         f"got {granularity!r}")
    if isinstance(granularity, (int, np.integer)) and not isinstance(granularity, bool):
        patch = positive_int("granularity (patch size)", granularity)
        cols = -(-width // patch)
        rows = np.arange(height)[:, None] // patch
        patches = (rows * cols + np.arange(width)[None, :] // patch).astype(np.int32)
        return np.broadcast_to(patches, (batch, height, width)), int(patches.max()) + 1
    segments = np.asarray(granularity)
    if segments.shape != (batch, height, width):
        raise ValueError(f"segment map shape {segments.shape} does not match images shape "
                         f"{(batch, height, width)} (expected [B, H, W])")
    if not np.issubdtype(segments.dtype, np.integer):
        raise ValueError(f"segment map must hold integer ids; got dtype {segments.dtype}")
    negative = np.flatnonzero((segments < 0).any(axis=(1, 2)))
    if negative.size:
        raise ValueError(f"segment map(s) of image(s) {negative.tolist()} hold negative ids")
    # Contiguous ids keep the per-segment arrays small whatever the caller's numbering; np.unique
    # keeps the ids' order, so the tie rule (lowest id first) is unchanged.
    unique, contiguous = np.unique(segments, return_inverse=True)
    return contiguous.reshape(segments.shape).astype(np.int32), int(unique.size)


@functools.partial(jax.jit, static_argnames="num_segments")
def _removal_ends(maps: jax.Array, segments: jax.Array, num_segments: int) -> jax.Array:
    """When each pixel goes: int32 [B, H, W], the number of pixels removed once its unit is gone.

    Units (segments) are ordered by mean saliency, descending, ties by id (a stable sort); a pixel
    is removed at step i exactly when its end <= the step's pixel budget.
    """
    def one(saliency, segment_ids):
        ids = segment_ids.ravel()
        sizes = jax.ops.segment_sum(jnp.ones_like(ids), ids, num_segments)
        totals = jax.ops.segment_sum(saliency.ravel(), ids, num_segments)
        # Ids absent from this image sort last; their size 0 leaves every end unchanged.
        means = jnp.where(sizes > 0, totals / jnp.maximum(sizes, 1), -jnp.inf)
        order = jnp.argsort(-means, stable=True)
        ends = jnp.zeros_like(sizes).at[order].set(jnp.cumsum(sizes[order]))
        return ends[segment_ids]
    return jax.vmap(one)(maps, segments)


def _step_schedule(steps: int, pixels: int) -> np.ndarray:
    """Pixel budget of each curve point, int32 [steps + 1]: floor(i · P / steps), 0 to P."""
    return (np.arange(steps + 1, dtype=np.int64) * pixels // steps).astype(np.int32)


@jax.jit
def _removed_fractions(removal_ends: jax.Array, schedule: jax.Array) -> jax.Array:
    """Fraction of pixels removed at each curve point, float32 [B, steps + 1], 0 to 1."""
    flat = jnp.sort(removal_ends.reshape(removal_ends.shape[0], -1), axis=1)
    removed = jax.vmap(lambda ends: jnp.searchsorted(ends, schedule, side="right"))(flat)
    return removed / flat.shape[1]


def _curve_images(shown, hidden, removal_ends, schedule, start, size: int) -> jax.Array:
    """Curve points [start, start + size) of one image: [size, H, W, C].

    shown, hidden: [H, W, C], what selected / unselected pixels show; removal_ends: int [H, W];
    schedule: int [steps + 1] pixel budgets. Traced inside `query_targets`.
    """
    budgets = jax.lax.dynamic_slice_in_dim(schedule, start, size)
    selected = removal_ends[None] <= budgets[:, None, None]
    return jnp.where(selected[..., None], shown[None], hidden[None])


@jax.jit
def _trapezoid(curves: jax.Array, fractions: jax.Array) -> jax.Array:
    """Trapezoid integral of curves [B, n] over their x positions [B, n] -> [B]."""
    return jnp.sum(jnp.diff(fractions, axis=1) * (curves[:, 1:] + curves[:, :-1]) / 2, axis=1)


# --------------------------------------------------------------------------------------------
# Sensitivity (the DAX paper's wrong-class test)


def sensitivity(bb, images: Any, masks: Any, *, method: str = "dax", config=None, seed: int = 0,
                wrong_targets: Any = None, k: float = 1.0) -> np.ndarray:
    """IoU with the ground truth of the explanation of a wrong class, float32 [B]; lower is better.

    A method that explains the *decision* marks the object for the true class and not for
    another class; one that only finds salient things marks the object whatever the class.
    Each image's wrong class is drawn uniformly among the classes other than the black box's
    top-1, from the seed and the image alone (the determinism contract), unless `wrong_targets`
    gives them. The explanation is `daxjax.explain(bb, images, wrong, method, config, seed)`,
    scored by `iou(maps, masks, k)`.

    Args:
      bb, images: as in `daxjax.explain`; masks: bool or 0/1 [B, H, W] ground truth.
      wrong_targets: int [B] (or one int) classes to explain instead of the drawn ones; each must
        differ from that image's top-1 class.

    Raises:
      ValueError: masks not [B, H, W] of the images' size (naming both shapes), an empty mask
        (naming the image), a black box with fewer than 2 classes, or a wrong target equal to the
        top-1 class (naming the image). Checked before anything is explained.
    """
    from daxjax.explain import explain  # explain imports this package; import it when used

    x = as_float_images(images)
    truth = _check_masks(masks, x.shape[:3], "IoU")
    probs = check_probabilities(as_blackbox(bb)(x), x.shape[0], what="black box on the unperturbed images")
    top1 = probs.argmax(axis=1).astype(np.int32)
    num_classes = probs.shape[1]
    if num_classes < 2:
        raise ValueError(f"sensitivity needs a black box with at least 2 classes; it has {num_classes}")
    if wrong_targets is None:
        wrong = _random_wrong_classes(x, top1, num_classes, seed)
    else:
        wrong = as_targets(wrong_targets, x.shape[0], num_classes, default=top1)
        same = np.flatnonzero(wrong == top1)
        if same.size:
            raise ValueError(f"wrong_targets of image(s) {same.tolist()} equal the black box's top-1 "
                             f"class {top1[same].tolist()}; sensitivity explains a wrong class")
    explanation = explain(bb, x, wrong, method=method, config=config, seed=seed)
    return iou(explanation.maps, truth, k)


def _random_wrong_classes(images: np.ndarray, top1: np.ndarray, num_classes: int, seed: int) -> np.ndarray:
    """One class ≠ top1 per image, uniform over the other K − 1, from (seed, image): int32 [B]."""
    digests = np.array([image_digest(image, -1) for image in images], np.uint32)
    offsets = np.asarray(_wrong_class_offsets(image_keys(seed, digests), num_classes))
    return ((top1 + offsets) % num_classes).astype(np.int32)


@functools.partial(jax.jit, static_argnames="num_classes")
def _wrong_class_offsets(keys: jax.Array, num_classes: int) -> jax.Array:
    """Per image key -> an offset in [1, K) from the top-1 class, int32 [B]."""
    def one(key):
        return jax.random.randint(jax.random.fold_in(key, _WRONG_CLASS_STREAM), (), 1, num_classes)
    return jax.vmap(one)(keys)


# --------------------------------------------------------------------------------------------
# Rank correlation and the model-randomisation sanity check


def rank_correlation(maps_a: Any, maps_b: Any) -> np.ndarray:
    """Spearman rank correlation of each pair of maps over their pixels, float32 [B] in [-1, 1].

    Tied values get the average of their ranks (as scipy.stats.spearmanr). A constant map has
    no ranking, so its correlation with anything is defined here as 0.0 (scipy gives NaN).

    Raises:
      ValueError: shapes differ (naming both) or are not [B, H, W]; a map holds NaN/inf.
    """
    a_array, b_array = np.asarray(maps_a), np.asarray(maps_b)
    if a_array.shape != b_array.shape:
        raise ValueError(f"maps_a shape {a_array.shape} does not match maps_b shape {b_array.shape}")
    a, b = _check_maps(a_array), _check_maps(b_array)
    return np.asarray(_spearman(jnp.asarray(a), jnp.asarray(b)), dtype=np.float32)


@jax.jit
def _spearman(maps_a: jax.Array, maps_b: jax.Array) -> jax.Array:
    """Pearson correlation of average ranks, per image: [B, H, W] x 2 -> [B]; 0 where undefined."""
    batch = maps_a.shape[0]
    ranks_a = jax.vmap(_average_ranks)(maps_a.reshape(batch, -1))
    ranks_b = jax.vmap(_average_ranks)(maps_b.reshape(batch, -1))
    centred_a = ranks_a - ranks_a.mean(axis=1, keepdims=True)
    centred_b = ranks_b - ranks_b.mean(axis=1, keepdims=True)
    # Norms taken separately: their product squared could overflow float32 on large images.
    norm = jnp.linalg.norm(centred_a, axis=1) * jnp.linalg.norm(centred_b, axis=1)
    correlation = jnp.sum(centred_a * centred_b, axis=1) / jnp.where(norm > 0, norm, 1.0)
    return jnp.where(norm > 0, jnp.clip(correlation, -1.0, 1.0), 0.0)


def _average_ranks(values: jax.Array) -> jax.Array:
    """0-based ranks of a vector [P], ties sharing the mean of their ranks: float32 [P]."""
    ordered = jnp.sort(values)
    first = jnp.searchsorted(ordered, values, side="left")
    past_last = jnp.searchsorted(ordered, values, side="right")
    return (first + past_last - 1).astype(jnp.float32) / 2


def model_randomisation(bb, bb_randomised, images: Any, *, method: str = "dax", config=None,
                        seed: int = 0, targets: Any = None) -> np.ndarray:
    """Spearman correlation between explanations of a trained and a weight-randomised black box.

    The sanity check of Adebayo et al. (2018): an explanation that depends on what the model
    learned must change when the weights are re-drawn, so the correlation should be low (near 0;
    the paper also reports |ρ|, take `np.abs` of the result for it). Both black boxes are
    explained with the same method, config, seed and targets (the trained box's top-1 when
    `targets` is None), so the perturbations drawn are identical and only the model differs.
    Randomised ONNX models: `blackbox_adapters.randomized_onnx`.

    Returns:
      float32 [B] in [-1, 1], `rank_correlation` of the two maps of each image (0.0 when either
      map is constant).
    """
    from daxjax.explain import explain  # explain imports this package; import it when used

    trained = explain(bb, images, targets, method=method, config=config, seed=seed)
    randomised = explain(bb_randomised, images, trained.targets, method=method, config=config, seed=seed)
    return rank_correlation(trained.maps, randomised.maps)


# --------------------------------------------------------------------------------------------
# Shared checks and cores


def _check_maps(maps: Any) -> np.ndarray:
    """Maps as float32 [B, H, W]; ValueError for another rank or for non-finite values (naming the images)."""
    array = np.asarray(maps, dtype=np.float32)
    if array.ndim != 3:
        raise ValueError(f"maps must have shape [B, H, W], got {array.shape}")
    bad = np.flatnonzero(~np.isfinite(array).all(axis=(1, 2)))
    if bad.size:
        raise ValueError(f"map(s) of image(s) {bad.tolist()} contain NaN or infinite values")
    return array


def _check_masks(masks: Any, expected_shape: tuple, metric: str) -> np.ndarray:
    """Ground truth as bool [B, H, W] of `expected_shape`; ValueError naming shapes or empty masks."""
    array = np.asarray(masks)
    if array.shape != tuple(expected_shape):
        raise ValueError(f"masks shape {array.shape} does not match maps/images shape {tuple(expected_shape)}")
    truth = array != 0
    empty = np.flatnonzero(~truth.any(axis=(1, 2)))
    if empty.size:
        raise ValueError(f"ground-truth mask of image(s) {empty.tolist()} is empty; {metric} is undefined")
    return truth


def _check_maps_and_masks(maps: Any, masks: Any, metric: str) -> tuple[np.ndarray, np.ndarray]:
    """(float32 maps, bool masks), both [B, H, W]; shapes compared first so the message names both."""
    map_array, mask_array = np.asarray(maps), np.asarray(masks)
    if map_array.shape != mask_array.shape:
        raise ValueError(f"maps shape {map_array.shape} does not match masks shape {mask_array.shape}")
    checked = _check_maps(map_array)
    return checked, _check_masks(mask_array, checked.shape, metric)


def _check_maps_match_images(maps: Any, images: np.ndarray) -> np.ndarray:
    """Maps as float32 [B, H, W] with the images' B, H, W (ValueError naming both shapes)."""
    array = np.asarray(maps)
    if array.shape != images.shape[:3]:
        raise ValueError(f"maps shape {array.shape} does not match images shape {images.shape} "
                         f"(maps must be [B, H, W] = {images.shape[:3]})")
    return _check_maps(array)


def _binarize(maps: jax.Array, k: float, threshold: float | None) -> jax.Array:
    if threshold is None:
        return _binarize_statistical(maps, k)
    return _binarize_fixed(maps, threshold)


@jax.jit
def _binarize_statistical(maps: jax.Array, k: float) -> jax.Array:
    """maps > mean + k·std per map; all False for a constant map."""
    mean = maps.mean(axis=(1, 2), keepdims=True)
    std = maps.std(axis=(1, 2), keepdims=True)
    # Tested exactly rather than via std == 0: float32 round-off can put the mean of a
    # constant map a hair below its value, which would select every pixel.
    constant = maps.max(axis=(1, 2), keepdims=True) == maps.min(axis=(1, 2), keepdims=True)
    return (maps > mean + k * std) & ~constant


@jax.jit
def _binarize_fixed(maps: jax.Array, threshold: float) -> jax.Array:
    return maps > threshold


@jax.jit
def _iou_of_regions(explained: jax.Array, truth: jax.Array) -> jax.Array:
    """|E ∧ G| / |E ∨ G| per image for bool [B, H, W] regions."""
    intersection = jnp.sum(explained & truth, axis=(1, 2))
    union = jnp.sum(explained | truth, axis=(1, 2))
    # Callers reject empty masks, so union ≥ 1; the floor keeps the jitted core NaN-free on its own.
    return intersection / jnp.maximum(union, 1)
