"""The summary that opens report.md and report.html: per task, pipelines x conditions at each
pipeline's best grid cell (best per column in bold), the cells in a footnote, and a one-sentence
reading of the numbers."""

from __future__ import annotations

import html

from fzoo.report_model import CHOICES, ReportModel, Summary


def _num(v: float | None) -> str:
    return "–" if v is None else f"{v:.3f}"


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|")


def summary_md(model: ReportModel, task: str, metric: str) -> list[str]:
    """The task's summary as Markdown lines (table, footnotes, reading)."""
    s = model.summary(task, metric)
    head = f"| pipeline ({CHOICES[metric]}) | " + " | ".join(_md_cell(c) for c in s.conditions)
    lines = [head + " |", "|---|" + "---|" * len(s.conditions)]
    marks = _marks(s)
    for p in s.pipelines:
        cells = []
        for c in s.conditions:
            v = s.values.get((p, c))
            text = _num(v)
            cells.append(f"**{text}**" if v is not None and v == s.best_in_column(c) else text)
        lines.append(f"| {_md_cell(p)}{marks.get(p, '')} | " + " | ".join(cells) + " |")
    lines.append("")
    if s.footnotes:
        notes = "; ".join(f"{marks[p]} {_md_cell(p)}: {n}" for p, n in s.footnotes.items())
        lines += [f"Best cell per pipeline, chosen on {model.reference(task)}: {notes}.", ""]
    lines += [s.reading, ""]
    return lines


def _marks(s: Summary) -> dict[str, str]:
    return {p: f"<sup>{k + 1}</sup>" for k, p in enumerate(s.footnotes)}


def summary_html(model: ReportModel, task: str, metric: str) -> str:
    """The task's summary for one metric as an HTML fragment."""
    if metric not in model.metrics.get(task, []):
        return (
            f'<p class="note">{html.escape(CHOICES[metric])} is not defined for this task '
            f"(it has no ROC: several classes, or one class in its test set).</p>"
        )
    s = model.summary(task, metric)
    marks = _marks(s)
    head = "".join(f"<th>{html.escape(c)}</th>" for c in s.conditions)
    body = []
    for p in s.pipelines:
        cells = []
        for c in s.conditions:
            v = s.values.get((p, c))
            best = v is not None and v == s.best_in_column(c)
            cls = ' class="best"' if best else ""
            cells.append(f"<td{cls}>{_num(v)}</td>")
        body.append(
            f'<tr><td class="t">{html.escape(p)}{marks.get(p, "")}</td>{"".join(cells)}</tr>'
        )
    parts = [
        f'<table class="summary"><thead><tr><th class="t">pipeline</th>{head}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table>",
        f'<p class="reading">{html.escape(s.reading)}</p>',
    ]
    if s.footnotes:
        notes = "".join(
            f"<li>{marks[p]} {html.escape(p)}: {html.escape(n)}</li>"
            for p, n in s.footnotes.items()
        )
        parts.append(
            f'<ol class="foot"><li class="h">best cell per pipeline, chosen on '
            f"{html.escape(model.reference(task))}:</li>{notes}</ol>"
        )
    return "".join(parts)
