"""The report: a static HTML page of explanations to look at and to share (offline, no scripts fetched).

    import daxjax
    path = daxjax.write_report("out", images, {"DAX": ex_dax, "RISE": ex_rise},
                               class_names=names, masks=masks, bb=bb)   # -> out/report.html

What `out_dir` receives:
    report.html            summary, metrics table and chart, the first page of pictures, the run
                           configuration and timings
    report-page2.html ...  further pages of pictures, `per_page` images each
    report_files/          the pictures as PNG files (none with `embed=True`)

`write_store_report(store, source)` does the same for a results store of `daxjax.explain_dataset`.

Per image, a card: the input (and the ground truth, when masks are given) beside, per method, the
map as a heat-map overlay above its region (map > mean + k·std, the threshold of
`daxjax.metrics.iou`), with the explained label and the black box's probability of it.

Pictures are PNG files next to the page by default, not data URIs: a page that embeds hundreds of
pictures becomes a multi-megabyte file that browsers parse slowly, while separate files keep each
page small and are reusable on their own. Zip the folder to share it, or pass `embed=True` for a
single self-contained file (sensible for a few dozen images).

The page machinery here (pictures, checks, card heading and captions, metrics table and chart,
configuration, timings, paging, writing) is shared with `daxjax.audio.report`, which lays out
its own cards for sound clips.
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

from daxjax import metrics, viz
from daxjax.dax import FIT_FLOOR
from daxjax.explain import Explanation
from daxjax.inputs import InputError, as_float_images

REPORT_NAME = "report.html"
FILES_DIR = "report_files"
# Further pages are "report-page2.html", ...; stale ones from an earlier, longer report are removed.
_PAGE_PATTERN = re.compile(r"report-page\d+\.html")
# Reference rows of the metrics table (DESIGN.md: always report them beside the explainers).
RANDOM_MAP = "random map"
CENTRED_GAUSSIAN = "centred Gaussian"
REFERENCE_ROWS = (RANDOM_MAP, CENTRED_GAUSSIAN)
# metric name -> which direction is better.
BETTER = {"IoU": "higher", "deletion AUC": "lower", "insertion AUC": "higher"}
_SHORT = {"IoU": "IoU", "deletion AUC": "del", "insertion AUC": "ins"}  # in picture captions


def write_report(out_dir, images, explanations: Mapping[str, Explanation], *, class_names=None,
                 masks=None, bb=None, ids: Sequence | None = None, errors: Mapping | None = None,
                 title: str = "daxjax report", config: Any = None, k: float = 1.0,
                 max_images: int = 200, per_page: int = 50, embed: bool = False,
                 auc_steps: int = metrics.DEFAULT_STEPS, total_images: int | None = None) -> Path:
    """Writes the report of explanations of the same B images by one or more methods.

    Args:
      out_dir: folder to write into (created when missing). Only the report's own names there are
        replaced: report.html, report-page*.html and report_files/.
      images: float32 [B, H, W, C] in [0, 1] or uint8 [B, H, W, C], C in {1, 3}: the explained images.
      explanations: display name -> `Explanation` of these images (maps [B, H, W]), in column order.
      class_names: names of the black box's classes (index -> name); None shows "class <index>".
      masks: bool or 0/1 [B, H, W] ground truth; when given, the IoU of each map is reported.
      bb: the black box; when given, deletion and insertion AUC are reported (2 · (auc_steps + 1)
        queries per image and row, rows = methods + two reference maps).
      ids: B names of the images (e.g. file names or a store's ids); None numbers them from 0.
      errors: image id -> reason, for images that could not be explained: listed, never dropped.
      title: the page's title.
      config: the run's own settings (a dataclass or a mapping), shown above each method's config.
      k: regions and IoU threshold each map at mean + k·std (as `daxjax.metrics.iou`).
      max_images: pictures are drawn for the first max_images images only (the page says so);
        metrics and timings always cover all B.
      per_page: images per HTML page.
      embed: pictures as data URIs inside the pages instead of files in report_files/.
      auc_steps: steps of the deletion/insertion curves (`daxjax.metrics.deletion_auc`).
      total_images: how many images the run explained in all, when `images` are only the first
        of them (e.g. a store's report); the page says what it covers.

    Returns:
      The path of report.html.

    Raises:
      InputError / ValueError naming the offending argument: bad images, no explanations, maps,
      targets, masks or ids that do not match the images, class names that do not cover a target.
    """
    x = as_float_images(images)
    batch = x.shape[0]
    explanations = check_explanations(explanations, Explanation, x.shape[:3], "[B, H, W]", "image",
                                      REFERENCE_ROWS)
    masks = None if masks is None else _check_masks(masks, x.shape[:3])
    ids = [str(i) for i in range(batch)] if ids is None else check_ids(ids, batch)
    labels = label_function(class_names, explanations)
    max_images, per_page = positive("max_images", max_images), positive("per_page", per_page)
    if total_images is not None and positive("total_images", total_images) < batch:
        raise ValueError(f"total_images={total_images} is fewer than the {batch} images given")

    table = compute_metrics(x, explanations, masks=masks, bb=bb, k=k, auc_steps=auc_steps)
    pictures = Pictures(embed)
    legend = pictures.add("colour_bar.png", viz.colour_bar_png())
    chart = metrics_chart(pictures, table, BETTER, REFERENCE_ROWS)
    shown = min(batch, max_images)
    regions = {name: metrics.binarize(ex.maps[:shown], k=k) for name, ex in explanations.items()}
    cards = [_card(i, ids[i], x[i], explanations, regions, None if masks is None else masks[i], table,
                   labels, pictures, k) for i in range(shown)]
    first_page = _first_page_sections(batch, shown, max_images, total_images, explanations, table, chart,
                                      errors, config, masks is not None, bb is not None, k, auc_steps)
    card_note = (f"Each card: the input{', the ground truth' if masks is not None else ''} and, per method, "
                 "the map as a heat-map\noverlay (above) and its region (below).")
    pages_html = render_pages(title, cards, per_page, batch, "image", card_note, legend, first_page)
    return write_pages(Path(out_dir), pages_html, pictures)


def write_store_report(store, source, out_dir=None, *, masks=None, max_images: int = 200,
                       title: str | None = None, **options) -> Path:
    """The report of a results store written by `daxjax.explain_dataset`.

    A store keeps maps, not pictures, so the images are read again from `source`. The report
    covers the first `max_images` explained images in input order (pictures, metrics, timings);
    the store's errors are all listed.

    Args:
      store: the store directory.
      source: what the store was made from (directory, glob pattern, .npz file, array: as given to
        `explain_dataset`); images are matched by id and resized to the store's size.
      out_dir: where report.html goes; None: the store directory.
      masks: ground truth [n, H, W] for the source's images in input order (any n that covers them).
      max_images, title, options: as `write_report` (class_names, bb, per_page, embed, ...).

    Raises:
      InputError: the store has no explained image, or `source` lacks some of its ids.
    """
    from daxjax.sources import open_source, read_image
    from daxjax.store import ResultStore, load_results

    results = load_results(store)
    if not results.ids:
        raise InputError(f"store {store} has no explained images ({len(results.errors)} error(s)); "
                         "nothing to draw")
    count = min(len(results.ids), positive("max_images", max_images))
    wanted = results.ids[:count]
    items = _items_by_id(open_source(source), set(wanted))
    missing = [image_id for image_id in wanted if image_id not in items]
    if missing:
        raise InputError(f"source {source!r} has no image(s) {missing[:5]} of store {store}: "
                         "give the source the store was made from")
    meta = ResultStore.open(store).meta
    images = np.stack([read_image(items[i].raw, tuple(meta["size"]), meta["channels"]) for i in wanted])
    if masks is not None:
        masks = np.asarray(masks)[[items[i].position for i in wanted]]
    per_image = np.asarray(results.timings[:count], np.float64)
    timings = {f"{field} (sum)": float(total) for field, total in zip(results.timing_fields, per_image.sum(axis=0))}
    explanation = Explanation(results.maps[:count], results.targets[:count], results.scores[:count],
                              results.method, results.config, timings,
                              {name: values[:count] for name, values in results.diagnostics.items()})
    run = {"store": str(Path(store).resolve()), "source": str(source) if isinstance(source, (str, Path)) else
           type(source).__name__, "seed": results.seed, "complete": results.complete}
    return write_report(Path(store) if out_dir is None else out_dir, images, {results.method: explanation},
                        ids=wanted, errors=results.errors, masks=masks, max_images=count,
                        total_images=len(results.ids), title=title or f"daxjax report: {Path(store).name}",
                        config=run, **options)


def _items_by_id(source, wanted: set[str]) -> dict:
    """id -> `sources.Item` for the wanted ids, reading the source only until all are found."""
    found = {}
    for item in source.items():
        if item.id in wanted:
            found[item.id] = item
            if len(found) == len(wanted):
                break
    return found


def compute_metrics(images, explanations: Mapping[str, Explanation], *, masks=None, bb=None,
                    k: float = 1.0, auc_steps: int = metrics.DEFAULT_STEPS) -> dict[str, dict[str, np.ndarray]]:
    """Per-image metrics of each method and of two reference maps.

    Returns row name -> metric name -> float32 [B]. Rows: the methods, then RANDOM_MAP (uniform
    noise) and CENTRED_GAUSSIAN (a blob of std min(H, W) / 4 at the centre), which explain
    nothing and show what a metric gives for free. Metrics: "IoU" at mean + k·std when masks are
    given; "deletion AUC" (zero fill) and "insertion AUC" (blur fill) when the black box is given,
    the reference rows scored on the targets of the first method. Empty when neither is given.
    """
    x = as_float_images(images)
    if masks is None and bb is None:
        return {}
    rows = {name: ex.maps for name, ex in explanations.items()}
    rows.update(reference_maps(x.shape[:3]))
    reference_targets = next(iter(explanations.values())).targets
    table: dict[str, dict[str, np.ndarray]] = {name: {} for name in rows}
    for name, maps in rows.items():
        targets = explanations[name].targets if name in explanations else reference_targets
        if masks is not None:
            table[name]["IoU"] = metrics.iou(maps, masks, k=k)
        if bb is not None:
            table[name]["deletion AUC"] = metrics.deletion_auc(bb, x, maps, targets, steps=auc_steps)
            table[name]["insertion AUC"] = metrics.insertion_auc(bb, x, maps, targets, steps=auc_steps)
    return table


def reference_maps(shape: tuple[int, int, int], seed: int = 0) -> dict[str, np.ndarray]:
    """The reference rows' maps for `shape` = (B, H, W): name -> float32 [B, H, W] in [0, 1]."""
    batch, height, width = shape
    noise = np.random.default_rng(seed).random(shape, dtype=np.float32)
    rows, cols = np.mgrid[0:height, 0:width].astype(np.float32)
    sigma = min(height, width) / 4.0
    blob = np.exp(-((rows - (height - 1) / 2) ** 2 + (cols - (width - 1) / 2) ** 2) / (2 * sigma ** 2))
    return {RANDOM_MAP: noise, CENTRED_GAUSSIAN: np.broadcast_to(blob, shape).astype(np.float32)}


# --------------------------------------------------------------------------------------------
# Checks


def positive(name: str, value) -> int:
    """`value` as an int, or a ValueError naming the argument `name` when it is not a positive integer."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


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


def _check_masks(masks, shape: tuple[int, int, int]) -> np.ndarray:
    masks = np.asarray(masks)
    if masks.shape != shape:
        raise InputError(f"masks has shape {masks.shape}; the images need {shape} ([B, H, W])")
    return masks != 0


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


# --------------------------------------------------------------------------------------------
# Pictures


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


def _card(i: int, image_id: str, image: np.ndarray, explanations: Mapping[str, Explanation],
          regions: Mapping[str, np.ndarray], mask: np.ndarray | None, table, labels, pictures: Pictures,
          k: float) -> str:
    """One image's card: input (+ ground truth) and, per method, map overlay above region."""
    header, same_target = card_header(i, image_id, explanations, labels)
    top = [figure_html(pictures.add(f"input_{i}.png", viz.png_bytes(viz.as_rgb(image))), f"input #{i}",
                       "input", image.shape[1])]
    bottom = [figure_html(pictures.add(f"truth_{i}.png", viz.png_bytes(viz.region_view(image, mask))),
                          f"ground truth #{i}", "ground truth", image.shape[1])
              if mask is not None else '<div class="blank"></div>']
    for j, (name, ex) in enumerate(explanations.items()):
        saliency = np.asarray(ex.maps[i], np.float32)
        region = regions[name][i]
        caption = method_caption(i, name, ex, same_target, labels, table, _SHORT)
        top.append(figure_html(pictures.add(f"m{j}_map_{i}.png", viz.png_bytes(viz.overlay(image, saliency))),
                               f"{name} map #{i}", caption, image.shape[1], raw_caption=True))
        bottom.append(figure_html(pictures.add(f"m{j}_region_{i}.png",
                                               viz.png_bytes(viz.region_view(image, region))),
                                  f"{name} region #{i}",
                                  f"region > mean+{k:g}σ · {100 * region.mean():.0f}% of image", image.shape[1]))
    cells = "".join(top) + "".join(bottom)
    return (f'<section class="card" id="image-{i}"><h3>{header}</h3>'
            f'<div class="grid" style="--cols:{1 + len(explanations)}">{cells}</div></section>')


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

    Shows the student's held-out fit beside a linear surrogate's, and flags a map the explainer
    does not vouch for (a fit below the floor, or a dead or flat mask) in words, never silently.
    """
    if "trusted" not in diagnostics:
        return ""
    fit, surrogate = float(diagnostics["heldout_fit"][i]), float(diagnostics["surrogate_fit"][i])
    text = f"held-out fit {fit:.2f} (linear {surrogate:.2f})"
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


# --------------------------------------------------------------------------------------------
# Page sections


def _first_page_sections(batch, shown, max_images, total_images, explanations, table, chart, errors,
                         config, has_masks, has_bb, k, auc_steps) -> tuple[str, str]:
    """(what goes above the pictures, what goes below them) on the first page."""
    parts = []
    if total_images is not None and total_images > batch:
        parts.append(f'<p class="note">This report covers the first {batch} of the {total_images} explained '
                     f"images (max_images={max_images}): pictures, metrics and timings.</p>")
    parts.append(capped_note(shown, batch, "image", "max_images"))
    if errors:
        items = "".join(f"<li><code>{escape(image_id)}</code>: {escape(reason)}</li>"
                        for image_id, reason in errors.items())
        parts.append(f'<section class="errors"><h2>{len(errors)} image(s) could not be explained</h2>'
                     f"<ul>{items}</ul></section>")
    if table:
        parts.append(_metrics_section(table, chart, has_masks, has_bb, k, auc_steps, batch))
    return "".join(parts), config_section(explanations, config) + timings_section(explanations, batch)


def capped_note(shown: int, batch: int, noun: str, option: str) -> str:
    """The note that pictures cover only the first `shown` of `batch` inputs (capped by `option`); "" if all."""
    if shown == batch:
        return ""
    return (f'<p class="note">Pictures are drawn for the first {shown} of {batch} {noun}s '
            f"({option}={shown}); the metrics and timings cover all {batch}.</p>")


def _metrics_section(table, chart, has_masks, has_bb, k, auc_steps, batch) -> str:
    notes = []
    if has_masks:
        notes.append(f"IoU of the region above mean + {k:g}·std of each map with the ground-truth mask.")
    if has_bb:
        notes.append(f"Deletion AUC: the black box's probability of the target while pixels are removed "
                     f"(shown black) in order of importance; insertion AUC: while they are revealed on a "
                     f"blurred image ({auc_steps} steps, daxjax.metrics).")
    notes.append(f"Mean ± std over {batch} images; the reference rows explain nothing and show what a "
                 "metric gives for free.")
    return metrics_section(table, BETTER, REFERENCE_ROWS, " ".join(notes), chart)


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
