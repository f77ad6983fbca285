"""Gradient-based reference explainers, for black boxes that are JAX functions (`JaxBlackBox`).

They are not query-only: they differentiate through `device_bb.jax_fn`, so they exist only to
compare the gradient-free methods with what gradients would show. Every method differentiates
the target class's *probability* p_T(x) — `jax_fn` exposes probabilities only (a box wrapped
with output="probs" has no logits to differentiate) — so saturated predictions (p_T near 0 or 1)
give small gradients, which Integrated Gradients is designed to overcome.

Each method yields an attribution A [H, W, C]; the map is max_c |A[..., c]|, min-max scaled to
[0, 1] per image:
  "gradient":             A = dp_T/dx                                   (Simonyan et al., 2014)
  "input_x_gradient":     A = x * dp_T/dx                                (Shrikumar et al., 2016)
  "smoothgrad":           A = mean_i dp_T/dx (x + eps_i), eps_i ~ N(0, sigma^2), sigma =
                          noise_level * (max x - min x); raw gradients are averaged, then |.|
                          (Smilkov et al., 2017); noisy inputs are not clipped to [0, 1].
  "integrated_gradients": A = (x - x0) * mean_i dp_T/dx (x0 + a_i (x - x0)), x0 = 0 (black),
                          a_i = (i + 1/2) / steps (midpoint Riemann sum)  (Sundararajan et al., 2017)

SmoothGrad's noise for sample i comes from fold_in(image key, i), so it obeys the determinism
contract. Samples are differentiated `sample_chunk` at a time and summed in a loop, bounding
memory by one chunk.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from daxjax._checks import Replace, check_fields
from daxjax.device.execution import MovedExecutionFields
from daxjax.methods.base import GroupResult, Method, normalise
from daxjax.inputs import InputError
from daxjax.device.querying import DeviceBlackBox
from daxjax.perturbation.sampling import image_keys


@dataclasses.dataclass(frozen=True)
class GradientConfig(Replace, MovedExecutionFields):
    """Vanilla gradient. Images per group: `explain(execution=)`."""


@dataclasses.dataclass(frozen=True)
class InputXGradientConfig(Replace, MovedExecutionFields):
    """Input x Gradient. Images per group: `explain(execution=)`."""


@dataclasses.dataclass(frozen=True)
class SmoothGradConfig(Replace, MovedExecutionFields):
    """SmoothGrad.

    num_samples: noisy copies averaged per image (the paper: 50).
    noise_level: sigma / (max x - min x) of the Gaussian noise (the paper: 0.10-0.20 works best).
    sample_chunk: noisy copies differentiated in one vectorised pass (memory, not the result).
    Images per group are an execution setting: `explain(execution=)`.
    """

    num_samples: int = 50
    noise_level: float = 0.15
    sample_chunk: int = 10

    def _check(self) -> None:
        check_fields(self, positive=("num_samples", "sample_chunk"))
        if not self.noise_level >= 0:
            raise ValueError(f"SmoothGradConfig.noise_level must be >= 0, got {self.noise_level!r}")


@dataclasses.dataclass(frozen=True)
class IntegratedGradientsConfig(Replace, MovedExecutionFields):
    """Integrated Gradients from a black baseline.

    steps: points on the straight path from black to the image (the paper: 20-300; 50 here).
    sample_chunk: path points differentiated in one vectorised pass (memory, not the result).
    Images per group are an execution setting: `explain(execution=)`.
    """

    steps: int = 50
    sample_chunk: int = 10

    def _check(self) -> None:
        check_fields(self, positive=("steps", "sample_chunk"))


def target_gradient(device_bb: DeviceBlackBox, x: jax.Array, target: jax.Array) -> jax.Array:
    """dp_T/dx for one image x [H, W, C]: [H, W, C]."""
    return jax.grad(lambda image: device_bb(image[None])[0, target])(x)


def mean_gradient(device_bb: DeviceBlackBox, point: Callable[[jax.Array], jax.Array], target: jax.Array,
                  count: int, chunk: int) -> jax.Array:
    """mean_{i < count} dp_T/dx at point(i) [H, W, C], `chunk` points per vectorised pass.

    The last chunk is padded with indices >= count whose gradients are weighted 0.
    """
    def add_chunk(step, total):
        indices = step * chunk + jnp.arange(chunk)
        grads = jax.vmap(lambda i: target_gradient(device_bb, point(i), target))(indices)
        return total + jnp.einsum("n,n...->...", (indices < count).astype(grads.dtype), grads)

    shape = jax.eval_shape(point, jnp.int32(0))
    total = jax.lax.fori_loop(0, -(-count // chunk), add_chunk, jnp.zeros(shape.shape, jnp.float32))
    return total / count


def attribution_maps(attributions: jax.Array) -> jax.Array:
    """[B, H, W, C] attributions -> maps [B, H, W] in [0, 1]: max over channels of |A|, min-max scaled."""
    return normalise(jnp.abs(attributions).max(axis=-1))


@functools.partial(jax.jit, static_argnames=("device_bb", "times_input"))
def gradient_maps(device_bb: DeviceBlackBox, images: jax.Array, targets: jax.Array, *,
                  times_input: bool) -> jax.Array:
    """Vanilla gradient (or Input x Gradient when times_input) maps [B, H, W]."""
    grads = jax.vmap(functools.partial(target_gradient, device_bb))(images, targets)
    return attribution_maps(grads * images if times_input else grads)


@functools.partial(jax.jit, static_argnames=("device_bb", "num_samples", "noise_level", "chunk"))
def smoothgrad_maps(device_bb: DeviceBlackBox, images: jax.Array, targets: jax.Array, keys: jax.Array, *,
                    num_samples: int, noise_level: float, chunk: int) -> jax.Array:
    """SmoothGrad maps [B, H, W]; noise for sample i of an image from fold_in(its key, i)."""
    def one(x, target, key):
        sigma = noise_level * (x.max() - x.min())

        def noisy(i):
            return x + sigma * jax.random.normal(jax.random.fold_in(key, i), x.shape, x.dtype)
        return mean_gradient(device_bb, noisy, target, num_samples, chunk)
    return attribution_maps(jax.vmap(one)(images, targets, keys))


@functools.partial(jax.jit, static_argnames=("device_bb", "steps", "chunk"))
def integrated_gradients_maps(device_bb: DeviceBlackBox, images: jax.Array, targets: jax.Array, *,
                              steps: int, chunk: int) -> jax.Array:
    """Integrated Gradients maps [B, H, W] from the black image, midpoint rule with `steps` points."""
    def one(x, target):
        def on_path(i):
            return x * ((i + 0.5) / steps)
        return x * mean_gradient(device_bb, on_path, target, steps, chunk)
    return attribution_maps(jax.vmap(one)(images, targets))


def _require_jax(device_bb: DeviceBlackBox, method: str) -> None:
    if device_bb.jax_fn is None:
        raise InputError(f"method={method!r} differentiates the black box, so it needs a JaxBlackBox "
                         f"(a black box with a jax_fn); got {type(device_bb.bb).__name__}. Use a "
                         "gradient-free method (dax, rise, lime, kernelshap, occlusion) instead.")


def _timed(method: str, device_bb: DeviceBlackBox,
           compute: Callable[[], jax.Array]) -> tuple[np.ndarray, dict]:
    """Runs compute() for a JaxBlackBox (else the InputError) and times it."""
    _require_jax(device_bb, method)
    t0 = time.perf_counter()
    maps = np.asarray(compute())
    return GroupResult(maps, {"gradients": time.perf_counter() - t0})


# The four `explain_images` of the registry: (device_bb, images float32 [B, H, W, C], targets
# int32 [B], digests uint32 [B], config, seed, image_ids) -> (maps float32 [B, H, W] in [0, 1],
# {"gradients": seconds}); an InputError unless device_bb wraps a JaxBlackBox. They make no black-box
# calls, so `execution` (inputs per call) does not concern them; sample_chunk stays a config field.

def explain_gradient(device_bb, images, targets, digests, config: GradientConfig, seed, image_ids, execution=None):
    return _timed("gradient", device_bb, lambda: gradient_maps(
        device_bb, jnp.asarray(images), jnp.asarray(targets, jnp.int32), times_input=False))


def explain_input_x_gradient(device_bb, images, targets, digests, config: InputXGradientConfig, seed,
                             image_ids, execution=None):
    return _timed("input_x_gradient", device_bb, lambda: gradient_maps(
        device_bb, jnp.asarray(images), jnp.asarray(targets, jnp.int32), times_input=True))


def explain_smoothgrad(device_bb, images, targets, digests, config: SmoothGradConfig, seed, image_ids,
                       execution=None):
    return _timed("smoothgrad", device_bb, lambda: smoothgrad_maps(
        device_bb, jnp.asarray(images), jnp.asarray(targets, jnp.int32), image_keys(seed, digests),
        num_samples=config.num_samples, noise_level=config.noise_level, chunk=config.sample_chunk))


def explain_integrated_gradients(device_bb, images, targets, digests, config: IntegratedGradientsConfig,
                                 seed, image_ids, execution=None):
    return _timed("integrated_gradients", device_bb, lambda: integrated_gradients_maps(
        device_bb, jnp.asarray(images), jnp.asarray(targets, jnp.int32), steps=config.steps,
        chunk=config.sample_chunk))


def _gradient_method(name: str, config_type: type, explain_group, points, chunk) -> Method:
    """points, chunk: config -> inputs differentiated per image, and in one vectorised pass.

    Working memory per image: one chunk of inputs and their gradients, and the black box's own copy.
    """
    return Method(name, config_type, explain_group, perturbs_segments=False, query_only=False,
                  queries_per_image=lambda config, height, width: points(config),
                  working_bytes=lambda config, height, width, channels: 4 * height * width * channels * 3 * chunk(
                      config))


def _one(config) -> int:
    return 1


METHODS = (_gradient_method("gradient", GradientConfig, explain_gradient, _one, _one),
           _gradient_method("smoothgrad", SmoothGradConfig, explain_smoothgrad, lambda config: config.num_samples,
                            lambda config: config.sample_chunk),
           _gradient_method("integrated_gradients", IntegratedGradientsConfig, explain_integrated_gradients,
                            lambda config: config.steps, lambda config: config.sample_chunk),
           _gradient_method("input_x_gradient", InputXGradientConfig, explain_input_x_gradient, _one, _one))
