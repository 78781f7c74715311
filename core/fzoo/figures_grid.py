"""Small-multiple figures of an ablation (matplotlib, Agg; imported when a figure is drawn): the
metric against one grid axis, two axes as heatmaps, more as parallel coordinates, the metric
against the test condition, and compact ROC / confusion grids."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from fzoo.figures import _plt

Panel = dict[str, Any]
_DASHES = (0, (4, 2))


def _grid(
    n_rows: int,
    n_cols: int,
    w: float,
    h: float,
    sharey: bool = True,
    *,
    top: float = 0.75,
    right: float = 0.2,
    gap: tuple[float, float] = (0.45, 0.75),
) -> tuple[Any, Any]:
    """A figure of ``n_rows`` x ``n_cols`` panels of ``w`` x ``h`` inches with fixed margins
    (in inches: no tight layout, which costs more than drawing on a figure of many panels)."""
    plt = _plt()
    left, bottom = 0.75, 0.75
    width = left + right + n_cols * w + (n_cols - 1) * gap[0]
    height = top + bottom + n_rows * h + (n_rows - 1) * gap[1]
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(width, height), squeeze=False, sharey=sharey)
    fig.subplots_adjust(
        left=left / width, right=1 - right / width, bottom=bottom / height,
        top=1 - top / height, wspace=gap[0] / w, hspace=gap[1] / h,
    )  # fmt: skip
    return fig, axes


def _colors(names: list[str]) -> dict[str, Any]:
    cmap = _plt().get_cmap("tab10")
    return {n: cmap(k % 10) for k, n in enumerate(names)}


def _nan(values: list[float | None]) -> np.ndarray:
    return np.array([np.nan if v is None else v for v in values], dtype=float)


def axis_figure(
    rows: list[list[Panel]],
    x: list[float] | None,
    xlabels: list[str],
    xlabel: str,
    ylabel: str,
    log: bool,
    pipelines: list[str],
) -> Any:
    """The metric against one grid axis: a panel per (task, condition), a line per pipeline.

    Each panel has ``title`` and ``lines`` (``label``, ``y`` per axis value, ``flat``: a
    pipeline the axis does not touch, drawn once as a dashed level). ``x`` holds numeric axis
    values (None: categorical, at equal spacing).
    """
    n_cols = max(len(r) for r in rows)
    fig, axes = _grid(len(rows), n_cols, 2.7, 2.2)
    colors = _colors(pipelines)
    pos = np.asarray(x if x is not None else range(len(xlabels)), dtype=float)
    for i, panels in enumerate(rows):
        for j in range(n_cols):
            ax = axes[i, j]
            if j >= len(panels):
                ax.axis("off")
                continue
            panel = panels[j]
            for line in panel["lines"]:
                y = _nan(line["y"])
                color = colors.get(line["label"])
                if line.get("flat"):
                    level = next((v for v in y if not np.isnan(v)), np.nan)
                    ax.axhline(
                        level,
                        color=color,
                        ls=_DASHES,
                        lw=1.2,
                        label=f"{line['label']} (not affected)",
                    )
                else:
                    ax.plot(pos, y, marker="o", ms=3.5, lw=1.5, color=color, label=line["label"])
            if log:
                ax.set_xscale("log")
            ax.set_xticks(pos, xlabels, fontsize=7, rotation=30 if len(xlabels) > 4 else 0)
            ax.minorticks_off()
            ax.tick_params(labelsize=7)
            ax.set_title(panel["title"], fontsize=8)
            ax.grid(alpha=0.3)
            if i == len(rows) - 1:
                ax.set_xlabel(xlabel, fontsize=8)
            if j == 0:
                ax.set_ylabel(ylabel, fontsize=8)
    _legend(fig, axes)
    return fig


def _legend(fig: Any, axes: Any) -> None:
    handles: dict[str, Any] = {}
    for ax in axes.flat:
        for h, lab in zip(*ax.get_legend_handles_labels(), strict=True):
            handles.setdefault(lab, h)
    if handles:
        fig.legend(
            list(handles.values()),
            list(handles),
            loc="upper center",
            ncol=min(len(handles), 6),
            fontsize=7,
            frameon=False,
            bbox_to_anchor=(0.5, 1.0),
        )


def heatmaps_figure(rows: list[list[Panel]], vmin: float, metric: str) -> Any:
    """Two grid axes as a heatmap per (pipeline, condition). Each panel has ``title``,
    ``ylabels``/``xlabels`` (a single ``any`` where the axis does not touch the pipeline),
    ``ylabel``/``xlabel`` and ``values`` (2-D, NaN where missing)."""
    n_cols = max(len(r) for r in rows)
    fig, axes = _grid(
        len(rows), n_cols, 2.3, 1.9, sharey=False, top=0.4, right=1.0, gap=(0.75, 0.75)
    )
    im = None
    for i, panels in enumerate(rows):
        for j in range(n_cols):
            ax = axes[i, j]
            if j >= len(panels):
                ax.axis("off")
                continue
            p = panels[j]
            values = np.asarray(p["values"], dtype=float)
            im = ax.imshow(values, cmap="viridis", vmin=vmin, vmax=1, aspect="auto")
            for (a, b), v in np.ndenumerate(values):
                text = "–" if np.isnan(v) else f"{v:.2f}"
                color = "white" if not np.isnan(v) and v < vmin + 0.6 * (1 - vmin) else "black"
                ax.text(b, a, text, ha="center", va="center", fontsize=7, color=color)
            ax.set_xticks(range(len(p["xlabels"])), p["xlabels"], fontsize=7)
            ax.set_yticks(range(len(p["ylabels"])), p["ylabels"], fontsize=7)
            ax.set_xlabel(p["xlabel"], fontsize=7)
            ax.set_ylabel(p["ylabel"], fontsize=7)
            ax.set_title(p["title"], fontsize=8)
    if im is not None:
        width, height = fig.get_size_inches()
        bar = fig.add_axes((1 - 0.75 / width, 0.3, 0.12 / width, 0.4))
        fig.colorbar(im, cax=bar, label=metric)
    return fig


def parallel_figure(panels: list[Panel], axis_names: list[str], pipelines: list[str]) -> Any:
    """Parallel coordinates, a panel per condition: one vertical axis per grid axis (values at
    equal spacing, labelled) and the metric last; a polyline per (cell, pipeline).

    Each panel has ``title``, ``ticks`` (per grid axis, its value labels) and ``lines``
    (``label``, ``coords`` = index of the value per grid axis, ``value`` = the metric)."""
    fig, axes = _grid(1, len(panels), 2.2 + 1.0 * len(axis_names), 3.2, sharey=False)
    colors = _colors(pipelines)
    n = len(axis_names)
    for ax, p in zip(axes[0], panels, strict=False):
        for line in p["lines"]:
            if line["value"] is None:
                continue
            ys = [(c + 0.5) / len(t) for c, t in zip(line["coords"], p["ticks"], strict=True)] + [
                line["value"]
            ]
            ax.plot(
                range(n + 1),
                ys,
                color=colors.get(line["label"]),
                alpha=0.7,
                lw=1.2,
                label=line["label"],
            )
        for k in range(n + 1):
            ax.axvline(k, color="grey", lw=0.8)
        for k, ticks in enumerate(p["ticks"]):
            for c, t in enumerate(ticks):
                ax.text(
                    k,
                    (c + 0.5) / len(ticks),
                    t,
                    fontsize=6,
                    ha="right",
                    va="center",
                    bbox={"fc": "white", "ec": "none", "alpha": 0.7, "pad": 0.5},
                )
        ax.set_xticks(range(n + 1), [*axis_names, p["metric"]], fontsize=7, rotation=20)
        ax.set_ylim(0, 1.02)
        ax.yaxis.tick_right()  # the y scale is the metric's, the last axis
        ax.tick_params(axis="y", labelsize=7)
        ax.set_title(p["title"], fontsize=8)
    _legend(fig, axes)
    return fig


def robustness_figure(panels: list[Panel], metric: str, pipelines: list[str]) -> Any:
    """The metric against the test condition, a panel per task, a line per pipeline (each at
    its best cell). Each panel has ``title``, ``conditions`` and ``lines`` (``label``, ``y``)."""
    width = max(2.8, 0.55 * max(len(p["conditions"]) for p in panels) + 1.2)
    fig, axes = _grid(1, len(panels), width, 2.8, sharey=True)
    colors = _colors(pipelines)
    for ax, p in zip(axes[0], panels, strict=True):
        pos = np.arange(len(p["conditions"]))
        for line in p["lines"]:
            ax.plot(
                pos,
                _nan(line["y"]),
                marker="o",
                ms=4,
                lw=1.5,
                label=line["label"],
                color=colors.get(line["label"]),
            )
        ax.set_xticks(pos, p["conditions"], rotation=30, ha="right", fontsize=7)
        ax.tick_params(axis="y", labelsize=7)
        ax.set_title(p["title"], fontsize=8)
        ax.set_ylabel(metric, fontsize=8)
        ax.grid(alpha=0.3)
    _legend(fig, axes)
    return fig


def _cols(n: int) -> int:
    return min(n, 4)


def roc_grid_figure(panels: list[Panel]) -> Any:
    """ROC curves as small multiples: a panel per cell, a curve per condition (``title``,
    ``curves`` with ``label``, ``fpr``, ``tpr``, ``auc``)."""
    n_cols = _cols(len(panels))
    n_rows = math.ceil(len(panels) / n_cols)
    fig, axes = _grid(n_rows, n_cols, 2.2, 2.1, top=0.4)
    for k, ax in enumerate(axes.flat):
        if k >= len(panels):
            ax.axis("off")
            continue
        for c in panels[k]["curves"]:
            auc = c.get("auc")
            name = f"{c['label']} ({auc:.2f})" if isinstance(auc, float) else c["label"]
            ax.plot(c["fpr"], c["tpr"], lw=1.2, label=name)
        ax.plot([0, 1], [0, 1], ls=":", c="grey", lw=0.8)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.01)
        ax.tick_params(labelsize=6)
        ax.set_title(panels[k]["title"], fontsize=7)
        ax.legend(fontsize=6, loc="lower right")
    fig.supxlabel("false positive rate", fontsize=8)
    fig.supylabel("true positive rate", fontsize=8)
    return fig


def confusion_grid_figure(panels: list[Panel]) -> Any:
    """Row-normalised confusion matrices as small multiples (``title``, ``labels``,
    ``matrix``); rows are the true class."""
    n_cols = _cols(len(panels))
    n_rows = math.ceil(len(panels) / n_cols)
    n_labels = max(len(p["labels"]) for p in panels)
    side = 1.0 + 0.5 * n_labels
    fig, axes = _grid(n_rows, n_cols, side, side, sharey=False, top=0.4, gap=(0.6, 0.9))
    for k, ax in enumerate(axes.flat):
        if k >= len(panels):
            ax.axis("off")
            continue
        p = panels[k]
        m = np.asarray(p["matrix"], dtype=float)
        norm = m / np.maximum(m.sum(axis=1, keepdims=True), 1)
        ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
        for (i, j), v in np.ndenumerate(norm):
            ax.text(
                j,
                i,
                f"{v:.2f}\n({int(m[i, j])})",
                ha="center",
                va="center",
                fontsize=6,
                color="white" if v > 0.6 else "black",
            )
        labels = p["labels"]
        ax.set_xticks(range(len(labels)), labels, rotation=30, ha="right", fontsize=6)
        ax.set_yticks(range(len(labels)), labels if k % n_cols == 0 else [], fontsize=6)
        ax.set_title(p["title"], fontsize=7)
    fig.supxlabel("predicted", fontsize=8)
    fig.supylabel("true", fontsize=8)
    return fig
