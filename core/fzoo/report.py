"""Writing a run's results: results.csv, results.json, predictions.csv and report.md.

File names are bytes and may hold anything but ``/`` and NUL: every string of the results
(paths, item ids, reasons, notes) is written in the escaped form of :func:`fzoo.names.escape` in
every report file alike (a byte that is not UTF-8 as ``\\xff``, a newline as ``\\n``, a
backslash doubled), so no name makes writing fail or forges a line or a table row.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fzoo.fsutil import atomic_write_text
from fzoo.metrics import METRIC_NAMES
from fzoo.names import escape
from fzoo.report_model import finite

if TYPE_CHECKING:
    from fzoo.report_grid import Figure
    from fzoo.report_model import ReportModel
    from fzoo.results import RunResult

REPORT_FILES = ("results.csv", "results.json", "predictions.csv", "report.md", "report.html")


def _clean(obj: Any) -> Any:
    if isinstance(obj, float) and math.isnan(obj):
        return None
    if isinstance(obj, Mapping):  # a dict, or a typed row as its file form (fzoo run --json)
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_clean(v) for v in obj]
    return obj


def to_json(obj: Any) -> str:
    """Indented JSON with NaN written as null."""
    return json.dumps(_clean(obj), indent=2, default=str)


def _csv(rows: Sequence[Mapping[str, Any]]) -> str:
    columns: list[str] = []
    for row in rows:
        for key in row:
            if key not in columns:
                columns.append(key)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _fmt_csv(v) for k, v in row.items()})
    return buf.getvalue()


def _fmt_csv(value: Any) -> Any:
    if isinstance(value, float):
        return "" if math.isnan(value) else repr(round(value, 6))
    return value


def _fmt(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def _cell(value: Any) -> str:
    """A Markdown table cell: a ``|`` escaped (the text is escaped by :func:`write_report`)."""
    return _fmt(value).replace("|", "\\|")


def markdown_table(
    rows: Sequence[Mapping[str, Any]], columns: list[str], headers: dict[str, str] | None = None
) -> str:
    """A GitHub-flavoured Markdown table of ``columns`` (``headers``: shown names)."""
    names = [(headers or {}).get(c, c) for c in columns]
    head = "| " + " | ".join(_cell(n) for n in names) + " |"
    sep = "|" + "|".join("---" for _ in columns) + "|"
    body = ["| " + " | ".join(_cell(r.get(c)) for c in columns) + " |" for r in rows]
    return "\n".join([head, sep, *body])


def render_markdown(
    result: RunResult, model: ReportModel | None = None, figs: list[Figure] | None = None
) -> str:
    """report.md: the same structure as report.html (summary first, the grid as plots,
    robustness, then the details), with the figures as links to ``figures/*.png``."""
    from fzoo.data import split_lines
    from fzoo.derived_quality import quality_lines
    from fzoo.report_model import CHOICES, build_model, display_row
    from fzoo.report_summary import summary_md

    model = model or build_model(result)
    figs = figs or []
    meta = result.meta
    spec = result.experiment
    lines = [f"# fzoo report: {spec.name}", ""]
    if spec.description:
        lines += [spec.description, ""]
    lines += [
        f"- config: `{meta['config_file']}`",
        f"- seed: {meta['seed']} (split seed {meta['split_seed']}, test size {meta['test_size']})",
        f"- images per class: {meta['images_per_class']}",
        *(f"- {line}" for line in split_lines(meta.get("split") or {})),
        *(f"- {line}" for line in quality_lines(meta.get("derived_quality") or {})),
        f"- feature cache: {meta['cache']['hits']} hits, {meta['cache']['misses']} misses "
        f"({meta['cache']['dir']})",
        f"- wall time: {meta['wall_time_s']} s",
        "",
    ]
    if result.headline:
        from fzoo.headline import headline_rows

        table = markdown_table(headline_rows(result), ["name", "value", "what"])
        lines += ["## Headline", "", table, ""]
    if model.tasks:
        lines += ["## Summary", ""]
    for task in model.tasks:
        lines += [f"### Task `{task}`", ""]
        lines += summary_md(model, task, model.primary(task))
    shown = next((m for m in CHOICES if any(m in ms for ms in model.metrics.values())), None)
    grid = [f for f in figs if f.section == "grid" and f.metric == shown]
    if grid:
        axes = ", ".join(f"`{a.short}` = `{a.path}`" for a in model.axes)
        lines += ["## The grid", "", f"Axes: {axes}.", ""]
        lines += [line for f in grid for line in _figure_md(f)]
    robust = [f for f in figs if f.section == "robustness" and f.metric == shown]
    if robust:
        lines += ["## Robustness", "", *(line for f in robust for line in _figure_md(f))]
    lines += _quality_md(result, model)
    short = {a.path: a.short for a in model.axes}
    cols = [*model.axis_paths, "pipeline", "condition", "n_train", "n_test", *METRIC_NAMES]
    if model.tasks:
        lines += ["## All results", ""]
        dropped = len(model.rows) - len(model.unique_rows)
        if dropped:
            lines += [
                f"{dropped} rows of pipelines that a grid axis does not affect are shown once, "
                "with `any` as that axis' value.",
                "",
            ]
    for task in model.tasks:
        rows = [display_row(model, r) for r in model.unique_rows if r.task == task]
        rows.sort(key=lambda r: (r["condition"], -(finite(r.get(model.primary(task))) or 0)))
        lines += [f"Task `{task}`:", "", markdown_table(rows, cols, short), ""]
    lines += _details_md(result, model, [f for f in figs if f.section == "details"])
    failed = [r.to_dict() for r in result.rows if not r.ok]
    if failed:
        lines += ["## Failed cells", ""]
        cols = [*model.axis_paths, "pipeline", "task", "condition", "error"]
        lines += [markdown_table(failed, cols, short), ""]
    lines += ["## Skipped files", ""]
    if result.skipped:
        lines += [markdown_table(result.skipped, ["path", "label", "reason"]), ""]
    else:
        lines += ["None.", ""]
    if result.notes:
        lines += ["## Conversions and size changes", ""]
        note_rows = [{"image": k, "note": "; ".join(v)} for k, v in sorted(result.notes.items())]
        lines += [markdown_table(note_rows, ["image", "note"]), ""]
    lines += ["## Versions", ""]
    lines += [markdown_table([meta["versions"]], list(meta["versions"])), ""]
    return "\n".join(lines)


def _figure_md(fig: Figure) -> list[str]:
    return [f"![{fig.caption}](figures/{fig.path.name})", "", f"*{fig.caption}*", ""]


def _quality_md(result: RunResult, model: ReportModel) -> list[str]:
    from fzoo.quality import quality_rows
    from fzoo.report_model import display_row

    quality = quality_rows(result)
    if not quality:
        return []
    lines = [
        "## Detection against image quality",
        "",
        "Each condition's mean PSNR of the test images against the unmodified ones: benign "
        "operations and launderers at matched PSNR side by side.",
        "",
    ]
    short = {a.path: a.short for a in model.axes}
    for task in dict.fromkeys(r["task"] for r in quality):
        rows = sorted(
            (display_row(model, r) for r in quality if r["task"] == task),
            key=lambda r: (r["pipeline"], r["kind"] != "clean", -(r["psnr"] or 0)),
        )
        cols = [*model.axis_paths, "pipeline", "condition", "transform", "psnr"]
        cols += ["auc", "balanced_accuracy", "n_test"]
        lines += [f"Task `{task}`:", "", markdown_table(rows, cols, short), ""]
    return lines


def _details_md(result: RunResult, model: ReportModel, figs: list[Figure]) -> list[str]:
    """Per pipeline and task: the confusion matrix of its best cell, and the figure links."""
    lines: list[str] = []
    details = {(d.cell, d.pipeline, d.task, d.condition): d for d in result.details}
    for p in model.pipelines:
        block: list[str] = []
        for task in model.tasks:
            cell = model.best_cell(p, task, model.primary(task))
            ref = model.reference(task)
            d = details.get((cell or "", p, task, ref))
            if d is None or not d.labels or d.confusion is None:
                continue
            where = model.cell_label(d.cell, p)
            block += [
                f"Confusion (pipeline `{p}`, task `{task}`"
                + (f", best cell {where}" if where else "")
                + f", {ref}; rows = true):",
                "",
            ]
            labels = d.labels
            cm_rows = [
                {"true": lab, **{q: n for q, n in zip(labels, row, strict=True)}}
                for lab, row in zip(labels, d.confusion, strict=True)
            ]
            block += [markdown_table(cm_rows, ["true", *labels]), ""]
        for f in figs:
            if f.pipeline == p:
                block += [f"- [{f.caption}](figures/{f.path.name})"]
        if block:
            lines += [f"### Pipeline `{p}`", "", *block, ""]
    return ["## ROC curves and confusion matrices", "", *lines] if lines else []


def _escaped(obj: Any) -> Any:
    """``obj`` with every string (dictionary keys too) in the form of :func:`escape`."""
    if isinstance(obj, str):
        return escape(obj)
    if isinstance(obj, dict):
        return {_escaped(k): _escaped(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_escaped(v) for v in obj]
    if isinstance(obj, tuple):
        return tuple(_escaped(v) for v in obj)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):  # a row, detail, prediction
        fields = dataclasses.fields(obj)
        return dataclasses.replace(obj, **{f.name: _escaped(getattr(obj, f.name)) for f in fields})
    return obj


def escaped_result(result: RunResult) -> RunResult:
    """A copy of ``result`` whose strings are all escaped (the config is kept as written)."""
    return dataclasses.replace(
        result,
        rows=_escaped(result.rows),
        details=_escaped(result.details),
        predictions=_escaped(result.predictions),
        meta=_escaped(result.meta),
        skipped=_escaped(result.skipped),
        notes=_escaped(result.notes),
        errors=_escaped(result.errors),
        gallery=_escaped(result.gallery),
        headline=_escaped(result.headline),
    )


def write_report(result: RunResult, out_dir: Path) -> list[Path]:
    """Write every report file into ``out_dir``; returns their paths.

    Every string is written escaped (see the module docstring), the same in every file.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    result = escaped_result(result)
    payload = {
        "meta": result.meta,
        "rows": [r.to_dict() for r in result.rows],
        "details": [d.to_dict() for d in result.details],
        "skipped": result.skipped,
        "notes": result.notes,
        "errors": result.errors,
        "config": result.experiment.model_dump(mode="json", by_alias=True),
    }
    from fzoo.report_grid import draw_figures
    from fzoo.report_html import render_html
    from fzoo.report_model import build_model

    model = build_model(result)
    figs = draw_figures(model, result, out_dir / "figures")
    files = {
        "results.csv": _csv([r.to_dict() for r in result.rows]),
        "results.json": to_json(payload),
        "predictions.csv": _csv([p.to_dict() for p in result.predictions]),
        "report.md": render_markdown(result, model, figs),
    }
    page, pngs = render_html(result, out_dir, model, figs)
    files["report.html"] = page
    paths = list(pngs)
    for name, text in files.items():
        atomic_write_text(out_dir / name, text)
        paths.append(out_dir / name)
    return paths
