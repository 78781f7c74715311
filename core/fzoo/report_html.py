"""``report.html``: one self-contained page (figures embedded as PNG, script inline) that reads like
a results section: the summary first (headline, per task pipelines x conditions at each
pipeline's best cell, a plain reading), then the grid as plots, robustness, detection against
image quality, and the details on demand (the full table with filters and sorting, ROC curves and
confusion matrices per pipeline, examples, spectra, metadata). A selector switches every metric
figure and table between AUC, balanced accuracy and TPR@1%FPR."""

from __future__ import annotations

import base64
import html
import json
import struct
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fzoo.metrics import METRIC_NAMES
from fzoo.report_grid import Figure, draw_figures, slug
from fzoo.report_model import CHOICES, ReportModel, build_model, display_row
from fzoo.report_summary import summary_html
from fzoo.report_table import TABLE_JS, table

if TYPE_CHECKING:
    from fzoo.results import RunResult

MAX_QUALITY_FIGURES = 6

_METRIC_JS = """
var fzooMetric = document.getElementById('metric');
if (fzooMetric) fzooMetric.addEventListener('change', function () {
  document.body.dataset.metric = fzooMetric.value;
});
"""

_CSS = """
body{font-family:system-ui,sans-serif;margin:16px auto;max-width:1240px;color:#222;padding:0 16px}
h1{font-size:1.5em;margin:.2em 0}
h2{border-bottom:1px solid #ddd;padding-bottom:3px;margin-top:1.6em}
h3{margin:1em 0 .3em;font-size:1.05em}
table{border-collapse:collapse;font-size:13px;margin:6px 0}
th,td{border:1px solid #ddd;padding:3px 7px;text-align:right}
th{background:#f3f3f3}table.sortable th{cursor:pointer;position:sticky;top:0}
td.t,th.t{text-align:left}td.best{font-weight:700}
th[data-order=asc]::after{content:' ▲'}th[data-order=desc]::after{content:' ▼'}
tr.filters td{background:#fafafa}select{font-size:12px;max-width:14em}
.scroll{overflow-x:auto;max-height:80vh}
figure{display:inline-block;margin:6px;vertical-align:top;max-width:100%}
figure img{width:100%;height:auto;border:1px solid #eee}
figcaption{font-size:12px;color:#555}
.meta{font-size:12px;color:#555;margin:.3em 0}.meta span{margin-right:1.2em}
.reading{margin:.2em 0 .6em;font-size:14px}.note{color:#777;font-size:13px}
ol.foot{font-size:12px;color:#555;margin:0;padding-left:1.2em;list-style:none}
ol.foot li.h{font-style:italic}.count{font-size:12px;color:#555;margin:2px 0}
.bar{position:sticky;top:0;background:#fff;padding:4px 0;z-index:2;font-size:13px;
border-bottom:1px solid #eee}
details{margin:4px 0}summary{cursor:pointer;font-weight:600}
.m{display:none}
#quality,#results,#details,#images{content-visibility:auto;contain-intrinsic-size:auto 1200px}
pre{background:#f7f7f7;padding:8px;overflow:auto;font-size:12px}
"""


def _metric_css(metrics: list[str]) -> str:
    return "".join(f"body[data-metric={m}] .m-{m}{{display:block}}" for m in metrics)


class _Embed:
    """Figures as ``<figure>`` elements with the PNG inline."""

    def __init__(self) -> None:
        self.cache: dict[Path, str] = {}

    def __call__(self, fig: Figure, lazy: bool = False) -> str:
        raw = fig.path.read_bytes()
        data = self.cache.get(fig.path)
        if data is None:
            data = self.cache[fig.path] = base64.b64encode(raw).decode()
        # the PNG's own size: the figure is laid out before the image is decoded, and its
        # caption wraps at the image's width
        width, height = struct.unpack(">II", raw[16:24])
        cap = html.escape(fig.caption)
        load = ' loading="lazy"' if lazy else ""
        return (
            f'<figure style="width:{width}px"><img alt="{cap}"{load} width="{width}" '
            f'height="{height}" src="data:image/png;base64,{data}">'
            f"<figcaption>{cap}</figcaption></figure>"
        )


def _by_metric(parts: dict[str, str], metrics: list[str]) -> str:
    return "".join(f'<div class="m m-{m}">{parts.get(m, "")}</div>' for m in metrics)


def _summary(result: RunResult, model: ReportModel, metrics: list[str]) -> list[str]:
    out = ['<section id="summary"><h2>Summary</h2>']
    if result.headline:
        from fzoo.headline import headline_rows

        out += [
            "<h3>Headline</h3>",
            table(headline_rows(result), ["name", "value", "what"], {"name", "what"}),
        ]
    for task in model.tasks:
        out.append(f"<h3>Task <code>{html.escape(task)}</code></h3>")
        out.append(_by_metric({m: summary_html(model, task, m) for m in metrics}, metrics))
    out.append("</section>")
    return out


def _figures_section(
    title: str, ident: str, figs: list[Figure], metrics: list[str], embed: _Embed, intro: str
) -> list[str]:
    if not figs:
        return []
    # the default metric's figures load with the page, the others when chosen
    per_metric = {
        m: "".join(embed(f, lazy=m != metrics[0]) for f in figs if f.metric == m) for m in metrics
    }
    return [
        f'<section id="{ident}"><h2>{title}</h2><p class="note">{intro}</p>',
        _by_metric(per_metric, metrics),
        "</section>",
    ]


def _quality(result: RunResult, model: ReportModel, out: Path, embed: _Embed) -> list[str]:
    """Metric against PSNR per task and pipeline (best cell): benign series as lines,
    launderers as stars."""
    from fzoo import figures
    from fzoo.quality import quality_rows

    rows = quality_rows(result)
    if not rows:
        return []
    parts = [
        '<section id="quality"><h2>Detection against image quality</h2>',
        '<p class="note">Each condition\'s mean PSNR of the test images against the unmodified '
        "ones. At equal PSNR, a launderer below the benign curves removes more of what the "
        "detector uses than its distortion explains. Each pipeline at its best cell.</p>",
    ]
    best = {
        (t, p): model.best_cell(p, t, model.primary(t))
        for t in model.tasks
        for p in model.pipelines
    }
    keys = [
        k
        for k in dict.fromkeys((r["task"], r["cell"], r["pipeline"]) for r in rows)
        if best.get((k[0], k[2])) == k[1]
    ]
    for task, cell, pipeline in keys[:MAX_QUALITY_FIGURES]:
        sel = [r for r in rows if (r["task"], r["cell"], r["pipeline"]) == (task, cell, pipeline)]
        detail = next(
            (
                d
                for d in result.details
                if (d.task, d.cell, d.pipeline) == (task, cell, pipeline) and d.labels
            ),
            None,
        )
        multiclass = detail is not None and not detail.roc
        chance = 1.0 / len(detail.labels or [0]) if multiclass and detail else 0.5
        panels = [
            _quality_panel(sel, metric, 0.5 if metric == "auc" else chance)
            for metric in ("balanced_accuracy", "auc")
        ]
        where = model.cell_label(cell, pipeline)
        title = f"{task}: {pipeline}" + (f" [{where}]" if where else "")
        name = slug("quality", task, cell, pipeline)
        path = figures.save(figures.quality_figure(panels, title), out / "figures" / f"{name}.png")
        caption = f"balanced accuracy and AUC against PSNR, {task}, pipeline {pipeline}"
        parts.append(embed(Figure(name, path, caption, "quality")))
    axes = model.axis_paths
    cols = [*axes, "pipeline", "task", "condition", "transform", "psnr", "auc"]
    cols += ["balanced_accuracy", "n_test"]
    shown = [display_row(model, r) for r in rows]
    parts += [
        "<details><summary>the numbers</summary>",
        table(
            shown,
            cols,
            {*axes, "pipeline", "task", "condition", "transform"},
            headers=_short(model),
        ),
        "</details></section>",
    ]
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


def _short(model: ReportModel) -> dict[str, str]:
    return {a.path: a.short for a in model.axes}


def _all_results(model: ReportModel) -> list[str]:
    axes = model.axis_paths
    cols = [*axes, "pipeline", "task", "condition", "n_train", "n_test", *METRIC_NAMES]
    text = {*axes, "pipeline", "task", "condition"}
    rows = [display_row(model, r) for r in model.unique_rows]
    dropped = len(model.rows) - len(model.unique_rows)
    note = (
        f" {dropped} rows of pipelines that an axis does not affect are shown once, with "
        "'any' as that axis' value."
        if dropped
        else ""
    )
    return [
        '<section id="results"><h2>All results</h2>',
        '<p class="note">Click a column to sort; choose a value above a column to filter.'
        f"{html.escape(note)}</p>",
        table(rows, cols, text, table_id="results-table", filters=text, headers=_short(model)),
        "</section>",
    ]


def _details(model: ReportModel, figs: list[Figure], embed: _Embed) -> list[str]:
    per_pipeline = [(p, [f for f in figs if f.pipeline == p]) for p in model.pipelines]
    per_pipeline = [(p, fs) for p, fs in per_pipeline if fs]
    if not per_pipeline:
        return []
    out = [
        '<section id="details"><h2>ROC curves and confusion matrices</h2>',
        '<p class="note">Per pipeline, a panel per grid cell (best first).</p>',
    ]
    for p, fs in per_pipeline:
        out.append(
            f"<details><summary>{html.escape(p)} ({len(fs)} figures)</summary>"
            + "".join(embed(f, lazy=True) for f in fs)
            + "</details>"
        )
    out.append("</section>")
    return out


def _images(result: RunResult, out: Path, embed: _Embed) -> list[str]:
    from fzoo import figures

    gallery = result.gallery
    parts = []
    if gallery.get("spectra"):
        path = figures.save(figures.spectra_figure(gallery["spectra"]), out / "spectra.png")
        caption = "mean radially averaged power spectrum of the high-pass residual"
        parts.append(embed(Figure("spectra", path, caption, "images"), lazy=True))
    if gallery.get("examples"):
        path = figures.save(figures.gallery_figure(gallery["examples"]), out / "examples.png")
        caption = "examples per class (centre crops) and |derived - source| error maps"
        parts.append(embed(Figure("examples", path, caption, "images"), lazy=True))
    return ['<section id="images"><h2>Images</h2>', *parts, "</section>"] if parts else []


def _header(result: RunResult) -> list[str]:
    from fzoo.derived_quality import quality_lines
    from fzoo.split import split_lines

    spec, meta = result.experiment, result.meta
    items = [
        f"config <code>{html.escape(str(meta['config_file']))}</code>",
        f"seed {meta['seed']} (split {meta['split_seed']}, test size {meta['test_size']})",
        f"images per class {html.escape(json.dumps(meta['images_per_class']))}",
        *(html.escape(line) for line in split_lines(meta.get("split") or {})),
        *(html.escape(line) for line in quality_lines(meta.get("derived_quality") or {})),
        f"cache {meta['cache']['hits']} hits / {meta['cache']['misses']} misses",
        f"{meta['wall_time_s']} s; {len(result.skipped)} skipped files; "
        f"{len(result.errors)} errors",
    ]
    return [
        f"<h1>fzoo report: {html.escape(spec.name)}</h1>",
        f"<p>{html.escape(spec.description)}</p>" if spec.description else "",
        '<p class="meta">' + "".join(f"<span>{i}</span>" for i in items) + "</p>",
    ]


_NAV = {
    "summary": "summary",
    "grid": "grid",
    "robustness": "robustness",
    "quality": "quality",
    "results": "all results",
    "details": "ROC and confusion",
    "images": "images",
}


def _toolbar(metrics: list[str], page: str) -> str:
    opts = "".join(f'<option value="{m}">{html.escape(CHOICES[m])}</option>' for m in metrics)
    nav = " · ".join(
        f'<a href="#{a}">{t}</a>' for a, t in _NAV.items() if f'<section id="{a}">' in page
    )
    return (
        f'<div class="bar"><label>metric <select id="metric">{opts}</select></label> '
        f"&nbsp; {nav}</div>"
    )


def render_html(
    result: RunResult,
    out_dir: Path,
    model: ReportModel | None = None,
    figs: list[Figure] | None = None,
) -> tuple[str, list[Path]]:
    """The page's HTML and the PNG files written beside it (``figs`` already drawn, or drawn
    here into ``out_dir/figures``)."""
    model = model or build_model(result)
    if figs is None:
        figs = draw_figures(model, result, out_dir / "figures")
    metrics = [m for m in CHOICES if any(m in ms for ms in model.metrics.values())]
    metrics = metrics or ["balanced_accuracy"]
    embed = _Embed()
    parts = _summary(result, model, metrics)
    grid = [f for f in figs if f.section == "grid"]
    intro = (
        "How the metric moves along each grid axis, per pipeline, task and condition "
        f"({', '.join(f'{a.short} = {a.path}' for a in model.axes)})."
    )
    parts += _figures_section("The grid", "grid", grid, metrics, embed, intro)
    robust = [f for f in figs if f.section == "robustness"]
    intro = "Each pipeline at its best cell, under every test condition."
    parts += _figures_section("Robustness", "robustness", robust, metrics, embed, intro)
    parts += _quality(result, model, out_dir, embed)
    parts += _all_results(model)
    parts += _details(model, [f for f in figs if f.section == "details"], embed)
    parts += _images(result, out_dir / "figures", embed)
    parts += _tail(result, model)
    body = "".join(parts)
    body = "".join([*_header(result), _toolbar(metrics, body), body])
    page = (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>fzoo report: {html.escape(result.experiment.name)}</title>"
        f"<style>{_CSS}{_metric_css(metrics)}</style></head>"
        f'<body data-metric="{metrics[0]}">{body}'
        f"<script>{TABLE_JS}{_METRIC_JS}</script></body></html>"
    )
    return page, list(dict.fromkeys([f.path for f in figs] + list(embed.cache)))


def _tail(result: RunResult, model: ReportModel) -> list[str]:
    axes = model.axis_paths
    parts = []
    failed = [r.to_dict() for r in result.rows if not r.ok]
    if failed:
        cols = [*axes, "pipeline", "task", "condition", "error"]
        parts += ["<h2>Failed cells</h2>", table(failed, cols, set(cols), headers=_short(model))]
    parts.append("<h2>Skipped files</h2>")
    if result.skipped:
        cols = ["path", "label", "condition", "reason"]
        parts.append(table(result.skipped, cols, set(cols)))
    else:
        parts.append("<p>None.</p>")
    parts += [
        "<h2>Metadata</h2>",
        "<details><summary>seeds, versions, fingerprints, cache</summary><pre>",
        html.escape(json.dumps(result.meta, indent=2, default=str)),
        "</pre></details>",
    ]
    return parts
