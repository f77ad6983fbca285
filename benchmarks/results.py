"""RESULTS.md is shared by the benchmarks: each owns one section and rewrites only that."""

from __future__ import annotations

from pathlib import Path

RESULTS = Path(__file__).with_name("RESULTS.md")


def write_section(section: str, text: str, path: Path = RESULTS) -> None:
    """Replaces the section headed `section` (up to the next '## ' heading) or appends it."""
    old = path.read_text() if path.exists() else "# Benchmark results\n"
    start = old.find(section)
    if start < 0:
        path.write_text(old.rstrip() + "\n\n" + text)
        return
    end = old.find("\n## ", start + len(section))
    rest = "\n" + old[end + 1:] if end >= 0 else ""  # a blank line before the next heading
    path.write_text(old[:start] + text.rstrip("\n") + "\n" + rest)
