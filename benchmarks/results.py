"""RESULTS.md is shared by the benchmarks: each owns one section and rewrites only that.

The file opens with an index of its sections grouped by the question a reader has (GROUPS), and
the sections follow that order; `write_section` keeps both (a section new to the file goes to its
place in GROUPS, one not listed there at the end). Sections move verbatim: a section is its
'## ' heading line up to the next '## ' heading, so a benchmark finds its own by its exact title.
"""

from __future__ import annotations

import re
from pathlib import Path

RESULTS = Path(__file__).with_name("RESULTS.md")

#: (question, section titles), most important first: the index and the order of the sections.
GROUPS = (
    ("Quality on real models", (
        "## Real models, real photos, exact ground truth (issue 18)",
        "## DAX on real models: where issue 18 stands",
        "## DAX on real models: why it failed and what each part is worth (issue 18)",
        "## Why DAX failed on real models: the student's fit and the mask in training (issue 18)",
        "## DAX's map: the mask and the segment effects combined (issue 18)",
        "## DAX's map: the mask and the segment effects combined, fills blur (issue 18)",
        "## Could DAX choose its fill per image? (issue 18)",
        "## DAX's fill chosen per image: fill=\"auto\" (issue 18)",
        "## DAX's map: the mask and the segment effects combined, models lite2 (issue 18)",
        "## Real photos, a real model: deletion and insertion (issues 3 and 5)",
    )),
    ("Quality on synthetic scenes and audio", (
        "## Explanation quality with exact ground truth (issue 3)",
        "## DAX's presets and ablation on the quality scenes (issue 3)",
        "## What deletion and insertion reward on the quality scenes (issue 3)",
        "## Audio: explaining a sound classifier in time (issue 6)",
        "## Audio: fills, keep probability and resolution (issue 6 ablation)",
    )),
    ("Amortised explainers", (
        "## Amortised DAX: quality against queries per explained image (issue 22)",
        "## Amortised DAX at scale: one fit, 1,000 and 10,000 images explained (issue 22)",
    )),
    ("Speed and throughput", (
        "## DAX throughput: loop vs batch (issue 2)",
        "## Floor ratio: datasets explained against the black box's own speed (issue 4)",
        "## DAX's cost against RISE's on real models (issue 18)",
        "## Against peers: the lime package and Captum on the same model (issue 4)",
        "## Scaling with devices (issue 4)",
        "## Host memory of explain_dataset against the dataset size (issue 4)",
        "## GPU throughput: black boxes fed on the device (issue 19)",
    )),
    ("GLANCE", (
        "## GLANCE-lite on MorphoSynth (issue 7)",
        "## GLANCE-lite on MorphoSynth: AE mode on GPU (issue 7)",
        "## GLANCE-lite on MorphoSynth: adversarial mode on GPU (issue 7)",
    )),
)
INDEX_START = "<!-- index: written by benchmarks/results.py (GROUPS), which also keeps the sections in this order -->"
INDEX_END = "<!-- /index -->"


def write_section(section: str, text: str, path: Path = RESULTS, arranged: bool | None = None) -> None:
    """Replaces the section headed `section` (up to the next '## ' heading) or adds it.

    arranged: keep the index and the order of GROUPS (None: for RESULTS.md itself, not for other files).
    """
    old = path.read_text() if path.exists() else "# Benchmark results\n"
    start = old.find(section)
    if start < 0:
        new = old.rstrip() + "\n\n" + text
    else:
        end = old.find("\n## ", start + len(section))
        rest = "\n" + old[end + 1:] if end >= 0 else ""  # a blank line before the next heading
        new = old[:start] + text.rstrip("\n") + "\n" + rest
    if arranged if arranged is not None else path.resolve() == RESULTS.resolve():
        new = arrange(new)
    path.write_text(new)


def write_subsection(section: str, subsection: str, text: str, preamble: str, order=None,
                     path: Path = RESULTS, arranged: bool | None = None) -> None:
    """Replaces the subsection headed `subsection` (a '### ' line, up to the next '### ' or '## '
    heading) inside the section headed `section`, or adds it; the other subsections stay as they are,
    so that a run of one model or budget rewrites its own table only.

    preamble: the section's heading line and its text before its first subsection, used when the
    section is new.
    order: title -> sort key (None: after the keyed ones, in their order) placing the subsections.
    arranged: as `write_section`'s.
    """
    _, sections = split_sections(path.read_text() if path.exists() else "")
    body = next((s for s in sections if title_of(s) == section), preamble)
    head, subsections = split_sections(body, heading="### ")
    if not subsections:
        head = head.rstrip("\n") + "\n\n"
    text = text.rstrip("\n") + "\n\n"
    titles = [title_of(s) for s in subsections]
    if subsection in titles:
        subsections[titles.index(subsection)] = text
    else:
        subsections.append(text)
    if order is not None:
        def rank(s):
            key = order(title_of(s))
            return (1, 0) if key is None else (0, key)
        subsections = sorted(subsections, key=rank)  # stable: unkeyed ones keep their order
    write_section(section, head + "".join(subsections), path, arranged)


def split_sections(text: str, heading: str = "## ") -> tuple[str, list[str]]:
    """(what precedes the first `heading` line, [each part from its heading line to the next]):
    the sections of RESULTS.md, or with heading="### " the subsections of one section."""
    starts = [m.start() for m in re.finditer("^" + re.escape(heading), text, flags=re.MULTILINE)]
    if not starts:
        return text, []
    bounds = starts + [len(text)]
    return text[:starts[0]], [text[a:b] for a, b in zip(bounds, bounds[1:])]


def title_of(section: str) -> str:
    return section.split("\n", 1)[0].rstrip()


def anchor(title: str) -> str:
    """The fragment GitHub gives a heading: lower case, punctuation dropped, spaces as hyphens."""
    words = re.sub(r"[^\w\- ]", "", title.removeprefix("## ").strip().lower())
    return "#" + words.replace(" ", "-")


def arrange(text: str) -> str:
    """`text` with its sections in GROUPS order (unlisted ones after, in their order) and the index
    at the top rewritten; each section's text is kept as it is, up to blank lines at its end."""
    head, sections = split_sections(text)
    order = [title for _, titles in GROUPS for title in titles]
    rank = {title: i for i, title in enumerate(order)}
    sections = sorted(sections, key=lambda s: rank.get(title_of(s), len(order)))  # stable
    present = {title_of(s) for s in sections}
    lines = [INDEX_START]
    for question, titles in GROUPS:
        listed = [t for t in titles if t in present]
        if listed:
            lines.append(f"- **{question}**")
            lines += [f"  - [{t.removeprefix('## ')}]({anchor(t)})" for t in listed]
    others = [title_of(s) for s in sections if title_of(s) not in rank]
    if others:
        lines.append("- **Other**")
        lines += [f"  - [{t.removeprefix('## ')}]({anchor(t)})" for t in others]
    lines.append(INDEX_END)
    if INDEX_START in head and INDEX_END in head:
        before, _, after = head.partition(INDEX_START)
        head = before + "\n".join(lines) + after.partition(INDEX_END)[2]
    else:
        head = head.rstrip("\n") + "\n\n" + "\n".join(lines) + "\n\n"
    return head + "\n".join(s.rstrip("\n") + "\n" for s in sections)


if __name__ == "__main__":
    # `python -m benchmarks.results`: rewrite RESULTS.md's index and put its sections in GROUPS order
    # (e.g. after a merge brought a section from elsewhere); no section's text changes.
    RESULTS.write_text(arrange(RESULTS.read_text()))
