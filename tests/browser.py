"""Headless Chromium for the HTML reports' tests: open a page, read what its loaded-check says, screenshot it.

The `chromium` fixture (tests/conftest.py) finds the browser; CI installs Debian's (.ci/run).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pytest
from skimage import io

# Headless Chromium that touches nothing outside the test (no network, no profile reuse).
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--hide-scrollbars", "--virtual-time-budget=10000")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def find_chromium() -> str:
    """The path of a Chromium binary; skips the test without one (fails it in CI, which installs one)."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    if os.environ.get("CI") == "true":
        pytest.fail("CI=true but no chromium on PATH: .ci/run installs Debian's chromium")
    pytest.skip("headless Chromium not installed (apt-get install chromium); CI runs this test")


def run_chromium(binary: str, url: str, *args: str) -> subprocess.CompletedProcess:
    """Runs headless Chromium on `url` with extra flags `args` (e.g. --dump-dom) in a fresh profile."""
    with tempfile.TemporaryDirectory() as profile:
        return subprocess.run([binary, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args, url],
                              capture_output=True, text=True, timeout=120, check=True)


def body_data(dom: str) -> dict[str, str]:
    """The data-* attributes of the page's <body> after load: what the report's loaded-check wrote."""
    body = re.search(r"<body([^>]*)>", dom).group(1)
    return dict(re.findall(r'data-([\w-]+)="([^"]*)"', body))


def loaded_pictures(binary: str, page: Path) -> dict[str, str]:
    """body_data of the page as Chromium left it once loaded (images-loaded, -total, -broken)."""
    return body_data(run_chromium(binary, page.as_uri(), "--dump-dom").stdout)


def screenshot(binary: str, page: Path, path: Path, window: tuple[int, int]) -> np.ndarray:
    """Screenshots the page at window = (width, height) into `path`; its RGB pixels [height, width, 3],
    after checking that it is a PNG of that size with pictures on it (not blank, many colours)."""
    run_chromium(binary, page.as_uri(), f"--screenshot={path}", f"--window-size={window[0]},{window[1]}")
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    pixels = io.imread(path)[..., :3]
    assert pixels.shape[:2] == (window[1], window[0])
    background = pixels[0, 0]
    assert (np.abs(pixels.astype(int) - background).sum(axis=-1) > 30).mean() > 0.1, "mostly blank"
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 2000, "no pictures on the screenshot"
    return pixels
