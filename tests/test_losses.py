"""DAX losses against direct computations; the sign and gradient direction of Q."""

import jax
import jax.numpy as jnp
import numpy as np
from scipy.stats import norm

from daxjax import losses


def test_soft_histogram_matches_direct_gaussian_sum():
    values = np.array([0.02, 0.13, 0.5, 0.51, 0.97, 0.7], np.float32)
    centres = (np.arange(10) + 0.5) / 10
    direct = np.array([0.1 * norm.pdf(values, c, 0.05).sum() / len(values) for c in centres])
    np.testing.assert_allclose(losses.soft_histogram(jnp.asarray(values)), direct, rtol=1e-5)


def test_soft_histogram_puts_mass_in_the_right_bin():
    hist = np.asarray(losses.soft_histogram(jnp.full((20,), 0.35)))
    assert hist.argmax() == 3
    assert np.isclose(hist.sum(), 1.0, atol=0.02)  # nearly all of a Gaussian lies inside [0, 1]


def test_histogram_kl_is_zero_for_equal_scores_and_positive_otherwise():
    y = jnp.linspace(0.1, 0.9, 32)
    assert abs(float(losses.histogram_kl(y, y))) < 1e-4  # only the eps of empty bins remains
    assert float(losses.histogram_kl(y, jnp.full((32,), 0.5))) > 0.1


def test_weighted_mse_direct():
    p, t, w = jnp.array([0.2, 0.9]), jnp.array([0.0, 1.0]), jnp.array([1.0, 0.5])
    assert np.isclose(float(losses.weighted_mse(p, t, w)), (0.04 + 0.5 * 0.01) / 2)


def test_q_is_negative_complement_error_and_its_gradient_pushes_away_from_targets():
    y = jnp.array([0.9, 0.8, 0.1])
    pi = jnp.array([1.0, 0.5, 0.25])
    y_bar = jnp.array([0.5, 0.5, 0.5])
    q = losses.counterfactual_q(y_bar, y, pi)
    assert float(q) < 0
    assert np.isclose(float(q), -float(losses.weighted_mse(y_bar, y, pi)))
    # Minimising Q moves each complement prediction away from its target.
    step = -jax.grad(losses.counterfactual_q)(y_bar, y, pi)
    assert np.all(np.sign(step) == -np.sign(y - y_bar))
    assert float(losses.counterfactual_q(y, y, pi)) == 0.0  # the worst case: complement agrees


def test_v2_area_and_normalisation():
    y = jnp.array([0.2, 0.8, 0.5, 0.6])
    pi = jnp.ones(4)
    mask = jnp.full((8, 8), 0.25)
    plain, parts = losses.loss_v2(y, 1 - y, y, pi, mask, lambda_q=0.5)
    assert np.isclose(float(plain), 0.5 * float(parts["q"]))
    with_area, parts = losses.loss_v2(y, 1 - y, y, pi, mask, lambda_q=0.5, lambda_area=2.0)
    assert np.isclose(float(with_area - plain), 0.5)
    # With a scale (1 / the targets' variance), the error terms are shares of that variance: a
    # prediction off by one standard deviation everywhere costs 1, whatever the targets' units.
    for units in (1.0, 100.0):
        target = units * y
        spread = float(jnp.mean((target - target.mean()) ** 2))
        scaled, parts = losses.loss_v2(target + np.sqrt(spread), target, target, pi, mask, lambda_q=0.0,
                                       scale=1.0 / spread)
        assert np.isclose(float(parts["mse"]), 1.0, rtol=1e-5)


def test_v1_combines_terms():
    y = jnp.linspace(0.1, 0.9, 16)
    y_hat = y[::-1]
    mask = jnp.full((4, 4), 0.5)
    total, parts = losses.loss_v1(y_hat, y, jnp.ones(16), mask, lambda_l1=0.1, lambda_kl=0.2)
    expected = parts["mse"] + 0.1 * 0.5 + 0.2 * parts["kl"]
    assert np.isclose(float(total), float(expected))
