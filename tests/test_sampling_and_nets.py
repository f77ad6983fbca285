"""Keep-vectors, proximity weights, perturbations, and the im2col convolution."""

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from daxjax.nets import PatchConv, PatchEmbed, StudentNet
from daxjax.sampling import keep_vectors, perturb, proximity_weights, split_indices


def test_keep_vectors_do_not_depend_on_padding_width():
    key = jax.random.key(3)
    narrow = keep_vectors(key, 50, jnp.int32(10), 16, 0.5)
    wide = keep_vectors(key, 50, jnp.int32(10), 64, 0.5)
    np.testing.assert_array_equal(narrow[:, :10], wide[:, :10])
    assert not wide[:, 10:].any()
    assert narrow[0, :10].all()


def test_keep_probability_is_respected():
    z = keep_vectors(jax.random.key(0), 4000, jnp.int32(40), 48, 0.3)
    assert abs(float(z[1:, :40].mean()) - 0.3) < 0.01


def test_proximity_weights_follow_cosine_kernel():
    z = jnp.array([[1, 1, 1, 1], [1, 0, 0, 0], [0, 0, 0, 0]], bool)
    pi = proximity_weights(z, jnp.int32(4), 0.25)
    d = 1 - np.sqrt(np.array([4, 1, 0]) / 4)
    np.testing.assert_allclose(pi, np.exp(-d ** 2 / 0.0625), rtol=1e-6)


def test_perturb_switches_off_segments():
    image = jnp.ones((2, 2, 1))
    fill = jnp.zeros((2, 2, 1))
    segments = jnp.array([[0, 1], [1, 2]])
    out = perturb(image, segments, fill, jnp.array([[True, False, True]]))
    np.testing.assert_array_equal(out[0, ..., 0], [[1, 0], [0, 1]])


def test_split_keeps_original_in_training_and_covers_all_samples():
    train, val = split_indices(jax.random.key(1), 100, 10)
    assert int(train[0]) == 0 and 0 not in np.asarray(val)
    assert sorted(np.concatenate([train, val]).tolist()) == list(range(100))


def test_patch_conv_equals_lax_conv():
    conv = PatchConv(3, 5, 3, stride=2, rngs=nnx.Rngs(0))
    x = jax.random.normal(jax.random.key(1), (2, 9, 12, 3))
    kernel = conv.kernel[...].reshape(3, 3, 3, 5)  # (kh, kw, C_in, C_out)
    expected = jax.lax.conv_general_dilated(x, kernel, (2, 2), "SAME",
                                            dimension_numbers=("NHWC", "HWIO", "NHWC"))
    np.testing.assert_allclose(conv(x), expected + conv.bias[...], atol=1e-5)


def test_gated_embedding_equals_embedding_of_the_blended_inputs():
    """StudentNet.gated(base, direction, keep) is the student on base + keep * direction, for one
    base and direction shared by all inputs (DAX's default) and for one per input."""
    keys = jax.random.split(jax.random.PRNGKey(3), 4)
    keep = (jax.random.uniform(keys[0], (5, 16, 16)) > 0.5).astype(jnp.float32) * 0.7
    base, direction = jax.random.normal(keys[1], (2, 16, 16, 3))
    embed = PatchEmbed(3, 8, 4, rngs=nnx.Rngs(0))
    np.testing.assert_allclose(embed.gated(base, direction, keep), embed(base + keep[..., None] * direction),
                               rtol=1e-5, atol=1e-5)
    per_input = jax.random.normal(keys[2], (5, 16, 16, 3))
    student = StudentNet(3, (8, 16), 32, 16, rngs=nnx.Rngs(1))
    np.testing.assert_allclose(student.gated(per_input, per_input * 2, keep),
                               student(per_input + keep[..., None] * per_input * 2), rtol=1e-5, atol=1e-6)
