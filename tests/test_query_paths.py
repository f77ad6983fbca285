"""The query paths of `daxjax.querying`: DLPack (ONNX Runtime I/O binding, torch), in-jit JAX and
the host callback give the same maps; the device paths check answers and name failing images."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

import daxjax
from blackbox_adapters import BlackBoxError, CallableBlackBox, JaxBlackBox, OnnxBlackBox, TorchBlackBox
from blackbox_adapters import bundled_model_path
from blackbox_adapters.models import colour_probs
from daxjax import querying
from daxjax.querying import device_blackbox, forced_path, query_path
from daxjax.scenes import colour_patch_scenes

RISE = daxjax.RISEConfig(num_samples=96)
LIME = daxjax.LIMEConfig(num_samples=96, segmentation="grid")
#: The three scenes x 32 perturbations each in one black-box call: 96 samples take 3 calls.
CALLS_OF_32 = daxjax.Execution(queries_per_call=3 * 32)


class ColourNet(torch.nn.Module):
    """A small fixed-weight CNN on NCHW images -> 4 logits."""

    def __init__(self):
        super().__init__()
        generator = torch.Generator().manual_seed(0)
        self.conv = torch.nn.Conv2d(3, 6, 3, stride=2)
        self.fc = torch.nn.Linear(6, 4)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=generator))

    def forward(self, x):
        return self.fc(torch.relu(self.conv(x)).mean(dim=(2, 3)))


def colour_jax(x):
    """A JAX black box close to the bundled colour model: channel means -> softmax over 3 classes."""
    return jax.nn.softmax(8.0 * jnp.stack([x[..., c].mean(axis=(1, 2)) for c in range(3)], axis=-1), axis=-1)


def scenes(n=3, size=32):
    return colour_patch_scenes(n, size, seed=2)[0]


def counting(bb, name):
    """Wraps bb.<name> so that the test can see which path was taken; returns the call list."""
    calls = []
    original = getattr(bb, name)

    def spy(*args, **kwargs):
        calls.append(np.shape(args[0]))
        return original(*args, **kwargs)
    setattr(bb, name, spy)
    return calls


def maps_by_path(bb, path, method="rise", config=RISE, images=None, execution=CALLS_OF_32):
    with forced_path(path):
        return daxjax.explain(bb, scenes() if images is None else images, method=method, config=config, seed=0,
                              execution=execution).maps


@pytest.mark.parametrize("method, config", [("rise", RISE), ("lime", LIME)])
def test_onnx_io_binding_path_gives_the_host_maps(method, config):
    bb = OnnxBlackBox(bundled_model_path("colour_nchw"))
    host = maps_by_path(bb, "host", method, config)
    forwards = counting(bb, "device_forward")
    device = maps_by_path(bb, "dlpack", method, config)
    assert len(forwards) == 3 and forwards[0] == (3 * 32, 3, 32, 32)  # B * chunk, normalised NCHW feed
    np.testing.assert_allclose(device, host, atol=1e-5)
    assert host.std() > 0.05  # the maps are not trivially equal


def test_onnx_fixed_batch_model_is_padded_on_the_device():
    bb = OnnxBlackBox(bundled_model_path("colour_nhwc_b8"), layout="NHWC", output="probs")
    config = daxjax.RISEConfig(num_samples=40)
    calls = daxjax.Execution(queries_per_call=15)  # 3 images x 5 = 15 rows: chunks of 8, padded
    np.testing.assert_allclose(maps_by_path(bb, "dlpack", config=config, execution=calls),
                               maps_by_path(bb, "host", config=config, execution=calls), atol=1e-5)
    x = scenes()
    raw = bb.device_forward(bb.device_feed(jnp.asarray(x)))
    np.testing.assert_allclose(np.asarray(raw), colour_probs(x), atol=1e-6)


def test_torch_dlpack_path_gives_the_host_maps():
    bb = TorchBlackBox(ColourNet(), mean=0.5, std=0.25, batch_size=40)
    host = maps_by_path(bb, "host")
    forwards = counting(bb, "device_forward")
    device = maps_by_path(bb, "dlpack")
    assert len(forwards) == 3
    np.testing.assert_allclose(device, host, atol=1e-5)
    assert host.std() > 0.05


def test_jax_black_box_in_jit_gives_the_host_maps():
    bb = JaxBlackBox(colour_jax, 3)
    host_calls = counting(device_blackbox(bb, bb, 3), "_host_call")  # the object explain will use
    device = maps_by_path(bb, "jax")
    assert host_calls == []
    host = maps_by_path(bb, "host")
    assert len(host_calls) == 3
    np.testing.assert_allclose(device, host, atol=1e-5)
    assert host.std() > 0.05


def test_the_default_path_per_black_box():
    cpu = jax.devices("cpu")[0]
    onnx = OnnxBlackBox(bundled_model_path("colour_nchw"))
    for bb, expected in ((onnx, "dlpack" if querying.DLPACK_ON_CPU else "host"),
                         (JaxBlackBox(colour_jax, 3), "jax"),
                         (CallableBlackBox(colour_probs, 4), "host")):
        assert query_path(device_blackbox(bb, bb, bb.num_classes), cpu) == expected
    # A group split over two devices goes through the callback, which shard_map runs per device.
    onnx_device = device_blackbox(onnx, onnx, 4)
    assert query_path(onnx_device, cpu, devices=2) == "host"
    with forced_path("dlpack"):
        assert query_path(onnx_device, cpu) == "dlpack"
        with pytest.raises(BlackBoxError, match=r"'dlpack' is not possible.*possible: \['host'\]"):
            query_path(device_blackbox(colour_probs, CallableBlackBox(colour_probs, 4), 4), cpu)
        with pytest.raises(BlackBoxError, match=r"2 device"):
            query_path(onnx_device, cpu, devices=2)


class NanOnTagged(torch.nn.Module):
    """Two classes; NaN for perturbed copies (zero fill showing) of images whose pixel (0, 0) is tagged."""

    def forward(self, x):  # x: NCHW
        tagged = (x[:, 1, 0, 0] - 0.123).abs() < 1e-6
        perturbed = (x == 0).all(dim=1).flatten(1).any(dim=1)
        logits = torch.stack([x.mean(dim=(1, 2, 3)), -x.mean(dim=(1, 2, 3))], dim=1)
        return torch.where((tagged & perturbed)[:, None], torch.nan, logits)


def tagged_images():
    x = scenes()
    x[1, 0, 0, 1] = 0.123
    x[1, 0, 0, 0] = x[1, 0, 0, 2] = 0.9  # never a zero pixel there, so the tag stays visible
    return x


@pytest.mark.parametrize("path", ["dlpack", "host"])
def test_nan_answers_name_the_image_on_every_path(path):
    bb = TorchBlackBox(NanOnTagged())
    with pytest.raises(BlackBoxError, match=r"NaN.*image\(s\) \[1\]$"):
        maps_by_path(bb, path, config=daxjax.RISEConfig(num_samples=64), images=tagged_images(),
                     execution=daxjax.Execution(queries_per_call=3 * 16))


def test_nan_answers_of_a_jax_black_box_name_the_image():
    def nan_on_tagged(x):
        tagged = jnp.abs(x[:, 0, 0, 1] - 0.123) < 1e-6
        probs = colour_jax(x)
        perturbed = jnp.any(jnp.all(x == 0, axis=-1), axis=(1, 2))
        return jnp.where((tagged & perturbed)[:, None], jnp.nan, probs)

    bb = JaxBlackBox(nan_on_tagged, 3)
    with pytest.raises(BlackBoxError, match=r"NaN.*image\(s\) \[1\]$"):
        maps_by_path(bb, "jax", config=daxjax.RISEConfig(num_samples=64), images=tagged_images(),
                     execution=daxjax.Execution(queries_per_call=3 * 16))


class Failing(torch.nn.Module):
    def forward(self, x):
        raise RuntimeError("out of memory on the device")


class Unnormalised(torch.nn.Module):
    def forward(self, x):
        return x.mean(dim=(2, 3))[:, :2].abs() + 1.0  # rows sum to > 2


def query(bb, images, image_ids):
    """RISE's target probabilities [B, 64] for `images` through `querying.query_targets` on the
    DLPack path (the black box is not asked first, so it may fail on every call)."""
    from daxjax.rise import RISEPerturbations
    from daxjax.sampling import image_keys

    keys = image_keys(0, np.arange(len(images), dtype=np.uint32))
    per_image = (keys, jnp.asarray(images), jnp.zeros_like(jnp.asarray(images)))
    with forced_path("dlpack"):
        return querying.query_targets(device_blackbox(bb, bb, 2), RISEPerturbations(cells=4, keep_prob=0.5),
                                      per_image, jnp.zeros(len(images), jnp.int32), 64, 16, image_ids)


def test_failures_inside_the_dlpack_path_name_the_images():
    images = scenes()
    with pytest.raises(BlackBoxError, match=r"out of memory.*image\(s\) \[0, 1, 2\]"):
        query(TorchBlackBox(Failing(), num_classes=2), images, [0, 1, 2])
    with pytest.raises(BlackBoxError, match=r"do not sum to 1.*image\(s\) \['a', 'b', 'c'\]"):
        query(TorchBlackBox(Unnormalised(), output="probs", num_classes=2), images, ["a", "b", "c"])
    with pytest.raises(BlackBoxError, match=r"shape.*image\(s\) \[0, 1, 2\]"):
        query(TorchBlackBox(ColourNet(), num_classes=2), images, [0, 1, 2])  # 4 classes, 2 expected
    assert query(TorchBlackBox(Unnormalised(), output="logits", num_classes=2), images, [0, 1, 2]).shape == (3, 64)


def test_call_size_rule_per_platform():
    image = 224 * 224 * 3
    assert querying.call_inputs(image, "cpu") == querying.CALL_BYTES // (4 * image) == 27
    assert querying.call_inputs(32 * 32 * 3, "cpu") == querying.CALL_INPUTS == 256
    assert querying.call_inputs(image, "gpu") == querying.ACCELERATOR_CALL_INPUTS == 1024
    assert querying.call_inputs(1024 * 1024 * 3, "gpu") == querying.ACCELERATOR_CALL_BYTES // (4 * 1024 * 1024 * 3)


class FakeAccelerator:
    platform = "gpu"

    def memory_stats(self):
        return {"bytes_limit": 80 * 2**30}


def test_memory_plan_uses_the_call_size_of_the_platform(monkeypatch):
    from daxjax import budget

    config = daxjax.RISEConfig(num_samples=2000)
    cpu = budget.plan_batches(config, 224, 224, 3, devices=1, num_images=64, host_budget=1 << 34)
    assert cpu.batch * cpu.query_chunk <= querying.call_inputs(224 * 224 * 3, "cpu")
    monkeypatch.setattr(budget.jax, "local_devices", lambda: [FakeAccelerator()])
    gpu = budget.plan_batches(config, 224, 224, 3, devices=1, num_images=64, host_budget=1 << 34)
    assert (gpu.batch, gpu.query_chunk) == (64, 16)  # 1,024 images per call, as on the H200
    assert gpu.device_bytes >= 3 * 1024 * 224 * 224 * 3 * 4  # two chunks in flight + the black box's copy
