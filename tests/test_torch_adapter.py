"""TorchBlackBox: planted modules with known answers, layouts, normalisation, chunking, errors."""

from __future__ import annotations

import subprocess
import sys
import warnings

import numpy as np
import pytest

from blackbox_adapters import BlackBoxError, TorchBlackBox, as_blackbox, softmax
from planted import red_and_distractor_scene, red_fraction_box

# torch is in the dev extra (a local CPU wheel), so `make test` runs these; without it they skip.
torch = pytest.importorskip("torch")
nn = torch.nn


class RedFraction(nn.Module):
    """planted.red_fraction_box as a torch module on NCHW input, emitting logits.

    softmax([-l/2, l/2]) = [1 - sigmoid(l), sigmoid(l)], the planted probabilities.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        r, g, b = x[:, 0], x[:, 1], x[:, 2]
        red = ((r > 0.8) & (g < 0.2) & (b < 0.2)).float()
        logit = 40.0 * (red.flatten(1).mean(dim=1) - 0.03)
        return torch.stack([-logit / 2, logit / 2], dim=1)


class ChannelMeans(nn.Module):
    """Logits = the mean of each channel; `channel_axis` says which layout it reads."""

    def __init__(self, channel_axis: int):
        super().__init__()
        self.channel_axis = channel_axis

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        spatial = [a for a in (1, 2, 3) if a != self.channel_axis]
        return x.mean(dim=spatial)


class CallCounter(nn.Module):
    """Wraps a module and records the batch size of every forward pass."""

    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner = inner
        self.batches: list[int] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.batches.append(x.shape[0])
        return self.inner(x)


def red_scenes(count: int) -> np.ndarray:
    """Planted scenes with a red square, some with the square painted over: both classes occur."""
    images = np.stack([red_and_distractor_scene(seed)[0] for seed in range(count)])
    images[::2] = np.where(images[::2] > 0.9, 0.5, images[::2])  # no pure red left in even images
    return images


def channel_images() -> np.ndarray:
    """[4, 8, 6, 3] images whose channel means are known exactly (constant channels)."""
    means = np.array([[0.1, 0.5, 0.9], [0.2, 0.2, 0.2], [1.0, 0.0, 0.3], [0.7, 0.4, 0.05]], np.float32)
    return np.broadcast_to(means[:, None, None, :], (4, 8, 6, 3)).copy(), means


def test_planted_module_gives_planted_probabilities():
    x = red_scenes(6)
    bb = TorchBlackBox(RedFraction(), layout="NCHW", output="logits")
    probs = bb(x)
    expected = red_fraction_box(x)
    np.testing.assert_allclose(probs, expected, atol=1e-5)
    assert set(probs.argmax(axis=1)) == {0, 1}, "scenes should exercise both classes"
    assert bb.num_classes == 2


def test_num_classes_unknown_before_the_first_call_unless_given():
    lazy = TorchBlackBox(RedFraction())
    with pytest.raises(AttributeError, match="inferred from the first call"):
        lazy.num_classes
    assert as_blackbox(lazy) is lazy
    assert TorchBlackBox(RedFraction(), num_classes=2).num_classes == 2
    wrong = TorchBlackBox(RedFraction(), num_classes=3)
    with pytest.raises(BlackBoxError, match="2 classes; expected 3"):
        wrong(red_scenes(2))


@pytest.mark.parametrize("layout, channel_axis", [("NCHW", 1), ("NHWC", 3)])
def test_layout_is_honoured(layout, channel_axis):
    x, means = channel_images()
    probs = TorchBlackBox(ChannelMeans(channel_axis), layout=layout)(x)
    np.testing.assert_allclose(probs, softmax(means), atol=1e-6)


def test_wrong_layout_is_caught():
    """A module reading NHWC handed NCHW data averages the wrong axes: [n, W] is not [n, C]."""
    x, _ = channel_images()
    with pytest.raises(BlackBoxError, match="6 classes; expected 3"):
        TorchBlackBox(ChannelMeans(3), layout="NCHW", num_classes=3)(x)


def test_mean_and_std_are_honoured_per_channel():
    x, means = channel_images()
    mean, std = (0.1, 0.2, 0.3), (0.5, 0.25, 2.0)
    probs = TorchBlackBox(ChannelMeans(1), mean=mean, std=std)(x)
    np.testing.assert_allclose(probs, softmax((means - np.array(mean)) / np.array(std)), atol=1e-6)
    scalar = TorchBlackBox(ChannelMeans(1), mean=0.5, std=0.5)(x)
    np.testing.assert_allclose(scalar, softmax((means - 0.5) / 0.5), atol=1e-6)
    with pytest.raises(BlackBoxError, match="mean has 2 entries for images with 3 channels"):
        TorchBlackBox(ChannelMeans(1), mean=(0.1, 0.2))(x)
    with pytest.raises(BlackBoxError, match="std must be non-zero"):
        TorchBlackBox(ChannelMeans(1), std=(1.0, 0.0, 1.0))


def test_probability_output_is_checked_not_softmaxed():
    x, means = channel_images()
    sums = means.sum(axis=1)
    probs = TorchBlackBox(ChannelMeans(1), output="probs")(x / sums[:, None, None, None])
    np.testing.assert_allclose(probs, means / sums[:, None], atol=1e-6)
    with pytest.raises(BlackBoxError, match="do not sum to 1"):
        TorchBlackBox(ChannelMeans(1), output="probs")(x)


def test_chunks_bound_the_batch_and_do_not_change_answers():
    x = red_scenes(7)
    counter = CallCounter(RedFraction())
    chunked = TorchBlackBox(counter, batch_size=3)(x)
    assert counter.batches == [3, 3, 1]
    np.testing.assert_allclose(chunked, TorchBlackBox(RedFraction())(x), atol=1e-6)


def test_module_is_put_in_eval_mode():
    """Dropout would make answers random and batch norm batch-dependent in training mode."""
    torch.manual_seed(0)
    module = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Dropout(0.5), nn.Flatten(), nn.LazyLinear(5))
    module(torch.zeros(2, 3, 8, 8))  # materialise the lazy layer
    module.train()
    bb = TorchBlackBox(module)
    assert not module.training
    x = np.random.default_rng(0).random((4, 8, 8, 3), dtype=np.float32)
    full = bb(x)
    np.testing.assert_array_equal(full, bb(x))
    np.testing.assert_allclose(full[:1], bb(x[:1]), atol=1e-6)


def test_callers_images_are_never_modified():
    class InPlace(nn.Module):
        def forward(self, x):
            x.mul_(0.0)
            return x.mean(dim=(2, 3))

    x, _ = channel_images()
    before = x.copy()
    TorchBlackBox(InPlace())(x)
    np.testing.assert_array_equal(x, before)


def test_read_only_input_is_accepted_without_warnings():
    """JAX callbacks hand over read-only arrays; torch.from_numpy would warn on them."""
    x, means = channel_images()
    x.flags.writeable = False
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        probs = TorchBlackBox(ChannelMeans(1))(x)
    np.testing.assert_allclose(probs, softmax(means), atol=1e-6)


def test_nan_rows_are_named():
    class NanOnBright(nn.Module):
        def forward(self, x):
            means = x.mean(dim=(2, 3))
            bright = x.mean(dim=(1, 2, 3)) > 0.45
            return torch.where(bright[:, None], torch.nan, means)

    x, _ = channel_images()  # image means 0.5, 0.2, 0.433, 0.383: only row 0 is bright
    with pytest.raises(BlackBoxError, match="NaN or inf logits: row 0") as caught:
        TorchBlackBox(NanOnBright())(x)
    assert caught.value.rows == [0]


@pytest.mark.parametrize(
    "forward, message",
    [
        (lambda x: x.mean(dim=(2, 3))[:, :, None], r"shape \(4, 3, 1\); expected 2-D"),
        (lambda x: x.mean(dim=(2, 3))[1:], "3 rows for 4 inputs"),
        (lambda x: (x.mean(dim=(2, 3)),), "returned tuple, not a tensor"),
        (lambda x: nn.functional.linear(x.flatten(1), torch.zeros(2, 5)), r"failed on images of shape \(4, 8, 6, 3\)"),
    ],
)
def test_bad_outputs_raise(forward, message):
    class Bad(nn.Module):
        def forward(self, x):
            return forward(x)

    x, _ = channel_images()
    with pytest.raises(BlackBoxError, match=message):
        TorchBlackBox(Bad())(x)


def test_bad_input_and_options_are_named():
    with pytest.raises(BlackBoxError, match=r"expects images \[n, H, W, C\], got shape \(8, 6, 3\)"):
        TorchBlackBox(RedFraction())(np.zeros((8, 6, 3), np.float32))
    with pytest.raises(BlackBoxError, match="layout must be"):
        TorchBlackBox(RedFraction(), layout="HWC")
    with pytest.raises(BlackBoxError, match="output must be"):
        TorchBlackBox(RedFraction(), output="scores")
    with pytest.raises(TypeError, match="needs a torch.nn.Module"):
        TorchBlackBox(red_fraction_box)


def test_empty_query():
    empty = np.zeros((0, 8, 8, 3), np.float32)
    assert TorchBlackBox(RedFraction(), num_classes=2)(empty).shape == (0, 2)
    lazy = TorchBlackBox(RedFraction())
    assert lazy(empty).shape == (0, 2) and lazy.num_classes == 2


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_device_gives_the_cpu_answers():
    x = red_scenes(5)
    on_gpu = TorchBlackBox(RedFraction(), device="cuda", batch_size=2)
    np.testing.assert_allclose(on_gpu(x), red_fraction_box(x), atol=1e-5)
    x, means = channel_images()
    gpu = TorchBlackBox(ChannelMeans(1), mean=(0.1, 0.2, 0.3), std=(0.5, 0.25, 2.0), device="cuda")
    cpu = TorchBlackBox(ChannelMeans(1), mean=(0.1, 0.2, 0.3), std=(0.5, 0.25, 2.0))
    np.testing.assert_allclose(gpu(x), cpu(x), atol=1e-6)


def test_importing_the_packages_does_not_import_torch():
    code = "import sys, blackbox_adapters, daxjax; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_explain_end_to_end_with_a_torch_black_box():
    import daxjax

    image, red, _ = red_and_distractor_scene(3)
    bb = TorchBlackBox(RedFraction(), batch_size=64)
    ex = daxjax.explain(bb, image[None], method="rise", config=daxjax.RISEConfig(num_samples=256), seed=0)
    assert ex.maps.shape == (1, *image.shape[:2]) and ex.targets.tolist() == [1]
    np.testing.assert_allclose(ex.scores, red_fraction_box(image[None])[:, 1], atol=1e-5)
    # RISE's map is higher on the planted cause than elsewhere.
    assert ex.maps[0][red].mean() > ex.maps[0][~red].mean()
