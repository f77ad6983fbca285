"""What the throughput benchmarks share: measurements in fresh processes, photos, the machine, output."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from typing import Callable

from benchmarks.results import write_section


def run_worker(part: str, spec: dict, env: dict | None = None, timeout: float | None = None,
               echo: bool = False) -> dict:
    """Runs `measure(spec)` of `benchmarks.throughput.<part>` in a fresh Python process.

    A fresh process per measurement gives each its own compile time and peak memory (max RSS);
    `env` adds environment variables (e.g. XLA_FLAGS for fake devices). echo: the worker's stderr
    (its progress) goes to ours as it comes instead of being kept for the error message.
    Returns the worker's dict.
    """
    command = [sys.executable, "-m", "benchmarks.throughput", "--worker", part, json.dumps(spec)]
    out = subprocess.run(command, stdout=subprocess.PIPE, stderr=None if echo else subprocess.PIPE, text=True,
                         check=False, timeout=timeout, env={**os.environ, **(env or {})})
    if out.returncode != 0:
        said = "its output above" if echo else out.stderr[-3000:]
        raise RuntimeError(f"{part} worker failed (exit {out.returncode}) for {spec}:\n{said}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def cpu_count() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def machine() -> str:
    """The machine in words, as a results table names it."""
    import jax

    device = jax.devices()[0]
    return (f"{device.platform.upper()} ({device.device_kind}; {cpu_count()} cores, "
            f"{platform.processor() or platform.machine()}), jax {jax.__version__}")


def photos(count: int):
    """`count` RGB photos 224 x 224, float32 [count, 224, 224, 3] in [0, 1]: scikit-image's
    bundled photos, then their mirror images, then those transposed (the 8 symmetries of the
    square: distinct inputs, so no explanation is reused)."""
    import numpy as np

    from daxjax.demo import BUNDLED_PHOTOS, load_photos

    base = load_photos(BUNDLED_PHOTOS)
    variants = [base, base[:, :, ::-1], base[:, ::-1], base[:, ::-1, ::-1]]
    variants += [v.transpose(0, 2, 1, 3) for v in variants]
    if count > len(base) * len(variants):
        raise ValueError(f"at most {len(base) * len(variants)} distinct photos, asked for {count}")
    return np.ascontiguousarray(np.concatenate(variants)[:count])


class Lines:
    """Collects the lines of a results section while printing them as they come."""

    def __init__(self):
        self.lines: list[str] = []
        self.keep = True  # a part sets False when its numbers must not go into RESULTS.md

    def __call__(self, line: str = "") -> None:
        print(line, flush=True)
        self.lines.append(line)

    def write(self, section: str, command: str, enabled: bool) -> None:
        """Writes the section to RESULTS.md headed by the command, date and machine."""
        if not (enabled and self.keep):
            return
        header = [section, "", f"Command: `{command}` — {machine()}, {time.strftime('%Y-%m-%d')}.", ""]
        write_section(section, "\n".join(header + self.lines) + "\n")


def timed(fn: Callable, *args, **kwargs) -> tuple[float, object]:
    """(wall seconds, result) of one call."""
    start = time.perf_counter()
    result = fn(*args, **kwargs)
    return time.perf_counter() - start, result
