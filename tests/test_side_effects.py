"""Importing daxjax changes nothing outside it: matplotlib's backend stays the caller's, pyplot is
not imported, and glibc's allocator is set only by a caller who asks (`keep_large_buffers_in_the_heap`)."""

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

_IMPORT_EVERYTHING = """
import sys
import matplotlib
matplotlib.use("svg")
import daxjax, daxjax.cli, daxjax.demo, daxjax.blackbox, blackbox_adapters
import daxjax.report.viz, daxjax.report.images, daxjax.audio.viz, daxjax.audio.report
import daxjax.glance, daxjax.glance.plots, daxjax.glance.surrogate
print(matplotlib.get_backend(), "matplotlib.pyplot" in sys.modules)
"""


def test_importing_the_package_keeps_the_callers_matplotlib_backend():
    done = subprocess.run([sys.executable, "-c", _IMPORT_EVERYTHING], capture_output=True, text=True, cwd=ROOT,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["svg", "False"]


def test_reports_are_drawn_without_pyplot(tmp_path):
    code = ("import sys, numpy as np\n"
            "from daxjax.report.viz import save_grid, save_panel, colour_bar_png\n"
            "from daxjax.audio.viz import spectrogram_png\n"
            "x = np.random.default_rng(0).random((2, 16, 16, 3), np.float32)\n"
            "m = x[..., 0]\n"
            f"save_grid({str(tmp_path / 'grid.png')!r}, x, {{'a': m}}, ['one', 'two'])\n"
            f"save_panel({str(tmp_path / 'panel.png')!r}, x[0], {{'a': m[0]}}, 'title')\n"
            "assert colour_bar_png().startswith(b'\\x89PNG')\n"
            "assert spectrogram_png(m[0], np.arange(16) * 0.1, m[0].mean(0)).startswith(b'\\x89PNG')\n"
            "print('matplotlib.pyplot' in sys.modules)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["False"]
    assert (tmp_path / "grid.png").read_bytes().startswith(b"\x89PNG")
    assert (tmp_path / "panel.png").read_bytes().startswith(b"\x89PNG")


def test_no_module_of_the_package_sets_process_wide_state():
    # keep_large_buffers_in_the_heap / mallopt: glibc's allocator; matplotlib.use: the backend.
    process_wide = {"keep_large_buffers_in_the_heap", "mallopt", "matplotlib.use"}
    callers = []
    for path in sorted((ROOT / "daxjax").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call):
                called = ast.unparse(node.func)
                if called in process_wide or called.rpartition(".")[2] in process_wide - {"matplotlib.use"}:
                    callers.append(f"{path.relative_to(ROOT)}:{node.lineno} {called}")
    # The one allowed call: mallopt inside keep_large_buffers_in_the_heap itself.
    assert [c for c in callers if not c.startswith("daxjax/glance/surrogate.py") or "mallopt" not in c] == []
    assert callers, "the reader found not even the mallopt call inside keep_large_buffers_in_the_heap"
