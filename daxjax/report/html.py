"""The report's page kit: pictures, checks, card headings and captions, the metrics table and chart,
the configuration and timings sections, paging and writing (`render_pages`, `write_pages`).

Shared by the image report (`daxjax.report.images`) and the audio report (`daxjax.audio.report`),
which lay out their own cards.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime
import html
import re
import shutil
from importlib import metadata
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from daxjax._checks import positive_int
from daxjax.inputs import InputError
from daxjax.methods.dax.engine import FIT_FLOOR
from daxjax.perturbation.fills import AUTO_FILLS
from daxjax.report import viz


REPORT_NAME = "report.html"


FILES_DIR = "report_files"


# Further pages are "report-page2.html", ...; stale ones from an earlier, longer report are removed.
_PAGE_PATTERN = re.compile(r"report-page\d+\.html")


#: `value` as an int, or a ValueError naming the argument `name` when it is not a positive integer.
positive = positive_int


def check_explanations(explanations, kind: type, maps_shape: tuple[int, ...], axes: str, noun: str,
                       reserved: Sequence[str]) -> dict:
    """The explanations as a dict, after checking each against the explained inputs.

    explanations: display name -> an explanation of type `kind` with .maps, .targets, .scores.
    maps_shape: the shape every .maps must have (B first), named `axes` in errors (e.g. "[B, H, W]");
      .targets and .scores must have shape (B,). noun: what the B inputs are ("image", "clip").
    reserved: names of the report's reference rows, which no explanation may take.
    """
    if not isinstance(explanations, Mapping) or not explanations:
        raise InputError(f"explanations must be a non-empty mapping of display name -> {kind.__name__}; "
                         f"got {type(explanations).__name__}")
    for name, ex in explanations.items():
        if not isinstance(ex, kind):
            raise InputError(f"explanations[{name!r}] must be a daxjax.{kind.__name__}; got {type(ex).__name__}")
        if np.shape(ex.maps) != maps_shape:
            raise InputError(f"explanations[{name!r}].maps has shape {np.shape(ex.maps)}; the {noun}s "
                             f"need {maps_shape} ({axes})")
        for field in ("targets", "scores"):
            if np.shape(getattr(ex, field)) != maps_shape[:1]:
                raise InputError(f"explanations[{name!r}].{field} has shape {np.shape(getattr(ex, field))}; "
                                 f"expected ({maps_shape[0]},), one per {noun}")
    for name in reserved:
        if name in explanations:
            raise InputError(f"explanations may not be named {name!r}: that is a reference row of the report")
    return dict(explanations)


def check_ids(ids, batch: int, noun: str = "image") -> list[str]:
    """The B ids as strings; an InputError when there are not `batch` of them."""
    ids = [str(i) for i in ids]
    if len(ids) != batch:
        raise InputError(f"ids has {len(ids)} entries for {batch} {noun}s")
    return ids


def label_function(class_names, explanations: Mapping):
    """index -> display label; checks that class_names covers every target of the explanations."""
    if class_names is None:
        return lambda target: f"class {int(target)}"
    names = [str(n) for n in class_names]
    for method, ex in explanations.items():
        too_big = np.flatnonzero((np.asarray(ex.targets) >= len(names)) | (np.asarray(ex.targets) < 0))
        if too_big.size:
            i = int(too_big[0])
            raise InputError(f"explanations[{method!r}].targets[{i}] = {int(ex.targets[i])} has no name: "
                             f"class_names has {len(names)} entries")
    return lambda target: names[int(target)]


class Pictures:
    """Collects the report's PNGs; `add` returns the `src` that a page uses for one."""

    def __init__(self, embed: bool):
        self.embed = embed
        self.files: dict[str, bytes] = {}

    def add(self, name: str, png: bytes) -> str:
        if self.embed:
            return "data:image/png;base64," + base64.b64encode(png).decode("ascii")
        self.files[name] = png
        return f"{FILES_DIR}/{name}"


def card_header(i: int, item_id: str, explanations: Mapping, labels) -> tuple[str, bool]:
    """(the card's heading, whether all methods explain one target).

    The heading numbers input i and names it; when every method explains the same class, the
    label and the black box's probability go there once, else each method's caption says its own.
    """
    targets = [int(ex.targets[i]) for ex in explanations.values()]
    same_target = len(set(targets)) == 1
    header = f'<span class="num">#{i}</span> <span class="id">{escape(item_id)}</span>'
    if same_target:
        first = next(iter(explanations.values()))
        header += (f' <span class="label">{escape(labels(targets[0]))}</span>'
                   f' <span class="score">p = {float(first.scores[i]):.3f}</span>')
    return header, same_target


def method_caption(i: int, name: str, ex, same_target: bool, labels, table, short: Mapping[str, str]) -> str:
    """HTML caption of method `name`'s picture of input i: its name, its target when the methods
    differ, and its metric values on this input (table row -> metric -> [B]; `short` names them)."""
    caption = f"<b>{escape(name)}</b>"
    if not same_target:
        caption += f" · {escape(labels(ex.targets[i]))} p = {float(ex.scores[i]):.3f}"
    values = [f"{short[metric]} {v[i]:.2f}" for metric, v in table.get(name, {}).items()]
    if values:
        caption += f'<br><span class="values">{escape(" · ".join(values))}</span>'
    return caption + trust_note(getattr(ex, "diagnostics", {}), i)


def trust_note(diagnostics: Mapping[str, np.ndarray], i: int) -> str:
    """HTML: how far input i's map can be trusted, from the explainer's diagnostics ("" if none).

    A map whose black box's answer did not change under perturbation (`informative` False, every
    query-only method; `methods.base.ANSWER_DIAGNOSTICS`) is marked "uninformative" and nothing
    else is said of it. Otherwise, for DAX, shows the student's held-out fit beside a linear
    surrogate's, and flags a map the explainer does not vouch for (a fit below the floor, or a dead
    or flat mask) in words, never silently.
    """
    if "informative" in diagnostics and not bool(diagnostics["informative"][i]):
        spread = float(diagnostics["answer_spread"][i]) if "answer_spread" in diagnostics else float("nan")
        reason = f"the black box's answer did not change under perturbation (spread {spread:.2g})"
        return f'<br><span class="untrusted">uninformative: {escape(reason)}</span>'
    if "trusted" not in diagnostics:
        return ""
    fit, surrogate = float(diagnostics["heldout_fit"][i]), float(diagnostics["surrogate_fit"][i])
    text = f"held-out fit {fit:.2f} (linear {surrogate:.2f})"
    choice = float(diagnostics["fill_choice"][i]) if "fill_choice" in diagnostics else float("nan")
    if not np.isnan(choice):  # fill="auto" chose this image's fill
        text += f", fill {AUTO_FILLS[int(choice)].replace('_', ' ')}"
    if bool(diagnostics["trusted"][i]):
        return f'<br><span class="values">{escape(text)}</span>'
    if fit < FIT_FLOOR:
        reason = f"the student predicts little of the black box's answers ({text})"
    else:
        reason = (f"the mask is dead or flat (area {float(diagnostics['mask_area'][i]):.2f}, "
                  f"contrast {float(diagnostics['mask_contrast'][i]):.2f})")
    return f'<br><span class="untrusted">untrusted: {escape(reason)}</span>'


def figure_html(src: str, alt: str, caption: str, width: int, raw_caption: bool = False) -> str:
    """A picture with its caption; `width` is the picture's own width in pixels."""
    # Small images are enlarged with visible pixels rather than blurred.
    pixelated = ' class="pixelated"' if width < 160 else ""
    text = caption if raw_caption else escape(caption)
    return (f'<figure><img src="{escape(src)}" alt="{escape(alt)}"{pixelated}>'
            f"<figcaption>{text}</figcaption></figure>")


def capped_note(shown: int, batch: int, noun: str, option: str) -> str:
    """The note that pictures cover only the first `shown` of `batch` inputs (capped by `option`); "" if all."""
    if shown == batch:
        return ""
    return (f'<p class="note">Pictures are drawn for the first {shown} of {batch} {noun}s '
            f"({option}={shown}); the metrics and timings cover all {batch}.</p>")


def metrics_section(table, better: Mapping[str, str], references: Sequence[str], note: str,
                    chart: str | None) -> str:
    """The metrics table: a row per method and reference, mean ± std of each metric present.

    table: row name -> metric name -> per-input values [B]; better: metric name -> "higher" |
    "lower", in column order; references: rows that are reference maps (greyed, never marked
    best); note: the text under the table; chart: `src` of the chart picture, or None.
    """
    metric_names = present_metrics(table, better)
    methods = [row for row in table if row not in references]
    best = {m: (max if better[m] == "higher" else min)(methods, key=lambda r: table[r][m].mean())
            for m in metric_names}
    head = "".join(f"<th>{escape(m)} <small>({escape(better[m])} is better)</small></th>" for m in metric_names)
    body = []
    for row, values in table.items():
        reference = row not in methods
        cells = []
        for m in metric_names:
            v = values[m]
            mark = ' class="best"' if not reference and best[m] == row and len(methods) > 1 else ""
            cells.append(f"<td{mark}>{v.mean():.3f} <small>± {v.std():.3f}</small></td>")
        body.append(f'<tr{" class=reference" if reference else ""}><th>{escape(row)}</th>{"".join(cells)}</tr>')
    chart_html = f'<img class="chart" src="{escape(chart)}" alt="metrics chart">' if chart else ""
    return (f'<section><h2>Metrics</h2><table class="metrics"><thead><tr><th></th>{head}</tr></thead>'
            f'<tbody>{"".join(body)}</tbody></table><p class="note">{escape(note)}</p>'
            f"{chart_html}</section>")


def metrics_chart(pictures: Pictures, table, better: Mapping[str, str], references: Sequence[str]) -> str | None:
    """`src` of the chart of the metrics table (`viz.metrics_chart_png`), None for an empty table."""
    if not table:
        return None
    return pictures.add("metrics.png", viz.metrics_chart_png(table, present_metrics(table, better), references))


def present_metrics(table, better: Mapping[str, str]) -> dict[str, str]:
    """The entries of `better` (metric -> direction) for the metrics the table has, in `better`'s order."""
    present = {m for values in table.values() for m in values}
    return {m: direction for m, direction in better.items() if m in present}


def config_section(explanations: Mapping, config) -> str:
    """The configuration: the run's own settings (`config`, when given), then each method's config."""
    blocks = []
    if config is not None:
        blocks.append(_settings_block("run", config, open_=True))
    for name, ex in explanations.items():
        blocks.append(_settings_block(f"{name} — method {ex.method!r}", ex.config))
    return f'<section><h2>Configuration</h2>{"".join(blocks)}</section>'


def _settings_block(heading: str, settings, open_: bool = False) -> str:
    """A collapsible table of settings; the summary line lists those that differ from the defaults."""
    if dataclasses.is_dataclass(settings) and not isinstance(settings, type):
        items = {f.name: getattr(settings, f.name) for f in dataclasses.fields(settings)}
        defaults = _defaults(type(settings))
        kind = type(settings).__name__
    elif isinstance(settings, Mapping):
        # Free-form run settings read as prose: strings without quotes.
        items, defaults, kind = {n: _Text(v) if isinstance(v, str) else v for n, v in settings.items()}, {}, ""
    else:
        items, defaults, kind = {"value": settings}, {}, type(settings).__name__
    # Compared as text: values may be arrays or nested containers, for which == is not a bool.
    changed = [n for n in items if n in defaults and repr(defaults[n]) != repr(items[n])]
    summary = (", ".join(f"{n}={items[n]!r}" for n in changed) + " (others default)" if changed
               else ("all defaults" if defaults else f"{len(items)} setting(s)"))
    kind = f" ({kind})" if kind else ""
    rows = "".join(f'<tr{" class=changed" if n in changed else ""}><th>{escape(n)}</th><td>{escape(repr(v))}</td>'
                   f'<td>{escape(repr(defaults[n])) if n in defaults else ""}</td></tr>' for n, v in items.items())
    head = "<tr><th>field</th><th>value</th><th>default</th></tr>" if defaults else ""
    return (f"<details{' open' if open_ else ''}><summary><b>{escape(heading)}</b>{escape(kind)}: "
            f"{escape(summary)}</summary>"
            f'<table class="settings">{head}{rows}</table></details>')


class _Text(str):
    """A string that shows without quotes in a settings table."""

    def __repr__(self) -> str:
        return str(self)


def _defaults(config_type) -> dict[str, Any]:
    """Field defaults of a config dataclass (empty when it cannot be built without arguments)."""
    try:
        default = config_type()
    except TypeError:
        return {}
    return {f.name: getattr(default, f.name) for f in dataclasses.fields(default)}


def timings_section(explanations: Mapping, batch: int, noun: str = "image") -> str:
    """Seconds per phase of each method (`.timings`), its total and the total per input; "" if untimed."""
    if not any(ex.timings for ex in explanations.values()):
        return ""  # nothing was timed: no empty table
    phases = []
    for ex in explanations.values():
        phases += [p for p in ex.timings if p not in phases and p != "total"]
    head = "".join(f"<th>{escape(p)}</th>" for p in phases)
    rows = []
    for name, ex in explanations.items():
        cells = "".join(f"<td>{ex.timings[p]:.2f}</td>" if p in ex.timings else "<td>–</td>" for p in phases)
        # explain() measures its wall-clock total; a store records phases only, which then add up.
        total = ex.timings.get("total", sum(ex.timings.values()))
        total_cells = f"<td>{total:.2f}</td><td>{total / batch:.3f}</td>" if ex.timings else "<td>–</td>" * 2
        rows.append(f"<tr><th>{escape(name)}</th>{cells}{total_cells}</tr>")
    return (f'<section><h2>Timings <small>(seconds; one-off compilation included)</small></h2>'
            f'<table class="timings"><thead><tr><th></th>{head}<th>total</th><th>per {noun}</th></tr></thead>'
            f'<tbody>{"".join(rows)}</tbody></table></section>')


def render_pages(title: str, cards: Sequence[str], per_page: int, batch: int, noun: str, card_note: str,
                 legend: str, first_page: tuple[str, str]) -> list[str]:
    """The HTML of each page: `per_page` cards a page, with links between the pages.

    batch: how many inputs (`noun`s: "image", "clip") were explained, of which the cards show the
    first; card_note: the header's sentence on what a card shows; legend: `src` of the colour bar;
    first_page: (sections above, sections below) the cards, on the first page only.
    """
    shown = len(cards)
    pages = [cards[lo:lo + per_page] for lo in range(0, shown, per_page)]
    return [_page(title, number, len(pages), shown, batch, per_page, legend, page_cards,
                  first_page if number == 1 else ("", ""), noun, card_note)
            for number, page_cards in enumerate(pages, 1)]


def _page(title, number, num_pages, shown, batch, per_page, legend, cards, extra: tuple[str, str],
          noun: str, card_note: str) -> str:
    """One HTML page; `extra` = (sections above, sections below) the pictures."""
    lo = (number - 1) * per_page + 1
    hi = min(shown, number * per_page)
    top, bottom = extra
    links = " ".join(f'<a href="{_page_name(n)}"{" aria-current=page" if n == number else ""}>{n}</a>'
                     for n in range(1, num_pages + 1))
    nav = f'<nav>Pages: {links}</nav>' if num_pages > 1 else ""
    generated = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{escape(title)}{f" — page {number}" if num_pages > 1 else ""}</title>
<style>{_CSS}</style></head>
<body data-images-loaded="pending">
<header><h1>{escape(title)}</h1>
<p>{batch} {noun}(s) explained{f"; pictures of {noun}s {lo}–{hi} of {shown} shown on this page" if shown else ""}.
{card_note}</p>
<p class="legend"><img src="{escape(legend)}" alt="colour scale of the maps"></p>{nav}</header>
<p id="missing" class="errors" hidden></p>
{top}
<section><h2>{noun.capitalize()}s</h2><div class="cards">{"".join(cards)}</div></section>
{nav}
{bottom}
<footer>daxjax {escape(_version())} · generated {generated}</footer>
<script>{_SCRIPT}</script>
</body></html>
"""


def _page_name(number: int) -> str:
    return REPORT_NAME if number == 1 else f"report-page{number}.html"


def write_pages(out_dir: Path, pages_html: list[str], pictures: Pictures) -> Path:
    """Writes the pages and the pictures' files into out_dir, replacing only the report's own names."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for stale in out_dir.iterdir():
        if _PAGE_PATTERN.fullmatch(stale.name):
            stale.unlink()
    files_dir = out_dir / FILES_DIR
    if files_dir.exists():
        shutil.rmtree(files_dir)
    if pictures.files:
        files_dir.mkdir()
        for name, png in pictures.files.items():
            (files_dir / name).write_bytes(png)
    for number, page in enumerate(pages_html, 1):
        (out_dir / _page_name(number)).write_text(page, encoding="utf-8")
    return out_dir / REPORT_NAME


def _version() -> str:
    try:
        return metadata.version("daxjax")
    except metadata.PackageNotFoundError:
        return "(not installed)"


def escape(text: Any) -> str:
    """`text` as HTML text or attribute value."""
    return html.escape(str(text), quote=True)


# Marks <body data-images-loaded="true"|"false"> once the page has loaded, and tells the reader
# when pictures are missing (e.g. report.html copied without report_files/).
_SCRIPT = """
addEventListener("load", () => {
  const images = Array.from(document.images);
  const broken = images.filter((img) => !(img.complete && img.naturalWidth > 0));
  document.body.dataset.imagesTotal = String(images.length);
  document.body.dataset.imagesBroken = String(broken.length);
  document.body.dataset.imagesLoaded = broken.length ? "false" : "true";
  if (broken.length) {
    const note = document.getElementById("missing");
    note.textContent = broken.length + " of " + images.length +
      " pictures did not load: keep the report_files folder next to this page.";
    note.hidden = false;
  }
});
"""


_CSS = """
:root { --tile: 176px; --fg: #1d2330; --muted: #5b6475; --bg: #f4f5f7; --card: #fff; --line: #dde1e7;
        --accent: #3b6fb6; }
* { box-sizing: border-box; }
body { margin: 0; padding: 20px 28px; background: var(--bg); color: var(--fg);
       font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; }
h1 { margin: 0 0 4px; font-size: 22px; } h2 { font-size: 17px; margin: 22px 0 8px; }
h3 { font-size: 14px; font-weight: 600; margin: 0 0 8px; }
small, .note, footer { color: var(--muted); } .note { font-size: 13px; max-width: 70em; }
.legend img { width: 306px; height: auto; }
nav { margin: 8px 0; } nav a { margin-right: 6px; padding: 2px 8px; border: 1px solid var(--line);
      border-radius: 4px; text-decoration: none; color: var(--accent); background: var(--card); }
nav a[aria-current] { background: var(--accent); color: #fff; }
.cards { display: flex; flex-wrap: wrap; gap: 14px; }
.card { background: var(--card); border: 1px solid var(--line); border-radius: 8px; padding: 10px 12px;
        box-shadow: 0 1px 2px rgba(0,0,0,.05); }
.card .num { color: var(--muted); font-weight: 400; }
.card .id { font-family: ui-monospace, "DejaVu Sans Mono", monospace; font-weight: 400; }
.card .label { margin-left: 6px; padding: 1px 7px; border-radius: 10px; background: #e7eefa; color: #1f4b8f; }
.card .score { color: var(--muted); font-weight: 400; }
.grid { display: grid; grid-template-columns: repeat(var(--cols), var(--tile)); gap: 8px 8px; }
figure { margin: 0; } .blank { width: var(--tile); }
figure img { width: var(--tile); height: auto; display: block; border-radius: 3px; background: #000; }
img.pixelated { image-rendering: pixelated; }
figcaption { font-size: 12px; line-height: 1.3; margin-top: 3px; overflow-wrap: anywhere; }
figcaption .values { color: var(--muted); }
figcaption .untrusted { color: #b00020; font-weight: 600; }
table { border-collapse: collapse; background: var(--card); font-size: 13px; }
th, td { border: 1px solid var(--line); padding: 4px 10px; text-align: left; vertical-align: top; }
thead th { background: #eef1f5; } td { font-variant-numeric: tabular-nums; }
td.best { font-weight: 700; background: #e8f4ea; }
tr.reference th, tr.reference td { color: var(--muted); font-style: italic; }
tr.changed th, tr.changed td { font-weight: 700; }
details { margin: 4px 0; background: var(--card); border: 1px solid var(--line); border-radius: 6px;
          padding: 6px 10px; } details table { margin: 8px 0 4px; }
summary { cursor: pointer; overflow-wrap: anywhere; }
.chart { display: block; margin-top: 10px; max-width: 100%; }
.errors { background: #fdecea; border: 1px solid #f5c2bd; border-radius: 6px; padding: 8px 14px; }
.errors h2 { margin-top: 4px; }
footer { margin-top: 28px; font-size: 12px; }
"""
