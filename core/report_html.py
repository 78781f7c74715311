"""``report.html``: one self-contained page (figures embedded) with a sortable comparison table,
ROC curves, confusion matrices, metric heatmaps, class spectra, example images and metadata.
Every figure is also saved as a PNG under ``figures/``."""

from __future__ import annotations

import base64
import html
import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from fzoo import figures
from fzoo.components import stable_hash
from fzoo.metrics import METRIC_NAMES

if TYPE_CHECKING:
    from fzoo.experiment import RunResult

MAX_CONFUSIONS = 24

_SORT_JS = """
document.querySelectorAll('table.sortable').forEach(function (table) {
  table.querySelectorAll('th').forEach(function (th, col) {
    th.addEventListener('click', function () {
      var body = table.tBodies[0], rows = Array.from(body.rows);
      var asc = th.dataset.order !== 'asc';
      table.querySelectorAll('th').forEach(function (h) { delete h.dataset.order; });
      th.dataset.order = asc ? 'asc' : 'desc';
      rows.sort(function (a, b) {
        var x = a.cells[col].dataset.v || a.cells[col].textContent;
        var y = b.cells[col].dataset.v || b.cells[col].textContent;
        var nx = parseFloat(x), ny = parseFloat(y);
        var cmp = (!isNaN(nx) && !isNaN(ny)) ? nx - ny : x.localeCompare(y);
        return asc ? cmp : -cmp;
      });
      rows.forEach(function (r) { body.appendChild(r); });
    });
  });
});
"""

_CSS = """
body{font-family:system-ui,sans-serif;margin:24px auto;max-width:1200px;color:#222;padding:0 16px}
h1{font-size:1.6em}h2{border-bottom:1px solid #ddd;padding-bottom:4px;margin-top:2em}
table{border-collapse:collapse;font-size:13px;margin:8px 0}
th,td{border:1px solid #ddd;padding:3px 7px;text-align:right}
th{background:#f3f3f3;cursor:pointer;position:sticky;top:0}
td.t,th.t{text-align:left}
th[data-order=asc]::after{content:' ▲'}th[data-order=desc]::after{content:' ▼'}
figure{display:inline-block;margin:8px;vertical-align:top}
figure img{max-width:100%;border:1px solid #eee}
figcaption{font-size:12px;color:#555;text-align:center}
.meta{font-size:13px}pre{background:#f7f7f7;padding:8px;overflow:auto;font-size:12px}
"""


def _fmt(v: Any) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    if isinstance(v, float):
        return f"{v:.4f}"
    return html.escape(str(v))


class _Figures:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.saved: list[Path] = []

    def add(self, fig: Any, name: str, caption: str) -> str:
        path = figures.save(fig, self.folder / f"{name}.png")
        self.saved.append(path)
        data = base64.b64encode(path.read_bytes()).decode()
        return (
            f'<figure><img alt="{html.escape(caption)}" src="data:image/png;base64,{data}">'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>"
        )


def _slug(*parts: str) -> str:
    text = "-".join(p for p in parts if p)
    slug = "".join(c if c.isalnum() or c in "-_" else "_" for c in text)
    if len(slug) > 80:  # long grid cell ids: keep names unique with a hash of the full text
        slug = f"{slug[:70]}-{stable_hash(text, 8)}"
    return slug


def _table(rows: list[dict[str, Any]], columns: list[str], text_cols: set[str]) -> str:
    head = "".join(
        f'<th class="{"t" if c in text_cols else ""}">{html.escape(c)}</th>' for c in columns
    )
    body = []
    for r in rows:
        cells = []
        for c in columns:
            v = r.get(c)
            num = "" if not isinstance(v, float) or math.isnan(v) else f' data-v="{v}"'
            cls = ' class="t"' if c in text_cols else ""
            cells.append(f"<td{cls}{num}>{_fmt(v)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return (
        f'<table class="sortable"><thead><tr>{head}</tr></thead><tbody>'
        + "".join(body)
        + "</tbody></table>"
    )


def render_html(result: RunResult, out_dir: Path) -> tuple[str, list[Path]]:
    """The page's HTML and the PNG files written beside it."""
    spec = result.experiment
    meta = result.meta
    figs = _Figures(out_dir / "figures")
    grid_cols = list(spec.grid)
    ok = [r for r in result.rows if "error" not in r]
    parts = [
        f"<h1>fzoo report: {html.escape(spec.name)}</h1>",
        f"<p>{html.escape(spec.description)}</p>" if spec.description else "",
        '<ul class="meta">',
        f"<li>config: <code>{html.escape(str(meta['config_file']))}</code></li>",
        f"<li>seed {meta['seed']}, split seed {meta['split_seed']}, "
        f"test size {meta['test_size']}</li>",
        f"<li>images per class: {html.escape(json.dumps(meta['images_per_class']))}</li>",
        f"<li>feature cache: {meta['cache']['hits']} hits, {meta['cache']['misses']} misses</li>",
        f"<li>wall time {meta['wall_time_s']} s; {len(result.skipped)} skipped files; "
        f"{len(result.errors)} errors</li>",
        "</ul>",
        "<h2>Comparison (click a column to sort)</h2>",
        _table(
            ok,
            [*grid_cols, "pipeline", "task", "condition", "n_train", "n_test", *METRIC_NAMES],
            {*grid_cols, "pipeline", "task", "condition"},
        ),
    ]
    tasks = list(dict.fromkeys(r["task"] for r in result.rows))
    conditions = list(dict.fromkeys(r["condition"] for r in ok))
    for task in tasks:
        parts.append(f"<h2>Task <code>{html.escape(task)}</code></h2>")
        task_rows = [r for r in ok if r["task"] == task]
        binary = any(d.get("roc") for d in result.details if d["task"] == task)
        metric = "auc" if binary else "balanced_accuracy"
        # heatmap: (cell, pipeline) x condition
        row_keys = list(dict.fromkeys((r["cell"], r["pipeline"]) for r in task_rows))
        if row_keys and conditions:
            values = np.full((len(row_keys), len(conditions)), np.nan)
            for r in task_rows:
                v = r.get(metric)
                if isinstance(v, float):
                    values[row_keys.index((r["cell"], r["pipeline"])), conditions.index(
                        r["condition"])] = v  # fmt: skip
            labels = [f"{p} [{c}]" if c else p for c, p in row_keys]
            parts.append(
                figs.add(
                    figures.heatmap_figure(labels, conditions, values, f"{task}: {metric}", metric),
                    _slug("heatmap", task),
                    f"{metric} per pipeline and condition",
                )
            )
        if binary:
            for cond in conditions:
                curves = [
                    {
                        "label": f"{d['pipeline']}" + (f" [{d['cell']}]" if d["cell"] else ""),
                        **d["roc"],
                        "auc": next(
                            (
                                r.get("auc")
                                for r in task_rows
                                if r["pipeline"] == d["pipeline"]
                                and r["cell"] == d["cell"]
                                and r["condition"] == cond
                            ),
                            None,
                        ),
                    }
                    for d in result.details
                    if d["task"] == task and d["condition"] == cond and d.get("roc")
                ][:12]
                if curves:
                    parts.append(
                        figs.add(
                            figures.roc_figure(curves, f"{task} — {cond}"),
                            _slug("roc", task, cond),
                            f"ROC, condition {cond}",
                        )
                    )
        shown = 0
        for d in result.details:
            if d["task"] != task or d["condition"] != conditions[0] or shown >= MAX_CONFUSIONS:
                continue
            shown += 1
            title = f"{d['pipeline']}" + (f" [{d['cell']}]" if d["cell"] else "")
            parts.append(
                figs.add(
                    figures.confusion_figure(d["labels"], d["confusion"], title),
                    _slug("confusion", task, d["cell"], d["pipeline"]),
                    f"confusion matrix, {conditions[0]} (rows: true class)",
                )
            )
    gallery = result.gallery
    if gallery.get("spectra"):
        parts.append("<h2>Images</h2>")
        parts.append(
            figs.add(
                figures.spectra_figure(gallery["spectra"]),
                "spectra",
                "mean radially averaged power spectrum of the high-pass residual",
            )
        )
    if gallery.get("examples"):
        parts.append(
            figs.add(
                figures.gallery_figure(gallery["examples"]),
                "examples",
                "examples per class (centre crops) and |derived - source| error maps",
            )
        )
    failed = [r for r in result.rows if "error" in r]
    if failed:
        parts += [
            "<h2>Failed cells</h2>",
            _table(
                failed,
                [*grid_cols, "pipeline", "task", "condition", "error"],
                {*grid_cols, "pipeline", "task", "condition", "error"},
            ),  # fmt: skip
        ]
    parts.append("<h2>Skipped files</h2>")
    if result.skipped:
        cols = ["path", "label", "condition", "reason"]
        parts.append(_table(result.skipped, cols, set(cols)))
    else:
        parts.append("<p>None.</p>")
    parts += [
        "<h2>Metadata</h2>",
        "<details><summary>seeds, versions, fingerprints, cache</summary><pre>",
        html.escape(json.dumps(meta, indent=2, default=str)),
        "</pre></details>",
    ]
    page = (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>fzoo report: {html.escape(spec.name)}</title><style>{_CSS}</style></head>"
        f"<body>{''.join(parts)}<script>{_SORT_JS}</script></body></html>"
    )
    return page, figs.saved
