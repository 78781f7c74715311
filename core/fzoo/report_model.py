"""What an ablation report says, computed once from a run's rows for report.md and report.html.

- the grid **axes**, with short names (``quality`` for ``data.derive.0.perturbations.0.params.
  quality``) and display labels;
- which axes do not touch a pipeline: its fingerprints (dataset, conditions, its own features and
  classifier) are identical in every cell that differs only in that axis, and the axis is not an
  unfingerprinted setting (``seed``, ``split``, ``tasks``...). Such a pipeline's rows are shown
  once, with the axis value written as ``any``;
- per task and pipeline the **best cell** (highest metric under the reference condition, ``clean``
  when the task has it; ties broken by the mean over conditions);
- per task the **summary**: pipelines x conditions at each pipeline's best cell, and a one-sentence
  reading generated from those numbers.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from fzoo.results import MetricRow

if TYPE_CHECKING:
    from fzoo.results import RunResult

#: the metrics a reader can choose between in report.html, with their display names
CHOICES: dict[str, str] = {
    "auc": "AUC",
    "balanced_accuracy": "balanced accuracy",
    "tpr_at_1fpr": "TPR@1%FPR",
}
ANY = "any"
#: grid paths under these roots change a fingerprint when they change a result
_FINGERPRINTED = ("data", "conditions", "pipelines")


def key(value: Any) -> str:
    """A hashable, order-stable form of a grid value (values may be mappings or lists)."""
    return json.dumps(value, sort_keys=True, default=str)


def label(value: Any) -> str:
    """A grid value as a short display text."""
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, dict):
        name = value.get("name")
        params = value.get("params") or {}
        inner = ", ".join(f"{k}={label(v)}" for k, v in params.items())
        return f"{name}({inner})" if name and inner else str(name or key(value))
    if isinstance(value, list):
        return key(value)
    return str(value)


def finite(value: Any) -> float | None:
    """``value`` as a float, or None when it is missing or NaN."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return None if math.isnan(value) else float(value)


@dataclass(frozen=True)
class Axis:
    path: str
    short: str
    values: tuple[Any, ...]

    @property
    def labels(self) -> list[str]:
        return [label(v) for v in self.values]

    @property
    def numeric(self) -> bool:
        return all(finite(v) is not None for v in self.values)

    @property
    def log(self) -> bool:
        nums = [finite(v) or 0.0 for v in self.values]
        return self.numeric and min(nums) > 0 and max(nums) / min(nums) >= 50


def short_names(paths: list[str]) -> dict[str, str]:
    """The shortest dotted suffix of each path that no other path ends with."""
    out = {}
    for path in paths:
        parts = path.split(".")
        for k in range(1, len(parts) + 1):
            suffix = ".".join(parts[-k:])
            others = [p for p in paths if p != path]
            if not any(o == suffix or o.endswith("." + suffix) for o in others):
                out[path] = suffix
                break
        else:
            out[path] = path
    return out


@dataclass
class Summary:
    """One task's pipelines x conditions table at each pipeline's best cell, for one metric."""

    task: str
    metric: str
    conditions: list[str]
    pipelines: list[str]
    values: dict[tuple[str, str], float | None]
    best_cell: dict[str, str]
    footnotes: dict[str, str]
    reading: str

    def best_in_column(self, condition: str) -> float | None:
        found = [v for p in self.pipelines if (v := self.values.get((p, condition))) is not None]
        return max(found) if found else None


@dataclass
class ReportModel:
    axes: list[Axis]
    tasks: list[str]
    pipelines: list[str]
    conditions: dict[str, list[str]]
    rows: list[MetricRow]
    unique_rows: list[MetricRow]
    untouched: dict[str, set[str]]
    metrics: dict[str, list[str]] = field(default_factory=dict)
    rows_by: dict[tuple[str, str, str, str], MetricRow] = field(default_factory=dict)
    by_values: dict[tuple[str, ...], MetricRow] = field(default_factory=dict)

    def row_at(
        self, pipeline: str, task: str, condition: str, values: dict[str, Any]
    ) -> MetricRow | None:
        """The row of ``pipeline`` in the cell with these axis values."""
        k = (pipeline, task, condition, *(key(values.get(a.path)) for a in self.axes))
        return self.by_values.get(k)

    @property
    def axis_paths(self) -> list[str]:
        return [a.path for a in self.axes]

    def primary(self, task: str) -> str:
        """The metric a task is read by: AUC when it has one, else balanced accuracy."""
        return self.metrics[task][0] if self.metrics.get(task) else "balanced_accuracy"

    def reference(self, task: str) -> str:
        conds = self.conditions[task]
        return "clean" if "clean" in conds else conds[0]

    def value(
        self, cell: str, pipeline: str, task: str, condition: str, metric: str
    ) -> float | None:
        row = self.rows_by.get((cell, pipeline, task, condition))
        return None if row is None else finite(row.metric(metric))

    def cells_of(self, pipeline: str, task: str) -> list[str]:
        """The distinct cells of a pipeline (one per value of the axes that touch it)."""
        return list(
            dict.fromkeys(
                r.cell for r in self.unique_rows if r.pipeline == pipeline and r.task == task
            )
        )

    def cell_values(self, cell: str) -> dict[str, Any]:
        if not hasattr(self, "_cells"):
            self._cells: dict[str, dict[str, Any]] = {}
            for r in self.rows:
                self._cells.setdefault(r.cell, {a.path: r.grid.get(a.path) for a in self.axes})
        return self._cells.get(cell, {a.path: None for a in self.axes})

    def cell_label(self, cell: str, pipeline: str) -> str:
        """``quality=50, C=1`` for the axes that touch ``pipeline`` (empty without a grid)."""
        values = self.cell_values(cell)
        return ", ".join(
            f"{a.short}={label(values[a.path])}"
            for a in self.axes
            if a.path not in self.untouched.get(pipeline, set())
        )

    def best_cell(self, pipeline: str, task: str, metric: str) -> str | None:
        ref = self.reference(task)
        best: tuple[float, float, str] | None = None
        for cell in self.cells_of(pipeline, task):
            at_ref = self.value(cell, pipeline, task, ref, metric)
            if at_ref is None:
                continue
            others = [
                v
                for c in self.conditions[task]
                if (v := self.value(cell, pipeline, task, c, metric)) is not None
            ]
            score = (at_ref, sum(others) / len(others), cell)
            if best is None or score[:2] > best[:2]:
                best = score
        return None if best is None else best[2]

    def summary(self, task: str, metric: str) -> Summary:
        conds = self.conditions[task]
        pipes = [p for p in self.pipelines if self.cells_of(p, task)]
        values: dict[tuple[str, str], float | None] = {}
        best_cell: dict[str, str] = {}
        notes: dict[str, str] = {}
        for p in pipes:
            cell = self.best_cell(p, task, metric)
            if cell is None:
                continue
            best_cell[p] = cell
            for c in conds:
                values[(p, c)] = self.value(cell, p, task, c, metric)
            if self.axes:
                text = self.cell_label(cell, p)
                free = [a.short for a in self.axes if a.path in self.untouched.get(p, set())]
                if free:
                    text += f" ({', '.join(free)} does not affect it)"
                notes[p] = text
        summary = Summary(task, metric, conds, pipes, values, best_cell, notes, "")
        summary.reading = reading(summary, self.reference(task))
        return summary


def reading(s: Summary, ref: str) -> str:
    """One sentence from the numbers: who is best, by how much, and what costs it most."""
    name = CHOICES.get(s.metric, s.metric)
    scored = [(v, p) for p in s.pipelines if (v := s.values.get((p, ref))) is not None]
    if not scored:
        return f"No pipeline has a {name} under {ref}."
    scored.sort(key=lambda t: -t[0])
    top, best = scored[0]
    text = f"{best} is best on {ref} ({name} {top:.2f})"
    if len(scored) > 1:
        text += f", ahead of {scored[1][1]} ({scored[1][0]:.2f})"
    others = [
        (v, c) for c in s.conditions if c != ref and (v := s.values.get((best, c))) is not None
    ]
    if others:
        low, worst = min(others)
        if top - low >= 0.01:
            text += f", and loses {top - low:.2f} under {worst}"
            rivals = [
                (v, p)
                for p in s.pipelines
                if p != best and (v := s.values.get((p, worst))) is not None
            ]
            if rivals and max(rivals)[0] > low + 0.01:
                text += f", where {max(rivals)[1]} holds up better ({max(rivals)[0]:.2f})"
        else:
            text += f", and keeps it under every condition (within {max(top - low, 0):.2f})"
    return text + "."


def _signature(
    fingerprints: dict[str, str], pipeline: str, row: MetricRow, axes: list[str]
) -> str | None:
    if not fingerprints:
        return None
    own = f"pipelines.{pipeline}."
    fps = sorted(
        (k, v)
        for k, v in fingerprints.items()
        if not k.startswith("pipelines.") or k.startswith(own)
    )
    # settings no fingerprint covers (seed, split, tasks...) count by their value
    loose = [key(row.grid.get(a)) for a in axes if a.split(".", 1)[0] not in _FINGERPRINTED]
    return key([fps, loose])


def _untouched(rows: list[MetricRow], fps: dict[str, Any], axes: list[Axis]) -> dict[str, set[str]]:
    """Per pipeline, the axes along which its signature never changes."""
    paths = [a.path for a in axes]
    sig: dict[tuple[str, str], str | None] = {}
    values: dict[str, dict[str, str]] = {}
    for r in rows:
        sig[(r.cell, r.pipeline)] = _signature(fps.get(r.cell) or {}, r.pipeline, r, paths)
        values[r.cell] = {a: key(r.grid.get(a)) for a in paths}
    out: dict[str, set[str]] = {}
    for p in dict.fromkeys(r.pipeline for r in rows):
        out[p] = set()
        for a in axes:
            if len(a.values) < 2:
                continue
            groups: dict[tuple[str, ...], set[str | None]] = {}
            for (cell, pipe), s in sig.items():
                if pipe != p:
                    continue
                rest = tuple(v for k, v in values[cell].items() if k != a.path)
                groups.setdefault(rest, set()).add(s)
            if groups and all(len(g) == 1 and None not in g for g in groups.values()):
                out[p].add(a.path)
    return out


def build_model(result: RunResult) -> ReportModel:
    grid = result.experiment.grid
    names = short_names(list(grid))
    axes = [Axis(path, names[path], tuple(values)) for path, values in grid.items()]
    ok = [r for r in result.rows if r.ok]
    untouched = _untouched(ok, result.meta.get("fingerprints") or {}, axes) if axes else {}
    seen: set[tuple[str, ...]] = set()
    unique = []
    for r in ok:
        free = untouched.get(r.pipeline, set())
        k = (
            r.pipeline,
            r.task,
            r.condition,
            *(key(r.grid.get(a.path)) for a in axes if a.path not in free),
        )
        if k not in seen:
            seen.add(k)
            unique.append(r)
    tasks = list(dict.fromkeys(r.task for r in ok))
    conditions = {t: list(dict.fromkeys(r.condition for r in ok if r.task == t)) for t in tasks}
    metrics = {
        t: [m for m in CHOICES if any(finite(r.metric(m)) is not None for r in ok if r.task == t)]
        for t in tasks
    }
    model = ReportModel(
        axes=axes,
        tasks=tasks,
        pipelines=list(dict.fromkeys(r.pipeline for r in ok)),
        conditions=conditions,
        rows=ok,
        unique_rows=unique,
        untouched=untouched,
        metrics=metrics,
    )
    model.rows_by = {(r.cell, r.pipeline, r.task, r.condition): r for r in ok}
    model.by_values = {
        (r.pipeline, r.task, r.condition, *(key(r.grid.get(a.path)) for a in axes)): r for r in ok
    }
    return model


def display_row(model: ReportModel, row: MetricRow | Mapping[str, Any]) -> dict[str, Any]:
    """A result row (or a row of :func:`fzoo.quality.quality_rows`) for the tables: axis values
    as labels, ``any`` where the axis does not touch the row's pipeline."""
    out = row.to_dict() if isinstance(row, MetricRow) else dict(row)
    free = model.untouched.get(out["pipeline"], set())
    for a in model.axes:
        out[a.path] = ANY if a.path in free else label(out.get(a.path))
    return out
