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

The page machinery (pictures, checks, card heading and captions, metrics table and chart,
configuration, timings, paging, writing) is `daxjax.report.html`, shared with
`daxjax.audio.report`, which lays out its own cards for sound clips.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from daxjax import metrics
from daxjax.explain import Explanation
from daxjax.inputs import InputError, as_float_images
from daxjax.report import viz
from daxjax.report.html import (Pictures, capped_note, card_header, check_explanations, check_ids,
                                config_section, escape, figure_html, label_function, method_caption, metrics_chart,
                                metrics_section, positive, render_pages, timings_section, write_pages)


# Reference rows of the metrics table, always reported beside the explainers: what maps that know
# nothing of the model score.
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
    from daxjax.dataset.sources import open_source, read_image
    from daxjax.dataset.store import ResultStore, load_results

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


def _check_masks(masks, shape: tuple[int, int, int]) -> np.ndarray:
    masks = np.asarray(masks)
    if masks.shape != shape:
        raise InputError(f"masks has shape {masks.shape}; the images need {shape} ([B, H, W])")
    return masks != 0


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
