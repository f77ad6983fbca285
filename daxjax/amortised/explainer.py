"""`fit` -> `AmortisedExplainer` (`explain`, `refine`, `save`), and `load`.

Shapes: images float32 [B, H, W, C] in [0, 1] (or uint8), C in {1, 3}; R = `Nets.resolution`.
"""

from __future__ import annotations

import functools
import io
import json
import time
from pathlib import Path
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx, traverse_util

from blackbox_adapters import as_blackbox, check_probabilities
from daxjax.amortised.config import AmortisedConfig
from daxjax.amortised.nets import MapNet, graphdef_of, init_nets
from daxjax.amortised.training import GROUP, dax_maps, fit_data, group_size, teach, train, working_images
from daxjax.device.querying import device_blackbox
from daxjax.device.sharding import image_mesh, local_devices, over_images, padded_count, replicated, shard_images
from daxjax.inputs import InputError, as_float_images, check_seed, image_digest
from daxjax.methods.base import Explanation, normalise

METHOD = "dax-amortised"
FORMAT = "daxjax-amortised/2"
#: Per-image diagnostics of `refine` (`Explanation.diagnostics`), each [B]:
#:   heldout_fit     the refining DAX's held-out fit on its K queries (`daxjax.methods.dax.engine`)
#:   agreement       Pearson correlation of the amortised map with the refining DAX's map (1: the
#:                   same ranking of pixels; near 0 or below: the amortised map is not what the
#:                   queries say)
#:   refined         True where DAX's map replaced the amortised one (DAX's map trusted and its
#:                   agreement below `Refine.agreement_floor`)
#:   mask_area, mask_contrast, trusted   the refining DAX's (`daxjax.methods.dax.engine.DIAGNOSTICS`):
#:                   trusted False flags a map the K queries could not check
REFINE_DIAGNOSTICS = ("heldout_fit", "agreement", "refined", "mask_area", "mask_contrast", "trusted")
#: Fixed keys folded off the seed for the network's initialisation, training order and split.
_INIT, _TRAIN, _SPLIT = 1, 2, 3


def _check_config(config) -> AmortisedConfig:
    if config is None:
        return AmortisedConfig()
    if not isinstance(config, AmortisedConfig):
        raise InputError(f"config must be a daxjax.amortised.AmortisedConfig or None, got {type(config).__name__}")
    return config


def _read_images(images_or_source) -> np.ndarray:
    """float32 [N, H, W, C]: an array, or any source `daxjax.dataset.sources.open_source` takes (a
    folder, a glob, an .npz); images of a source are resized to the first one's size."""
    if isinstance(images_or_source, (str, Path)):
        from daxjax.dataset.sources import open_source, read_image

        source = open_source(images_or_source)
        items = list(source.items())
        if not items:
            raise InputError(f"images_or_source {str(images_or_source)!r} holds no images")
        out, size = [], None
        for item in items:
            try:
                image = read_image(item.raw, size, 3)
            except Exception as err:  # noqa: BLE001 - named and re-raised
                raise InputError(f"images_or_source: image {item.id!r} cannot be read: {err}") from err
            size = size or image.shape[:2]
            out.append(image)
        return as_float_images(np.stack(out))
    try:
        return as_float_images(images_or_source)
    except InputError as err:
        raise InputError(f"images_or_source: {err}") from err


def _top_classes(bb, x: np.ndarray) -> np.ndarray:
    """The black box's probabilities on the unperturbed images, GROUP at a time: [B, K]."""
    parts = [check_probabilities(bb(x[lo:lo + GROUP]), len(x[lo:lo + GROUP]), what="black box on the images")
             for lo in range(0, len(x), GROUP)]
    return np.concatenate(parts)


def fit(bb, images_or_source, config: AmortisedConfig | None = None, seed: int = 0, *, devices=None,
        progress: Callable[[str, int, int], None] | None = None) -> "AmortisedExplainer":
    """Fits one amortised DAX explainer on a dataset from black-box queries only.

    Per-image DAX (the teacher, `Teacher.queries_per_image` queries an image) explains every fitted
    image for the black box's top-1 class; one mask network (`MapNet`) then learns to draw the
    teacher's trusted maps from the images alone (`daxjax.amortised.training`).

    Args:
      bb: a black box or any callable x float32 [n, H, W, C] in [0, 1] -> probabilities [n, K].
      images_or_source: float32 [N, H, W, C] in [0, 1] or uint8 (N >= 2), or a folder / glob / .npz
        (`daxjax.dataset.sources`).
      config: `AmortisedConfig` (None: the defaults).
      seed: with the images and the config, fixes the explainer bit for bit (on one device count).
        The images' order does not matter: they are processed in the order of their fingerprints.
      devices: the local devices to fit on (None: all of `jax.local_devices()`): the teacher's
        groups are split over them along the image axis and the training is data-parallel
        (`daxjax.amortised.training`). Another device count gives an explainer equal up to the last
        bits of the teacher's maps (DAX's contract across device counts), not bit for bit.
      progress: None, or called as progress(phase, done, total) while fitting: ("queries", images
        explained by the teacher so far, N) after each group of images, then ("training", steps
        done, steps) after each step (what `daxjax.explain_dataset` draws its progress bars from).

    Costs N + padded_count(N, D) * teacher.queries_per_image black-box queries (N for the top-1
    classes; the teacher's last group is padded to a multiple of the D devices with copies of an
    image: N * (queries_per_image + 1) on one device). The report (`AmortisedExplainer.report`)
    says how many queries were sent and how many teacher maps were trusted and trained on.
    """
    config = _check_config(config)
    seed = check_seed(seed)
    devices = _check_devices(devices)
    start = time.perf_counter()
    x = _read_images(images_or_source)
    if len(x) < 2:
        raise InputError(f"images_or_source must hold at least 2 images to fit on, got {len(x)}")
    user_bb, black_box = bb, as_blackbox(bb)
    probs = _top_classes(black_box, x)
    targets = probs.argmax(axis=1).astype(np.int32)
    digests = np.array([image_digest(img, t) for img, t in zip(x, targets)], np.uint32)
    order = np.lexsort((np.arange(len(x)), digests))  # fingerprint order: the input order does not matter
    x, targets = x[order], targets[order]
    device_bb = device_blackbox(user_bb, black_box, probs.shape[1])
    maps, diagnostics = teach(device_bb, x, targets, config, seed, devices,
                              None if progress is None else functools.partial(progress, "queries"))
    teacher_seconds = time.perf_counter() - start
    trusted = np.asarray(diagnostics["trusted"], bool)
    # Untrusted teacher maps (a student that could not fit, a dead mask) would teach noise; with
    # fewer than two trusted ones there is nothing else to learn from, and the report says so.
    usable = trusted if trusted.sum() >= 2 else np.ones(len(x), bool)
    base = jax.random.key(seed)
    data = fit_data(x, maps, usable, config, jax.random.fold_in(base, _SPLIT))
    _, params = init_nets(config.nets, x.shape[-1], jax.random.fold_in(base, _INIT))
    params, report = train(params, data, config, jax.random.fold_in(base, _TRAIN), devices,
                           None if progress is None else functools.partial(progress, "training"))
    queries = len(x) + padded_count(len(x), len(devices)) * config.teacher.queries_per_image
    report = {"images": int(len(x)), "queries": int(queries), "devices": len(devices),
              "teacher_trusted": int(trusted.sum()), "trained_on": int(usable.sum()),
              "teacher_seconds": teacher_seconds, "training_seconds": report.pop("seconds"), **report}
    return AmortisedExplainer(config, params, x.shape[-1], seed, report)


class AmortisedExplainer:
    """A fitted amortised DAX explainer: `explain` (no queries), `refine` (K queries an image), `save`.

    config: its `AmortisedConfig`; params: the network's parameters (`nnx.State`); channels: C of
    the images it was fitted on; seed: the fit's seed; report: what the fit cost and reached
    ({"images", "queries", "teacher_trusted", "trained_on", "teacher_seconds" (the teacher's queries
    and DAX trainings), "training_seconds",
    "heldout_loss", ...}).
    """

    def __init__(self, config: AmortisedConfig, params: nnx.State, channels: int, seed: int, report: dict):
        self.config = config
        self.params = params
        self.channels = int(channels)
        self.seed = int(seed)
        self.report = dict(report)
        self._maps = _program(config, self.channels)

    def _check_images(self, images, name: str = "images") -> np.ndarray:
        try:
            x = as_float_images(images)
        except InputError as err:
            raise InputError(f"{name}: {err}") from err
        if x.shape[-1] != self.channels:
            raise InputError(f"{name} have {x.shape[-1]} channel(s); this explainer was fitted on {self.channels}")
        return x

    def _amortised_maps(self, x: np.ndarray, devices: list) -> tuple[np.ndarray, dict]:
        """Maps [B, H, W] in [0, 1] and the network's map area and contrast [B], `group_size(D)`
        images per program call over the D devices (padded: fixed shapes, so an image's map does
        not depend on the others, nor on D: each device maps its images one at a time)."""
        parts = []
        step = group_size(len(devices))
        with image_mesh(devices) as mesh:
            params = replicated(mesh, self.params)
            for lo in range(0, len(x), step):
                part = x[lo:lo + step]
                images = shard_images(mesh, _padded(part, step))
                parts.append([np.asarray(a)[:len(part)] for a in self._maps(params, images)])
        maps, area, contrast = (np.concatenate(p) for p in zip(*parts))
        return maps.astype(np.float32), {"mask_area": area.astype(np.float32),
                                         "mask_contrast": contrast.astype(np.float32)}

    def explain(self, images, bb=None, *, devices=None) -> Explanation:
        """Maps of `images` in one forward pass of the network: zero black-box queries.

        images: float32 [B, H, W, C] in [0, 1] or uint8, C as fitted. The maps explain the black
        box's top-1 class (what the explainer was fitted on). bb: None (no query at all: targets are
        -1, "the top-1 class, not asked", and scores NaN), or the black box, asked once per image
        for its top-1 class and probability (the maps do not depend on it).
        devices: the local devices to split the images over (None: all of `jax.local_devices()`);
        its maps are bit for bit the same on any number of them.
        Returns an `Explanation` (method "dax-amortised"; diagnostics mask_area, mask_contrast [B]:
        the mean and the max - min of the network's sigmoid map before min-max scaling).
        """
        start = time.perf_counter()
        devices = _check_devices(devices)
        x = self._check_images(images)
        if bb is None:
            targets, scores = np.full(len(x), -1, np.int32), np.full(len(x), np.nan, np.float32)
        else:
            probs = _top_classes(as_blackbox(bb), x)
            targets = probs.argmax(1).astype(np.int32)
            scores = probs[np.arange(len(x)), targets].astype(np.float32)
        maps, stats = self._amortised_maps(x, devices)
        return Explanation(maps, targets, scores, METHOD, self.config, {"total": time.perf_counter() - start}, stats)

    def refine(self, bb, images, queries_per_image: int = 100, seed: int = 0, *, devices=None) -> Explanation:
        """Spends `queries_per_image` queries (+1 for the top-1 class) per image to check its
        amortised map, replaces it where the queries contradict it, and says how far each map can
        be trusted.

        Per image: the teacher (DAX at K queries, for the top-1 class) explains it; where DAX trusts
        its map and that map's correlation with the amortised one is below
        `Refine.agreement_floor`, DAX's map is returned (refined True), else the amortised map
        (confirmed where trusted and in agreement; trusted False where DAX could not check it).
        Deterministic in (image, seed, config, K), independent of the other images, on a given
        device count (devices: as for `explain`; DAX's maps change in the last bits with it).
        Returns an `Explanation` with `REFINE_DIAGNOSTICS`.
        """
        start = time.perf_counter()
        seed = check_seed(seed)
        devices = _check_devices(devices)
        if isinstance(queries_per_image, bool) or not isinstance(queries_per_image, (int, np.integer)) \
                or queries_per_image < 16:
            raise InputError(f"queries_per_image must be an integer >= 16, got {queries_per_image!r}")
        k = int(queries_per_image)
        x = self._check_images(images)
        user_bb, black_box = bb, as_blackbox(bb)
        probs = _top_classes(black_box, x)
        targets = probs.argmax(1).astype(np.int32)
        scores = probs[np.arange(len(x)), targets].astype(np.float32)
        amortised, _ = self._amortised_maps(x, devices)
        teacher_maps, teacher = dax_maps(device_blackbox(user_bb, black_box, probs.shape[1]), x, targets,
                                         self.config.teacher.dax_config(k), seed, devices)
        trusted = np.asarray(teacher["trusted"], bool)
        agreement = _correlation(amortised, teacher_maps)
        refined = trusted & (agreement < self.config.refine.agreement_floor)
        maps = np.where(refined[:, None, None], teacher_maps, amortised).astype(np.float32)
        diagnostics = {"heldout_fit": np.asarray(teacher["heldout_fit"], np.float32),
                       "agreement": agreement, "refined": refined,
                       "mask_area": np.asarray(teacher["mask_area"], np.float32),
                       "mask_contrast": np.asarray(teacher["mask_contrast"], np.float32),
                       "trusted": trusted}
        # K + 1 on one device; over D devices the last group's copies up to a multiple of D are queried too.
        queries = len(x) + padded_count(len(x), len(devices)) * k
        timings = {"total": time.perf_counter() - start, "queries_per_image": queries / len(x)}
        return Explanation(maps, targets, scores, METHOD, self.config, timings,
                           {name: diagnostics[name] for name in REFINE_DIAGNOSTICS})

    # -- save / load -----------------------------------------------------------------------------
    def save(self, path) -> Path:
        """Writes the explainer to `path` (an .npz, no pickle): the parameters as named arrays, the
        config, channels, seed and fit report as JSON. Returns the path written."""
        path = Path(path)
        flat = traverse_util.flatten_dict(nnx.to_pure_dict(self.params), sep="/")
        arrays = {f"param/{name}": np.asarray(value) for name, value in flat.items()}
        meta = {"format": FORMAT, "config": self.config.to_dict(), "channels": self.channels, "seed": self.seed,
                "report": self.report}
        buffer = io.BytesIO()
        np.savez(buffer, meta=np.array(json.dumps(meta)), **arrays)
        path.write_bytes(buffer.getvalue())
        return path


def _correlation(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson correlation per image of maps [B, H, W] (0 where either map is constant): float32 [B]."""
    a = a.reshape(len(a), -1).astype(np.float64)
    b = b.reshape(len(b), -1).astype(np.float64)
    a, b = a - a.mean(1, keepdims=True), b - b.mean(1, keepdims=True)
    denominator = np.sqrt((a * a).sum(1) * (b * b).sum(1))
    return np.where(denominator > 0, (a * b).sum(1) / np.maximum(denominator, 1e-300), 0.0).astype(np.float32)


def _padded(part: np.ndarray, rows: int) -> np.ndarray:
    """part [b <= rows, ...] padded to `rows` rows with copies of its last row."""
    return np.concatenate([part, np.repeat(part[-1:], rows - len(part), axis=0)]) if len(part) < rows else part


def _check_devices(devices) -> list:
    try:
        return local_devices(devices)
    except (TypeError, ValueError) as err:
        raise InputError(str(err)) from err


@functools.lru_cache(maxsize=8)
def _program(config: AmortisedConfig, channels: int):
    """The explain program of a config and channel count, compiled once per process:
    (params, images [G, H, W, C]) -> (maps [G, H, W] in [0, 1], area [G], contrast [G]).

    One image at a time (`lax.map`): batched, XLA's blocking of the resize and convolutions could
    change the last bit of an image's map with its neighbours; mapped, every image runs the same
    program whatever the others are. Under an image mesh each device maps its own share of the G
    images (`over_images`: a loop over a split axis would otherwise run whole on every device).
    """
    graphdef = graphdef_of(config.nets, channels)

    def maps(params, images):
        net = nnx.merge(graphdef, params)

        def one(image):
            soft = jax.nn.sigmoid(net(working_images(image[None], config.nets.resolution))[0])
            up = jax.image.resize(soft, image.shape[:2], "linear")
            return normalise(up), soft.mean(), soft.max() - soft.min()
        return jax.lax.map(one, images)
    return jax.jit(over_images(maps, replicated=(0,)))


def load(path) -> AmortisedExplainer:
    """Reads an explainer written by `AmortisedExplainer.save` (no pickle); errors name the file."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as archive:
            meta = json.loads(str(archive["meta"]))
            arrays = {name[len("param/"):]: np.asarray(archive[name]) for name in archive.files
                      if name.startswith("param/")}
    except (OSError, ValueError, KeyError) as err:
        raise InputError(f"{path}: not a saved amortised explainer ({err})") from err
    if meta.get("format") != FORMAT:
        raise InputError(f"{path}: format {meta.get('format')!r}, expected {FORMAT!r} (an explainer of an earlier "
                         "design: fit it again)")
    config = AmortisedConfig.from_dict(meta["config"])
    channels = int(meta["channels"])
    abstract = nnx.state(nnx.eval_shape(lambda: MapNet(config.nets, channels, rngs=nnx.Rngs(0))), nnx.Param)
    expected = traverse_util.flatten_dict(nnx.to_pure_dict(abstract), sep="/")
    if set(expected) != set(arrays):
        raise InputError(f"{path}: parameters {sorted(set(expected) ^ set(arrays))} do not match the config")
    nested = traverse_util.unflatten_dict({tuple(k.split("/")): jnp.asarray(v) for k, v in arrays.items()})
    nnx.replace_by_pure_dict(abstract, _int_keys(nested))
    return AmortisedExplainer(config, abstract, channels, int(meta["seed"]), meta["report"])


def _int_keys(tree: Any) -> Any:
    """Pure dicts flattened to "a/0/b" strings come back with "0": nnx's pure dicts key lists by int."""
    if not isinstance(tree, dict):
        return tree
    return {(int(k) if isinstance(k, str) and k.isdigit() else k): _int_keys(v) for k, v in tree.items()}
