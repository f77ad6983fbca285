"""The DAX engine: sample, query, train mask net and student jointly per image, explain.

Data flow for a group of B images (all arrays carry a leading image axis; every per-image
computation is vectorised over images — `vmap`, or on CPU a loop inside the same jitted step
(`vmap_width`) — and each image has its own key, parameters and optimizer state):

  segments (host) -> keep-vectors z [B, N, S] (device) -> black-box answers y [B, N]
  (chunked queries) -> Adam steps on (mask net, student), perturbations rebuilt inside each step
  from (z, segment map, fill) at the working resolution -> f_M(original) upsampled to H x W.
"""

from __future__ import annotations

import functools
import time
from typing import NamedTuple

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from daxjax import losses
from daxjax.config import DAXConfig
from daxjax.maps import normalise
from daxjax.nets import DaxNets, init_nets, upsample_mask
from daxjax.querying import DeviceBlackBox, RenderedQueries, input_elements, query_chunk
from daxjax.sampling import image_keys, keep_masks, perturb, proximity_weights, split_indices
from daxjax.segments import HostSegments, draw_keep_vectors, query_segment_perturbations, segment_and_fill
from daxjax.sharding import over_images


class WorkingImage(NamedTuple):
    """One image at the networks' working resolution R (a leading image axis when batched)."""

    image: jax.Array     # [R, R, C]
    segments: jax.Array  # int32 [R, R]
    fill: jax.Array      # [R, R, C]


class Samples(NamedTuple):
    """One image's perturbations and the black box's answers to them."""

    z: jax.Array   # bool [N, S]
    y: jax.Array   # [N] target-class probability
    pi: jax.Array  # [N] proximity weight


class Batch(NamedTuple):
    """A minibatch of one image's samples, plus the image they perturb."""

    image: WorkingImage
    z: jax.Array           # bool [b, S]
    y: jax.Array           # [b]
    pi: jax.Array          # [b]
    area_scale: jax.Array  # [] this row's multiplier of lambda_area (`DAXConfig.restart_area_scales`)


def to_working_resolution(image, segments, fill, resolution: int) -> WorkingImage:
    """Resizes one image and its fill (antialiased) and samples its segment map (nearest)."""
    height, width = segments.shape
    rows = ((jnp.arange(resolution) + 0.5) * height / resolution).astype(jnp.int32)
    cols = ((jnp.arange(resolution) + 0.5) * width / resolution).astype(jnp.int32)
    shape = (resolution, resolution, image.shape[-1])
    return WorkingImage(
        image=jax.image.resize(image, shape, "linear", antialias=True),
        segments=segments[rows][:, cols],
        fill=jax.image.resize(fill, shape, "linear", antialias=True),
    )


def student_input(x: jax.Array, *, work: WorkingImage, config: DAXConfig) -> jax.Array:
    """What the student sees of a (masked) perturbation x [..., R, R, C].

    "raw": x itself (the paper). "centred": x minus the mean perturbation, in units of the RMS
    change a switched-off segment makes. All perturbations of one image share most of their
    pixels, so raw inputs are a large constant plus a small informative part, a badly conditioned
    regression; centred, the informative part is all there is and the student fits it in far fewer
    steps (measured on the Fashion-MNIST scenes, see `benchmarks/quality.py`).
    """
    if config.student_input == "raw":
        return x
    mean = config.keep_prob * work.image + (1.0 - config.keep_prob) * work.fill
    scale = jnp.sqrt(jnp.mean((work.image - work.fill) ** 2)) + 1e-3
    return (x - mean) / scale


def dax_loss(params, graphdef, batch: Batch, config: DAXConfig) -> tuple[jax.Array, dict]:
    """The DAX objective for one image's minibatch. Returns (loss, metrics).

    A perturbation is x_p = fill + keep * (image - fill), keep [b, R, R] in {0, 1}, so what the
    student sees of it under a mask m, x_p * m + hidden * (1 - m), is one base image plus
    keep * m times the image's difference from its fill; the student's linear first layer takes
    it in that form (`nets.StudentNet.gated`) and no [b, R, R, C] input is built. Same losses and
    gradients to float rounding; `python -m benchmarks.dax_floor_probes steps` on 2 CPU cores:
    2.5-3.3 ms per row and step against 4.1 ms when those inputs were built.
    """
    nets = nnx.merge(graphdef, params)
    work = batch.image
    keep = keep_masks(batch.z, work.segments)
    mask_in = work.image if config.mask_input == "original" else perturb(work.image, work.segments, work.fill, batch.z)
    mask = upsample_mask(nets.mask(mask_in), config.resolution)
    # What the mask removes shows the fill (as a switched-off segment does) or black (the paper).
    hidden = work.fill if config.mask_fill == "fill" else jnp.zeros_like(work.fill)
    student_in = functools.partial(student_input, work=work, config=config)
    direction = student_in(work.image) - student_in(work.fill)  # student_in is affine

    def masked_prediction(student, m):
        """The student on x_p * m + hidden * (1 - m): [b]."""
        m = m[..., None]
        return student.gated(student_in(work.fill * m + hidden * (1.0 - m)), m * direction, keep)

    y_hat = masked_prediction(nets.student, mask)
    if config.variant == "v1":
        return losses.loss_v1(y_hat, batch.y, batch.pi, mask,
                              lambda_l1=config.lambda_l1, lambda_kl=config.lambda_kl)
    complement_nets = nets
    if config.complement_stop_gradient:
        complement_nets = nnx.merge(graphdef, jax.lax.stop_gradient(params))
    y_bar = masked_prediction(complement_nets.student, 1.0 - mask)
    return losses.loss_v2(y_hat, y_bar, batch.y, batch.pi, mask, lambda_q=config.lambda_q,
                          lambda_area=config.lambda_area * batch.area_scale, normalize=config.normalize_loss,
                          bounded_q=config.bounded_q)


def train_step(params, opt_state, batch: Batch, *, graphdef, config: DAXConfig,
               optimizer: optax.GradientTransformation):
    """One Adam step for one image: (params, opt_state, batch) -> (params, opt_state, metrics)."""
    (loss, metrics), grads = jax.value_and_grad(dax_loss, has_aux=True)(params, graphdef, batch, config)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, {"loss": loss, **metrics}


def make_optimizer(config: DAXConfig) -> optax.GradientTransformation:
    """Adam for both nets; the mask net at its own rate, frozen during the student warm-up.

    In the first steps the student predicts noise, and the quickest way to lower its error is a
    constant input: the mask then fell to all zeros within 14 steps, where its sigmoid saturates
    and the student never learns (measured on the demo scenes). So the student learns first.
    """
    frozen_steps = int(round(config.student_warmup * config.epochs * config.steps_per_epoch))
    mask_rate = optax.join_schedules(
        [optax.constant_schedule(0.0), optax.constant_schedule(config.mask_learning_rate)],
        [frozen_steps])

    def labels(params):
        return jax.tree_util.tree_map_with_path(lambda path, _: path[0].key, params)
    return optax.multi_transform(
        {"mask": optax.adam(mask_rate), "student": optax.adam(config.learning_rate)}, labels)


def _minibatch(work: WorkingImage, samples: Samples, area_scale: jax.Array, indices: jax.Array) -> Batch:
    return Batch(work, samples.z[indices], samples.y[indices], samples.pi[indices], area_scale)


class TrainingPrograms:
    """The jitted, row-vmapped programs that train DAX for one config; built once and cached.

    Every array argument carries a leading row axis (one row per image and restart).
    """

    def __init__(self, config: DAXConfig, channels: int):
        self.graphdef = nnx.graphdef(nnx.eval_shape(lambda: DaxNets(config, channels, rngs=nnx.Rngs(0))))
        self.optimizer = make_optimizer(config)
        step = functools.partial(train_step, graphdef=self.graphdef, config=config,
                                 optimizer=self.optimizer)
        loss = functools.partial(dax_loss, graphdef=self.graphdef, config=config)

        def init(keys):
            _, params = init_nets(config, channels, keys)
            return params, jax.vmap(self.optimizer.init)(params)

        over_rows = functools.partial(map_rows, width=vmap_width(config))

        def batched_step(params, opt_state, work, samples, area_scales, orders, step_index):
            b = config.batch_size
            idx = jax.lax.dynamic_slice_in_dim(orders, step_index * b, b, axis=1)
            batches = jax.vmap(_minibatch)(work, samples, area_scales, idx)
            return over_rows(step, params, opt_state, batches)

        def batched_validation(params, work, samples, area_scales, indices, weights):
            batches = jax.vmap(_minibatch)(work, samples, area_scales, indices)
            # Padding rows carry weight 0 in the pi-weighted terms.
            batches = batches._replace(pi=batches.pi * weights)
            total, metrics = over_rows(lambda p, bt: loss(p, batch=bt), params, batches)
            return total, metrics["mse"]

        def epoch_orders(keys, train_idx, epoch):
            """A fresh random order of each row's training samples: [rows, N_train]."""
            return jax.vmap(lambda k, idx: jax.random.permutation(jax.random.fold_in(k, epoch), idx))(
                keys, train_idx)

        def final_maps(params, images, height, width):
            """E = f_M(x) on the original image, upsampled to H x W and scaled to [0, 1]."""
            def one(p, x):
                return jax.image.resize(nnx.merge(self.graphdef, p).mask(x), (height, width), "linear")
            return normalise(jax.vmap(one)(params, images))

        self.init = jax.jit(init)
        self.step = jax.jit(batched_step, donate_argnums=(0, 1))
        self.validation = jax.jit(batched_validation)
        self.epoch_orders = jax.jit(epoch_orders)
        self.final_maps = jax.jit(final_maps, static_argnums=(2, 3))


def vmap_width(config: DAXConfig) -> int | None:
    """Rows per vectorised pass inside a training step (None: all rows at once).

    On CPU one row at a time keeps a row's activations in cache; measured on 2 cores at the
    default config (`python -m benchmarks.dax_floor_probes steps` / `rows`): 2.5-3.3 ms per row
    and step one row at a time, 2.2-2.4 ms with 3, 3.6-4.3 ms with 12; whole trainings of 4
    images 3.9 s with one row, 4.0 s with 3, 6.6 s with 12. Accelerators take all rows at once.
    """
    if config.vmap_width is not None:
        return config.vmap_width
    return 1 if jax.default_backend() == "cpu" else None


def map_rows(fn, *args, width: int | None):
    """fn over the leading row axis of args: one vmap, or a loop over vmaps of `width` rows.

    Under an image mesh (`sharding.image_mesh`) each device maps over its own rows.
    """
    def rows(*args):
        if width is None:
            return jax.vmap(fn)(*args)
        return jax.lax.map(lambda a: fn(*a), args, batch_size=width)
    return over_images(rows)(*args)


@functools.lru_cache(maxsize=8)
def training_programs(config: DAXConfig, channels: int) -> TrainingPrograms:
    return TrainingPrograms(config, channels)


def _validation_chunks(val_idx: jax.Array, size: int):
    """Splits [rows, V] indices into chunks of `size`, padding the last; yields (indices, weights)."""
    total = val_idx.shape[1]
    for start in range(0, total, size):
        chunk = val_idx[:, start:start + size]
        real = chunk.shape[1]
        weights = jnp.ones((size,), jnp.float32).at[real:].set(0.0)
        if real < size:
            chunk = jnp.pad(chunk, ((0, 0), (0, size - real)))
        yield chunk, weights


def _select(improved: jax.Array, new, old):
    """Per row: keep `new` where the validation loss improved, else `old`."""
    def pick(a, b):
        shape = (-1,) + (1,) * (a.ndim - 1)
        return jnp.where(improved.reshape(shape), a, b)
    return jax.tree.map(pick, new, old)


def train_and_explain(programs: TrainingPrograms, work: WorkingImage, samples: Samples, area_scales,
                      train_idx, val_idx, init_keys, order_keys, config: DAXConfig, height: int, width: int):
    """Trains one (mask net, student) pair per row and returns f_M(x) maps [rows, H, W].

    area_scales: [rows], each row's multiplier of `config.lambda_area`.
    Each epoch ends with the validation loss; every row keeps its best parameters.
    """
    rows = init_keys.shape[0]
    params, opt_state = programs.init(init_keys)

    def validation_loss(p, scales):
        """Per row: the validation loss and the student's normalised MSE, [rows] each."""
        total = mse = jnp.zeros((rows,), jnp.float32)
        for idx, weights in _validation_chunks(val_idx, config.batch_size):
            chunk_total, chunk_mse = programs.validation(p, work, samples, scales, idx, weights)
            total, mse = total + chunk_total, mse + chunk_mse
        chunks = -(-val_idx.shape[1] // config.batch_size)
        return total * config.batch_size / val_idx.shape[1], mse / chunks

    adapt_epoch = _area_fit_epoch(config)
    best_params = jax.tree.map(jnp.copy, params)
    best_loss = jnp.full((rows,), jnp.inf)
    for epoch in range(config.epochs):
        orders = programs.epoch_orders(order_keys, train_idx, epoch)
        for step_index in range(config.steps_per_epoch):
            params, opt_state, _ = programs.step(params, opt_state, work, samples, area_scales, orders,
                                                 step_index)
        val, mse = validation_loss(params, area_scales)
        if epoch == adapt_epoch:
            area_scales = area_scales * jnp.clip(1.0 - mse, config.area_fit_floor, 1.0)
            val, _ = validation_loss(params, area_scales)
            best_loss = jnp.full((rows,), jnp.inf)  # earlier epochs were priced at the old scale
        improved = val < best_loss
        best_params = _select(improved, jax.tree.map(jnp.copy, params), best_params)
        best_loss = jnp.where(improved, val, best_loss)
    return programs.final_maps(best_params, work.image, height, width)


def _area_fit_epoch(config: DAXConfig) -> int | None:
    """The epoch at whose end `config.area_fit_floor` rescales lambda_area: the first that ends
    at or after the student warm-up (None: never)."""
    if config.area_fit_floor is None or config.lambda_area == 0:
        return None
    frozen_steps = int(round(config.student_warmup * config.epochs * config.steps_per_epoch))
    return min(config.epochs - 1, max(0, -(-frozen_steps // config.steps_per_epoch) - 1))


def _restart_keys(keys: jax.Array, restarts: int) -> jax.Array:
    """[B] keys -> [B * K] keys, row b * K + k for restart k of image b."""
    return jax.vmap(lambda key: jax.vmap(lambda r: jax.random.fold_in(key, r))(
        jnp.arange(restarts)))(keys).reshape(-1)


_working_resolution = jax.jit(jax.vmap(to_working_resolution, in_axes=(0, 0, 0, None)),
                              static_argnums=3)
_split = jax.jit(jax.vmap(split_indices, in_axes=(0, None, None)), static_argnums=(1, 2))
_proximity = jax.jit(jax.vmap(proximity_weights, in_axes=(0, 0, None)), static_argnums=2)


def explain_images(device_bb: DeviceBlackBox, images: np.ndarray, targets: np.ndarray,
                   digests: np.ndarray, config: DAXConfig, seed: int,
                   image_ids: list, segmented: HostSegments | None = None,
                   queries: RenderedQueries | None = None) -> tuple[np.ndarray, dict]:
    """Explains one group of images side by side with DAX.

    images: float32 [B, H, W, C] in [0, 1]; targets: int32 [B]; digests: uint32 [B] image
    fingerprints (`inputs.image_digest`); image_ids: the caller's names for the images.
    queries: None for images; `querying.RenderedQueries` when the black box takes other inputs
    (audio), which are then rendered from the masks on `images`' grid.
    Returns (maps float32 [B, H, W] in [0, 1], seconds per phase).
    """
    t0 = time.perf_counter()
    group = segment_and_fill(images, config, image_ids, segmented)
    timings = {"segmentation": time.perf_counter() - t0}
    batch, height, width, channels = images.shape
    n = config.num_samples
    keys = image_keys(seed, digests)
    sample_keys, split_keys, init_keys, order_keys = (
        jax.vmap(lambda k: jax.random.split(k, 4))(keys).transpose(1, 0))

    t0 = time.perf_counter()
    z = draw_keep_vectors(sample_keys, n, group.num_segments, group.max_segments, config.keep_prob)
    chunk = query_chunk(config.query_chunk, batch, input_elements(images, queries))
    y = query_segment_perturbations(device_bb, group, z, targets, chunk, image_ids, queries)
    chex.assert_shape(z, (batch, n, group.max_segments))
    chex.assert_shape(y, (batch, n))
    samples = Samples(z, y, _proximity(z, group.num_segments, config.kernel_width))
    timings["queries"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    work = _working_resolution(group.images, group.segments, group.fills, config.resolution)
    train_idx, val_idx = _split(split_keys, n, config.num_samples_validation)
    # Restarts train side by side as extra rows of the same vmap: row b * K + k is restart k of
    # image b, sharing the image's samples but with its own initialisation and batch order.
    k = config.restarts
    repeat = functools.partial(jax.tree.map, lambda a: jnp.repeat(a, k, axis=0))
    programs = training_programs(_training_key(config), channels)
    area_scales = jnp.tile(jnp.asarray(config.restart_area_scales or (1.0,) * k, jnp.float32), batch)
    maps = train_and_explain(programs, repeat(work), repeat(samples), area_scales, repeat(train_idx),
                             repeat(val_idx), _restart_keys(init_keys, k),
                             _restart_keys(order_keys, k), config, height, width)
    chex.assert_shape(maps, (batch * k, height, width))
    maps = np.asarray(normalise(maps.reshape(batch, k, height, width).mean(axis=1)))
    timings["training"] = time.perf_counter() - t0
    return maps, timings


def _training_key(config: DAXConfig) -> DAXConfig:
    """The config with the fields that do not shape the training programs reset (a cache key)."""
    return config.replace(segmentation_options=None, segmentation="grid", fill="zero",
                          query_chunk=None, image_batch=1, restart_area_scales=None,
                          area_fit_floor=None)
