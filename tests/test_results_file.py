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

from benchmarks.results import (GROUPS, RESULTS, anchor, arrange, split_sections, title_of,  # noqa: E402
                               write_section, write_subsection)


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


def test_write_subsection_rewrites_one_table_and_keeps_the_others_in_their_order(tmp_path):
    section, after = GROUPS[0][1][0], GROUPS[0][1][1]
    path = tmp_path / "RESULTS.md"
    path.write_text(f"# Benchmark results\n\n{after}\n\nnext section\n")

    def order(title):
        return int(title.split()[-1]) if title.startswith("### N = ") else None

    def write(title, text):
        write_subsection(section, title, f"{title}\n\n{text}\n", f"{section}\n\nColumns.\n", order, path,
                         arranged=True)

    write("### N = 3000", "big table")                  # the section is new: made with its preamble
    write("### Notes", "how the rows were run")         # unkeyed: after the keyed ones
    write("### N = 1000", "small table")                # keyed: before N = 3000, though written last
    write("### N = 3000", "big table, more cases")      # rewritten where it stands
    _, sections = split_sections(path.read_text())
    assert [title_of(s) for s in sections] == [section, after]
    assert sections[0] == (f"{section}\n\nColumns.\n\n### N = 1000\n\nsmall table\n\n### N = 3000\n\n"
                           "big table, more cases\n\n### Notes\n\nhow the rows were run\n\n")
    assert sections[1] == f"{after}\n\nnext section\n"


def test_anchors_follow_githubs_rule():
    assert anchor("## DAX's presets and ablation (issue 3)") == "#daxs-presets-and-ablation-issue-3"
    assert anchor("## Host memory of explain_dataset: 2026-12-05") == "#host-memory-of-explain_dataset-2026-12-05"
