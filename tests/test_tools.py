"""The scripts that build the bundled models live in tools/, outside the installed package."""

from __future__ import annotations

import ast
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# `tools` is not an installed package: import it from the repository root.
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

ENTRY_POINTS = {"daxjax/cli.py", "daxjax/demo.py"}  # `daxjax ...` and `python -m daxjax.demo`


def _runs_as_script(path: Path) -> bool:
    tree = ast.parse(path.read_text(), str(path))
    return any(isinstance(node, ast.If) and "__main__" in ast.unparse(node.test) for node in tree.body)


def test_the_installed_packages_hold_no_build_scripts():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    installed = config["tool"]["setuptools"]["packages"]["find"]["include"]
    assert not any(pattern.startswith("tools") for pattern in installed)
    scripts = {path.relative_to(ROOT).as_posix() for package in ("daxjax", "blackbox_adapters")
               for path in (ROOT / package).rglob("*.py") if _runs_as_script(path) or path.name == "__main__.py"}
    assert scripts == ENTRY_POINTS


def test_make_colour_models_rebuilds_the_bundled_files_byte_for_byte():
    pytest.importorskip("onnx")
    from tools.make_colour_models import MODELS_DIR, bundled_models

    for name, model in bundled_models().items():
        assert model.SerializeToString(deterministic=True) == (MODELS_DIR / name).read_bytes(), name
