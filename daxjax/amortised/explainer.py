"""`fit` -> `AmortisedExplainer` (`explain`, `refine`, `save`), and `load`.

Shapes: images float32 [B, H, W, C] in [0, 1] (or uint8), C in {1, 3}; S = cells^2 grid cells.
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
import optax
from flax import nnx, traverse_util

from blackbox_adapters import as_blackbox, check_probabilities
from daxjax.amortised.config import AmortisedConfig
from daxjax.amortised.nets import AmortisedNets, graphdef_of, init_nets
from daxjax.amortised.training import (GROUP, FitData, image_loss, prepare_samples, query_grid, train,
                                       working_images)
from daxjax.device.querying import device_blackbox
from daxjax.methods.base import Explanation
from daxjax.inputs import InputError, as_float_images, check_seed, image_digest
from daxjax.methods.base import normalise
from daxjax.methods.dax.engine import AREA_RANGE, CONTRAST_FLOOR, FIT_FLOOR
from daxjax.perturbation.sampling import hard_concrete_gates, image_keys

METHOD = "dax-amortised"
FORMAT = "daxjax-amortised/1"
#: Per-image diagnostics of `refine` (`Explanation.diagnostics`), each [B]:
#:   heldout_fit     1 - the student's pi-weighted squared error over the held-out share of the K
#:                   queries (under the returned mask, deterministic gates) / their weighted spread
#:   amortised_fit   the same for the amortised student and mask, before refinement
#:   refined         True where the refined map was kept (its held-out DAX loss was not higher)
#:   mask_area, mask_contrast, trusted   as DAX's (`daxjax.methods.dax.engine.DIAGNOSTICS`)
REFINE_DIAGNOSTICS = ("heldout_fit", "amortised_fit", "refined", "mask_area", "mask_contrast", "trusted")
#: Fixed keys folded off the seed for the networks' initialisation, training order and refinement.
_INIT, _TRAIN, _SPLIT, _REFINE = 1, 2, 3, 4


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


def fit(bb, images_or_source, config: AmortisedConfig | None = None, seed: int = 0, *,
        progress: Callable[[str, int, int], None] | None = None) -> "AmortisedExplainer":
    """Fits one amortised DAX explainer on a dataset from black-box queries only.

    Args:
      bb: a black box or any callable x float32 [n, H, W, C] in [0, 1] -> probabilities [n, K].
      images_or_source: float32 [N, H, W, C] in [0, 1] or uint8 (N >= 2), or a folder / glob / .npz
        (`daxjax.dataset.sources`). Each image is explained for the black box's top-1 class.
      config: `AmortisedConfig` (None: the defaults).
      seed: with the images and the config, fixes the explainer bit for bit (on one device count).
        The images' order does not matter: they are processed in the order of their fingerprints.
      progress: None, or called as progress(phase, done, total) while fitting: ("queries", images
        queried so far, N) after each group of images, then ("training", steps done, steps) after
        each step (what `daxjax.explain_dataset` draws its progress bars from). It sees, never
        changes, the fit.

    Costs N * (sampling.queries_per_image + 1) black-box queries (the +1: the top-1 class).
    """
    config = _check_config(config)
    seed = check_seed(seed)
    start = time.perf_counter()
    x = _read_images(images_or_source)
    cells = config.sampling.cells
    if len(x) < 2:
        raise InputError(f"images_or_source must hold at least 2 images to fit on, got {len(x)}")
    if min(x.shape[1:3]) < cells:
        raise InputError(f"images_or_source: images of {x.shape[1]}x{x.shape[2]} pixels are smaller than the "
                         f"{cells}x{cells} grid (sampling.cells)")
    user_bb, bb = bb, as_blackbox(bb)
    probs = _top_classes(bb, x)
    targets = probs.argmax(axis=1).astype(np.int32)
    digests = np.array([image_digest(img, t) for img, t in zip(x, targets)], np.uint32)
    order = np.lexsort((np.arange(len(x)), digests))  # fingerprint order: the input order does not matter
    x, targets, digests = x[order], targets[order], digests[order]
    device_bb = device_blackbox(user_bb, bb, probs.shape[1])

    queries = config.sampling.queries_per_image
    zs, ps = [], []
    for lo in range(0, len(x), GROUP):
        rows = slice(lo, lo + GROUP)
        z, p = query_grid(device_bb, x[rows], targets[rows], image_keys(seed, digests[rows]), queries, config,
                          [int(i) for i in order[rows]])
        zs.append(np.asarray(z)), ps.append(np.asarray(p))
        if progress is not None:
            progress("queries", min(lo + GROUP, len(x)), len(x))
    query_seconds = time.perf_counter() - start
    keys = image_keys(seed, digests)
    split_keys = jax.vmap(lambda k: jax.random.fold_in(k, _SPLIT))(keys)
    z, p = jnp.asarray(np.concatenate(zs)), jnp.asarray(np.concatenate(ps))
    y, pi, train_idx, val_idx, scale = prepare_samples(z, p, split_keys, config, config.training.validation_fraction)
    data = FitData(working_images(jnp.asarray(x), config.nets.resolution), z, y, pi, train_idx, val_idx, scale)

    base = jax.random.key(seed)
    _, params = init_nets(config.nets, x.shape[-1], cells, jax.random.fold_in(base, _INIT))
    params, report = train(params, data, config, jax.random.fold_in(base, _TRAIN),
                           None if progress is None else functools.partial(progress, "training"))
    report = {"images": int(len(x)), "queries": int(len(x) * (queries + 1)), "query_seconds": query_seconds,
              "training_seconds": report.pop("seconds"), **report}
    return AmortisedExplainer(config, params, x.shape[-1], seed, report)


class AmortisedExplainer:
    """A fitted amortised DAX explainer: `explain` (no queries), `refine` (K queries an image), `save`.

    config: its `AmortisedConfig`; params: the networks' parameters (`nnx.State`); channels: C of
    the images it was fitted on; seed: the fit's seed; report: what the fit cost and reached
    ({"images", "queries", "query_seconds", "training_seconds", "heldout_fit", ...}).
    """

    def __init__(self, config: AmortisedConfig, params: nnx.State, channels: int, seed: int, report: dict):
        self.config = config
        self.params = params
        self.channels = int(channels)
        self.seed = int(seed)
        self.report = dict(report)
        self.graphdef = graphdef_of(config.nets, self.channels, config.sampling.cells)
        self._maps, self._refine = _programs(config, self.channels)

    # -- explain ---------------------------------------------------------------------------------
    @staticmethod
    def _mask_logits(self, params, images):
        """images [b, H, W, C] -> (keep-logits [b, S], features [b, S, F]).

        One image at a time (`lax.map`): batched, XLA's blocking of the resize and convolutions
        changed the last bit of an image's map with its neighbours; mapped, every image runs the
        same program whatever the others are (measured as fast on the CPU).
        """
        nets = nnx.merge(self.graphdef, params)

        def one(image):
            features = nets.encoder(working_images(image[None], self.config.nets.resolution))[0]
            return nets.mask(features), features
        return jax.lax.map(one, images)

    def _check_images(self, images, name: str = "images") -> np.ndarray:
        try:
            x = as_float_images(images)
        except InputError as err:
            raise InputError(f"{name}: {err}") from err
        if x.shape[-1] != self.channels:
            raise InputError(f"{name} have {x.shape[-1]} channel(s); this explainer was fitted on {self.channels}")
        cells = self.config.sampling.cells
        if min(x.shape[1:3]) < cells:
            raise InputError(f"{name} of {x.shape[1]}x{x.shape[2]} pixels are smaller than the {cells}x{cells} grid")
        return x

    def _group_logits(self, x: np.ndarray) -> np.ndarray:
        """Keep-logits [B, S], GROUP images per program call (padded: fixed shapes, so an image's
        logits do not depend on the others explained with it)."""
        out = []
        for lo in range(0, len(x), GROUP):
            part = x[lo:lo + GROUP]
            out.append(np.asarray(self._maps(self.params, jnp.asarray(_padded(part)))[0])[:len(part)])
        return np.concatenate(out)

    def _paint(self, logits: np.ndarray, height: int, width: int) -> tuple[np.ndarray, dict]:
        """Keep-logits [B, S] -> maps [B, H, W] in [0, 1] and the masks' area and contrast [B];
        GROUP at a time, each image on its own (`_paint_group`)."""
        parts = [[np.asarray(a)[:len(chunk)] for a in _paint_group(jnp.asarray(_padded(chunk)), self.config.sampling.cells,
                                                                    height, width)]
                 for chunk in (logits[lo:lo + GROUP] for lo in range(0, len(logits), GROUP))]
        maps, area, contrast = (np.concatenate(p) for p in zip(*parts))
        return maps.astype(np.float32), {"mask_area": area.astype(np.float32),
                                         "mask_contrast": contrast.astype(np.float32)}

    def explain(self, images, bb=None) -> Explanation:
        """Maps of `images` in one forward pass of the networks: zero black-box queries.

        images: float32 [B, H, W, C] in [0, 1] or uint8, C as fitted. The maps explain the black
        box's top-1 class (what the explainer was fitted on). bb: None (no query at all: targets are
        -1, "the top-1 class, not asked", and scores NaN), or the black box, asked once per image
        for its top-1 class and probability (the maps do not depend on it).
        Returns an `Explanation` (method "dax-amortised"; diagnostics mask_area, mask_contrast [B]).
        """
        start = time.perf_counter()
        x = self._check_images(images)
        if bb is None:
            targets, scores = np.full(len(x), -1, np.int32), np.full(len(x), np.nan, np.float32)
        else:
            probs = _top_classes(as_blackbox(bb), x)
            targets = probs.argmax(1).astype(np.int32)
            scores = probs[np.arange(len(x)), targets].astype(np.float32)
        maps, stats = self._paint(self._group_logits(x), x.shape[1], x.shape[2])
        return Explanation(maps, targets, scores, METHOD, self.config, {"total": time.perf_counter() - start}, stats)

    # -- refine ----------------------------------------------------------------------------------
    @staticmethod
    def _refine_group(self, params, features, logits0, z, y, pi, scale, split, keys):
        """Fine-tunes, per image, a copy of the student head and the keep-logits on its queries.

        features [b, S, F], logits0 [b, S]: the amortised encoder's and mask's; z bool [b, K, S],
        y, pi [b, K]; scale [b]; split: (train_idx [b, K - V], val_idx [b, V]); keys [b].
        Returns (logits [b, S], val loss before [b], after [b], fit before [b], fit after [b]).
        """
        config, refine = self.config, self.config.refine
        head_graph, head0 = nnx.split(nnx.merge(self.graphdef, params).student, nnx.Param)
        train_idx, val_idx = split
        steps, warmup = refine.steps, int(round(config.training.student_warmup * refine.steps))

        def losses(p, feat, z, y, pi, scale, key):
            student, frozen = nnx.merge(head_graph, p["student"]), nnx.merge(head_graph, jax.lax.stop_gradient(p["student"]))
            return image_loss(p["logits"], lambda s: student(feat, s), lambda s: frozen(feat, s), z, y, pi, scale, key,
                              config)

        def fit_of(p, feat, z, y, pi):
            student = nnx.merge(head_graph, p["student"])
            gate = hard_concrete_gates(jax.nn.sigmoid(p["logits"]), None, z.shape, config.loss.gate_temperature)
            y_hat = student(feat, z.astype(jnp.float32) * gate)
            mean = jnp.sum(pi * y) / jnp.sum(pi)
            return 1.0 - jnp.sum(pi * (y_hat - y) ** 2) / jnp.maximum(jnp.sum(pi * (y - mean) ** 2), 1e-12)

        optimizer = optax.multi_transform(
            {"logits": optax.adam(optax.join_schedules([optax.constant_schedule(0.0),
                                                        optax.constant_schedule(refine.mask_learning_rate)], [warmup])),
             "student": optax.adam(refine.learning_rate)},
            {"logits": "logits", "student": jax.tree.map(lambda _: "student", head0)})

        def one(feat, logit0, z, y, pi, scale, tr, va, key):
            start = {"logits": logit0, "student": head0}
            zt, yt, pt = z[tr], y[tr], pi[tr]

            def objective(p, k):
                loss, _ = losses(p, feat, zt, yt, pt, scale, k)
                drift = sum(jnp.sum((a - b) ** 2) for a, b in zip(jax.tree.leaves(p["student"]), jax.tree.leaves(head0)))
                return loss + refine.anchor * drift

            def body(t, carry):
                p, state = carry
                grads = jax.grad(objective)(p, jax.random.fold_in(key, t))
                updates, state = optimizer.update(grads, state, p)
                return optax.apply_updates(p, updates), state

            p, _ = jax.lax.fori_loop(0, steps, body, (start, optimizer.init(start)))
            zv, yv, pv = z[va], y[va], pi[va]
            before = losses(start, feat, zv, yv, pv, scale, None)[0]
            after = losses(p, feat, zv, yv, pv, scale, None)[0]
            return p["logits"], before, after, fit_of(start, feat, zv, yv, pv), fit_of(p, feat, zv, yv, pv)

        return jax.vmap(one)(features, logits0, z, y, pi, scale, train_idx, val_idx, keys)

    def refine(self, bb, images, queries_per_image: int = 100, seed: int = 0) -> Explanation:
        """Spends `queries_per_image` grid perturbations (+1 query for the top-1 class) per image to
        fine-tune its amortised map, and says how far each map can be trusted.

        Per image: the black box answers K perturbations; a copy of the student head (anchored to
        the amortised one, `Refine.anchor`) and the keep-logits (starting at the amortised mask)
        are trained with DAX's objective on 1 - `Refine.validation_fraction` of them; the refined
        map is kept only where its held-out DAX loss is not higher than the amortised map's, so
        refinement cannot make a map worse by that measure. Deterministic in (image, seed, config,
        K), independent of the other images. Returns an `Explanation` with `REFINE_DIAGNOSTICS`.
        """
        start = time.perf_counter()
        seed = check_seed(seed)
        if isinstance(queries_per_image, bool) or not isinstance(queries_per_image, (int, np.integer)) \
                or queries_per_image < 8:
            raise InputError(f"queries_per_image must be an integer >= 8, got {queries_per_image!r}")
        k = int(queries_per_image)
        x = self._check_images(images)
        user_bb, black_box = bb, as_blackbox(bb)
        probs = _top_classes(black_box, x)
        targets = probs.argmax(1).astype(np.int32)
        scores = probs[np.arange(len(x)), targets].astype(np.float32)
        digests = np.array([image_digest(img, t) for img, t in zip(x, targets)], np.uint32)
        device_bb = device_blackbox(user_bb, black_box, probs.shape[1])
        keys = jax.vmap(lambda key: jax.random.fold_in(key, _REFINE))(image_keys(seed, digests))
        results = []
        for lo in range(0, len(x), GROUP):
            real = min(GROUP, len(x) - lo)
            rows = np.minimum(np.arange(lo, lo + GROUP), len(x) - 1)   # padded: fixed shapes
            z, p = query_grid(device_bb, x[rows[:real]], targets[rows[:real]], keys[rows[:real]], k, self.config,
                              list(range(lo, lo + real)))
            pad = lambda a: jnp.concatenate([a, jnp.repeat(a[-1:], GROUP - real, axis=0)]) if real < GROUP else a  # noqa: E731
            z, p = pad(z), pad(p)
            group_keys = keys[rows]
            split_keys = jax.vmap(lambda key: jax.random.fold_in(key, _SPLIT))(group_keys)
            y, pi, train_idx, val_idx, scale = prepare_samples(z, p, split_keys, self.config,
                                                               self.config.refine.validation_fraction)
            logits0, features = self._maps(self.params, jnp.asarray(x[rows]))
            out = self._refine(self.params, features, logits0, z, y, pi, scale, (train_idx, val_idx), group_keys,
                               )
            results.append([np.asarray(a)[:real] for a in (logits0, *out)])
        logits0, logits, before, after, fit0, fit1 = (np.concatenate(parts) for parts in zip(*results))
        refined = after <= before
        chosen = np.where(refined[:, None], logits, logits0)
        maps, stats = self._paint(chosen, x.shape[1], x.shape[2])
        diagnostics = {"heldout_fit": np.where(refined, fit1, fit0).astype(np.float32),
                       "amortised_fit": fit0.astype(np.float32), "refined": refined, **stats}
        alive = ((stats["mask_contrast"] >= CONTRAST_FLOOR) & (stats["mask_area"] >= AREA_RANGE[0])
                 & (stats["mask_area"] <= AREA_RANGE[1]))
        diagnostics["trusted"] = (diagnostics["heldout_fit"] >= FIT_FLOOR) & alive
        timings = {"total": time.perf_counter() - start, "queries_per_image": float(k + 1)}
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


def _padded(part: np.ndarray) -> np.ndarray:
    """part [b <= GROUP, ...] padded to GROUP rows with copies of its last row."""
    return np.concatenate([part, np.repeat(part[-1:], GROUP - len(part), axis=0)]) if len(part) < GROUP else part


@functools.partial(jax.jit, static_argnums=(1, 2, 3))
def _paint_group(logits: jax.Array, cells: int, height: int, width: int):
    """Keep-logits [b, S] -> (maps [b, H, W] in [0, 1]: the sigmoid mask bilinearly upsampled and
    min-max scaled; mask area [b]; contrast [b]), one image at a time (`lax.map`), so an image's
    map is the same bits whatever else is painted with it."""
    def one(logit):
        up = jax.image.resize(jax.nn.sigmoid(logit).reshape(cells, cells), (height, width), "linear")
        return normalise(up), up.mean(), up.max() - up.min()
    return jax.lax.map(one, logits)


class _Compiled:
    """What the compiled programs need of an explainer (its config and graph), hashable."""

    def __init__(self, config: AmortisedConfig, channels: int):
        self.config = config
        self.graphdef = graphdef_of(config.nets, channels, config.sampling.cells)


@functools.lru_cache(maxsize=8)
def _programs(config: AmortisedConfig, channels: int):
    """(explain program, refine program) for a config and channel count, compiled once per process."""
    owner = _Compiled(config, channels)
    return (jax.jit(functools.partial(AmortisedExplainer._mask_logits, owner)),
            jax.jit(functools.partial(AmortisedExplainer._refine_group, owner)))


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
        raise InputError(f"{path}: format {meta.get('format')!r}, expected {FORMAT!r}")
    config = AmortisedConfig.from_dict(meta["config"])
    channels = int(meta["channels"])
    abstract = nnx.state(nnx.eval_shape(lambda: AmortisedNets(config.nets, channels, config.sampling.cells,
                                                              rngs=nnx.Rngs(0))), nnx.Param)
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
