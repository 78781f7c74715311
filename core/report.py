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
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fzoo.fsutil import atomic_write_text
from fzoo.metrics import METRIC_NAMES
from fzoo.names import escape

if TYPE_CHECKING:
    from fzoo.experiment import RunResult

REPORT_FILES = ("results.csv", "results.json", "predictions.csv", "report.md", "report.html")


def _clean(obj: Any) -> Any:
    if isinstance(obj, float) and math.isnan(obj):
        return None
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_clean(v) for v in obj]
    return obj


def to_json(obj: Any) -> str:
    """Indented JSON with NaN written as null."""
    return json.dumps(_clean(obj), indent=2, default=str)


def _csv(rows: list[dict[str, Any]]) -> str:
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


def markdown_table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    """A GitHub-flavoured Markdown table of ``columns``."""
    head = "| " + " | ".join(columns) + " |"
    sep = "|" + "|".join("---" for _ in columns) + "|"
    body = ["| " + " | ".join(_cell(r.get(c)) for c in columns) + " |" for r in rows]
    return "\n".join([head, sep, *body])


def render_markdown(result: RunResult) -> str:
    meta = result.meta
    spec = result.experiment
    lines = [f"# fzoo report: {spec.name}", ""]
    if spec.description:
        lines += [spec.description, ""]
    lines += [
        f"- config: `{meta['config_file']}`",
        f"- seed: {meta['seed']} (split seed {meta['split_seed']}, test size {meta['test_size']})",
        f"- images per class: {meta['images_per_class']}",
        f"- feature cache: {meta['cache']['hits']} hits, {meta['cache']['misses']} misses "
        f"({meta['cache']['dir']})",
        f"- wall time: {meta['wall_time_s']} s",
        "",
    ]
    grid_cols = list(spec.grid)
    ok = [r for r in result.rows if "error" not in r]
    if result.headline:
        from fzoo.headline import headline_rows

        table = markdown_table(headline_rows(result), ["name", "value", "what"])
        lines += ["## Headline", "", table, ""]
    for task in dict.fromkeys(r["task"] for r in result.rows):
        lines += [f"## Task `{task}`", ""]
        task_rows = sorted(
            (r for r in ok if r["task"] == task),
            key=lambda r: (
                r["condition"],
                -(r.get("auc") or 0) if r.get("auc") == r.get("auc") else 0,
            ),
        )
        cols = [*grid_cols, "pipeline", "condition", "n_train", "n_test", *METRIC_NAMES]
        lines += [markdown_table(task_rows, cols), ""]
        for d in result.details:
            if d["task"] != task or d["condition"] != "clean":
                continue
            labels = d["labels"]
            lines += [
                f"Confusion (pipeline `{d['pipeline']}`{_cell_of(d)}, clean; rows = true):",
                "",
            ]
            cm_rows = [
                {"true": lab, **{p: n for p, n in zip(labels, row, strict=True)}}
                for lab, row in zip(labels, d["confusion"], strict=True)
            ]
            lines += [markdown_table(cm_rows, ["true", *labels]), ""]
    from fzoo.quality import quality_rows

    quality = quality_rows(result)
    if quality:
        lines += [
            "## Detection against image quality",
            "",
            "Each condition's mean PSNR of the test images against the unmodified ones: benign "
            "operations and launderers at matched PSNR side by side.",
            "",
        ]
        for task in dict.fromkeys(r["task"] for r in quality):
            rows = sorted(
                (r for r in quality if r["task"] == task),
                key=lambda r: (r["pipeline"], r["kind"] != "clean", -(r["psnr"] or 0)),
            )
            cols = [*grid_cols, "pipeline", "condition", "transform", "psnr"]
            cols += ["auc", "balanced_accuracy"]
            lines += [f"Task `{task}`:", "", markdown_table(rows, [*cols, "n_test"]), ""]
    failed = [r for r in result.rows if "error" in r]
    if failed:
        lines += ["## Failed cells", ""]
        lines += [
            markdown_table(failed, [*grid_cols, "pipeline", "task", "condition", "error"]),
            "",
        ]
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


def _cell_of(d: dict[str, Any]) -> str:
    return f", cell {d['cell']}" if d.get("cell") else ""


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
        "rows": result.rows,
        "details": result.details,
        "skipped": result.skipped,
        "notes": result.notes,
        "errors": result.errors,
        "config": result.experiment.model_dump(mode="json", by_alias=True),
    }
    files = {
        "results.csv": _csv(result.rows),
        "results.json": to_json(payload),
        "predictions.csv": _csv(result.predictions),
        "report.md": render_markdown(result),
    }
    from fzoo.report_html import render_html

    page, pngs = render_html(result, out_dir)
    files["report.html"] = page
    paths = list(pngs)
    for name, text in files.items():
        atomic_write_text(out_dir / name, text)
        paths.append(out_dir / name)
    return paths
