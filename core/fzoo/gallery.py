"""What a report shows of the images themselves: examples per class with their error maps
against the source photo, and average residual spectra per class."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import numpy as np

from fzoo.data import Item, Materializer
from fzoo.figures import radial_residual_spectrum
from fzoo.images import psnr  # noqa: F401  (fzoo.gallery.psnr: the old name)


def _crop(px: np.ndarray, size: int) -> np.ndarray:
    h, w = px.shape[:2]
    s = min(size, h, w)
    y, x = (h - s) // 2, (w - s) // 2
    return px[y : y + s, x : x + s]


def collect_gallery(
    items: list[Item],
    mat: Materializer,
    examples_per_class: int = 3,
    spectra_per_class: int = 24,
    crop: int = 128,
) -> dict[str, Any]:
    """Examples (with error maps for derived images) and mean residual spectra, per label."""
    by_label: dict[str, list[Item]] = defaultdict(list)
    seen: dict[str, set[str]] = defaultdict(set)
    later: dict[str, list[Item]] = defaultdict(list)
    for it in items:  # one item per source first, so examples show different photos
        if it.source in seen[it.label]:
            later[it.label].append(it)
        else:
            seen[it.label].add(it.source)
            by_label[it.label].append(it)
    for label, rest in later.items():
        by_label[label].extend(rest)
    examples: dict[str, list[dict[str, Any]]] = {}
    spectra: dict[str, np.ndarray] = {}
    for label, group in by_label.items():
        shown: list[dict[str, Any]] = []
        sums: list[np.ndarray] = []
        for k, it in enumerate(group[: max(examples_per_class, spectra_per_class)]):
            try:
                px = mat.image(it)
            except Exception:  # a broken launderer is reported elsewhere
                continue
            if min(px.shape[:2]) >= 8:
                spec = radial_residual_spectrum(px)
                if k < spectra_per_class and (not sums or spec.shape == sums[0].shape):
                    sums.append(spec)
            if len(shown) >= examples_per_class:
                continue
            entry: dict[str, Any] = {"image": _crop(px, crop), "item": it.id, "error": None}
            if it.steps and it.record is not None:
                try:
                    origin = mat.base(it)
                except Exception:
                    origin = None
                if origin is not None and origin.shape == px.shape:
                    diff = np.abs(px - origin).mean(axis=2)
                    gain = 8
                    entry.update(
                        error=_crop(diff, crop) * gain,
                        error_max=1.0,
                        gain=gain,
                        psnr=psnr(px, origin),
                    )
            shown.append(entry)
        examples[label] = shown
        if sums:
            spectra[label] = np.mean(sums, axis=0)
    return {"examples": examples, "spectra": spectra}
