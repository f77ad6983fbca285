"""report/: pages to look at and share: the image report and its page kit, and the pictures.

    html.py     the page kit: pictures, checks, card headings and captions, metrics table and chart,
                configuration and timings sections, paging, writing (shared with `daxjax.audio.report`)
    images.py   `write_report` (explanations of images) and `write_store_report` (a dataset store)
    viz.py      heat-map overlays, regions, PNG encoding, the matplotlib figures (object API, no pyplot)

Above the explainers, the metrics and the dataset store, which it reads; below `daxjax.audio` and
the entry points. The names of the former `daxjax.report` module stay importable from here.
"""

from daxjax.report.html import (FILES_DIR, REPORT_NAME, Pictures, capped_note, card_header, check_explanations,
                                check_ids, config_section, escape, figure_html, label_function, method_caption,
                                metrics_chart, metrics_section, positive, present_metrics, render_pages,
                                timings_section, trust_note, write_pages)
from daxjax.report.images import (BETTER, CENTRED_GAUSSIAN, RANDOM_MAP, REFERENCE_ROWS, compute_metrics, reference_maps,
                                  write_report, write_store_report)
