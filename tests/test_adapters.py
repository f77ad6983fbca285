"""Black-box adapters: ONNX Runtime vs the numpy reference, batching, checks, errors, threads."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import jax
import jax.numpy as jnp
import numpy as np
import onnx
import pytest

from blackbox_adapters import (
    COLOUR_CLASSES,
    BlackBox,
    BlackBoxError,
    CallableBlackBox,
    JaxBlackBox,
    OnnxBlackBox,
    as_blackbox,
    bundled_model_path,
    check_probabilities,
    softmax,
)
from blackbox_adapters.models import colour_logits, colour_probs

RED, GREEN, BLUE = (1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0)


@pytest.fixture(scope="module")
def nchw() -> OnnxBlackBox:
    return OnnxBlackBox(bundled_model_path("colour_nchw.onnx"), layout="NCHW", output="logits")


@pytest.fixture(scope="module")
def nhwc_b8() -> OnnxBlackBox:
    return OnnxBlackBox(bundled_model_path("colour_nhwc_b8"), layout="NHWC", output="probs")


def random_images(n: int, h: int = 32, w: int = 32, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((n, h, w, 3), dtype=np.float32)


def patched_images(h: int = 32, w: int = 32) -> np.ndarray:
    """Grey images with one pure-colour patch each (red, green, blue) and one without."""
    x = np.full((4, h, w, 3), 0.5, dtype=np.float32)
    for i, colour in enumerate((RED, GREEN, BLUE)):
        x[i, 4:16, 8:20] = colour
    return x


# --- the bundled ONNX models against the numpy reference ---------------------------------


@pytest.mark.parametrize("h, w", [(32, 32), (17, 45)])
def test_onnx_matches_reference_on_random_images(nchw, h, w):
    x = random_images(6, h, w)
    # Random pixels are sometimes pure enough to score: make sure that is exercised.
    assert np.any(colour_logits(x)[:, :3] > 0)
    np.testing.assert_allclose(nchw(x), colour_probs(x), atol=1e-6)


def test_onnx_planted_patches_decide_the_class(nchw, nhwc_b8):
    x = patched_images()
    for bb in (nchw, nhwc_b8):
        probs = bb(x)
        np.testing.assert_allclose(probs, colour_probs(x), atol=1e-6)
        assert [COLOUR_CLASSES[k] for k in probs.argmax(axis=1)] == ["red", "green", "blue", "none"]
        assert bb.num_classes == len(COLOUR_CLASSES) == 4
        assert isinstance(bb, BlackBox)


@pytest.mark.parametrize("n", [1, 8, 13])
def test_fixed_batch_pads_and_matches_one_by_one(nhwc_b8, n):
    x = random_images(n, seed=n)
    probs = nhwc_b8(x)
    assert probs.shape == (n, 4) and probs.dtype == np.float32
    one_by_one = np.concatenate([nhwc_b8(x[i : i + 1]) for i in range(n)])
    np.testing.assert_array_equal(probs, one_by_one)
    np.testing.assert_allclose(probs, colour_probs(x), atol=1e-6)


def test_dynamic_batch_chunks(nchw):
    chunked = OnnxBlackBox(bundled_model_path("colour_nchw.onnx"), batch_size=3)
    x = random_images(7)
    np.testing.assert_allclose(chunked(x), nchw(x), atol=1e-7)
    assert nchw(x[:0]).shape == (0, 4)


def test_mean_std_normalisation():
    path = bundled_model_path("colour_nchw.onnx")
    x = patched_images()
    # Doubling every channel (std 0.5) makes a pure red pixel score 2 - 0.25 instead of 1 - 0.25.
    doubled = OnnxBlackBox(path, std=0.5)
    np.testing.assert_allclose(doubled(x), colour_probs(2 * x), atol=1e-6)
    # Per-channel: lifting green and blue by 1 removes every red lead.
    mean = [0.0, -1.0, -1.0]
    shifted = OnnxBlackBox(path, mean=mean)
    np.testing.assert_allclose(shifted(x), colour_probs(x - np.array(mean, np.float32)), atol=1e-6)
    assert shifted(x)[0].argmax() != COLOUR_CLASSES.index("red")
    # EfficientNet-style (x*255 - 127)/128.
    effnet = OnnxBlackBox(path, mean=127 / 255, std=128 / 255)
    np.testing.assert_allclose(effnet(x), colour_probs((x * 255 - 127) / 128), atol=1e-5)
    with pytest.raises(BlackBoxError, match="channels"):
        OnnxBlackBox(path, mean=[0.1, 0.2])(x)
    with pytest.raises(BlackBoxError, match="std"):
        OnnxBlackBox(path, std=[1.0, 0.0, 1.0])


def test_session_settings_and_providers(nchw):
    assert nchw.providers and "CPUExecutionProvider" in nchw.providers
    assert nchw.providers == nchw.session.get_providers()
    bb = OnnxBlackBox(bundled_model_path("colour_nchw.onnx"), intra_op_threads=2, inter_op_threads=1)
    options = bb.session.get_session_options()
    assert (options.intra_op_num_threads, options.inter_op_num_threads) == (2, 1)
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    assert options.get_session_config_entry("session.inter_op.allow_spinning") == "0"
    assert nchw.input_shape == (None, 3, None, None)
    assert "colour_nchw.onnx" in repr(nchw) and "num_classes=4" in repr(nchw)


def test_wrong_image_size_names_sizes(nhwc_b8, nchw):
    with pytest.raises(BlackBoxError, match=r"\(32, 32, 3\).*\(16, 32, 3\)"):
        nhwc_b8(random_images(2, 16, 32))
    with pytest.raises(BlackBoxError, match=r"\(any, any, 3\).*\(32, 32, 1\)"):
        nchw(np.zeros((2, 32, 32, 1), np.float32))
    with pytest.raises(BlackBoxError, match="conflicts with the fixed batch 8"):
        OnnxBlackBox(bundled_model_path("colour_nhwc_b8"), layout="NHWC", output="probs", batch_size=4)


def test_bad_paths(tmp_path):
    missing = tmp_path / "nope.onnx"
    with pytest.raises(FileNotFoundError, match="nope.onnx"):
        OnnxBlackBox(missing)
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"this is not a protobuf")
    with pytest.raises(BlackBoxError, match="junk.onnx: ONNX Runtime cannot load it"):
        OnnxBlackBox(junk)
    with pytest.raises(FileNotFoundError, match="available"):
        bundled_model_path("no_such_model")


def test_num_classes_probed_when_output_width_is_symbolic(tmp_path):
    model = onnx.load(bundled_model_path("colour_nchw.onnx"))
    model.graph.output[0].type.tensor_type.shape.dim[1].dim_param = "K"
    path = tmp_path / "symbolic_k.onnx"
    onnx.save(model, path)
    bb = OnnxBlackBox(path)
    assert bb.num_classes == 4
    np.testing.assert_allclose(bb(patched_images()), colour_probs(patched_images()), atol=1e-6)


def test_concurrent_calls_are_identical(nchw):
    inputs = [random_images(5, seed=s) for s in range(8)]
    serial = [nchw(x) for x in inputs]
    with ThreadPoolExecutor(max_workers=4) as pool:
        threaded = list(pool.map(nchw, inputs))
    for a, b in zip(serial, threaded):
        np.testing.assert_array_equal(a, b)


# --- CallableBlackBox and as_blackbox -------------------------------------------------------


def test_callable_logits_lazy_num_classes_and_chunking():
    batch_sizes = []

    def logits_fn(x):
        batch_sizes.append(len(x))
        return colour_logits(x)

    bb = CallableBlackBox(logits_fn, output="logits", max_batch=4)
    with pytest.raises(AttributeError, match="not known yet"):
        bb.num_classes
    assert not isinstance(bb, BlackBox)
    x = random_images(10)
    np.testing.assert_allclose(bb(x), colour_probs(x), atol=1e-6)
    assert bb.num_classes == 4 and isinstance(bb, BlackBox)
    assert batch_sizes == [4, 4, 2]
    with pytest.raises(BlackBoxError, match="3 classes; expected 4"):
        CallableBlackBox(lambda x: np.full((len(x), 3), 1 / 3), num_classes=4)(x)


def test_as_blackbox():
    bb = as_blackbox(colour_probs)
    assert isinstance(bb, CallableBlackBox)
    bb(random_images(2))
    assert bb.num_classes == 4
    assert as_blackbox(bb) is bb
    lazy = CallableBlackBox(colour_probs)
    assert as_blackbox(lazy) is lazy  # an unknown num_classes is not evaluated
    with pytest.raises(BlackBoxError, match="num_classes=4, but num_classes=3"):
        as_blackbox(bb, num_classes=3)
    with pytest.raises(TypeError, match="expected a black box"):
        as_blackbox("model.onnx")


# --- check_probabilities and softmax --------------------------------------------------------


def test_check_probabilities_accepts_valid_rows():
    p = softmax(np.array([[1000.0, 0.0], [-5.0, 5.0]]))
    assert np.all(np.isfinite(p)) and p.dtype == np.float32
    out = check_probabilities(p.astype(np.float64), 2, 2)
    assert out.dtype == np.float32


@pytest.mark.parametrize(
    "probs, n, k, message",
    [
        (np.full((3,), 1 / 3), 3, None, r"shape \(3,\); expected 2-D"),
        (np.full((2, 2), 0.5), 3, None, "2 rows for 3 inputs"),
        (np.full((2, 2), 0.5), 2, 3, "2 classes; expected 3"),
        (np.array([[0.5, 0.5], [np.nan, 1.0], [0.5, 0.5]]), 3, 2, r"NaN or inf: row 1 is \[nan, 1\]"),
        (np.array([[1.5, -0.5], [0.5, 0.5]]), 2, 2, r"negative probabilities: row 0 is \[1.5, -0.5\]"),
        (np.array([[0.5, 0.5], [0.2, 0.2], [0.9, 0.3]]), 3, 2, "row 1 sums to 0.4.*row 2 sums to 1.2"),
    ],
)
def test_check_probabilities_failures(probs, n, k, message):
    with pytest.raises(BlackBoxError, match=message):
        check_probabilities(probs, n, k, what="test box")


def test_check_probabilities_lists_only_first_rows():
    with pytest.raises(BlackBoxError, match=r"row 4 sums to 2 \(\+5 more\)"):
        check_probabilities(np.ones((10, 2)), 10)


# --- JaxBlackBox ----------------------------------------------------------------------------


def jax_colour_logits(x: jax.Array) -> jax.Array:
    """The colour classifier in JAX (same function as the ONNX models)."""
    r, g, b = x[..., 0], x[..., 1], x[..., 2]
    leads = jnp.stack([r - jnp.maximum(g, b), g - jnp.maximum(r, b), b - jnp.maximum(r, g)], axis=-1)
    colour = 20.0 * jnp.mean(jax.nn.relu(leads - 0.25), axis=(1, 2))
    return jnp.concatenate([colour, jnp.full((x.shape[0], 1), 0.5)], axis=1)


def test_jax_blackbox_jax_fn_jits_and_matches_call():
    bb = JaxBlackBox(jax_colour_logits, 4, output="logits")
    x = np.concatenate([patched_images(), random_images(3)])
    on_device = np.asarray(jax.jit(bb.jax_fn)(jnp.asarray(x)))
    np.testing.assert_allclose(on_device, bb(x), atol=1e-6)
    np.testing.assert_allclose(bb(x), colour_probs(x), atol=1e-5)
    with pytest.raises(BlackBoxError, match="do not sum to 1"):
        JaxBlackBox(jax_colour_logits, 4, output="probs")(x)
