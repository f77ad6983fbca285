"""benchmarks/RESULTS.md: an index by question at the top, sections in that order, and
`write_section` keeping both while each benchmark rewrites only its own section."""

from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# `benchmarks` is not an installed package: import it from the repository root.
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.results import GROUPS, RESULTS, anchor, arrange, split_sections, title_of, write_section  # noqa: E402


def test_the_committed_file_is_arranged_and_every_index_link_finds_its_section():
    text = RESULTS.read_text()
    assert arrange(text) == text
    head, sections = split_sections(text)
    titles = [title_of(s) for s in sections]
    assert len(set(titles)) == len(titles)
    links = re.findall(r"\]\((#[^)]+)\)", head)
    assert sorted(links) == sorted(anchor(t) for t in titles)


def test_arrange_moves_sections_verbatim_and_write_section_keeps_the_order(tmp_path):
    first, second = GROUPS[0][1][0], GROUPS[-1][1][0]
    path = tmp_path / "RESULTS.md"
    path.write_text(f"# Benchmark results\n\nIntro.\n\n{second}\n\nglance text\n### a subheading\nmore\n\n"
                    "## Unlisted section\n\nkept last\n")
    write_section(first, f"{first}\n\nreal-model table\n", path, arranged=True)
    text = path.read_text()
    _, sections = split_sections(text)
    assert [title_of(s) for s in sections] == [first, second, "## Unlisted section"]
    assert sections[1] == f"{second}\n\nglance text\n### a subheading\nmore\n\n"
    assert text.startswith("# Benchmark results\n\nIntro.\n\n<!-- index")
    write_section(second, f"{second}\n\nnew glance text\n", path, arranged=True)
    text = path.read_text()
    assert [title_of(s) for s in split_sections(text)[1]] == [first, second, "## Unlisted section"]
    assert "new glance text" in text and "### a subheading" not in text and "real-model table" in text
    assert arrange(text) == text


def test_anchors_follow_githubs_rule():
    assert anchor("## DAX's presets and ablation (issue 3)") == "#daxs-presets-and-ablation-issue-3"
    assert anchor("## Host memory of explain_dataset: 2026-12-05") == "#host-memory-of-explain_dataset-2026-12-05"
