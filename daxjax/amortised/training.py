"""Fitting the amortised networks: query the black box on grid perturbations of many images, then
train one encoder, mask head and student head on all of them with DAX's objective.

    data = query_images(device_bb, images, targets, digests, config, seed)   # FitData
    params, report = train(graphdef, params, data, config, seed)

Every pure piece reads explicit state: `train_step(params, opt_state, batch, key) -> (params,
opt_state, metrics)`; `draw_batch(data, key)` picks a step's images and perturbations.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from daxjax.amortised.config import AmortisedConfig
from daxjax.device.execution import query_chunk
from daxjax.device.querying import DeviceBlackBox
from daxjax.methods.dax.engine import student_targets, target_scales
from daxjax.methods.dax.losses import loss_v2
from daxjax.perturbation.sampling import hard_concrete_gates, proximity_weights, split_indices
from daxjax.perturbation.segments import draw_keep_vectors, query_segment_perturbations, segment_and_fill

#: Images per black-box query group and per validation / explanation program (fixed shapes: one
#: compiled program whatever the dataset's size, and an image's result never depends on the others).
GROUP = 16


@dataclasses.dataclass(frozen=True)
class GridSpec:
    """What `daxjax.perturbation.segments` needs of a config: the grid and the fill."""

    cells: int
    fill: str

    @property
    def segmentation(self) -> str:
        return "grid"

    @property
    def segmentation_options(self) -> dict:
        return {"cells": self.cells}


class FitData(NamedTuple):
    """The fitted images and the black box's answers, on the device (N images, Q queries each).

    images: [N, R, R, C] at the encoder's resolution; z: bool [N, Q, S] keep-vectors; y: [N, Q] the
    student's targets (`Sampling.target` of the target-class probability); pi: [N, Q] proximity
    weights; train_idx [N, Q - V], val_idx [N, V]: each image's split; scale: [N] 1 / the weighted
    variance of its training targets (DAX's normalisation).
    """

    images: jax.Array
    z: jax.Array
    y: jax.Array
    pi: jax.Array
    train_idx: jax.Array
    val_idx: jax.Array
    scale: jax.Array


class Batch(NamedTuple):
    """One step's minibatch: b images, n perturbations each (fields as `FitData`'s)."""

    images: jax.Array   # [b, R, R, C]
    z: jax.Array        # bool [b, n, S]
    y: jax.Array        # [b, n]
    pi: jax.Array       # [b, n]
    scale: jax.Array    # [b]


@functools.partial(jax.jit, static_argnums=1)
def working_images(images: jax.Array, resolution: int) -> jax.Array:
    """[B, H, W, C] -> [B, R, R, C], antialiased (as DAX's `to_working_resolution`)."""
    return jax.image.resize(images, (images.shape[0], resolution, resolution, images.shape[-1]), "linear",
                            antialias=True)


def grid_keep_vectors(keys: jax.Array, num_samples: int, cells: int, keep_prob: float) -> jax.Array:
    """bool [B, N, cells^2] keep-vectors, z[:, 0] all ones (`perturbation.sampling.keep_vectors`)."""
    segments = cells * cells
    return draw_keep_vectors(keys, num_samples, jnp.full((keys.shape[0],), segments, jnp.int32), segments,
                             keep_prob)


def query_grid(device_bb: DeviceBlackBox, images: np.ndarray, targets: np.ndarray, keys: jax.Array,
               num_samples: int, config: AmortisedConfig, image_ids: list) -> tuple[jax.Array, jax.Array]:
    """(z bool [B, N, S], target probabilities [B, N]) for grid perturbations of images [B, H, W, C]
    (float32 in [0, 1]), through the project's query path (`query_segment_perturbations`)."""
    sampling = config.sampling
    segments = sampling.cells * sampling.cells
    group = segment_and_fill(images, GridSpec(sampling.cells, sampling.fill), image_ids)
    group = group._replace(max_segments=segments)
    z = grid_keep_vectors(keys, num_samples, sampling.cells, sampling.keep_prob)
    chunk = query_chunk(None, images.shape[0], int(np.prod(images.shape[1:])))
    return z, query_segment_perturbations(device_bb, group, z, targets, chunk, image_ids)


@functools.partial(jax.jit, static_argnums=(3, 4))
def prepare_samples(z, p, split_keys, config: AmortisedConfig, validation_fraction: float):
    """(y, pi, train_idx, val_idx, scale) from keep-vectors z [B, N, S] and probabilities p [B, N]:
    the student's targets, proximity weights, each image's train / validation split (from its
    split key, [B]) and `target_scales`. One program."""
    n = z.shape[1]
    validation = max(1, int(validation_fraction * n))
    segments = jnp.int32(z.shape[-1])
    y = student_targets(p, config.sampling.target)
    pi = jax.vmap(proximity_weights, in_axes=(0, None, None))(z, segments, config.sampling.kernel_width)
    train_idx, val_idx = jax.vmap(split_indices, in_axes=(0, None, None))(split_keys, n, validation)
    return y, pi, train_idx, val_idx, target_scales(y, pi, train_idx)


def image_loss(mask_logits, student, complement, z, y, pi, scale, key, config: AmortisedConfig):
    """DAX-V2 for one image (`losses.loss_v2`, normalised, bounded Q): (loss, metrics).

    mask_logits: [S]; student, complement: shown [n, S] -> predictions [n] (the complement's
    parameters under stop-gradient, so only the mask learns from Q); z: bool [n, S]; y, pi: [n];
    scale: []; key: the gates' key, None for deterministic gates (validation, explanation).
    """
    mask = jax.nn.sigmoid(mask_logits)
    zf = z.astype(jnp.float32)
    gate = hard_concrete_gates(mask, key, zf.shape, config.loss.gate_temperature)
    return loss_v2(student(zf * gate), complement(zf * (1.0 - gate)), y, pi, mask, lambda_q=config.loss.lambda_q,
                   lambda_area=config.loss.lambda_area, scale=scale, bounded_q=True)


def batch_loss(params, batch: Batch, key, *, graphdef, config: AmortisedConfig):
    """Mean over the batch's images of `image_loss`; (loss, metrics averaged over images)."""
    nets = nnx.merge(graphdef, params)
    frozen = nnx.merge(graphdef, jax.lax.stop_gradient(params))
    features = nets.encoder(batch.images)                          # [b, S, F]
    logits = jax.vmap(nets.mask)(features)                         # [b, S]
    fixed = jax.lax.stop_gradient(features)
    keys = (None if key is None else
            jax.vmap(lambda i: jax.random.fold_in(key, i))(jnp.arange(batch.images.shape[0])))

    def one(logit, feat, feat_fixed, z, y, pi, scale, k):
        return image_loss(logit, lambda s: nets.student(feat, s), lambda s: frozen.student(feat_fixed, s),
                          z, y, pi, scale, k, config)

    if keys is None:
        loss, metrics = jax.vmap(lambda *a: one(*a, None))(logits, features, fixed, batch.z, batch.y, batch.pi,
                                                           batch.scale)
    else:
        loss, metrics = jax.vmap(one)(logits, features, fixed, batch.z, batch.y, batch.pi, batch.scale, keys)
    return loss.mean(), jax.tree.map(jnp.mean, metrics)


def warmup_steps(config: AmortisedConfig) -> int:
    return int(round(config.training.student_warmup * config.training.steps))


def make_optimizer(config: AmortisedConfig) -> optax.GradientTransformation:
    """Adam; the mask head at its own rate and frozen during the student's warm-up (as DAX's)."""
    training = config.training
    mask_rate = optax.join_schedules([optax.constant_schedule(0.0), optax.constant_schedule(training.mask_learning_rate)],
                                     [warmup_steps(config)])

    def labels(params):
        return jax.tree_util.tree_map_with_path(lambda path, _: "mask" if path[0].key == "mask" else "rest", params)
    return optax.multi_transform({"mask": optax.adam(mask_rate), "rest": optax.adam(training.learning_rate)}, labels)


def train_step(params, opt_state, batch: Batch, key, *, graphdef, config: AmortisedConfig, optimizer):
    """One Adam step: (params, opt_state, batch, key) -> (params, opt_state, metrics)."""
    (loss, metrics), grads = jax.value_and_grad(batch_loss, has_aux=True)(params, batch, key, graphdef=graphdef,
                                                                           config=config)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, {"loss": loss, **metrics}


def draw_batch(data: FitData, key, images: int, samples: int) -> Batch:
    """`images` fitted images (with replacement) and `samples` of each one's training perturbations."""
    pick_images, pick_samples = jax.random.split(key)
    rows = jax.random.randint(pick_images, (images,), 0, data.images.shape[0])
    cols = jax.random.randint(pick_samples, (images, samples), 0, data.train_idx.shape[1])
    idx = jnp.take_along_axis(data.train_idx[rows], cols, axis=1)          # [b, n]
    take = functools.partial(jnp.take_along_axis, indices=idx, axis=1)
    return Batch(data.images[rows], jnp.take_along_axis(data.z[rows], idx[..., None], axis=1),
                 take(data.y[rows]), take(data.pi[rows]), data.scale[rows])


def checkpoints(config: AmortisedConfig) -> list[int]:
    """Steps after which the held-out loss is measured: `validations` points after the warm-up."""
    start, total, count = warmup_steps(config), config.training.steps, config.training.validations
    span = max(total - start, 1)
    return sorted({min(total, start + -(-k * span // count)) for k in range(1, count + 1)} - {0})


class Programs:
    """The jitted programs of one fit (config, graph): a step, and the held-out loss of a group."""

    def __init__(self, graphdef, config: AmortisedConfig):
        self.optimizer = make_optimizer(config)
        step = functools.partial(train_step, graphdef=graphdef, config=config, optimizer=self.optimizer)
        training = config.training

        def run(params, opt_state, data, base_key, t):
            key = jax.random.fold_in(base_key, t)
            batch = draw_batch(data, jax.random.fold_in(key, 0), training.images_per_step, training.samples_per_image)
            return step(params, opt_state, batch, jax.random.fold_in(key, 1))

        self.step = jax.jit(run, donate_argnums=(0, 1))

        def heldout(params, data: FitData, rows):
            """Per image of `rows` [GROUP]: (DAX loss, pi-weighted residual, spread) on its held-out samples."""
            images, idx = data.images[rows], data.val_idx[rows]
            take = functools.partial(jnp.take_along_axis, indices=idx, axis=1)
            z = jnp.take_along_axis(data.z[rows], idx[..., None], axis=1)
            y, pi, scale = take(data.y[rows]), take(data.pi[rows]), data.scale[rows]
            nets = nnx.merge(graphdef, params)
            features = nets.encoder(images)
            logits = jax.vmap(nets.mask)(features)

            def one(logit, feat, z, y, pi, scale):
                student = lambda s: nets.student(feat, s)  # noqa: E731
                loss, _ = image_loss(logit, student, student, z, y, pi, scale, None, config)
                gate = hard_concrete_gates(jax.nn.sigmoid(logit), None, z.shape, config.loss.gate_temperature)
                y_hat = student(z.astype(jnp.float32) * gate)
                mean = jnp.sum(pi * y) / jnp.sum(pi)
                return loss, jnp.sum(pi * (y_hat - y) ** 2), jnp.maximum(jnp.sum(pi * (y - mean) ** 2), 1e-12)
            return jax.vmap(one)(logits, features, z, y, pi, scale)

        self.heldout = jax.jit(heldout)

    def heldout_all(self, params, data: FitData) -> tuple[np.ndarray, np.ndarray]:
        """(held-out DAX loss [N], held-out fit 1 - residual / spread [N]) of every fitted image."""
        n = data.images.shape[0]
        losses, fits = [], []
        for lo in range(0, n, GROUP):
            rows = jnp.minimum(jnp.arange(lo, lo + GROUP), n - 1)
            loss, residual, spread = self.heldout(params, data, rows)
            real = min(GROUP, n - lo)
            losses.append(np.asarray(loss)[:real])
            fits.append(1.0 - np.asarray(residual)[:real] / np.asarray(spread)[:real])
        return np.concatenate(losses), np.concatenate(fits)


@functools.lru_cache(maxsize=8)
def programs_for(config: AmortisedConfig, channels: int) -> Programs:
    """The compiled programs of a fit, shared by every fit with the same config and channels."""
    from daxjax.amortised.nets import graphdef_of

    return Programs(graphdef_of(config.nets, channels, config.sampling.cells), config)


def train(params, data: FitData, config: AmortisedConfig, key: jax.Array,
          progress: Callable[[int, int], None] | None = None) -> tuple[nnx.State, dict]:
    """Trains the networks on `data`; returns the parameters with the lowest held-out loss at the
    checkpoints and a report {"steps", "best_step", "heldout_loss", "heldout_fit" (means over the
    fitted images), "seconds"}. progress: None, or called as progress(steps done, steps) after
    each step."""
    start = time.perf_counter()
    programs = programs_for(config, int(data.images.shape[-1]))
    opt_state = programs.optimizer.init(params)
    params = jax.tree.map(jnp.copy, params)
    marks = set(checkpoints(config))
    best, best_loss, best_step, best_fit = params, np.inf, 0, np.nan
    for t in range(config.training.steps):
        params, opt_state, _ = programs.step(params, opt_state, data, key, t)
        if progress is not None:
            progress(t + 1, config.training.steps)
        if t + 1 in marks:
            loss, fit = programs.heldout_all(params, data)
            if loss.mean() < best_loss:
                best, best_loss, best_step, best_fit = jax.tree.map(jnp.copy, params), float(loss.mean()), t + 1, \
                    float(fit.mean())
    return best, {"steps": config.training.steps, "best_step": best_step, "heldout_loss": best_loss,
                  "heldout_fit": best_fit, "seconds": time.perf_counter() - start}
