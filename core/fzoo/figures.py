"""Figures for reports (matplotlib, Agg): ROC curves, confusion matrices, metric heatmaps,
average residual spectra per class, and example images with their error maps."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def radial_residual_spectrum(pixels: np.ndarray, bins: int = 48) -> np.ndarray:
    """Radially averaged power spectrum of a high-pass residual (Corvi et al. 2023 style).

    The residual is the grayscale image minus its 3x3 box blur; its power ``|FFT(r)|^2`` is
    averaged over rings of normalised radius in [0, 1] (1 = Nyquist) and returned in log10.
    """
    gray = pixels[..., :3] @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    padded = np.pad(gray, 1, mode="reflect")
    blur = sum(
        padded[1 + dy : 1 + dy + gray.shape[0], 1 + dx : 1 + dx + gray.shape[1]]
        for dy in (-1, 0, 1)
        for dx in (-1, 0, 1)
    )
    residual = gray - blur / 9.0
    power = np.abs(np.fft.fftshift(np.fft.fft2(residual))) ** 2
    h, w = power.shape
    yy, xx = np.mgrid[:h, :w]
    r = np.hypot((yy - h // 2) / (h / 2), (xx - w // 2) / (w / 2))
    idx = np.clip((r * bins).astype(int), 0, bins)
    sums = np.bincount(idx.ravel(), power.ravel(), minlength=bins + 1)[:bins]
    counts = np.bincount(idx.ravel(), minlength=bins + 1)[:bins]
    return np.log10(sums / np.maximum(counts, 1) + 1e-12)


def save(fig: Any, path: Path, tight: bool = True) -> Path:
    """Write ``fig`` as a PNG and close it; ``tight=False`` keeps the figure's own margins
    (much faster for a figure of many panels)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110 if tight else 100, bbox_inches="tight" if tight else None)
    _plt().close(fig)
    return path


def roc_figure(curves: list[dict[str, Any]], title: str) -> Any:
    """ROC curves: each entry has ``label``, ``fpr``, ``tpr`` and ``auc``."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(4.2, 4.0))
    for c in curves:
        auc = c.get("auc")
        name = f"{c['label']} (AUC {auc:.3f})" if isinstance(auc, float) else c["label"]
        ax.plot(c["fpr"], c["tpr"], lw=1.6, label=name)
    ax.plot([0, 1], [0, 1], ls=":", c="grey", lw=1)
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title=title)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.01)
    ax.legend(fontsize=7, loc="lower right")
    return fig


def confusion_figure(labels: list[str], matrix: list[list[int]], title: str) -> Any:
    """Row-normalised confusion matrix with counts, drawn like the laundering paper's."""
    plt = _plt()
    m = np.asarray(matrix, dtype=float)
    norm = m / np.maximum(m.sum(axis=1, keepdims=True), 1)
    size = 1.0 + 0.9 * len(labels)
    fig, ax = plt.subplots(figsize=(size + 0.8, size))
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    for i in range(len(labels)):
        for j in range(len(labels)):
            color = "white" if norm[i, j] > 0.6 else "black"
            text = f"{norm[i, j]:.2f}\n({int(m[i, j])})"
            ax.text(j, i, text, ha="center", va="center", fontsize=8, color=color)
    ax.set_xticks(range(len(labels)), labels, rotation=30, ha="right", fontsize=8)
    ax.set_yticks(range(len(labels)), labels, fontsize=8)
    ax.set(xlabel="predicted", ylabel="true", title=title)
    fig.colorbar(im, ax=ax, fraction=0.046)
    return fig


def heatmap_figure(
    rows: list[str], cols: list[str], values: np.ndarray, title: str, metric: str
) -> Any:
    """A metric table as a heatmap (e.g. pipeline x condition, or grid cell x condition)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(1.6 + 1.1 * len(cols), 0.9 + 0.45 * len(rows)))
    im = ax.imshow(
        values, cmap="viridis", vmin=0.5 if metric == "auc" else 0, vmax=1, aspect="auto"
    )
    for i in range(len(rows)):
        for j in range(len(cols)):
            v = values[i, j]
            text = "–" if np.isnan(v) else f"{v:.3f}"
            color = "white" if not np.isnan(v) and v < 0.8 else "black"
            ax.text(j, i, text, ha="center", va="center", fontsize=8, color=color)
    ax.set_xticks(range(len(cols)), cols, rotation=30, ha="right", fontsize=8)
    ax.set_yticks(range(len(rows)), rows, fontsize=8)
    ax.set_title(title, fontsize=9)
    fig.colorbar(im, ax=ax, fraction=0.046, label=metric)
    return fig


def spectra_figure(spectra: dict[str, np.ndarray]) -> Any:
    """Average residual spectra per class."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.2, 3.4))
    for label, s in spectra.items():
        x = np.linspace(0, 1, len(s))
        ax.plot(x, s, lw=1.5, label=label)
    ax.set(
        xlabel="normalised frequency (1 = Nyquist)",
        ylabel="log10 residual power",
        title="Average residual spectrum per class",
    )
    ax.legend(fontsize=8)
    return fig


def gallery_figure(examples: dict[str, list[dict[str, Any]]]) -> Any:
    """Example images per class (rows), with the error map against the source where derived."""
    plt = _plt()
    n_rows = len(examples)
    n_cols = max((len(v) for v in examples.values()), default=1)
    fig, axes = plt.subplots(
        n_rows, 2 * n_cols, figsize=(2.0 * 2 * n_cols, 2.1 * n_rows), squeeze=False
    )
    for r, (label, items) in enumerate(examples.items()):
        for c in range(n_cols):
            ax_img, ax_err = axes[r, 2 * c], axes[r, 2 * c + 1]
            for ax in (ax_img, ax_err):
                ax.axis("off")
            if c >= len(items):
                continue
            ex = items[c]
            ax_img.imshow(np.clip(ex["image"], 0, 1))
            ax_img.set_title(f"{label}", fontsize=8)
            if ex.get("error") is not None:
                ax_err.imshow(ex["error"], cmap="magma", vmin=0, vmax=ex["error_max"])
                ax_err.set_title(f"|diff| x{ex['gain']} (PSNR {ex['psnr']:.1f} dB)", fontsize=7)
    fig.tight_layout()
    return fig


def quality_figure(panels: list[dict[str, Any]], title: str) -> Any:
    """Metrics against PSNR, one panel per metric: benign series as lines, launderers as points.

    Each panel has ``metric``; ``series``, a transform family (e.g. ``jpeg``) -> ``(psnr, value,
    condition)`` points; ``points``, single conditions (launderers); ``clean`` and ``chance``,
    drawn as horizontal lines. At equal PSNR, a launderer below the benign lines removed more of
    what the detector uses than its distortion explains.
    """
    plt = _plt()
    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 4.0), squeeze=False)
    markers = ("*", "P", "X", "D", "^", "v", "s", "p")
    for ax, panel in zip(axes[0], panels, strict=True):
        for name, pts in panel["series"].items():
            pts = sorted(pts)
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", ms=4, lw=1.4, label=name)
            for x, y, cond in pts:
                ax.annotate(cond, (x, y), fontsize=6, xytext=(3, 3), textcoords="offset points")
        for k, (x, y, cond) in enumerate(panel["points"]):
            ax.scatter(
                [x], [y], marker=markers[k % len(markers)], s=120, zorder=3, label=cond,
                color=plt.get_cmap("Dark2")(k % 8), edgecolors="black", linewidths=0.6,
            )  # fmt: skip
        if panel.get("clean") is not None:
            ax.axhline(panel["clean"], ls="--", c="black", lw=1, label="clean")
        if panel.get("chance") is not None:
            ax.axhline(panel["chance"], ls=":", c="grey", lw=1, label="chance")
        ax.set(xlabel="PSNR against the unmodified test image (dB)", ylabel=panel["metric"])
        ax.set_ylim(0, 1.02)
        ax.legend(fontsize=7, loc="best")
    fig.suptitle(title, fontsize=10)
    return fig
