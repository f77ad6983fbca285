"""The DAX engine: sample, query, train mask net and student jointly per image, explain.

Data flow for a group of B images (all arrays carry a leading image axis; every per-image
computation is vectorised over images — `vmap`, or on CPU a loop inside the same jitted step
(`Execution.rows_per_step`) — and each image has its own key, parameters and optimizer state):

  segments (host) -> keep-vectors z [B, N, S] (device) -> black-box answers y [B, N]
  (chunked queries) -> the student's targets (logits of y by default) -> Adam steps on
  (mask net, student), the masked perturbations rebuilt inside each step from z and the mask
  -> f_M(original) upsampled to H x W, with the student's held-out fit and the mask's state.

Two students (`DAXConfig.student`):
- "segments" (the default): the student reads a masked perturbation as the share of each segment
  it shows. The mask is a grid over the image; its share of segment j is the mean of the upsampled
  mask over j's pixels (`nets.segment_pooling`), and each training sample shows segment j when it
  was kept (z_j) *and* a relaxed Bernoulli gate with that share as its probability opens
  (`sampling.hard_concrete_gates`). A sampled gate is 0 or 1 most of the time, so the student
  cannot undo a shrinking mask by growing its weights: a segment the black box needs must stay
  open, and the area term closes the others.
- "image": the paper's CNN on the masked pixels (the presets `DAXConfig.paper_v1/v2/v3`).

Why the default is what it is (benchmarks/RESULTS.md, "DAX on real models"): on EfficientNet's
answers to perturbed photos the image student did not fit held-out perturbations (1 - normalised
MSE near 0, against about 0.6 for a linear surrogate in segment space on the same queries), and
the area term then killed every mask; in segment space, on logits, the student fits as well as
the surrogate or better, and the mask lives.
"""

from __future__ import annotations

import functools
import time
from typing import NamedTuple

import chex
import jax
import jax.extend.core as jax_core
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from daxjax.methods.dax import losses
from daxjax.methods.dax.config import DAXConfig
from daxjax.methods.base import GroupResult, Method, normalise, sample_bytes
from daxjax.methods.surrogate import weighted_ridge
from daxjax.methods.dax.nets import DaxNets, init_nets, segment_pooling, upsample_mask
from daxjax.device.execution import Execution, query_chunk, rows_per_step
from daxjax.device.querying import DeviceBlackBox, RenderedQueries, input_elements
from daxjax.perturbation.sampling import (hard_concrete_gates, image_keys, keep_masks, perturb, proximity_weights,
                             split_indices)
from daxjax.perturbation.segments import HostSegments, segments_bound, draw_keep_vectors, query_segment_perturbations, segment_and_fill
from daxjax.device.sharding import over_images

#: Per-image diagnostics of a DAX explanation (`Explanation.diagnostics`), each [B]:
#:   heldout_fit     1 - the student's pi-weighted squared error on the held-out perturbations
#:                   (masked as at the end of training) over their pi-weighted variance: how much of
#:                   the black box's variation the student, seeing only what the mask keeps,
#:                   predicts on queries it never trained on (1 perfect, 0 no better than the mean).
#:   surrogate_fit   the same for a linear surrogate in segment space (LIME's ridge regression on
#:                   the student's targets, same split): how much a simple model explains at all.
#:   mask_area       mean of the mask over the image (0 dead, 1 everything kept).
#:   mask_contrast   max - min of the mask before the map is scaled to [0, 1] (0 flat).
#:   trusted         heldout_fit >= FIT_FLOOR and the mask alive (contrast >= CONTRAST_FLOOR and
#:                   area between AREA_RANGE): a map to act on; False flags it.
DIAGNOSTICS = ("heldout_fit", "surrogate_fit", "mask_area", "mask_contrast", "trusted")
#: Below this held-out fit the student explains too little of the black box's answers for its
#: mask to mean much (answers that are noise or a hash of the input score about 0).
FIT_FLOOR = 0.2
#: A mask whose range is below this is flat; one outside this area range is dead or everything.
CONTRAST_FLOOR = 0.1
AREA_RANGE = (0.005, 0.95)
#: Logit targets are clipped to +-this: a probability of 1e-7 and one of 1e-9 differ by 4.6 in
#: logit but both mean "absent"; the clip keeps such samples from dominating the squared error.
LOGIT_CLIP = 12.0


class WorkingImage(NamedTuple):
    """One image at the networks' working resolution R (a leading image axis when batched)."""

    image: jax.Array     # [R, R, C]
    segments: jax.Array  # int32 [R, R]
    fill: jax.Array      # [R, R, C]
    pooling: jax.Array   # [S_max, cells * cells] segment shares of the mask grid (segment student)


class Samples(NamedTuple):
    """One image's perturbations and the black box's answers to them."""

    z: jax.Array   # bool [N, S]
    y: jax.Array   # [N] the student's targets (`student_targets` of the target-class probability)
    pi: jax.Array  # [N] proximity weight


class Batch(NamedTuple):
    """A minibatch of one image's samples, plus the image they perturb."""

    image: WorkingImage
    z: jax.Array             # bool [b, S]
    y: jax.Array             # [b]
    pi: jax.Array            # [b]
    target_scale: jax.Array  # [] 1 / pi-weighted variance of the row's training targets


def to_working_resolution(image, segments, fill, resolution: int, max_segments: int,
                          cells: int | None) -> WorkingImage:
    """Resizes one image and its fill (antialiased), samples its segment map (nearest) and, given
    `cells`, builds the pooling of the mask grid onto the full-resolution segments."""
    height, width = segments.shape
    rows = ((jnp.arange(resolution) + 0.5) * height / resolution).astype(jnp.int32)
    cols = ((jnp.arange(resolution) + 0.5) * width / resolution).astype(jnp.int32)
    shape = (resolution, resolution, image.shape[-1])
    pooling = (segment_pooling(segments, max_segments, cells) if cells is not None
               else jnp.zeros((0,), jnp.float32))
    return WorkingImage(
        image=jax.image.resize(image, shape, "linear", antialias=True),
        segments=segments[rows][:, cols],
        fill=jax.image.resize(fill, shape, "linear", antialias=True),
        pooling=pooling,
    )


def student_targets(y: jax.Array, target: str) -> jax.Array:
    """What the student fits: the target-class probabilities y, or their logits (clipped).

    Logits: evidence for a class adds up in the logit (a softmax classifier's logit is a sum of
    evidence), while the probability saturates, and many real photos sit at p = 0.1-0.5 where a
    few segments multiply it. A linear surrogate on the same queries explained 0.76 of the held-out
    variation of logits against 0.57 of probabilities (restricted views: 0.76 vs 0.38).
    """
    if target == "probability":
        return y
    p = jnp.clip(y, 1e-12, 1.0)
    logit = jnp.log(p) - jnp.log1p(-jnp.minimum(p, 1.0 - 1e-7))
    return jnp.clip(logit, -LOGIT_CLIP, LOGIT_CLIP)


def student_input(x: jax.Array, *, work: WorkingImage, config: DAXConfig) -> jax.Array:
    """What the image student sees of a (masked) perturbation x [..., R, R, C].

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


def segment_predictions(nets, complement_student, batch: Batch, key, config: DAXConfig):
    """The segment student on the masked samples and on their complements: (y_hat, y_bar, mask).

    key: None for the deterministic gates of validation and explanation, else this step's key.
    """
    mask = nets.mask(batch.image.image)                                    # [cells, cells]
    shares = batch.image.pooling @ mask.reshape(-1)                        # [S]
    z = batch.z.astype(jnp.float32)
    gate = hard_concrete_gates(shares, key, z.shape, config.gate_temperature) if config.gate == "hard_concrete" \
        else jnp.broadcast_to(shares, z.shape)
    return nets.student(z * gate), complement_student(z * (1.0 - gate)), mask


def image_predictions(nets, complement_student, batch: Batch, config: DAXConfig):
    """The image student on x_p * m + hidden * (1 - m) and on the complement: (y_hat, y_bar, mask).

    A perturbation is x_p = fill + keep * (image - fill), keep [b, R, R] in {0, 1}, so what the
    student sees of it under a mask m is one base image plus keep * m times the image's difference
    from its fill; the student's linear first layer takes it in that form (`nets.StudentNet.gated`)
    and no [b, R, R, C] input is built (same losses and gradients to float rounding;
    and each step is cheaper: `python -m benchmarks.dax_floor_probes steps`).
    """
    work = batch.image
    keep = keep_masks(batch.z, work.segments)
    mask_in = work.image if config.mask_input == "original" else perturb(work.image, work.segments, work.fill, batch.z)
    mask = upsample_mask(nets.mask(mask_in), config.resolution)
    # What the mask removes shows the fill (as a switched-off segment does) or black (the paper).
    hidden = work.fill if config.mask_fill == "fill" else jnp.zeros_like(work.fill)
    student_in = functools.partial(student_input, work=work, config=config)
    direction = student_in(work.image) - student_in(work.fill)  # student_in is affine

    def masked(student, m):
        m = m[..., None]
        return student.gated(student_in(work.fill * m + hidden * (1.0 - m)), m * direction, keep)

    return masked(nets.student, mask), masked(complement_student, 1.0 - mask), mask


def dax_loss(params, graphdef, batch: Batch, key, config: DAXConfig) -> tuple[jax.Array, dict]:
    """The DAX objective for one image's minibatch. Returns (loss, metrics).

    key: the step's key for the segment student's gates; None for deterministic gates.
    """
    nets = nnx.merge(graphdef, params)
    complement = nets
    if config.complement_stop_gradient:
        complement = nnx.merge(graphdef, jax.lax.stop_gradient(params))
    if config.student == "segments":
        y_hat, y_bar, mask = segment_predictions(nets, complement.student, batch, key, config)
    else:
        y_hat, y_bar, mask = image_predictions(nets, complement.student, batch, config)
    if config.variant == "v1":
        return losses.loss_v1(y_hat, batch.y, batch.pi, mask, lambda_l1=config.lambda_l1, lambda_kl=config.lambda_kl)
    return losses.loss_v2(y_hat, y_bar, batch.y, batch.pi, mask, lambda_q=config.lambda_q,
                          lambda_area=config.lambda_area,
                          scale=batch.target_scale if config.normalize_loss else None,
                          bounded_q=config.bounded_q)


def train_step(params, opt_state, batch: Batch, key, *, graphdef, config: DAXConfig,
               optimizer: optax.GradientTransformation):
    """One Adam step for one image: (params, opt_state, batch, key) -> (params, opt_state, metrics)."""
    (loss, metrics), grads = jax.value_and_grad(dax_loss, has_aux=True)(params, graphdef, batch, key, config)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, {"loss": loss, **metrics}


def warmup_steps(config: DAXConfig) -> int:
    """Adam steps during which only the student learns (`DAXConfig.student_warmup`)."""
    return int(round(config.student_warmup * config.total_steps))


def make_optimizer(config: DAXConfig) -> optax.GradientTransformation:
    """Adam for both nets; the mask net at its own rate, frozen during the student warm-up.

    In the first steps the student predicts noise, and the quickest way to lower its error is a
    constant input: the mask then fell to all zeros within 14 steps, where its sigmoid saturates
    and the student never learns (measured on the demo scenes). So the student learns first.
    """
    mask_rate = optax.join_schedules(
        [optax.constant_schedule(0.0), optax.constant_schedule(config.mask_learning_rate)],
        [warmup_steps(config)])

    def labels(params):
        return jax.tree_util.tree_map_with_path(lambda path, _: path[0].key, params)
    return optax.multi_transform(
        {"mask": optax.adam(mask_rate), "student": optax.adam(config.learning_rate)}, labels)


def checkpoints(config: DAXConfig) -> list[int]:
    """Steps after which the validation loss is computed and the best parameters kept.

    `config.validations` points spread evenly over the steps after the warm-up (the mask is frozen
    before, so earlier losses are not comparable), the last at the end of training.
    """
    start, total = warmup_steps(config), config.total_steps
    span = max(total - start, 1)
    points = {min(total, start + -(-k * span // config.validations)) for k in range(1, config.validations + 1)}
    return sorted(p for p in points if p > 0)


def _minibatch(work: WorkingImage, samples: Samples, target_scale, indices: jax.Array) -> Batch:
    return Batch(work, samples.z[indices], samples.y[indices], samples.pi[indices], target_scale)


class TrainingPrograms:
    """The jitted, row-vmapped programs that train DAX for one config; built once and cached.

    Every array argument carries a leading row axis (one row per image and restart). rows: rows
    vectorised together in one step, the rest looped (`device.execution.rows_per_step`; None: all).
    """

    def __init__(self, config: DAXConfig, channels: int, max_segments: int, rows: int | None = None):
        self.graphdef = nnx.graphdef(nnx.eval_shape(lambda: DaxNets(config, channels, max_segments,
                                                                    rngs=nnx.Rngs(0))))
        self.optimizer = make_optimizer(config)
        step = functools.partial(train_step, graphdef=self.graphdef, config=config, optimizer=self.optimizer)
        loss = functools.partial(dax_loss, graphdef=self.graphdef, config=config)
        b = config.minibatch

        def init(keys):
            _, params = init_nets(config, channels, max_segments, keys)
            return params, jax.vmap(self.optimizer.init)(params)

        over_rows = functools.partial(map_rows, width=rows)

        def run_steps(params, opt_state, work, samples, target_scales, train_idx, order_keys, gate_keys,
                      first_step, stop_step):
            """Adam steps first_step .. stop_step - 1 of every row, in one program (a loop whose
            bounds are arguments, so one compiled program serves every stretch of steps).

            Step t of a row trains on `b` of its training samples drawn (with replacement) from
            fold_in(its order key, t) and gates drawn from fold_in(its gate key, t): a step's batch
            depends only on the row's keys and t, not on how the steps are split into calls.
            """
            def body(t, carry):
                params, opt_state = carry
                idx = jax.vmap(lambda k, tr: tr[jax.random.randint(jax.random.fold_in(k, t), (b,), 0, tr.shape[0])])(
                    order_keys, train_idx)
                batches = jax.vmap(_minibatch)(work, samples, target_scales, idx)
                keys = jax.vmap(lambda k: jax.random.fold_in(k, t))(gate_keys)
                params, opt_state, _ = over_rows(step, params, opt_state, batches, keys)
                return params, opt_state
            return jax.lax.fori_loop(first_step, stop_step, body, (params, opt_state))

        def batched_validation(params, work, samples, target_scales, indices, weights):
            batches = jax.vmap(_minibatch)(work, samples, target_scales, indices)
            # Padding rows carry weight 0 in the pi-weighted terms.
            batches = batches._replace(pi=batches.pi * weights)
            total, _ = over_rows(lambda p, bt: loss(p, batch=bt, key=None), params, batches)
            return total

        def heldout_residuals(params, work, samples, indices, weights):
            """Per row: sum of pi (y_hat - y)^2 over `indices` (deterministic gates), [rows]."""
            def one(p, w, s, idx):
                nets = nnx.merge(self.graphdef, p)
                batch = Batch(w, s.z[idx], s.y[idx], s.pi[idx] * weights, jnp.ones(()))
                if config.student == "segments":
                    y_hat = segment_predictions(nets, nets.student, batch, None, config)[0]
                else:
                    y_hat = image_predictions(nets, nets.student, batch, config)[0]
                return jnp.sum(batch.pi * (y_hat - batch.y) ** 2)
            return over_rows(one, params, work, samples, indices)

        def final_maps(params, images, height, width):
            """f_M(x) on the original image, upsampled to H x W: [rows, H, W], not yet scaled."""
            def one(p, x):
                return jax.image.resize(nnx.merge(self.graphdef, p).mask(x), (height, width), "linear")
            return jax.vmap(one)(params, images)

        def segment_effects(params, work, samples, val_idx):
            """Per row: the student's mean effect of showing each segment, [rows, S_max].

            effect_j = mean over the held-out keep-vectors z of f_S((z with z_j = 1) * g) - f_S((z
            with z_j = 0) * g), g the mask's deterministic gates: how much segment j moves the
            student's answer where the mask lets it see j (0 where the mask closes j).
            """
            def one(p, w, s, idx):
                nets = nnx.merge(self.graphdef, p)
                shares = w.pooling @ nets.mask(w.image).reshape(-1)
                z = s.z[idx].astype(jnp.float32)
                gate = hard_concrete_gates(shares, None, z.shape, config.gate_temperature) \
                    if config.gate == "hard_concrete" else jnp.broadcast_to(shares, z.shape)

                def effect(j):
                    return jnp.mean(nets.student(z.at[:, j].set(1.0) * gate) - nets.student(z.at[:, j].set(0.0) * gate))
                return jax.lax.map(effect, jnp.arange(z.shape[-1]))
            return jax.vmap(one)(params, work, samples, val_idx)

        self.segment_effects = jax.jit(segment_effects)
        self.init = jax.jit(init)
        self.run_steps = jax.jit(run_steps, donate_argnums=(0, 1))
        self.validation = jax.jit(batched_validation)
        self.heldout_residuals = jax.jit(heldout_residuals)
        self.final_maps = jax.jit(final_maps, static_argnums=(2, 3))


def weighted_r2(prediction: jax.Array, target: jax.Array, weight: jax.Array) -> jax.Array:
    """1 - sum w (prediction - target)^2 / sum w (target - weighted mean)^2 over the last axis."""
    mean = jnp.sum(weight * target, -1, keepdims=True) / jnp.sum(weight, -1, keepdims=True)
    residual = jnp.sum(weight * (prediction - target) ** 2, -1)
    return 1.0 - residual / jnp.maximum(jnp.sum(weight * (target - mean) ** 2, -1), 1e-12)


def steps_per_call(config: DAXConfig) -> int:
    """Adam steps run in one compiled call (a `lax.fori_loop`): as many as the checkpoints allow for the
    segment student, whose steps are small enough that dispatching them one by one from Python
    would cost more than computing them; one for the image student on CPU, where a scan over its
    convolution steps ran several times slower than the same steps dispatched one by one."""
    if config.student == "image" and jax.default_backend() == "cpu":
        return 1
    return config.total_steps


def map_rows(fn, *args, width: int | None):
    """fn over the leading row axis of args: one vmap, or a loop over vmaps of `width` rows.

    Under an image mesh (`sharding.image_mesh`) each device maps over its own rows.
    """
    def rows(*args):
        if width is None:
            return jax.vmap(fn)(*args)
        return jax.lax.map(lambda a: fn(*a), args, batch_size=width)
    return over_images(rows)(*args)


def training_programs(config: DAXConfig, channels: int, max_segments: int, rows: int | None = None) -> TrainingPrograms:
    """The training programs for `config`, cached on `config.program_key()` (its PROGRAM_FIELDS) and
    built from `config.program_config()`, so configs that differ in other fields share them."""
    return _training_programs(config.program_key(), channels, max_segments, rows)


@functools.lru_cache(maxsize=8)
def _training_programs(key: tuple, channels: int, max_segments: int, rows: int | None) -> TrainingPrograms:
    return TrainingPrograms(DAXConfig(**dict(key)), channels, max_segments, rows)


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


class Trained(NamedTuple):
    """What training leaves per row: raw maps [rows, H, W], the row's diagnostics [rows] and the
    student's effect of each segment [rows, S_max] (zeros for the image student)."""

    maps: jax.Array
    heldout_fit: jax.Array
    mask_area: jax.Array
    mask_contrast: jax.Array
    effects: jax.Array


def train_and_explain(programs: TrainingPrograms, work: WorkingImage, samples: Samples, target_scales,
                      train_idx, val_idx, init_keys, order_keys, gate_keys, config: DAXConfig,
                      height: int, width: int, trace: list | None = None) -> Trained:
    """Trains one (mask net, student) pair per row; returns f_M(x) maps and diagnostics per row.

    At each checkpoint (`checkpoints`) every row keeps its parameters if its validation loss is
    the lowest so far. trace: a list to append, at the end of the warm-up and every 5 % of the
    steps, {"step", "heldout_fit", "mask_area"} of the current parameters ([rows] each): what the
    student and the mask do during training (`benchmarks.realmodels.diagnose`).
    """
    rows = init_keys.shape[0]
    params, opt_state = programs.init(init_keys)

    def validation_loss(p):
        total = jnp.zeros((rows,), jnp.float32)
        for idx, weights in _validation_chunks(val_idx, config.minibatch):
            total = total + programs.validation(p, work, samples, target_scales, idx, weights)
        return total

    def heldout_fit(p):
        residual = jnp.zeros((rows,), jnp.float32)
        for idx, weights in _validation_chunks(val_idx, config.minibatch):
            residual = residual + programs.heldout_residuals(p, work, samples, idx, weights)
        return 1.0 - residual / _weighted_spread(samples.y, samples.pi, val_idx)

    def record(step, p):
        area = programs.final_maps(p, work.image, height, width).reshape(rows, -1).mean(-1)
        trace.append({"step": step, "heldout_fit": np.asarray(heldout_fit(p)), "mask_area": np.asarray(area)})

    best_params = jax.tree.map(jnp.copy, params)
    best_loss = jnp.full((rows,), jnp.inf)
    marks = set(checkpoints(config))
    stops = sorted(marks | ({warmup_steps(config)} | set(range(0, config.total_steps + 1,
                                                              max(1, config.total_steps // 20)))
                            if trace is not None else set()) - {0})
    done = 0
    for mark in stops:
        for start in range(done, mark, steps_per_call(config)):
            stop = min(start + steps_per_call(config), mark)
            params, opt_state = programs.run_steps(params, opt_state, work, samples, target_scales, train_idx,
                                                   order_keys, gate_keys, start, stop)
        done = mark
        if trace is not None and mark >= warmup_steps(config):
            record(mark, params)
        if mark in marks:
            val = validation_loss(params)
            improved = val < best_loss
            best_params = _select(improved, jax.tree.map(jnp.copy, params), best_params)
            best_loss = jnp.where(improved, val, best_loss)
    maps = programs.final_maps(best_params, work.image, height, width)
    flat = maps.reshape(rows, -1)
    effects = (programs.segment_effects(best_params, work, samples, val_idx) if config.student == "segments"
               else jnp.zeros(samples.z.shape[::2], jnp.float32))
    return Trained(maps, heldout_fit(best_params), flat.mean(-1), flat.max(-1) - flat.min(-1), effects)


def _restart_keys(keys: jax.Array, restarts: int) -> jax.Array:
    """[B] keys -> [B * K] keys, row b * K + k for restart k of image b."""
    return jax.vmap(lambda key: jax.vmap(lambda r: jax.random.fold_in(key, r))(
        jnp.arange(restarts)))(keys).reshape(-1)


@jax.jit
def _weighted_spread(y, pi, idx) -> jax.Array:
    """sum pi (y - weighted mean)^2 over each row's samples `idx`: [rows] (floored, never 0)."""
    def one(y, pi, idx):
        yv, wv = y[idx], pi[idx]
        mean = jnp.sum(wv * yv) / jnp.sum(wv)
        return jnp.maximum(jnp.sum(wv * (yv - mean) ** 2), 1e-12)
    return jax.vmap(one)(y, pi, idx)


def _target_scales(y, pi, train_idx) -> jax.Array:
    """1 / (pi-weighted variance of each row's training targets): [rows]."""
    def one(y, pi, idx):
        yt, wt = y[idx], pi[idx]
        mean = jnp.sum(wt * yt) / jnp.sum(wt)
        return 1.0 / (jnp.sum(wt * (yt - mean) ** 2) / jnp.sum(wt) + 1e-6)
    return jax.vmap(one)(y, pi, train_idx)


def _surrogate_fit(z, y, pi, train_idx, val_idx) -> jax.Array:
    """Held-out fit of LIME's ridge regression on the same targets and split: [B]."""
    def one(z, y, pi, tr, va):
        zf = z.astype(jnp.float32)
        w, b = weighted_ridge(zf[tr], y[tr], pi[tr], 1.0)
        return weighted_r2(zf[va] @ w + b, y[va], pi[va])
    return jax.vmap(one)(z, y, pi, train_idx, val_idx)


_painted = jax.jit(jax.vmap(lambda values, segments: values[segments]))
_split = jax.jit(jax.vmap(split_indices, in_axes=(0, None, None)), static_argnums=(1, 2))
_proximity = jax.jit(jax.vmap(proximity_weights, in_axes=(0, 0, None)), static_argnums=2)
_targets = jax.jit(student_targets, static_argnums=1)
_scales = jax.jit(_target_scales)
_surrogate = jax.jit(_surrogate_fit)


@functools.partial(jax.jit, static_argnums=(3, 4, 5))
def _working_resolution(images, segments, fills, resolution: int, max_segments: int, cells: int | None):
    return jax.vmap(lambda i, s, f: to_working_resolution(i, s, f, resolution, max_segments, cells))(
        images, segments, fills)


def explain_images(device_bb: DeviceBlackBox, images: np.ndarray, targets: np.ndarray,
                   digests: np.ndarray, config: DAXConfig, seed: int,
                   image_ids: list, segmented: HostSegments | None = None,
                   queries: RenderedQueries | None = None, execution: Execution | None = None,
                   trace: list | None = None) -> GroupResult:
    """Explains one group of images side by side with DAX.

    images: float32 [B, H, W, C] in [0, 1]; targets: int32 [B]; digests: uint32 [B] image
    fingerprints (`inputs.image_digest`); image_ids: the caller's names for the images.
    queries: None for images; `querying.RenderedQueries` when the black box takes other inputs
    (audio), which are then rendered from the masks on `images`' grid.
    execution: perturbations per black-box call and rows per training step (`device.execution`);
      never changes the maps.
    trace: a list that receives the training's course (see `train_and_explain`; rows b * K + k).
    Returns maps float32 [B, H, W] in [0, 1], seconds per phase ("segmentation", "queries",
    "training") and the diagnostics of `DIAGNOSTICS` per image.
    """
    t0 = time.perf_counter()
    group = segment_and_fill(images, config, image_ids, segmented)
    group = group._replace(max_segments=padded_segments(group.max_segments))
    timings = {"segmentation": time.perf_counter() - t0}
    batch, height, width, channels = images.shape
    n = config.num_samples
    # The keep-vectors come from the image's key itself, as LIME's do (same N, same segments: the
    # same perturbations); training draws from keys folded off it.
    sample_keys = image_keys(seed, digests)
    split_keys, init_keys, order_keys, gate_keys = (
        jax.vmap(lambda k: jax.vmap(lambda i: jax.random.fold_in(k, i))(jnp.arange(1, 5)))(sample_keys)
        .transpose(1, 0))

    t0 = time.perf_counter()
    z = draw_keep_vectors(sample_keys, n, group.num_segments, group.max_segments, config.keep_prob)
    chunk = query_chunk(execution, batch, input_elements(images, queries))
    y = query_segment_perturbations(device_bb, group, z, targets, chunk, image_ids, queries)
    chex.assert_shape(z, (batch, n, group.max_segments))
    chex.assert_shape(y, (batch, n))
    samples = Samples(z, _targets(y, config.target), _proximity(z, group.num_segments, config.kernel_width))
    timings["queries"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    cells = config.mask_cells if config.student == "segments" else None
    work = _working_resolution(group.images, group.segments, group.fills, config.resolution,
                               group.max_segments, cells)
    train_idx, val_idx = _split(split_keys, n, config.num_samples_validation)
    scales = _scales(samples.y, samples.pi, train_idx)
    # Restarts train side by side as extra rows of the same vmap: row b * K + k is restart k of
    # image b, sharing the image's samples but with its own initialisation, batch order and gates.
    k = config.restarts
    repeat = functools.partial(jax.tree.map, lambda a: jnp.repeat(a, k, axis=0))
    programs = training_programs(config, channels, group.max_segments,
                                 rows_per_step(execution, config.student == "image"))
    trained = train_and_explain(programs, repeat(work), repeat(samples), repeat(scales), repeat(train_idx),
                                repeat(val_idx), _restart_keys(init_keys, k), _restart_keys(order_keys, k),
                                _restart_keys(gate_keys, k), config, height, width, trace)
    chex.assert_shape(trained.maps, (batch * k, height, width))
    row_maps = trained.maps
    if config.effect_power > 0 and config.student == "segments":
        effects = jnp.maximum(trained.effects, 0.0)
        effects = (effects / jnp.maximum(effects.max(axis=1, keepdims=True), 1e-12)) ** config.effect_power
        row_maps = row_maps * _painted(effects, jnp.repeat(group.segments, k, axis=0))
    maps = np.asarray(normalise(normalise(row_maps).reshape(batch, k, height, width).mean(axis=1)))
    per_image = {name: np.asarray(value).reshape(batch, k).mean(axis=1)
                 for name, value in trained._asdict().items() if name not in ("maps", "effects")}
    per_image["surrogate_fit"] = np.asarray(_surrogate(z, samples.y, samples.pi, train_idx, val_idx))
    per_image["trusted"] = trusted(per_image)
    timings["training"] = time.perf_counter() - t0
    return GroupResult(maps, timings, {name: per_image[name].astype(np.float32 if name != "trusted" else bool)
                                       for name in DIAGNOSTICS})


def padded_segments(max_segments: int) -> int:
    """S_max for DAX: the next power of two, at least 32. The training programs are compiled per
    S_max, and quickshift at 224 px gives 30-60 segments an image: a few sizes cover most groups.
    Padded segments are never shown, so a map does not depend on it (the determinism contract)."""
    return max(32, 1 << (int(max_segments) - 1).bit_length())


def trusted(diagnostics: dict) -> np.ndarray:
    """bool [B]: the held-out fit reaches FIT_FLOOR and the mask is alive (see `DIAGNOSTICS`)."""
    alive = ((diagnostics["mask_contrast"] >= CONTRAST_FLOOR) & (diagnostics["mask_area"] >= AREA_RANGE[0])
             & (diagnostics["mask_area"] <= AREA_RANGE[1]))
    return (diagnostics["heldout_fit"] >= FIT_FLOOR) & alive


def working_bytes(config: DAXConfig, height: int, width: int, channels: int) -> int:
    """Device bytes one image needs while DAX explains it: its samples (keep-vectors padded to
    `padded_segments`) and, per restart, `training_bytes`."""
    segments = padded_segments(segments_bound(config))
    return sample_bytes(config.num_samples, segments) + config.restarts * training_bytes(
        config.program_config(), channels, segments)


@functools.lru_cache(maxsize=16)
def training_bytes(config: DAXConfig, channels: int, max_segments: int) -> int:
    """Bytes of one row's training, read off the real networks (`nets.DaxNets`) and loss.

    The parameters four times (themselves, Adam's two moments, the best copy so far), plus the
    peak of one minibatch's gradient step: `dax_loss` under `value_and_grad`, traced to a jaxpr
    (not compiled), each value alive from the equation that makes it to its last use
    (`peak_bytes`). An upper bound: XLA fuses many of those values away.
    """
    nets = nnx.eval_shape(lambda: DaxNets(config, channels, max_segments, rngs=nnx.Rngs(0)))
    params = jax.tree.map(lambda leaf: jnp.zeros(leaf.shape, leaf.dtype), nnx.state(nets, nnx.Param))
    r, b = config.resolution, config.minibatch
    pooling = (jnp.zeros((max_segments, config.mask_cells ** 2)) if config.student == "segments"
               else jnp.zeros((0,)))
    work = WorkingImage(jnp.zeros((r, r, channels)), jnp.zeros((r, r), jnp.int32), jnp.zeros((r, r, channels)),
                        pooling)
    batch = Batch(work, jnp.zeros((b, max_segments), bool), jnp.zeros((b,)), jnp.zeros((b,)), jnp.ones(()))
    loss = functools.partial(dax_loss, graphdef=nnx.graphdef(nets), config=config)
    step = jax.make_jaxpr(jax.value_and_grad(lambda p, batch, key: loss(p, batch=batch, key=key), has_aux=True))(
        params, batch, jax.random.key(0))
    param_bytes = sum(leaf.size * leaf.dtype.itemsize for leaf in jax.tree.leaves(params))
    return 4 * param_bytes + peak_bytes(step.jaxpr)


def peak_bytes(jaxpr) -> int:
    """The most bytes of values alive at once while a jaxpr runs its equations in order (inputs not
    counted): a value lives from its equation to its last use; a nested jaxpr (jit, custom
    derivatives) adds its own peak while its equation runs."""
    last_use = {}
    for index, eqn in enumerate(jaxpr.eqns):
        for var in eqn.invars:
            if not isinstance(var, jax_core.Literal):
                last_use[var] = index
    for var in jaxpr.outvars:
        if not isinstance(var, jax_core.Literal):
            last_use[var] = len(jaxpr.eqns)
    live, peak = {}, 0
    for index, eqn in enumerate(jaxpr.eqns):
        inner = [getattr(value, "jaxpr", value) for value in eqn.params.values()
                 if isinstance(getattr(value, "jaxpr", value), jax_core.Jaxpr)]
        made = {var: _value_bytes(var) for var in eqn.outvars}
        peak = max(peak, sum(live.values()) + max((peak_bytes(j) for j in inner), default=0) + sum(made.values()))
        live.update((var, size) for var, size in made.items() if last_use.get(var, -1) > index)
        for var in [var for var in live if last_use.get(var, -1) <= index]:
            del live[var]
    return peak


def _value_bytes(var) -> int:
    aval = var.aval
    dtype = getattr(aval, "dtype", None)
    return int(np.prod(aval.shape)) * dtype.itemsize if dtype is not None and hasattr(aval, "shape") else 0


METHOD = Method("dax", DAXConfig, explain_images, perturbs_segments=True, query_only=True,
                queries_per_image=lambda config, height, width: config.num_samples,
                working_bytes=working_bytes, diagnostics=DIAGNOSTICS)
