"""Fitting the amortised mask network: per-image DAX explains the fitted images (the teacher), then
one `MapNet` learns to draw those maps from the images alone.

    maps, diagnostics = teach(bb, images, targets, config, seed, devices)   # the black box's only use
    data = fit_data(images, maps, usable, config, split_key)                # FitData
    params, report = train(params, data, config, key, devices)

Over D local devices (`devices`): the teacher's groups are split along the image axis as
`explain_dataset` splits a batch (each device queries the black box for its share); training is
data-parallel (the parameters on every device, each step's minibatch split over them, XLA sums the
gradients). The explainer is bit for bit the same for the same D; another D changes the teacher's
maps in the last bits (DAX's contract across device counts) and the order of the gradient sums.

Every pure piece reads explicit state: `train_step(params, opt_state, batch, key) -> (params,
opt_state, metrics)`; `draw_batch(data, key, ...)` picks a step's images.
"""

from __future__ import annotations

import functools
import time
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from daxjax.amortised.config import AmortisedConfig
from daxjax.device.execution import Execution
from daxjax.device.querying import DeviceBlackBox
from daxjax.device.sharding import image_mesh, padded_count, replicated, split_over_images
from daxjax.inputs import image_digest
from daxjax.methods.base import run_groups

#: Images per teacher call and per validation / explanation program (fixed shapes: one compiled
#: program whatever the dataset's size, and an image's result never depends on the others).
GROUP = 16


def group_size(devices: int) -> int:
    """Images per teacher call or explanation program over `devices` devices: GROUP rounded up to a
    multiple of the device count (each device gets GROUP / D of them, at least one)."""
    return padded_count(GROUP, devices)


class FitData(NamedTuple):
    """The fitted images and their teacher maps, on the device.

    images: [N, R, R, C] at the network's resolution; maps: [N, R, R] the teacher's maps in [0, 1]
    at that resolution; train_rows: int [T] the images trained on; val_rows: int [V] the images
    held out to choose the checkpoint (`Training.validation_fraction`).
    """

    images: jax.Array
    maps: jax.Array
    train_rows: jax.Array
    val_rows: jax.Array


class Batch(NamedTuple):
    """One step's minibatch: b images [b, R, R, C] and their teacher maps [b, R, R]."""

    images: jax.Array
    maps: jax.Array


@functools.partial(jax.jit, static_argnums=1)
def working_images(images: jax.Array, resolution: int) -> jax.Array:
    """[B, H, W, C] -> [B, R, R, C], antialiased (as DAX's `to_working_resolution`)."""
    return jax.image.resize(images, (images.shape[0], resolution, resolution, images.shape[-1]), "linear",
                            antialias=True)


def dax_maps(device_bb: DeviceBlackBox, images: np.ndarray, targets: np.ndarray, dax_config, seed: int,
             devices: list) -> tuple[np.ndarray, dict]:
    """Per-image DAX, as `daxjax.explain(method="dax")` computes it (DAX's group program) and as
    `explain_dataset` splits it over devices, without the layer above: maps [B, H, W] and DAX's
    diagnostics {name: [B]} of images float32 [B, H, W, C] for targets int [B].

    device_bb: `device.querying.device_blackbox` of the user's black box, made once by the caller
    (which already knows the class count: no query here). devices: the local devices to split
    each group of `group_size(len(devices))` images over (`padded_count` images are computed)."""
    from daxjax.methods.registry import REGISTRY

    targets = np.asarray(targets, np.int32)
    digests = np.array([image_digest(img, c) for img, c in zip(images, targets)], np.uint32)
    result = run_groups(REGISTRY["dax"].explain_group, device_bb, images, targets, digests, dax_config, seed,
                        execution=Execution(images_per_group=group_size(len(devices))), devices=devices)
    return result.maps, result.diagnostics


def teach(device_bb: DeviceBlackBox, images: np.ndarray, targets: np.ndarray, config: AmortisedConfig, seed: int,
          devices: list, progress: Callable[[int, int], None] | None = None) -> tuple[np.ndarray, dict]:
    """The teacher's maps [N, H, W] in [0, 1] and its per-image diagnostics ({name: [N]}, DAX's
    `DIAGNOSTICS`) for images float32 [N, H, W, C] and their targets int [N]: `dax_maps` with DAX
    at `Teacher.queries_per_image`, `group_size(len(devices))` images a call (each image's map
    depends only on (image, target, seed, config) on a given device count: DAX's contract).
    progress(images done, N) after each call."""
    maps, diagnostics = [], {}
    dax = config.teacher.dax_config()
    step = group_size(len(devices))
    for lo in range(0, len(images), step):
        group_maps, group_diagnostics = dax_maps(device_bb, images[lo:lo + step], targets[lo:lo + step], dax,
                                                 seed, devices)
        maps.append(group_maps)
        for name, values in group_diagnostics.items():
            diagnostics.setdefault(name, []).append(values)
        if progress is not None:
            progress(min(lo + step, len(images)), len(images))
    return np.concatenate(maps), {name: np.concatenate(parts) for name, parts in diagnostics.items()}


def fit_data(images: np.ndarray, maps: np.ndarray, usable: np.ndarray, config: AmortisedConfig,
             split_key: jax.Array) -> FitData:
    """`FitData` of the usable images (bool [N]: the teacher's trusted maps); a random share of
    them (`Training.validation_fraction`, at least one) is held out, drawn from split_key."""
    rows = np.flatnonzero(usable)
    validation = max(1, int(round(config.training.validation_fraction * len(rows))))
    order = np.asarray(jax.random.permutation(split_key, len(rows)))
    resolution = config.nets.resolution
    x = working_images(jnp.asarray(images), resolution)
    m = working_images(jnp.asarray(maps, jnp.float32)[..., None], resolution)[..., 0]
    return FitData(x, jnp.clip(m, 0.0, 1.0), jnp.asarray(rows[np.sort(order[validation:])], jnp.int32),
                   jnp.asarray(rows[np.sort(order[:validation])], jnp.int32))


def batch_loss(params, batch: Batch, *, graphdef) -> jax.Array:
    """Mean binary cross-entropy of the network's map logits against the teacher's maps."""
    logits = nnx.merge(graphdef, params)(batch.images)
    return optax.sigmoid_binary_cross_entropy(logits, batch.maps).mean()


def train_step(params, opt_state, batch: Batch, key, *, graphdef, optimizer):
    """One Adam step: (params, opt_state, batch, key) -> (params, opt_state, metrics). key is
    unused (the network has no dropout); kept for the shape every training step of the project has."""
    del key
    loss, grads = jax.value_and_grad(batch_loss)(params, batch, graphdef=graphdef)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, {"loss": loss}


def draw_batch(data: FitData, key, images: int, flips: bool) -> Batch:
    """`images` training images (with replacement), each mirrored left-right with its map with
    probability 1/2 when `flips`."""
    pick, flip = jax.random.split(key)
    rows = data.train_rows[jax.random.randint(pick, (images,), 0, data.train_rows.shape[0])]
    x, m = data.images[rows], data.maps[rows]
    if flips:
        mirror = jax.random.bernoulli(flip, 0.5, (images,))
        x = jnp.where(mirror[:, None, None, None], x[:, :, ::-1], x)
        m = jnp.where(mirror[:, None, None], m[:, :, ::-1], m)
    return Batch(x, m)


def checkpoints(config: AmortisedConfig) -> list[int]:
    """Steps after which the held-out loss is measured: `validations` evenly spaced points."""
    total, count = config.training.steps, config.training.validations
    return sorted({max(1, -(-k * total // count)) for k in range(1, count + 1)})


class Programs:
    """The jitted programs of one fit (config, graph): a step, and the held-out loss of a group."""

    def __init__(self, graphdef, config: AmortisedConfig):
        training = config.training
        self.optimizer = optax.adam(training.learning_rate)
        step = functools.partial(train_step, graphdef=graphdef, optimizer=self.optimizer)

        def run(params, opt_state, data, base_key, t):
            key = jax.random.fold_in(base_key, t)
            batch = draw_batch(data, jax.random.fold_in(key, 0), training.images_per_step, training.flips)
            batch = split_over_images(batch)  # data-parallel over an image mesh; a no-op on one device
            return step(params, opt_state, batch, jax.random.fold_in(key, 1))

        self.step = jax.jit(run, donate_argnums=(0, 1))

        def heldout(params, data: FitData, rows):
            """Binary cross-entropy per image of `rows` [GROUP]."""
            logits = nnx.merge(graphdef, params)(data.images[rows])
            return optax.sigmoid_binary_cross_entropy(logits, data.maps[rows]).mean((1, 2))

        self.heldout = jax.jit(heldout)

    def heldout_loss(self, params, data: FitData) -> float:
        """Mean held-out binary cross-entropy over the validation images (GROUP at a time, padded)."""
        rows = np.asarray(data.val_rows)
        losses = []
        for lo in range(0, len(rows), GROUP):
            part = rows[lo:lo + GROUP]
            padded = np.concatenate([part, np.repeat(part[-1:], GROUP - len(part))])
            losses.append(np.asarray(self.heldout(params, data, jnp.asarray(padded)))[:len(part)])
        return float(np.concatenate(losses).mean())


def program_config(config: AmortisedConfig) -> AmortisedConfig:
    """`config` with the fields the compiled programs do not read set to their defaults (the
    teacher, refinement, steps and checkpoints): fits that differ only there share programs."""
    from daxjax.amortised.config import Refine, Teacher

    return config.replace(teacher=Teacher(), refine=Refine(),
                          training=config.training.replace(steps=1, validations=1))


@functools.lru_cache(maxsize=8)
def programs_for(config: AmortisedConfig, channels: int) -> Programs:
    """The compiled programs of a fit, shared by every fit with the same config and channels."""
    from daxjax.amortised.nets import graphdef_of

    return Programs(graphdef_of(config.nets, channels), config)


def train(params, data: FitData, config: AmortisedConfig, key: jax.Array, devices: list,
          progress: Callable[[int, int], None] | None = None) -> tuple[nnx.State, dict]:
    """Trains the network on `data` over `devices` (data-parallel; module doc); returns the
    parameters with the lowest held-out loss at the checkpoints (on the first device) and a report
    {"steps", "best_step", "heldout_loss", "seconds"}. progress: None, or called as
    progress(steps done, steps) after each step."""
    with image_mesh(devices) as mesh:
        best, report = _train(replicated(mesh, params), replicated(mesh, data), config, key, progress,
                              synchronous=len(devices) > 1)
    return jax.device_put(best, devices[0]), report


def _train(params, data: FitData, config: AmortisedConfig, key: jax.Array,
           progress: Callable[[int, int], None] | None, synchronous: bool) -> tuple[nnx.State, dict]:
    start = time.perf_counter()
    programs = programs_for(program_config(config), int(data.images.shape[-1]))
    opt_state = programs.optimizer.init(params)
    params = jax.tree.map(jnp.copy, params)
    marks = set(checkpoints(config))
    best, best_loss, best_step = params, np.inf, 0
    for t in range(config.training.steps):
        params, opt_state, _ = programs.step(params, opt_state, data, key, t)
        if synchronous:
            # One step at a time over several devices: with steps queued asynchronously, XLA's CPU
            # collectives deadlocked (the gradient all-reduce of one step waiting on host threads
            # held by the next; 2 and 4 forced host devices on 2 cores, 40 s rendezvous timeout),
            # and none did stepping synchronously.
            jax.block_until_ready(params)
        if progress is not None:
            progress(t + 1, config.training.steps)
        if t + 1 in marks:
            loss = programs.heldout_loss(params, data)
            if loss < best_loss:
                best, best_loss, best_step = jax.tree.map(jnp.copy, params), loss, t + 1
    return best, {"steps": config.training.steps, "best_step": best_step, "heldout_loss": best_loss,
                  "seconds": time.perf_counter() - start}
