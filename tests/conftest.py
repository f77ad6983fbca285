import atexit
import os
import shutil
import sys
import tempfile

import pytest

# Tests share 2 cores with ONNX Runtime; keep XLA from oversubscribing.
os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=true")
sys.path.insert(0, os.path.dirname(__file__))

# Most of the suite's time is XLA compiling the same small programs again: in test after test and
# in the subprocesses of the pipeline's tests (a killed run, its resume, four devices). One
# compilation cache for the session, inherited by those subprocesses through the environment, compiles
# each program once; it changes no result (a cached executable is the one compiled). Set before
# jax is imported; removed when the session ends.
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    _cache = tempfile.mkdtemp(prefix="daxjax-tests-xla-")
    atexit.register(shutil.rmtree, _cache, ignore_errors=True)
    os.environ["JAX_COMPILATION_CACHE_DIR"] = _cache
    os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0.2"


@pytest.fixture(scope="session")
def chromium() -> str:
    """Path of headless Chromium for the reports' tests (tests/browser.py); skips without one."""
    from browser import find_chromium

    return find_chromium()
