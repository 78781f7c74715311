"""Headline numbers: named figures an experiment declares (``headline:`` in its YAML), read from
the finished run and written to ``headline.json``.

Each entry names a result row (``task``, ``pipeline``, ``condition``, optional grid ``cell``) and
one of: a ``metric`` column (``auc``, ``balanced_accuracy``, ...); a ``rate`` ``"A->B"`` (the
fraction of test images whose true label is A that the pipeline called B, e.g.
``laundered->pristine``); or ``chance: true`` (1 / number of classes of that task).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, TypeVar

from fzoo.results import Detail, MetricRow

if TYPE_CHECKING:
    from fzoo.results import RunResult


Found = TypeVar("Found", MetricRow, Detail)


def _find(items: list[Found], entry: dict[str, Any]) -> Found | None:
    """The first row or detail at ``entry``'s task, pipeline, condition and cell (not a failed
    row)."""
    want = tuple(entry.get(k, "") for k in ("task", "pipeline", "condition", "cell"))
    for it in items:
        if (it.task, it.pipeline, it.condition, it.cell) == want and (
            not isinstance(it, MetricRow) or it.ok
        ):
            return it
    return None


def compute_headline(result: RunResult) -> dict[str, float | None]:
    """Evaluate every ``headline:`` entry of the experiment; None where a row is missing."""
    out: dict[str, float | None] = {}
    for name, spec in result.experiment.headline.items():
        entry = spec.model_dump(exclude_none=True)
        entry.setdefault("condition", "clean")
        value: float | None = None
        if spec.rate is not None:
            detail = _find(result.details, entry)
            if detail is not None:
                true, pred = (s.strip() for s in spec.rate.split("->", 1))
                hits, total = detail.count(true, pred)
                value = hits / total if total else None
        elif spec.chance:
            detail = _find(result.details, entry)
            if detail is not None and detail.labels:
                value = 1.0 / len(detail.labels)
        else:
            row = _find(result.rows, entry)
            if row is not None:
                raw = row.metric(spec.metric or "balanced_accuracy")
                value = float(raw) if isinstance(raw, int | float) else None
        if value is not None and math.isnan(value):
            value = None
        out[name] = value
    return out


def _source(spec: Any) -> str:
    what = spec.metric or (f"rate {spec.rate}" if spec.rate else "chance")
    where = f"{spec.task} / {spec.pipeline} / {spec.condition}"
    return f"{what} of {where}" + (f" / {spec.cell}" if spec.cell else "")


def headline_rows(result: RunResult) -> list[dict[str, Any]]:
    """``name``, ``value`` and ``what`` (description and where it comes from) per entry."""
    rows = []
    for name, spec in result.experiment.headline.items():
        what = f"{spec.description} ({_source(spec)})" if spec.description else _source(spec)
        rows.append({"name": name, "value": result.headline.get(name), "what": what})
    return rows


def format_headline(result: RunResult) -> str:
    """The headline as aligned text lines, for a terminal."""
    rows = headline_rows(result)
    if not rows:
        return "(no headline numbers declared)"
    width = max(len(r["name"]) for r in rows)
    lines = []
    for r in rows:
        v = r["value"]
        shown = "n/a" if v is None else f"{v:.3f}"
        lines.append(f"  {r['name']:<{width}}  {shown:>6}  {r['what']}")
    return "\n".join(["headline:", *lines])
