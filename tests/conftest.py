import os
import sys

import pytest

# Tests share 2 cores with ONNX Runtime; keep XLA from oversubscribing.
os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=true")
sys.path.insert(0, os.path.dirname(__file__))


@pytest.fixture(scope="session")
def chromium() -> str:
    """Path of headless Chromium for the reports' tests (tests/browser.py); skips without one."""
    from browser import find_chromium

    return find_chromium()
