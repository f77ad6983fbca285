"""The DAX engine: sample, query, train mask net and student jointly per image, explain.

Data flow for a group of B images (all arrays carry a leading image axis; each image has its own
key, parameters and optimizer state):

  segments (host) -> keep-vectors z [B, N, S] (device) -> black-box answers y [B, N]
  (chunked queries) -> `prepare`: the student's targets (logits of y by default), weights, the
  train/validation split, one row per image and restart -> the trainer (`train.make_trainer`:
  Adam steps on (mask net, student), the masked perturbations rebuilt inside each step from z
  and the mask; validation checkpoints) -> f_M(original) upsampled to H x W, with the student's
  held-out fit and the mask's state -> `_finish`: the maps scaled to [0, 1], restarts averaged.

Two students (`DAXConfig.student`):
- "segments" (the default): the student reads a masked perturbation as the share of each segment
  it shows. The mask is a grid over the image; its share of segment j is the mean of the upsampled
  mask over j's pixels (`nets.segment_pooling`), and each training sample shows segment j when it
  was kept (z_j) *and* a relaxed Bernoulli gate with that share as its probability opens
  (`sampling.hard_concrete_gates`). A sampled gate is 0 or 1 most of the time, so the student
  cannot undo a shrinking mask by growing its weights: a segment the black box needs must stay
  open, and the area term closes the others.
- "image": the paper's CNN on the masked pixels (the presets `DAXConfig.paper_v1/v2/v3`).

Why the default is what it is: on real photos the image student did not fit held-out
perturbations, and the area term then killed every mask; in segment space, on logits, the student
fits and the mask lives (benchmarks/RESULTS.md, "Why DAX failed on real models").
"""

from __future__ import annotations

import functools
import time

import chex
import jax
import jax.extend.core as jax_core
import jax.numpy as jnp
import numpy as np
from flax import nnx

from daxjax.methods.dax.config import DAXConfig
from daxjax.methods.base import GroupResult, Method, answer_diagnostics, normalise, sample_bytes
from daxjax.methods.surrogate import weighted_ridge
from daxjax.methods.dax.nets import DaxNets, segment_pooling
# The trainer's names, importable from here as before the trainer had its own module.
from daxjax.methods.dax.train import (Batch, Samples, TrainData, Trained, Trainer, TrainKeys,  # noqa: F401
                                      TrainState, WorkingImage, checkpoints, compiled_trainer, dax_loss,
                                      image_predictions, make_optimizer, make_trainer, map_rows,
                                      segment_predictions, steps_per_call, student_input, train, train_step,
                                      warmup_steps, weighted_r2)
from daxjax.device.execution import Execution, query_chunk, rows_per_step
from daxjax.device.querying import DeviceBlackBox, RenderedQueries, input_elements
from daxjax.perturbation.fills import AUTO_FILLS
from daxjax.perturbation.sampling import image_keys, proximity_weights, split_indices
from daxjax.perturbation.segments import (HostSegments, SegmentedImages, segments_bound, draw_keep_vectors,
                                          query_segment_perturbations, segment_and_fill)

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
#:   fill_choice     fill="auto": the position in `fills.AUTO_FILLS` of the fill the image was
#:                   explained with (0 the image mean, 1 the blur); NaN for a fixed fill.
DIAGNOSTICS = ("heldout_fit", "surrogate_fit", "mask_area", "mask_contrast", "trusted", "fill_choice")
#: Below this held-out fit the student explains too little of the black box's answers for its
#: mask to mean much (answers that are noise or a hash of the input score about 0).
FIT_FLOOR = 0.2
#: A mask whose range is below this is flat; one outside this area range is dead or everything.
CONTRAST_FLOOR = 0.1
AREA_RANGE = (0.005, 0.95)
#: Logit targets are clipped to +-this: a probability of 1e-7 and one of 1e-9 differ by 4.6 in
#: logit but both mean "absent"; the clip keeps such samples from dominating the squared error.
LOGIT_CLIP = 12.0


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
    evidence), while the probability saturates; many real photos sit at p = 0.1-0.5.
    """
    if target == "probability":
        return y
    p = jnp.clip(y, 1e-12, 1.0)
    logit = jnp.log(p) - jnp.log1p(-jnp.minimum(p, 1.0 - 1e-7))
    return jnp.clip(logit, -LOGIT_CLIP, LOGIT_CLIP)




def _surrogate_fit(z, y, pi, train_idx, val_idx) -> jax.Array:
    """Held-out fit of LIME's ridge regression on the same targets and split: [B]."""
    def one(z, y, pi, tr, va):
        zf = z.astype(jnp.float32)
        w, b = weighted_ridge(zf[tr], y[tr], pi[tr], 1.0)
        return weighted_r2(zf[va] @ w + b, y[va], pi[va])
    return jax.vmap(one)(z, y, pi, train_idx, val_idx)


@jax.jit
def _keys(seed, digests) -> tuple[jax.Array, jax.Array]:
    """Each image's key from the seed and its digest, and the keys folded off it: ([B], [4, B]:
    the split, the initialisation, the minibatch order, the gates)."""
    sample_keys = image_keys(seed, digests)
    return sample_keys, jax.vmap(lambda k: jax.vmap(lambda i: jax.random.fold_in(k, i))(jnp.arange(1, 5)))(
        sample_keys).transpose(1, 0)


@functools.partial(jax.jit, static_argnames=("target", "kernel_width", "resolution", "max_segments", "cells",
                                             "num_validation", "restarts"))
def _prepare(images, segments, fills, num_segments, z, y, keys, *, target: str, kernel_width: float,
             resolution: int, max_segments: int, cells: int | None, num_validation: int, restarts: int):
    """One program from the black box's answers y [B, N] on the keep-vectors z [B, N, S] to what
    the trainer reads: rows b * K + k for restart k of image b, sharing the image's samples, each
    with its own keys. keys [4, B]: the split, initialisation, minibatch order and gate keys (`_keys`).
    cells: the mask grid's side for the segment student (its pooling is built), else None.

    Returns (TrainData, init keys [rows], TrainKeys, the linear surrogate's held-out fit [B]).
    """
    split_keys, init_keys, order_keys, gate_keys = keys
    samples = Samples(z, student_targets(y, target),
                      jax.vmap(proximity_weights, in_axes=(0, 0, None))(z, num_segments, kernel_width))
    work = jax.vmap(lambda i, s, f: to_working_resolution(i, s, f, resolution, max_segments, cells))(
        images, segments, fills)
    train_idx, val_idx = jax.vmap(split_indices, in_axes=(0, None, None))(split_keys, z.shape[1], num_validation)
    surrogate = _surrogate_fit(z, samples.y, samples.pi, train_idx, val_idx)
    repeat = functools.partial(jax.tree.map, lambda a: jnp.repeat(a, restarts, axis=0))
    data = repeat(TrainData(work, samples, target_scales(samples.y, samples.pi, train_idx), train_idx, val_idx))
    return (data, _restart_keys(init_keys, restarts),
            TrainKeys(_restart_keys(order_keys, restarts), _restart_keys(gate_keys, restarts)), surrogate)


def prepare(group: SegmentedImages, z, y, keys, config: DAXConfig):
    """`_prepare` for a segmented group and its config."""
    return _prepare(group.images, group.segments, group.fills, group.num_segments, z, y, keys,
                    target=config.target, kernel_width=config.kernel_width, resolution=config.resolution,
                    max_segments=group.max_segments, cells=config.mask_cells if config.student == "segments" else None,
                    num_validation=config.num_samples_validation, restarts=config.restarts)


def segment_means(maps: jax.Array, segments: jax.Array, num_segments: int) -> jax.Array:
    """Each map's mean over each of its segments, painted on the segment: maps float32 [R, H, W],
    segments int [R, H, W] with ids < num_segments -> [R, H, W]."""
    def one(m, s):
        ids = s.reshape(-1)
        sums = jax.ops.segment_sum(m.reshape(-1), ids, num_segments=num_segments)
        counts = jax.ops.segment_sum(jnp.ones_like(ids, jnp.float32), ids, num_segments=num_segments)
        return (sums / jnp.maximum(counts, 1.0))[s]
    return jax.vmap(one)(maps, segments)


@functools.partial(jax.jit, static_argnames=("restarts", "on_segments", "effect_power"))
def _finish(row_maps, effects, segments, *, restarts: int, on_segments: bool, effect_power: float):
    """Maps [B, H, W] in [0, 1] from the rows' raw maps [B * K, H, W] (the mask grid upsampled):
    on_segments, the mask's mean over each segment (`segment_means`); times the student's segment
    effects ** effect_power (0: not); scaled, restarts averaged. Segment student only (else both off)."""
    if on_segments:
        row_maps = segment_means(row_maps, jnp.repeat(segments, restarts, axis=0), effects.shape[1])
    if effect_power > 0:
        effects = jnp.maximum(effects, 0.0)
        effects = (effects / jnp.maximum(effects.max(axis=1, keepdims=True), 1e-12)) ** effect_power
        row_maps = row_maps * jax.vmap(lambda v, s: v[s])(effects, jnp.repeat(segments, restarts, axis=0))
    batch, height, width = segments.shape
    return normalise(normalise(row_maps).reshape(batch, restarts, height, width).mean(axis=1))


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
    trace: a list that receives the training's course (see `train.train`; rows b * K + k).
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
    sample_keys, keys = _keys(seed, jnp.asarray(digests, jnp.uint32))

    t0 = time.perf_counter()
    z = draw_keep_vectors(sample_keys, n, group.num_segments, group.max_segments, config.keep_prob)
    chunk = query_chunk(execution, batch, input_elements(images, queries))
    fill_choice = np.full(batch, np.nan, np.float32)
    group_chose_fills = group.fills.ndim == 5
    if group_chose_fills:  # fill="auto": the candidates answer the first perturbations
        group, probe_answers, choice = choose_fills(device_bb, group, z, targets, chunk, image_ids,
                                                    config.fill_probe)
        fill_choice = np.asarray(choice, np.float32)
        rest = z[:, probe_answers.shape[1]:]
        y = probe_answers if rest.shape[1] == 0 else jnp.concatenate(
            [probe_answers, query_segment_perturbations(device_bb, group, rest, targets, chunk, image_ids)], axis=1)
    else:
        y = query_segment_perturbations(device_bb, group, z, targets, chunk, image_ids, queries)
    chex.assert_shape(z, (batch, n, group.max_segments))
    chex.assert_shape(y, (batch, n))
    timings["queries"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    data, init_keys, train_keys, surrogate = prepare(group, z, y, keys, config)
    trainer = compiled_trainer(config, channels, group.max_segments,
                               rows_per_step(execution, config.student == "image"))
    trained = train(trainer, data, init_keys, train_keys, config, height, width, trace)
    k = config.restarts
    chex.assert_shape(trained.maps, (batch * k, height, width))
    on_segments = config.student == "segments"
    maps = np.asarray(_finish(trained.maps, trained.effects, group.segments, restarts=k,
                              on_segments=on_segments and config.map_on_segments,
                              effect_power=config.effect_power if on_segments else 0.0))
    per_image = {name: np.asarray(value).reshape(batch, k).mean(axis=1)
                 for name, value in trained._asdict().items() if name not in ("maps", "effects")}
    per_image["surrogate_fit"] = np.asarray(surrogate)
    per_image["trusted"] = trusted(per_image)
    per_image["fill_choice"] = fill_choice
    timings["training"] = time.perf_counter() - t0
    diagnostics = {name: per_image[name].astype(np.float32 if name != "trusted" else bool) for name in DIAGNOSTICS}
    if group_chose_fills:  # the chosen fill's answers alone (`call_group` would count the other fill's too)
        diagnostics.update(answer_diagnostics([y]))
    return GroupResult(maps, timings, diagnostics)


def choose_fills(device_bb: DeviceBlackBox, group: SegmentedImages, z: jax.Array, targets: np.ndarray,
                 chunk: int, image_ids: list, probe: int) -> tuple[SegmentedImages, jax.Array, jax.Array]:
    """fill="auto": gives each image the candidate fill (`fills.AUTO_FILLS`) its black box answers most to.

    group.fills [B, F, H, W, C] holds the F candidates; each answers the image's first
    k = min(probe, N) perturbations z[:, :k], and an image takes the candidate under which the
    target's probability has the largest standard deviation over them (ties: the first). Why: a
    fill the model barely reacts to leaves its evidence in place (a blurred-out object it still
    recognises), so the perturbations say little about which segments matter; a fill that removes
    the evidence makes them say more. Measured in RESULTS.md ("DAX's fill chosen per image:
    fill="auto""). The chosen candidate's k answers are the first k of the image's N, so an image's
    map is exactly the one that fill alone would give, at F - 1 extra queries per probe perturbation.

    Returns the group with fills [B, H, W, C], the chosen candidate's answers [B, k] and the
    choice int32 [B] (positions in `AUTO_FILLS`).
    """
    k = min(int(probe), z.shape[1])
    answers = jnp.stack([query_segment_perturbations(device_bb, group._replace(fills=group.fills[:, f]),
                                                     z[:, :k], targets, chunk, image_ids)
                         for f in range(group.fills.shape[1])])                      # [F, B, k]
    choice = jnp.argmax(jnp.std(answers, axis=2), axis=0).astype(jnp.int32)          # first of equals
    fills = jnp.take_along_axis(group.fills, choice[:, None, None, None, None], axis=1)[:, 0]
    chosen = jnp.take_along_axis(answers, choice[None, :, None], axis=0)[0]
    return group._replace(fills=fills), chosen, choice


def probe_queries(config: DAXConfig) -> int:
    """Black-box queries an image costs beyond its N: fill="auto"'s other candidates answering its
    first min(fill_probe, N) perturbations (`choose_fills`); 0 for a fixed fill."""
    if config.fill != "auto":
        return 0
    return (len(AUTO_FILLS) - 1) * min(config.fill_probe, config.num_samples)


def _restart_keys(keys: jax.Array, restarts: int) -> jax.Array:
    """[B] keys -> [B * K] keys, row b * K + k for restart k of image b."""
    return jax.vmap(lambda key: jax.vmap(lambda r: jax.random.fold_in(key, r))(
        jnp.arange(restarts)))(keys).reshape(-1)


def target_scales(y, pi, train_idx) -> jax.Array:
    """1 / (pi-weighted variance of each row's training targets): [rows]."""
    def one(y, pi, idx):
        yt, wt = y[idx], pi[idx]
        mean = jnp.sum(wt * yt) / jnp.sum(wt)
        return 1.0 / (jnp.sum(wt * (yt - mean) ** 2) / jnp.sum(wt) + 1e-6)
    return jax.vmap(one)(y, pi, train_idx)


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
    `padded_segments`) and, per restart, `training_bytes`; fill="auto" adds its second candidate
    fill (the budget counts one fill an image)."""
    segments = padded_segments(segments_bound(config))
    extra_fills = (len(AUTO_FILLS) - 1) * 4 * height * width * channels if config.fill == "auto" else 0
    return sample_bytes(config.num_samples, segments) + extra_fills + config.restarts * training_bytes(
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
