"""Choosing the image batch B and the query chunk from a memory budget.

Cost model (bytes; H x W x C the image size, N black-box queries per image, D local devices,
M = B * chunk the images in one black-box call):

  per image on a device   I = 4 H W (2C + 1)                    image, fill, segment map
                              + the method's working bytes       `Method.working_bytes`: its samples
                                                                 (N answers and weights, and N
                                                                 keep-vectors of S bytes for the
                                                                 methods that perturb segments) and,
                                                                 for DAX, training (from the
                                                                 networks' own shapes)
  one query call          Q = 4 M H W C * 3                      on the device path (DLPack): two
                                                                 chunks of perturbations on the
                                                                 device (one built while the black
                                                                 box answers the other) and the
                                                                 black box's normalised copy; on the
                                                                 host path: the perturbations on the
                                                                 device, their host copy, the black
                                                                 box's normalised copy
  device (each device)    B / D * I + Q / D  <=  device budget
  host                    (prefetch + 1) * B * 4 H W (2C + 1)    prepared batches waiting + in use
                              + Q                                the host side of one query call
                                                             <=  host budget

If one image does not fit (B = 1 over budget) the plan is refused with the numbers.

The black box's own activations are not known from outside: the factor 3 in Q leaves room for a
model about as large as its input; pass `queries_per_call` for heavier models.

`M` aims at `queries_per_call` when given; else, given the black box's measured seconds per call
(`call_seconds`), at the call size `execution.call_size_from_rates` picks from them; else at
`execution.call_inputs` for the device's platform (CPU: 256 inputs and at most 16 MiB; accelerators:
1,024 inputs and at most 1 GiB). It shrinks when Q alone exceeds half of a budget; B is then the
largest multiple of D that fits, capped by `max_batch` per device (`execution.max_images_per_group`:
16 on CPU, 64 on accelerators) and by the number of images. chunk = max(1, M // B).
"""

from __future__ import annotations

import dataclasses
import os
from typing import Mapping

import jax

from daxjax.device.execution import QUERY_COPIES, call_inputs, call_size_from_rates, max_images_per_group
from daxjax.methods.registry import method_of


@dataclasses.dataclass(frozen=True)
class Plan:
    """What the pipeline runs with, and the budgets it was chosen under (bytes)."""

    batch: int          # B, images per step over all local devices (a multiple of `devices`)
    query_chunk: int    # perturbations per image in one black-box call
    prefetch: int       # prepared batches waiting in the queue
    devices: int
    device_budget: int  # per device
    host_budget: int
    device_bytes: int   # the model's estimate per device at this plan
    host_bytes: int


def available_host_memory() -> int:
    """Bytes of host memory available now (MemAvailable), or total physical memory."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def device_memory(device: jax.Device) -> int | None:
    """The device's memory limit in bytes, None when it shares the host's (CPU)."""
    stats = device.memory_stats() if device.platform != "cpu" else None
    return int(stats["bytes_limit"]) if stats and "bytes_limit" in stats else None


def plan_batches(config, height: int, width: int, channels: int, *, devices: int, num_images: int | None,
                 device_budget: int | None = None, host_budget: int | None = None,
                 queries_per_call: int | None = None, max_batch: int | None = None, prefetch: int = 2,
                 batch: int | None = None, call_seconds: Mapping[int, float] | None = None,
                 method=None) -> Plan:
    """Picks B and the query chunk for images of height x width x channels (see the module doc).

    config: a method's config; what the method needs per image comes from its `Method` record
      (`daxjax.methods.registry.method_of`).

    device_budget: bytes per device (default: half the device's memory; on CPU, where devices
      share the host's memory, the host budget split over the devices). host_budget: default a
      quarter of the available host memory. batch: B when it is already fixed (a resumed store,
      or the caller's choice); only the chunk is then planned. queries_per_call: inputs per
      black-box call to aim at (within the platform's byte limit); None: from `call_seconds` when
      given, else `execution.call_inputs`. call_seconds: {inputs per call: seconds per call} of
      this black box (`execution.measure_call_seconds`); the plan never changes a map.
    method: the `Method` record to plan for when it is not the registry's record of `config`'s type
      (None: `method_of(config)`); `daxjax.dataset.amortised` passes the record of its run.
    """
    if batch is not None and int(batch) < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch}")
    host_budget = host_budget or available_host_memory() // 4
    if device_budget is None:
        limit = device_memory(jax.local_devices()[0])
        device_budget = limit // 2 if limit else host_budget // (2 * devices)
    method = method_of(config) if method is None else method
    image_bytes = 4 * height * width * (2 * channels + 1)
    n = method.queries_per_image(config, height, width)
    per_image = image_bytes + method.working_bytes(config, height, width, channels)
    query_image = 4 * height * width * channels * QUERY_COPIES

    platform = jax.local_devices()[0].platform
    if call_seconds is not None and queries_per_call is None:
        per_call = call_size_from_rates(call_seconds, 4 * height * width * channels,
                                        min(device_budget * devices, host_budget) // 2)
    else:
        per_call = call_inputs(height * width * channels, platform)
    calls = max(1, min(per_call if queries_per_call is None else min(int(queries_per_call), per_call),
                       min(device_budget * devices, host_budget) // (2 * query_image)))
    if max_batch is None:
        max_batch = max_images_per_group(platform)
    # Each image holds at least one query in flight, so past `calls` images the queries grow with B.
    per_device = max(1, min(max_batch, (device_budget - calls * query_image // devices) // per_image,
                            device_budget // (per_image + query_image)))
    host_room = min((host_budget - calls * query_image) // ((prefetch + 1) * image_bytes),
                    host_budget // ((prefetch + 1) * image_bytes + query_image))
    per_device = max(1, min(per_device, host_room // devices))
    if num_images is not None:
        per_device = max(1, min(per_device, -(-num_images // devices)))
    if batch is not None:
        per_device = -(-int(batch) // devices)
    else:
        batch = per_device * devices
    chunk = max(1, calls // (per_device * devices))
    chunk = min(chunk, n)
    device_bytes = per_device * per_image + per_device * chunk * query_image
    host_bytes = (prefetch + 1) * batch * image_bytes + batch * chunk * query_image
    if device_bytes > device_budget or host_bytes > host_budget:
        raise ValueError(
            f"memory budget too small: {per_device} image(s) of {height}x{width}x{channels} per device need "
            f"~{device_bytes / 2**20:.0f} MiB per device (budget {device_budget / 2**20:.0f} MiB) and "
            f"~{host_bytes / 2**20:.0f} MiB of host memory (budget {host_budget / 2**20:.0f} MiB); "
            "raise the budget, lower batch_size or Execution.queries_per_call, or use a smaller config")
    return Plan(batch, chunk, prefetch, devices, device_budget, host_budget, device_bytes, host_bytes)
