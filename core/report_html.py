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

MAX_QUALITY_FIGURES = 6
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


def _headline(result: RunResult) -> list[str]:
    if not result.headline:
        return []
    from fzoo.headline import headline_rows

    cols = ["name", "value", "what"]
    return ["<h2>Headline</h2>", _table(headline_rows(result), cols, {"name", "what"})]


def _quality(result: RunResult, figs: _Figures, grid_cols: list[str]) -> list[str]:
    """Metric against PSNR per task and pipeline: benign series as lines, launderers as stars."""
    from fzoo.quality import quality_rows

    rows = quality_rows(result)
    if not rows:
        return []
    parts = [
        "<h2>Detection against image quality</h2>",
        "<p>Each condition's mean PSNR of the test images against the unmodified ones. At equal "
        "PSNR, a launderer below the benign curves removes more of what the detector uses than "
        "its distortion explains.</p>",
    ]
    keys = list(dict.fromkeys((r["task"], r["cell"], r["pipeline"]) for r in rows))
    for task, cell, pipeline in keys[:MAX_QUALITY_FIGURES]:
        sel = [r for r in rows if (r["task"], r["cell"], r["pipeline"]) == (task, cell, pipeline)]
        detail = next(
            (d for d in result.details if (d["task"], d["cell"], d["pipeline"]) == (task, cell,
             pipeline) and d.get("labels")), None)  # fmt: skip
        multiclass = detail is not None and not detail.get("roc")
        panels = []
        for metric in ("balanced_accuracy", "auc"):
            chance = 1.0 / len(detail["labels"]) if multiclass and detail else 0.5
            panels.append(_quality_panel(sel, metric, 0.5 if metric == "auc" else chance))
        title = f"{task}: {pipeline}" + (f" [{cell}]" if cell else "")
        parts.append(
            figs.add(
                figures.quality_figure(panels, title),
                _slug("quality", task, cell, pipeline),
                f"balanced accuracy and AUC against PSNR, {task}, pipeline {pipeline}",
            )
        )
    cols = [*grid_cols, "pipeline", "task", "condition", "transform", "psnr", "auc"]
    cols += ["balanced_accuracy", "n_test"]
    parts.append(_table(rows, cols, {*grid_cols, "pipeline", "task", "condition", "transform"}))
    return parts


def _quality_panel(rows: list[dict[str, Any]], metric: str, chance: float) -> dict[str, Any]:
    series: dict[str, list[tuple[float, float, str]]] = {}
    points: list[tuple[float, float, str]] = []
    clean = None
    for r in rows:
        value = r.get(metric)
        if not isinstance(value, float):
            continue
        if r["kind"] == "clean":
            clean = value if r["condition"] == "clean" or clean is None else clean
        elif r["psnr"] is not None and r["kind"] == "launderer":
            points.append((r["psnr"], value, r["condition"]))
        elif r["psnr"] is not None:
            series.setdefault(r["transform"], []).append((r["psnr"], value, r["condition"]))
    return {"metric": metric, "series": series, "points": points, "clean": clean, "chance": chance}


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
        *_headline(result),
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
    parts += _quality(result, figs, grid_cols)
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
