"""The twin surrogate: an encoder E and a StyleGAN2-style generator G that imitate the classifier.

E maps an image to a code z = [aligned | free]: the first k coordinates are trained to equal the
standardised context features (concepts), the rest carry what else the image needs, decorrelated
from the aligned block and whitened. G draws an image from a code. Training (AE mode, the CPU
default) minimises

    recon     |G(E(x)) - x|^2                       the image comes back
    align     |E(x)[:k] - c|^2                      aligned coordinates are the concepts
    distill   KL(f(x) || s(G(E(x))))                the classifier's answer comes back
    cycle     |E(G(z'))[:k] - z'[:k]|^2             codes with swapped concepts are drawn as such
    decor     sum corr(E(x)[:k], E(x)[k:])^2        free coordinates carry no concept (linearly)
    whiten    |cov(E(x)[k:]) - I|^2 + |mean|^2       free coordinates are standardised

where z' takes each concept from a different image of the batch (so concepts vary independently,
as under interventions) and keeps the free block of the image. The classifier f is
only *queried*: its answers are distilled into a small differentiable student s (a CNN), through
which the KL term's gradient flows. The student is first fitted to f's answers on the training
images, then (by default) keeps learning from f's answers on each batch of reconstructions: what
matters is f's behaviour on G's images, which real images alone do not show. When f's
penultimate features are available they can be handed to E as extra input.

The adversarial mode (opt-in, for GPUs) adds a discriminator with the non-saturating loss on
G(E(x)) and on G(z'), and a lazy R1 penalty on real images every `r1_every` steps.

The generator follows StyleGAN2's synthesis network, scaled down: a mapping MLP z -> w, a learned
4x4 constant, modulated 3x3 convolutions with weight demodulation at 4, 8, 16, 32 px, and skip
connections of 1x1 "to image" layers. The modulated convolution is written in the NON-fused form
(scale the input channels by the per-sample style, run one convolution shared by the batch,
multiply the output channels by the per-sample demodulation factor): the fused form (per-sample
weights through a vmapped convolution) took 105 s to compile and > 15 s per step on CPU.
"""

from __future__ import annotations

import ctypes
import dataclasses
import functools
import sys
import time
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx


@dataclasses.dataclass(frozen=True)
class SurrogateConfig:
    """Surrogate networks and training (defaults: AE mode, sized for 2 CPU cores).

    Attributes:
        latent_dim: size of the code z (aligned + free).
        w_dim: size of the mapped style vector w.
        channels: generator channels at 8, 16, 32 px (the 4 px block uses the first).
        encoder_channels: encoder convolution channels (stride 2 each).
        steps, batch, lr: Adam training of E and G (cosine decay to 5 % of lr).
        recon, align, distill, cycle, decor, whiten: loss weights (see the module docstring).
        student_steps, student_lr: pre-training of the differentiable student of f (distill > 0).
        query_reconstructions: also query f on every batch of reconstructions during training and
            keep training the student on those answers (one extra batch of queries per step).
        adversarial: add a discriminator (non-saturating loss, lazy R1); opt-in, GPU-sized.
        adv_weight, r1_gamma, r1_every: its generator-loss weight, R1 weight and period.
        seed: initialisation and batch order.
        log_every: print the losses every this many steps (0: silent).
    """

    latent_dim: int = 12
    w_dim: int = 64
    channels: tuple[int, int, int] = (32, 32, 16)
    encoder_channels: tuple[int, int, int] = (32, 48, 32)
    steps: int = 4000
    batch: int = 32
    lr: float = 2e-3
    recon: float = 10.0
    align: float = 3.0
    distill: float = 1.0
    cycle: float = 3.0
    decor: float = 1.0
    whiten: float = 0.1
    student_steps: int = 600
    student_lr: float = 3e-3
    query_reconstructions: bool = True
    adversarial: bool = False
    adv_weight: float = 0.05
    r1_gamma: float = 1.0
    r1_every: int = 16
    seed: int = 0
    log_every: int = 250


# ---------------------------------------------------------------- networks


class ModulatedConv(nnx.Module):
    """3x3 (or 1x1) convolution modulated by a per-sample style, non-fused form.

    x [B, H, W, Cin], w [B, w_dim] -> [B, H, W, Cout]. With demodulate, each output channel is
    rescaled so that its expected magnitude does not depend on the style (StyleGAN2's weight
    demodulation), computed from the style and the shared weights without per-sample kernels.
    """

    def __init__(self, c_in: int, c_out: int, w_dim: int, kernel: int, demodulate: bool, rngs: nnx.Rngs):
        self.style = nnx.Linear(w_dim, c_in, bias_init=nnx.initializers.ones, rngs=rngs)
        self.kernel = nnx.Param(jax.random.normal(rngs.params(), (kernel, kernel, c_in, c_out)))
        self.bias = nnx.Param(jnp.zeros((c_out,)))
        self.demodulate = demodulate
        self.gain = 1.0 / np.sqrt(kernel * kernel * c_in)  # equalised learning rate

    def __call__(self, x, w):
        s = self.style(w)  # [B, Cin]
        k = self.kernel[...] * self.gain
        y = jax.lax.conv_general_dilated(x * s[:, None, None, :], k, (1, 1), "SAME",
                                         dimension_numbers=("NHWC", "HWIO", "NHWC"))
        if self.demodulate:
            energy = (s * s) @ jnp.sum(k * k, axis=(0, 1))  # [B, Cout]
            y = y * jax.lax.rsqrt(energy + 1e-8)[:, None, None, :]
        return y + self.bias[...]


def _upsample(x):
    b, h, w, c = x.shape
    return jax.image.resize(x, (b, 2 * h, 2 * w, c), "bilinear")


class Generator(nnx.Module):
    """z [B, latent_dim] -> image [B, 32, 32, 1] in (0, 1): mapping MLP, 4x4 constant, modulated
    convolutions at 4/8/16/32 px, skip "to image" outputs summed over resolutions, sigmoid."""

    def __init__(self, config: SurrogateConfig, rngs: nnx.Rngs, out_channels: int = 1):
        c8, c16, c32 = config.channels
        wd = config.w_dim
        self.mapping = nnx.List([nnx.Linear(config.latent_dim, wd, rngs=rngs), nnx.Linear(wd, wd, rngs=rngs)])
        self.const = nnx.Param(jax.random.normal(rngs.params(), (1, 4, 4, c8)))
        ins = (c8, c8, c8, c16, c32)
        outs = (c8, c8, c16, c32, c32)
        self.convs = nnx.List([ModulatedConv(i, o, wd, 3, True, rngs) for i, o in zip(ins, outs)])
        # Conv 0 at 4 px, 1 at 8, 2 at 16, 3 and 4 at 32; an image output after 0, 1, 2, 4.
        self.to_image = nnx.List([ModulatedConv(c, out_channels, wd, 1, False, rngs) for c in (c8, c8, c16, c32)])

    def __call__(self, z):
        w = z
        for layer in self.mapping:
            w = nnx.leaky_relu(layer(w), 0.2)
        x = jnp.broadcast_to(self.const[...], (z.shape[0],) + self.const.shape[1:])
        act = lambda v: nnx.leaky_relu(v, 0.2)  # noqa: E731
        x = act(self.convs[0](x, w))
        img = self.to_image[0](x, w)
        for conv, out in ((1, 1), (2, 2)):
            x = act(self.convs[conv](_upsample(x), w))
            img = _upsample(img) + self.to_image[out](x, w)
        x = act(self.convs[3](_upsample(x), w))
        x = act(self.convs[4](x, w))
        img = _upsample(img) + self.to_image[3](x, w)
        return nnx.sigmoid(img)


class Encoder(nnx.Module):
    """image [B, 32, 32, C] (+ optional features [B, F]) -> code z [B, latent_dim]."""

    def __init__(self, config: SurrogateConfig, rngs: nnx.Rngs, in_channels: int = 1, feature_dim: int = 0):
        chans = (in_channels,) + tuple(config.encoder_channels)
        self.convs = nnx.List([nnx.Conv(chans[i], chans[i + 1], (3, 3), strides=(2, 2), padding="SAME", rngs=rngs)
                               for i in range(3)])
        self.hidden = nnx.Linear(16 * chans[-1] + feature_dim, 96, rngs=rngs)
        self.out = nnx.Linear(96, config.latent_dim, rngs=rngs)

    def __call__(self, x, features=None):
        for conv in self.convs:
            x = nnx.leaky_relu(conv(x), 0.2)
        h = x.reshape(x.shape[0], -1)
        if features is not None:
            h = jnp.concatenate([h, features], axis=1)
        return self.out(nnx.leaky_relu(self.hidden(h), 0.2))


class Student(nnx.Module):
    """A small differentiable stand-in for the queried classifier: image -> logit [B]."""

    def __init__(self, rngs: nnx.Rngs, in_channels: int = 1):
        chans = (in_channels, 16, 32, 64)
        self.convs = nnx.List([nnx.Conv(chans[i], chans[i + 1], (3, 3), strides=(2, 2), padding="SAME", rngs=rngs)
                               for i in range(3)])
        self.hidden = nnx.Linear(64, 64, rngs=rngs)
        self.out = nnx.Linear(64, 1, rngs=rngs)

    def __call__(self, x):
        for conv in self.convs:
            x = nnx.relu(conv(x))
        return self.out(nnx.relu(self.hidden(jnp.mean(x, axis=(1, 2)))))[:, 0]


class Discriminator(nnx.Module):
    """image [B, 32, 32, C] -> realness score [B] (adversarial mode only)."""

    def __init__(self, rngs: nnx.Rngs, in_channels: int = 1):
        chans = (in_channels, 32, 64, 64)
        self.convs = nnx.List([nnx.Conv(chans[i], chans[i + 1], (3, 3), strides=(2, 2), padding="SAME", rngs=rngs)
                               for i in range(3)])
        self.out = nnx.Linear(16 * 64, 1, rngs=rngs)

    def __call__(self, x):
        for conv in self.convs:
            x = nnx.leaky_relu(conv(x), 0.2)
        return self.out(x.reshape(x.shape[0], -1))[:, 0]


# ---------------------------------------------------------------- losses


def _correlation(a, b):
    """Batch correlation matrix [da, db] between the columns of a [B, da] and b [B, db]."""
    a = (a - a.mean(0)) / (a.std(0) + 1e-6)
    b = (b - b.mean(0)) / (b.std(0) + 1e-6)
    return a.T @ b / a.shape[0]


def _binary_kl(p_logit, q_logit):
    """KL(Bernoulli(sigmoid p) || Bernoulli(sigmoid q)), elementwise."""
    p = nnx.sigmoid(p_logit)
    return (p * (jax.nn.log_sigmoid(p_logit) - jax.nn.log_sigmoid(q_logit))
            + (1 - p) * (jax.nn.log_sigmoid(-p_logit) - jax.nn.log_sigmoid(-q_logit)))


def _mix(z, perm):
    """Aligned codes [B, k] with concept j taken from image perm[j, b] for row b."""
    return jnp.stack([z[perm[j], j] for j in range(perm.shape[0])], axis=1)


def surrogate_losses(encoder, generator, student, x, c, y, features, perm, config: SurrogateConfig):
    """The AE-mode loss terms (dict of scalars) for a batch.

    x [B, H, W, C] images, c [B, k] standardised concepts, y [B] f's logits, features [B, F] or
    None, perm [k, B] one permutation of the batch per concept: the cycle term's codes take each
    concept from a different image, so that the concepts vary independently in them (as under an
    intervention) and G must draw each one on its own, not in the pairs the data show.
    """
    k = c.shape[1]
    z = encoder(x, features)
    recon = generator(z)
    terms = {
        "recon": jnp.mean((recon - x) ** 2),
        "align": jnp.mean((z[:, :k] - c) ** 2),
        "decor": jnp.sum(_correlation(z[:, :k], z[:, k:]) ** 2) / k,
    }
    free = z[:, k:]
    cov = (free - free.mean(0)).T @ (free - free.mean(0)) / free.shape[0]
    terms["whiten"] = jnp.mean((cov - jnp.eye(free.shape[1])) ** 2) + jnp.mean(free.mean(0) ** 2)
    if student is not None:
        terms["distill"] = jnp.mean(_binary_kl(y, student(recon)))
    mixed = jnp.concatenate([_mix(z, perm), jax.lax.stop_gradient(z[:, k:])], axis=1)
    mixed_image = generator(mixed)
    terms["cycle"] = jnp.mean((encoder(mixed_image, features)[:, :k] - mixed[:, :k]) ** 2)
    return terms, (recon, mixed_image)


def _total(terms, config: SurrogateConfig):
    return sum(getattr(config, name) * value for name, value in terms.items())


# ---------------------------------------------------------------- training


@dataclasses.dataclass
class Surrogate:
    """Trained surrogate: encoder, generator and (if distilled) the student; history of losses."""

    encoder: Encoder
    generator: Generator
    student: Student | None
    config: SurrogateConfig
    history: dict
    seconds: dict

    def encode(self, images: np.ndarray, features: np.ndarray | None = None, batch: int = 256) -> np.ndarray:
        """images [n, H, W, C] -> codes float32 [n, latent_dim], in batches."""
        return _batched(lambda e, x, f: e(x, f), self.encoder, images, features, batch)

    def decode(self, codes: np.ndarray, batch: int = 256) -> np.ndarray:
        """codes [n, latent_dim] -> images float32 [n, H, W, C] in (0, 1), in batches."""
        return _batched(lambda g, z, _: g(z), self.generator, codes, None, batch)


_FORWARD = nnx.jit(lambda fn, module, x, f: fn(module, x, f), static_argnums=0)


def _batched(fn, module, x, features, batch):
    """fn(module, chunk, features chunk) over x in chunks of one size (the last one zero-padded),
    a power of two up to `batch`: any number of rows reuses a few compiled programs."""
    n = len(x)
    size = min(batch, 1 << max(0, int(np.ceil(np.log2(max(n, 1))))))
    out = []
    for i in range(0, n, size):
        chunk = [x[i:i + size]] + ([] if features is None else [features[i:i + size]])
        rows = len(chunk[0])
        chunk = [np.concatenate([c, np.zeros((size - rows,) + c.shape[1:], c.dtype)]) for c in chunk]
        f = None if features is None else jnp.asarray(chunk[1])
        out.append(np.asarray(_FORWARD(fn, module, jnp.asarray(chunk[0]), f))[:rows])
    return np.concatenate(out) if out else np.zeros((0,), np.float32)


def _student_optimizer(lr: float, steps: int | None) -> optax.GradientTransformation:
    """Adam at lr, cosine-decayed to 5 % of it over `steps` (None: constant)."""
    return optax.adam(lr if steps is None else optax.cosine_decay_schedule(lr, steps, alpha=0.05))


def _surrogate_optimizer(config: SurrogateConfig, b1: float) -> optax.GradientTransformation:
    """Adam for E and G (b1 0.5) or the discriminator (b1 0), cosine decay to 5 % of config.lr."""
    return optax.adam(optax.cosine_decay_schedule(config.lr, config.steps, alpha=0.05), b1=b1, b2=0.99)


# The steps are pure functions of (parameters, optimiser state, batch) with the graph definitions
# and the configuration static: one compilation per configuration, shared by every fit in the
# process, and no per-call traversal of the module graph (measured: nnx.jit's graph handling cost
# ~15 ms of a ~100 ms surrogate step on 2 CPU cores).


@functools.partial(jax.jit, static_argnames=("graphdef", "lr", "steps"))
def student_step(params, opt_state, x, y, *, graphdef, lr: float, steps: int | None):
    """One Adam step of the student (MSE to f's logits y [b] on images x [b, H, W, C]):
    -> (params, opt_state, loss). lr, steps: see `_student_optimizer`."""
    def loss_fn(p):
        return jnp.mean((nnx.merge(graphdef, p)(x) - y) ** 2)

    loss, grads = jax.value_and_grad(loss_fn)(params)
    updates, opt_state = _student_optimizer(lr, steps).update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss


class GraphDefs(NamedTuple):
    """The static structure of the trained modules: (encoder, generator), the student, the
    discriminator (None when absent)."""

    models: object
    student: object
    disc: object


@functools.partial(jax.jit, static_argnames=("graphdefs", "config"))
def surrogate_step(params, opt_state, student_params, disc_params, x, c, y, f, perm, *, graphdefs: GraphDefs,
                   config: SurrogateConfig):
    """One Adam step of E and G on a batch (see `surrogate_losses` for x, c, y, f, perm) ->
    (params, opt_state, terms, reconstructions [B, H, W, C])."""
    def loss_fn(p):
        enc, gen = nnx.merge(graphdefs.models, p)
        student = None if student_params is None else nnx.merge(graphdefs.student, student_params)
        terms, (recon, mixed) = surrogate_losses(enc, gen, student, x, c, y, f, perm, config)
        total = _total(terms, config)
        if disc_params is not None:
            disc = nnx.merge(graphdefs.disc, disc_params)
            terms["adv"] = jnp.mean(nnx.softplus(-disc(recon))) + jnp.mean(nnx.softplus(-disc(mixed)))
            total = total + config.adv_weight * terms["adv"]
        return total, (terms, recon)

    (_, (terms, recon)), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
    updates, opt_state = _surrogate_optimizer(config, 0.5).update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, terms, recon


@functools.partial(jax.jit, static_argnames=("graphdefs", "k", "r1", "config"))
def discriminator_step(disc_params, opt_state, params, x, f, perm, *, graphdefs: GraphDefs, k: int, r1: bool,
                       config: SurrogateConfig):
    """One Adam step of the discriminator (adversarial mode) -> (disc_params, opt_state, loss);
    r1: add the lazy R1 penalty on real images this step (scaled up by r1_every)."""
    enc, gen = nnx.merge(graphdefs.models, params)
    z = enc(x, f)
    mixed = jnp.concatenate([_mix(z, perm), z[:, k:]], axis=1)
    fake = jax.lax.stop_gradient(jnp.concatenate([gen(z), gen(mixed)]))

    def loss_fn(p):
        disc = nnx.merge(graphdefs.disc, p)
        loss = jnp.mean(nnx.softplus(disc(fake))) + jnp.mean(nnx.softplus(-disc(x)))
        if r1:
            grad = jax.grad(lambda xr: jnp.sum(disc(xr)))(x)
            loss = loss + 0.5 * config.r1_gamma * config.r1_every * jnp.mean(jnp.sum(grad**2, axis=(1, 2, 3)))
        return loss

    loss, grads = jax.value_and_grad(loss_fn)(disc_params)
    updates, opt_state = _surrogate_optimizer(config, 0.0).update(grads, opt_state, disc_params)
    return optax.apply_updates(disc_params, updates), opt_state, loss


def train_student(images: np.ndarray, logits: np.ndarray, config: SurrogateConfig) -> Student:
    """Fits the student to f's logits on the training images (MSE on logits)."""
    graphdef, params = nnx.split(Student(nnx.Rngs(config.seed + 1), in_channels=images.shape[-1]))
    opt_state = _student_optimizer(config.student_lr, config.student_steps).init(params)
    scale = float(np.std(logits)) + 1e-6  # fit standardised logits; the scale is restored below

    rng = np.random.default_rng(config.seed + 1)
    for _ in range(config.student_steps):
        idx = rng.integers(0, len(images), 64)
        params, opt_state, _ = student_step(params, opt_state, jnp.asarray(images[idx]),
                                            jnp.asarray(logits[idx] / scale), graphdef=graphdef,
                                            lr=config.student_lr, steps=config.student_steps)
    student = nnx.merge(graphdef, params)
    student.out.kernel[...] = student.out.kernel[...] * scale
    student.out.bias[...] = student.out.bias[...] * scale
    return student


def _history(steps: list[dict]) -> dict[str, list[float]]:
    """Per-step loss terms (device scalars) -> {term: [value per step]}, fetched in one transfer."""
    fetched = jax.device_get(steps)
    return {name: [float(t[name]) for t in fetched] for name in (fetched[0] if fetched else {})}


def keep_large_buffers_in_the_heap(megabytes: int = 64) -> bool:
    """Asks glibc's malloc to serve blocks up to `megabytes` from its heap (and to keep twice that
    free before returning memory to the system). Process-wide, so it is the caller's choice: call it
    once before `glance.fit` / `train_surrogate` (nothing in the package calls it). Returns False
    where it does not apply.

    Why: each surrogate step makes XLA's CPU convolutions allocate and free buffers of tens of MB;
    above glibc's mmap threshold (32 MB at most by default) every such block is a fresh mapping
    that the kernel zeroes and faults in again, step after step. Measured on 2 CPU cores
    (`python -m benchmarks.glance.step_time` with and without it, in alternation, same losses bit for
    bit): a step takes 15-20 % less time. DAX's smaller buffers gain nothing (its training time unchanged), so only the
    surrogate's training asks for it.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        mmap_threshold, trim_threshold = -3, -1  # M_MMAP_THRESHOLD, M_TRIM_THRESHOLD in <malloc.h>
        size = int(megabytes) << 20
        return bool(libc.mallopt(mmap_threshold, size)) and bool(libc.mallopt(trim_threshold, 2 * size))
    except (OSError, AttributeError):  # not glibc (e.g. musl): its allocator is left as it is
        return False


def train_surrogate(images: np.ndarray, concepts: np.ndarray, logits: np.ndarray, config: SurrogateConfig,
                    features: np.ndarray | None = None,
                    query: Callable[[np.ndarray], np.ndarray] | None = None) -> Surrogate:
    """Trains E and G (and the student) on images [n, H, W, C], standardised concepts [n, k],
    f's logits [n] and optional penultimate features [n, F]. Deterministic in config.seed.

    query: f's log-odds of images [b, H, W, C] -> [b] (forward queries). When given, f is also
    asked about every batch of reconstructions and the student keeps learning from those answers
    (f's behaviour on G's images, not only on real ones, is what the distillation needs).
    """
    n, _, _, channels = images.shape
    k = concepts.shape[1]
    if k >= config.latent_dim:
        raise ValueError(f"latent_dim ({config.latent_dim}) must exceed the number of concepts ({k})")
    seconds = {}
    t0 = time.perf_counter()
    student = train_student(images, logits, config) if config.distill > 0 else None
    seconds["student"] = time.perf_counter() - t0
    student_graph, student_params = nnx.split(student) if student is not None else (None, None)
    learn_student = student is not None and query is not None and config.query_reconstructions
    student_lr = config.student_lr * 0.3
    student_opt = _student_optimizer(student_lr, None).init(student_params) if learn_student else None
    rngs = nnx.Rngs(config.seed)
    models_graph, params = nnx.split((Encoder(config, rngs, channels, 0 if features is None else features.shape[1]),
                                      Generator(config, rngs, channels)))
    opt_state = _surrogate_optimizer(config, 0.5).init(params)
    disc_graph, disc_params = nnx.split(Discriminator(rngs, channels)) if config.adversarial else (None, None)
    disc_opt = _surrogate_optimizer(config, 0.0).init(disc_params) if config.adversarial else None
    graphdefs = GraphDefs(models_graph, student_graph, disc_graph)

    rng = np.random.default_rng(config.seed)
    steps: list[dict] = []  # each step's loss terms, left on the device until they are printed
    order, cursor = rng.permutation(n), 0
    t0 = time.perf_counter()
    for i in range(config.steps):
        if cursor + config.batch > n:
            order, cursor = rng.permutation(n), 0
        idx = order[cursor:cursor + config.batch]
        cursor += config.batch
        perm = jnp.asarray(np.stack([rng.permutation(config.batch) for _ in range(k)]))
        x, f = jnp.asarray(images[idx]), None if features is None else jnp.asarray(features[idx])
        extra = {}
        if disc_params is not None:
            disc_params, disc_opt, extra["disc"] = discriminator_step(
                disc_params, disc_opt, params, x, f, perm, graphdefs=graphdefs, k=k,
                r1=(i % config.r1_every) == 0, config=config)
        y = jnp.asarray(logits[idx], jnp.float32)
        params, opt_state, terms, recon = surrogate_step(
            params, opt_state, student_params, disc_params, x, jnp.asarray(concepts[idx], jnp.float32), y, f, perm,
            graphdefs=graphdefs, config=config)
        if learn_student:  # f's answers on G's images teach the student where it matters
            y_recon = jnp.asarray(query(np.asarray(recon)), jnp.float32)
            student_params, student_opt, extra["student"] = student_step(
                student_params, student_opt, jnp.concatenate([x, recon]), jnp.concatenate([y, y_recon]),
                graphdef=student_graph, lr=student_lr, steps=None)
        steps.append(extra | terms)
        if config.log_every and ((i + 1) % config.log_every == 0 or i + 1 == config.steps):
            recent = {name: np.mean(values) for name, values in _history(steps[-config.log_every:]).items()}
            print(f"surrogate step {i + 1}/{config.steps} " + " ".join(f"{t} {v:.4f}" for t, v in recent.items())
                  + f"  {time.perf_counter() - t0:.0f} s", flush=True)
    history = _history(steps)
    seconds["surrogate"] = time.perf_counter() - t0
    encoder, generator = nnx.merge(models_graph, params)
    student = nnx.merge(student_graph, student_params) if student is not None else None
    return Surrogate(encoder, generator, student, config, history, seconds)


def logits_from_probabilities(probs: np.ndarray, target: int) -> np.ndarray:
    """Log-odds of class `target` from probabilities [n, K]: log p_target - log(sum of the others).

    Raises ValueError naming the rows where a probability of exactly 0 or 1 makes it infinite.
    """
    p = np.asarray(probs, np.float64)
    other = p.sum(axis=1) - p[:, target]
    bad = (p[:, target] <= 0) | (other <= 0)
    if bad.any():
        rows = np.flatnonzero(bad)
        raise ValueError(f"the black box's probability of class {target} is exactly 0 or 1 for image(s) "
                         f"{rows[:8].tolist()}{' ...' if rows.size > 8 else ''}: its log-odds are infinite")
    return np.log(p[:, target]) - np.log(other)

