"""DAX losses (paper Eq. 7-11) as pure functions of predictions, targets and weights.

Notation: y are the black box's target-class probabilities on the perturbations, y_hat the
student's on the masked perturbations x_p * m, y_bar the student's on the complement
x_p * (1 - m), pi the proximity weights, m the mask.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

HISTOGRAM_BINS = 10
HISTOGRAM_SIGMA = 0.05


def weighted_mse(prediction: jax.Array, target: jax.Array, weight: jax.Array) -> jax.Array:
    """(1/n) sum_i pi_i (prediction_i - target_i)^2 over the last axis."""
    return jnp.mean(weight * (prediction - target) ** 2, axis=-1)


def soft_histogram(values: jax.Array, bins: int = HISTOGRAM_BINS, sigma: float = HISTOGRAM_SIGMA) -> jax.Array:
    """Differentiable histogram of values in [0, 1]: a Gaussian kernel per bin centre.

    values: [n]. Returns [bins]: H_k = (1/n) sum_i delta * N(v_i; c_k, sigma^2), with centres
    c_k = (k + 1/2) delta and delta = 1/bins (10 bins, sigma 0.05 as in the authors' code).
    """
    width = 1.0 / bins
    centres = (jnp.arange(bins) + 0.5) * width
    density = jnp.exp(-0.5 * ((values[:, None] - centres[None, :]) / sigma) ** 2)
    density = density / (sigma * jnp.sqrt(2.0 * jnp.pi))
    return width * jnp.mean(density, axis=0)


def histogram_kl(target: jax.Array, prediction: jax.Array, eps: float = 1e-3) -> jax.Array:
    """KL(hist(target) || hist(prediction)) between soft histograms of two score vectors [n].

    Both histograms are renormalised to sum to 1; eps keeps log(q) finite for empty bins.
    """
    p = soft_histogram(target)
    q = soft_histogram(prediction) + eps
    p = p / jnp.sum(p)
    q = q / jnp.sum(q)
    return jnp.sum(jnp.where(p > 0, p * (jnp.log(jnp.maximum(p, 1e-12)) - jnp.log(q)), 0.0))


def counterfactual_q(y_bar: jax.Array, y: jax.Array, pi: jax.Array) -> jax.Array:
    """Q = -(pi-weighted MSE of the student on the complement input): low when the complement
    of the mask no longer explains the black box's answers."""
    return -weighted_mse(y_bar, y, pi)


def loss_v1(y_hat, y, pi, mask, *, lambda_l1: float, lambda_kl: float) -> tuple[jax.Array, dict]:
    """DAX-V1: pi-MSE + lambda_l1 * mean|m| + lambda_kl * KL(hist(y) || hist(y_hat))."""
    mse = weighted_mse(y_hat, y, pi)
    l1 = jnp.mean(jnp.abs(mask))
    kl = histogram_kl(y, y_hat)
    total = mse + lambda_l1 * l1 + lambda_kl * kl
    return total, {"mse": mse, "l1": l1, "kl": kl}


def loss_v2(y_hat, y_bar, y, pi, mask, *, lambda_q: float, lambda_area: float = 0.0,
            scale: jax.Array | None = None, bounded_q: bool = False) -> tuple[jax.Array, dict]:
    """DAX-V2: pi-MSE + lambda_q * Q (+ lambda_area * mean(m), 0 in the paper).

    scale: None (the paper) or 1 / the pi-weighted variance of the targets (the error of predicting
    their mean, over the row's training samples): both error terms are then multiplied by it, so
    they read as "share of the black box's variation not explained" whatever the targets' scale,
    and lambda_area prices the mask's area in those shares.
    bounded_q: with a scale, Q = -min(normalised complement error, 1): the complement is rewarded
    for being as uninformative as no input at all, not for pushing the student to answers further
    from y than the mean (unbounded, that reward drove masks to all ones).
    """
    normalised = scale is not None
    scale = 1.0 if scale is None else jax.lax.stop_gradient(scale)
    # The pi-weighted mean (not the mean of pi-weighted terms): a minibatch's error is then on the
    # scale of the variance it is divided by.
    mse = scale * jnp.sum(pi * (y_hat - y) ** 2) / jnp.sum(pi) if normalised else weighted_mse(y_hat, y, pi)
    q = -scale * jnp.sum(pi * (y_bar - y) ** 2) / jnp.sum(pi) if normalised else counterfactual_q(y_bar, y, pi)
    if normalised and bounded_q:
        q = jnp.maximum(q, -1.0)
    area = jnp.mean(mask)
    return mse + lambda_q * q + lambda_area * area, {"mse": mse, "q": q, "area": area}
