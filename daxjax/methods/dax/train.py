"""The DAX trainer, optax-shaped: `make_trainer(config, ...) -> Trainer(init, step, end_epoch, maps, run)`.

A `Trainer` is a NamedTuple of pure functions over an explicit `TrainState`; every array carries a
leading row axis (one row per image and restart; each row has its own parameters, optimiser state
and keys). The engine (`engine.explain_images`) drives it:

    state = trainer.init(init_keys)
    for each validation checkpoint c (`checkpoints`):
        state = trainer.run(state, data, keys, c)       # trainer.step until state.step == c
        state, _ = trainer.end_epoch(state, data)       # keep each row's best parameters
    trained = trainer.maps(state, data, height, width)  # f_M(x) of the best parameters, diagnostics

`trainer.step` is the one definition of a training step for all rows (`train_step` per row, the
house style: (params, opt_state, batch, key) -> (params, opt_state, metrics)); `trainer.run` repeats
it in one compiled loop, drawing each step's minibatch with `draw_batch`.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from daxjax.device.sharding import over_images
from daxjax.methods.dax import losses
from daxjax.methods.dax.config import DAXConfig
from daxjax.methods.dax.nets import DaxNets, init_nets, upsample_mask
from daxjax.perturbation.sampling import hard_concrete_gates, keep_masks, perturb


class WorkingImage(NamedTuple):
    """One image at the networks' working resolution R (a leading image axis when batched)."""

    image: jax.Array     # [R, R, C]
    segments: jax.Array  # int32 [R, R]
    fill: jax.Array      # [R, R, C]
    pooling: jax.Array   # [S_max, cells * cells] segment shares of the mask grid (segment student)


class Samples(NamedTuple):
    """One image's perturbations and the black box's answers to them."""

    z: jax.Array   # bool [N, S]
    y: jax.Array   # [N] the student's targets (`engine.student_targets` of the target-class probability)
    pi: jax.Array  # [N] proximity weight


class Batch(NamedTuple):
    """A minibatch of one image's samples, plus the image they perturb."""

    image: WorkingImage
    z: jax.Array             # bool [b, S]
    y: jax.Array             # [b]
    pi: jax.Array            # [b]
    target_scale: jax.Array  # [] 1 / pi-weighted variance of the row's training targets


class TrainData(NamedTuple):
    """What the rows train on, fixed for the whole training (a leading row axis on every leaf)."""

    work: WorkingImage        # the row's image at the working resolution
    samples: Samples          # z bool [rows, N, S], y [rows, N], pi [rows, N]
    target_scale: jax.Array   # [rows] 1 / pi-weighted variance of the row's training targets
    train_idx: jax.Array      # int32 [rows, N_train] the samples minibatches are drawn from
    val_idx: jax.Array        # int32 [rows, N_val] held out: checkpoints and diagnostics


class TrainKeys(NamedTuple):
    """Per-row keys of the training's randomness, [rows] each."""

    order: jax.Array  # step t's minibatch: fold_in(order, t)
    gate: jax.Array   # step t's hard-concrete gates: fold_in(gate, t)


class TrainState(NamedTuple):
    """Everything training carries from call to call (a leading row axis except on `step`)."""

    params: Any            # nnx.State of both nets
    opt_state: Any         # optax state of `make_optimizer` (Adam's count and moments per net)
    best_params: Any       # the parameters with the lowest validation loss so far
    best_loss: jax.Array   # float32 [rows] that loss; inf before the first checkpoint
    step: jax.Array        # int32 [] Adam steps done (shared by the rows)


class Trained(NamedTuple):
    """What training leaves per row: raw maps [rows, H, W], the row's diagnostics [rows] and the
    student's effect of each segment [rows, S_max] (zeros for the image student)."""

    maps: jax.Array
    heldout_fit: jax.Array
    mask_area: jax.Array
    mask_contrast: jax.Array
    effects: jax.Array


class Trainer(NamedTuple):
    """DAX training as pure functions (`make_trainer`); the state is a `TrainState`.

    init(keys [rows]) -> state: fresh networks and optimiser per row (one key each).
    step(state, batch, gate_keys [rows]) -> (state, metrics): one Adam step of every row on its
      minibatch `Batch` (leading row axis); metrics {"loss", "mse", ...} [rows] before the step.
    end_epoch(state, data) -> (state, validation_loss [rows]): a validation checkpoint; each row
      keeps its parameters as best if their validation loss is its lowest so far.
    maps(state, data, height, width) -> `Trained` of the best parameters (height, width static).
    run(state, data, keys, stop) -> state: `step` on `draw_batch` minibatches until state.step == stop,
      in one loop whose bounds are arguments (one compiled program serves every stretch of steps).
    """

    init: Callable
    step: Callable
    end_epoch: Callable
    maps: Callable
    run: Callable


def student_input(x: jax.Array, *, work: WorkingImage, config: DAXConfig) -> jax.Array:
    """What the image student sees of a (masked) perturbation x [..., R, R, C].

    "raw": x itself (the paper). "centred": x minus the mean perturbation, in units of the RMS
    change a switched-off segment makes. All perturbations of one image share most of their
    pixels, so raw inputs are a large constant plus a small informative part, a badly conditioned
    regression; centred, the informative part is all there is and the student fits it in fewer steps.
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
    and no [b, R, R, C] input is built (same losses and gradients to float rounding, cheaper steps).
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
    constant input: the mask then fell to all zeros, where its sigmoid saturates and the student
    never learns. So the student learns first.
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


def steps_per_call(config: DAXConfig) -> int:
    """Adam steps run in one compiled call (`Trainer.run`): as many as the checkpoints allow for the
    segment student, whose steps are small enough that dispatching them one by one from Python
    would cost more than computing them; one for the image student on CPU, where a loop over its
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


def weighted_r2(prediction: jax.Array, target: jax.Array, weight: jax.Array) -> jax.Array:
    """1 - sum w (prediction - target)^2 / sum w (target - weighted mean)^2 over the last axis."""
    mean = jnp.sum(weight * target, -1, keepdims=True) / jnp.sum(weight, -1, keepdims=True)
    residual = jnp.sum(weight * (prediction - target) ** 2, -1)
    return 1.0 - residual / jnp.maximum(jnp.sum(weight * (target - mean) ** 2, -1), 1e-12)


def _minibatch(work: WorkingImage, samples: Samples, target_scale, indices: jax.Array) -> Batch:
    return Batch(work, samples.z[indices], samples.y[indices], samples.pi[indices], target_scale)


def draw_batch(data: TrainData, keys: TrainKeys, t, size: int) -> tuple[Batch, jax.Array]:
    """Step t's minibatches and gate keys: (Batch with a leading row axis, gate keys [rows]).

    Each row's minibatch is `size` of its training samples drawn (with replacement) from
    fold_in(its order key, t), its gates from fold_in(its gate key, t): a step's batch depends
    only on the row's keys and t, not on how the steps are split into calls.
    """
    idx = jax.vmap(lambda k, tr: tr[jax.random.randint(jax.random.fold_in(k, t), (size,), 0, tr.shape[0])])(
        keys.order, data.train_idx)
    batch = jax.vmap(_minibatch)(data.work, data.samples, data.target_scale, idx)
    return batch, jax.vmap(lambda k: jax.random.fold_in(k, t))(keys.gate)


def _held_out_chunks(val_idx: jax.Array, size: int) -> tuple[jax.Array, jax.Array]:
    """[rows, V] indices -> ([chunks, rows, size] indices, [chunks, size] weights): the held-out
    samples `size` at a time, the last chunk padded with index 0 at weight 0."""
    rows, total = val_idx.shape
    count = -(-total // size)
    padded = jnp.pad(val_idx, ((0, 0), (0, count * size - total)))
    weights = (jnp.arange(count * size) < total).astype(jnp.float32).reshape(count, size)
    return padded.reshape(rows, count, size).transpose(1, 0, 2), weights


def _chunked_sum(fn, val_idx: jax.Array, size: int, rows: int) -> jax.Array:
    """sum over the held-out chunks of fn(indices [rows, size], weights [size]) -> [rows], in order."""
    def body(total, chunk):
        return total + fn(*chunk), None
    total, _ = jax.lax.scan(body, jnp.zeros((rows,), jnp.float32), _held_out_chunks(val_idx, size))
    return total


def _select(improved: jax.Array, new, old):
    """Per row: keep `new` where the validation loss improved, else `old`."""
    def pick(a, b):
        shape = (-1,) + (1,) * (a.ndim - 1)
        return jnp.where(improved.reshape(shape), a, b)
    return jax.tree.map(pick, new, old)


def _weighted_spread(y, pi, idx) -> jax.Array:
    """sum pi (y - weighted mean)^2 over each row's samples `idx`: [rows] (floored, never 0)."""
    def one(y, pi, idx):
        yv, wv = y[idx], pi[idx]
        mean = jnp.sum(wv * yv) / jnp.sum(wv)
        return jnp.maximum(jnp.sum(wv * (yv - mean) ** 2), 1e-12)
    return jax.vmap(one)(y, pi, idx)


def make_trainer(config: DAXConfig, channels: int, max_segments: int, rows: int | None = None) -> Trainer:
    """The DAX trainer for `config`: pure functions (jit them; `compiled_trainer` does, cached).

    channels: C of the images; max_segments: S_max, the keep-vectors' padded length. rows: rows
    vectorised together in one step, the rest looped (`device.execution.rows_per_step`; None: all).
    """
    graphdef = nnx.graphdef(nnx.eval_shape(lambda: DaxNets(config, channels, max_segments, rngs=nnx.Rngs(0))))
    optimizer = make_optimizer(config)
    one_step = functools.partial(train_step, graphdef=graphdef, config=config, optimizer=optimizer)
    loss = functools.partial(dax_loss, graphdef=graphdef, config=config)
    over_rows = functools.partial(map_rows, width=rows)
    size = config.minibatch

    def init(keys) -> TrainState:
        params = init_nets(config, channels, max_segments, keys)[1]
        return TrainState(params, jax.vmap(optimizer.init)(params), jax.tree.map(jnp.copy, params),
                          jnp.full(keys.shape, jnp.inf, jnp.float32), jnp.zeros((), jnp.int32))

    def step(state: TrainState, batch: Batch, gate_keys) -> tuple[TrainState, dict]:
        params, opt_state, metrics = over_rows(one_step, state.params, state.opt_state, batch, gate_keys)
        return state._replace(params=params, opt_state=opt_state, step=state.step + 1), metrics

    def run(state: TrainState, data: TrainData, keys: TrainKeys, stop) -> TrainState:
        def body(_, state):
            return step(state, *draw_batch(data, keys, state.step, size))[0]
        return jax.lax.fori_loop(state.step, stop, body, state)

    def validation_loss(params, data: TrainData) -> jax.Array:
        def chunk(indices, weights):
            batches = jax.vmap(_minibatch)(data.work, data.samples, data.target_scale, indices)
            # Padding carries weight 0 in the pi-weighted terms.
            batches = batches._replace(pi=batches.pi * weights)
            return over_rows(lambda p, bt: loss(p, batch=bt, key=None)[0], params, batches)
        return _chunked_sum(chunk, data.val_idx, size, data.val_idx.shape[0])

    def end_epoch(state: TrainState, data: TrainData) -> tuple[TrainState, jax.Array]:
        val = validation_loss(state.params, data)
        improved = val < state.best_loss
        return state._replace(best_params=_select(improved, state.params, state.best_params),
                              best_loss=jnp.where(improved, val, state.best_loss)), val

    def heldout_fit(params, data: TrainData) -> jax.Array:
        """Per row: 1 - the pi-weighted squared error on the held-out samples (deterministic gates)
        over their pi-weighted spread."""
        def chunk(indices, weights):
            def one(p, w, s, idx):
                nets = nnx.merge(graphdef, p)
                batch = Batch(w, s.z[idx], s.y[idx], s.pi[idx] * weights, jnp.ones(()))
                if config.student == "segments":
                    y_hat = segment_predictions(nets, nets.student, batch, None, config)[0]
                else:
                    y_hat = image_predictions(nets, nets.student, batch, config)[0]
                return jnp.sum(batch.pi * (y_hat - batch.y) ** 2)
            return over_rows(one, params, data.work, data.samples, indices)
        residual = _chunked_sum(chunk, data.val_idx, size, data.val_idx.shape[0])
        return 1.0 - residual / _weighted_spread(data.samples.y, data.samples.pi, data.val_idx)

    def segment_effects(params, data: TrainData) -> jax.Array:
        """Per row: the student's mean effect of showing each segment, [rows, S_max].

        effect_j = mean over the held-out keep-vectors z of f_S((z with z_j = 1) * g) - f_S((z
        with z_j = 0) * g), g the mask's deterministic gates: how much segment j moves the
        student's answer where the mask lets it see j (0 where the mask closes j).
        """
        def one(p, w, s, idx):
            nets = nnx.merge(graphdef, p)
            shares = w.pooling @ nets.mask(w.image).reshape(-1)
            z = s.z[idx].astype(jnp.float32)
            gate = hard_concrete_gates(shares, None, z.shape, config.gate_temperature) \
                if config.gate == "hard_concrete" else jnp.broadcast_to(shares, z.shape)

            def effect(j):
                return jnp.mean(nets.student(z.at[:, j].set(1.0) * gate) - nets.student(z.at[:, j].set(0.0) * gate))
            return jax.lax.map(effect, jnp.arange(z.shape[-1]))
        return jax.vmap(one)(params, data.work, data.samples, data.val_idx)

    def maps(state: TrainState, data: TrainData, height: int, width: int) -> Trained:
        params = state.best_params
        raw = jax.vmap(lambda p, x: jax.image.resize(nnx.merge(graphdef, p).mask(x), (height, width), "linear"))(
            params, data.work.image)
        flat = raw.reshape(raw.shape[0], -1)
        effects = (segment_effects(params, data) if config.student == "segments"
                   else jnp.zeros(data.samples.z.shape[::2], jnp.float32))
        return Trained(raw, heldout_fit(params, data), flat.mean(-1), flat.max(-1) - flat.min(-1), effects)

    return Trainer(init, step, end_epoch, maps, run)


def compiled_trainer(config: DAXConfig, channels: int, max_segments: int, rows: int | None = None) -> Trainer:
    """`make_trainer` with every function jitted (`run` donating its state), cached on
    `config.program_key()` (its PROGRAM_FIELDS) and built from those fields alone, so configs that
    differ in other fields share the compiled programs."""
    return _compiled_trainer(config.program_key(), channels, max_segments, rows)


@functools.lru_cache(maxsize=8)
def _compiled_trainer(key: tuple, channels: int, max_segments: int, rows: int | None) -> Trainer:
    trainer = make_trainer(DAXConfig(**dict(key)), channels, max_segments, rows)
    return Trainer(init=jax.jit(trainer.init), step=jax.jit(trainer.step), end_epoch=jax.jit(trainer.end_epoch),
                   maps=jax.jit(trainer.maps, static_argnums=(2, 3)), run=jax.jit(trainer.run, donate_argnums=0))


def train(trainer: Trainer, data: TrainData, init_keys: jax.Array, keys: TrainKeys, config: DAXConfig,
          height: int, width: int, trace: list | None = None) -> Trained:
    """Trains one (mask net, student) pair per row; returns f_M(x) maps and diagnostics per row.

    At each checkpoint (`checkpoints`) every row keeps its parameters if its validation loss is
    the lowest so far. trace: a list to append, at the end of the warm-up and every 5 % of the
    steps, {"step", "heldout_fit", "mask_area"} of the current parameters ([rows] each): what the
    student and the mask do during training (`benchmarks.probes.dax_diagnose`).
    """
    state = trainer.init(init_keys)
    marks = set(checkpoints(config))
    stops = sorted(marks | ({warmup_steps(config)} | set(range(0, config.total_steps + 1,
                                                              max(1, config.total_steps // 20)))
                            if trace is not None else set()) - {0})
    done, per_call = 0, steps_per_call(config)
    for mark in stops:
        for start in range(done, mark, per_call):
            state = trainer.run(state, data, keys, min(start + per_call, mark))
        done = mark
        if trace is not None and mark >= warmup_steps(config):
            now = trainer.maps(state._replace(best_params=state.params), data, height, width)
            trace.append({"step": mark, "heldout_fit": jax.device_get(now.heldout_fit),
                          "mask_area": jax.device_get(now.mask_area)})
        if mark in marks:
            state, _ = trainer.end_epoch(state, data)
    return trainer.maps(state, data, height, width)
