"""The figures of an ablation report, drawn once as PNG files under ``figures/`` for report.md and
report.html: the metric against each grid axis, a heatmap (two axes) or parallel coordinates
(three or more), the metric against the test condition, and per pipeline compact ROC and
confusion-matrix grids. Metric figures are drawn for each metric a reader can choose."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fzoo.components import stable_hash
from fzoo.report_model import ANY, CHOICES, Axis, ReportModel, finite, key

MAX_CONDITIONS = 6  # panels per row of a small-multiple figure
MAX_CELLS = 12  # ROC / confusion panels per pipeline and task
MAX_PIPELINES_HEATMAP = 8


@dataclass
class Figure:
    name: str
    path: Path
    caption: str
    section: str  # grid, robustness, details
    metric: str | None = None
    task: str | None = None
    pipeline: str | None = None


def slug(*parts: str) -> str:
    text = "-".join(p for p in parts if p)
    out = "".join(c if c.isalnum() or c in "-_" else "_" for c in text)
    if len(out) > 80:  # keep long names unique with a hash of the full text
        out = f"{out[:70]}-{stable_hash(text, 8)}"
    return out


class Drawer:
    def __init__(self, model: ReportModel, result: Any, folder: Path) -> None:
        self.model = model
        self.result = result
        self.folder = folder
        self.figures: list[Figure] = []

    def save(self, fig: Any, name: str, caption: str, section: str, **kw: Any) -> None:
        from fzoo import figures

        path = figures.save(fig, self.folder / f"{name}.png", tight=False)
        self.figures.append(Figure(name, path, caption, section, **kw))

    def metrics(self) -> list[str]:
        return [m for m in CHOICES if any(m in ms for ms in self.model.metrics.values())]

    # ------------------------------------------------------------------ grid
    def slice(
        self, pipeline: str, task: str, condition: str, metric: str, axis: Axis, anchor: str
    ) -> list[float | None]:
        """The metric along ``axis`` with the other axes held at the ``anchor`` cell."""
        m = self.model
        fixed = dict(m.cell_values(anchor))
        out: list[float | None] = []
        for v in axis.values:
            fixed[axis.path] = v
            row = m.row_at(pipeline, task, condition, fixed)
            out.append(None if row is None else finite(row.metric(metric)))
        return out

    def axis_figures(self, metric: str) -> None:
        from fzoo.figures_grid import axis_figure

        m = self.model
        tasks = [t for t in m.tasks if metric in m.metrics[t]]
        for axis in m.axes:
            rows = []
            for task in tasks:
                panels = []
                for cond in m.conditions[task][:MAX_CONDITIONS]:
                    lines = []
                    for p in m.pipelines:
                        anchor = m.best_cell(p, task, metric)
                        if anchor is None:
                            continue
                        flat = axis.path in m.untouched.get(p, set())
                        y = self.slice(p, task, cond, metric, axis, anchor)
                        lines.append({"label": p, "y": y, "flat": flat})
                    panels.append({"title": f"{task} · {cond}", "lines": lines})
                rows.append(panels)
            if not rows:
                continue
            x = [float(v) for v in axis.values] if axis.numeric else None
            fig = axis_figure(
                rows, x, axis.labels, axis.short, CHOICES[metric], axis.log, m.pipelines
            )
            dashed = ", ".join(p for p in m.pipelines if axis.path in m.untouched.get(p, set()))
            caption = (
                f"{CHOICES[metric]} against {axis.short} ({axis.path}), a panel per task and "
                "condition, the other axes at each pipeline's best cell"
                + (
                    f"; dashed, drawn once: {dashed}, which {axis.short} does not affect"
                    if dashed
                    else ""
                )
            )
            self.save(fig, slug("axis", axis.short, metric), caption, "grid", metric=metric)

    def reference_and_hardest(self, task: str, metric: str) -> list[str]:
        """The reference condition and the one with the lowest mean metric over all rows."""
        m = self.model
        ref = m.reference(task)
        means = []
        for cond in m.conditions[task]:
            vals = [
                v
                for r in m.unique_rows
                if (r.task, r.condition) == (task, cond)
                and (v := m.value(r.cell, r.pipeline, task, cond, metric)) is not None
            ]
            if cond != ref and vals:
                means.append((sum(vals) / len(vals), cond))
        return [ref, min(means)[1]] if means else [ref]

    def heatmaps(self, metric: str) -> None:
        from fzoo.figures_grid import heatmaps_figure

        m = self.model
        ya, xa = m.axes
        for task in (t for t in m.tasks if metric in m.metrics[t]):
            rows = []
            conds = self.reference_and_hardest(task, metric)
            for p in m.pipelines[:MAX_PIPELINES_HEATMAP]:
                free = m.untouched.get(p, set())
                ys = [ANY] if ya.path in free else ya.labels
                xs = [ANY] if xa.path in free else xa.labels
                yv = ya.values[:1] if ya.path in free else ya.values
                xv = xa.values[:1] if xa.path in free else xa.values
                panels = []
                for cond in conds:
                    values = np.full((len(yv), len(xv)), np.nan)
                    for (i, vy), (j, vx) in itertools.product(enumerate(yv), enumerate(xv)):
                        row = m.row_at(p, task, cond, {ya.path: vy, xa.path: vx})
                        if row is not None and (v := finite(row.metric(metric))) is not None:
                            values[i, j] = v
                    if np.isnan(values).all():
                        continue
                    panels.append(
                        {
                            "title": f"{p} · {cond}",
                            "values": values,
                            "ylabels": ys,
                            "xlabels": xs,
                            "ylabel": ya.short,
                            "xlabel": xa.short,
                        }
                    )
                if panels:
                    rows.append(panels)
            if not rows:
                continue
            vmin = 0.5 if metric == "auc" else 0.0
            fig = heatmaps_figure(rows, vmin, CHOICES[metric])
            caption = (
                f"{CHOICES[metric]} over {ya.short} x {xa.short}, task {task}: a row per pipeline, "
                f"a column per condition ({' and the hardest, '.join(conds)}); '{ANY}' where an "
                "axis does not affect the pipeline"
            )
            self.save(fig, slug("heatmap", task, metric), caption, "grid", metric=metric, task=task)

    def parallel(self, metric: str) -> None:
        from fzoo.figures_grid import parallel_figure

        m = self.model
        for task in (t for t in m.tasks if metric in m.metrics[t]):
            panels = []
            for cond in m.conditions[task][:4]:
                lines = []
                for r in m.unique_rows:
                    if (r.task, r.condition) != (task, cond):
                        continue
                    coords = [
                        [key(v) for v in a.values].index(key(r.grid.get(a.path))) for a in m.axes
                    ]
                    value = m.value(r.cell, r.pipeline, task, cond, metric)
                    lines.append({"label": r.pipeline, "coords": coords, "value": value})
                ticks = [a.labels for a in m.axes]
                panels.append(
                    {
                        "title": f"{task} · {cond}",
                        "ticks": ticks,
                        "lines": lines,
                        "metric": CHOICES[metric],
                    }
                )
            fig = parallel_figure(panels, [a.short for a in m.axes], m.pipelines)
            caption = (
                f"parallel coordinates, task {task}: one line per grid cell and pipeline through "
                f"its values of {', '.join(a.short for a in m.axes)} to its {CHOICES[metric]} (a "
                "pipeline an axis does not affect is drawn once, at that axis' first value)"
            )
            self.save(
                fig, slug("parallel", task, metric), caption, "grid", metric=metric, task=task
            )

    # ------------------------------------------------------------------ robustness
    def robustness(self, metric: str) -> None:
        from fzoo.figures_grid import robustness_figure

        m = self.model
        tasks = [t for t in m.tasks if metric in m.metrics[t] and len(m.conditions[t]) > 1]
        if not tasks:
            return
        panels = []
        for task in tasks:
            s = m.summary(task, metric)
            lines = [
                {"label": p, "y": [s.values.get((p, c)) for c in s.conditions]}
                for p in s.pipelines
                if p in s.best_cell
            ]
            panels.append({"title": task, "conditions": s.conditions, "lines": lines})
        fig = robustness_figure(panels, CHOICES[metric], m.pipelines)
        caption = (
            f"{CHOICES[metric]} per test condition, a panel per task, each pipeline at its best "
            "cell"
        )
        self.save(fig, slug("robustness", metric), caption, "robustness", metric=metric)

    # ------------------------------------------------------------------ details
    def details(self) -> None:
        from fzoo.figures_grid import confusion_grid_figure, roc_grid_figure

        m = self.model
        details = {(d.cell, d.pipeline, d.task, d.condition): d for d in self.result.details}
        for p in m.pipelines:
            for task in m.tasks:
                metric = m.primary(task)
                cells = m.cells_of(p, task)
                best = m.best_cell(p, task, metric)
                cells = sorted(
                    cells,
                    key=lambda c: -(m.value(c, p, task, m.reference(task), metric) or -1.0),
                )[:MAX_CELLS]
                if best in cells:  # the best cell first
                    cells.remove(best)
                    cells.insert(0, best)
                rocs, confusions = [], []
                ref = m.reference(task)
                for cell in cells:
                    title = m.cell_label(cell, p) or p
                    curves = []
                    for cond in m.conditions[task]:
                        d = details.get((cell, p, task, cond))
                        if d and d.roc:
                            auc = m.value(cell, p, task, cond, "auc")
                            curves.append({"label": cond, **d.roc, "auc": auc})
                    if curves:
                        rocs.append({"title": title, "curves": curves})
                    d = details.get((cell, p, task, ref))
                    if d and d.labels:
                        confusions.append(
                            {"title": title, "labels": d.labels, "matrix": d.confusion}
                        )
                more = len(m.cells_of(p, task)) - len(cells)
                extra = f"; the {len(cells)} best of {len(cells) + more} cells" if more else ""
                if rocs:
                    self.save(
                        roc_grid_figure(rocs),
                        slug("roc", task, p),
                        f"ROC curves, task {task}, pipeline {p}: a panel per cell, a curve "
                        f"per condition{extra}",
                        "details",
                        task=task,
                        pipeline=p,
                    )
                if confusions:
                    self.save(
                        confusion_grid_figure(confusions),
                        slug("confusion", task, p),
                        f"confusion matrices, task {task}, pipeline {p}, condition {ref} "
                        f"(rows: true class){extra}",
                        "details",
                        task=task,
                        pipeline=p,
                    )

    def all(self) -> list[Figure]:
        m = self.model
        for metric in self.metrics():
            if m.axes:
                self.axis_figures(metric)
                if len(m.axes) == 2:
                    self.heatmaps(metric)
                elif len(m.axes) > 2:
                    self.parallel(metric)
            self.robustness(metric)
        self.details()
        return self.figures


def draw_figures(model: ReportModel, result: Any, folder: Path) -> list[Figure]:
    """Draw every figure of the report into ``folder``; returns them in page order."""
    return Drawer(model, result, folder).all()
