"""How much each derived class changed its source photos: PSNR and SSIM per class.

A derived image (laundered, JPEG-compressed, img2img, ...) remembers its source photo, so the
strength of the operation that made its class is measurable: peak signal-to-noise ratio in dB and
the structural similarity index (Wang, Bovik, Sheikh & Simoncelli, "Image quality assessment: from
error visibility to structural similarity", IEEE TIP 13(4), 2004; scikit-image's implementation,
Gaussian-free 7x7 windows, data range 1, averaged over the RGB channels). A launderer's class at
35 dB and one at 22 dB are different experiments; this puts the number beside the results.

Values are cached per (source content, chain of steps) in the cache namespace ``derived-quality``,
so a re-run reads them back.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np

from fzoo.cache import ArrayCache
from fzoo.components import stable_hash
from fzoo.data import Item
from fzoo.images import psnr

NAMESPACE = "derived-quality"
#: SSIM's window is 7 x 7: smaller images get no SSIM (PSNR only).
MIN_SSIM_SIDE = 7


class _Pixels(Protocol):
    def base(self, item: Item) -> np.ndarray: ...
    def image(self, item: Item) -> np.ndarray: ...


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """SSIM of two float images in [0, 1] (H x W x C), averaged over channels; NaN when a side
    is under 7 px or the shapes differ."""
    if a.shape != b.shape or min(a.shape[:2]) < MIN_SSIM_SIDE:
        return float("nan")
    from skimage.metrics import structural_similarity

    return float(structural_similarity(a, b, channel_axis=2, data_range=1.0))


def _pair(item: Item, mat: _Pixels, cache: ArrayCache) -> tuple[float, float] | None:
    key = stable_hash([NAMESPACE, item.base_hash, item.chain])
    cached = cache.get(NAMESPACE, key)
    if cached is not None:
        return float(cached[0]), float(cached[1])
    try:
        source, derived = mat.base(item), mat.image(item)
    except Exception:  # a failing launderer or perturbation is reported by the run itself
        return None
    if source.shape != derived.shape:  # a resize or crop changed the size: no pixel pairing
        value = (float("nan"), float("nan"))
    else:
        value = (psnr(source, derived), ssim(source, derived))
    cache.put(NAMESPACE, key, np.asarray(value, dtype=np.float64))
    return value


def _summary(values: Sequence[float]) -> dict[str, float | None]:
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return {"mean": None, "min": None}
    return {"mean": round(float(np.mean(finite)), 3), "min": round(float(np.min(finite)), 3)}


def derived_quality(
    items: Sequence[Item], mat: _Pixels, cache: ArrayCache
) -> dict[str, dict[str, Any]]:
    """Per derived class: ``n`` images paired with their source, ``psnr_db`` and ``ssim`` (mean
    and min over images with a finite value), ``identical`` (infinite PSNR: unchanged images),
    ``unpaired`` (size changed or the image could not be made)."""
    by_label: dict[str, list[tuple[float, float] | None]] = {}
    for it in items:
        if it.steps and it.record is not None and it.generator is None:
            by_label.setdefault(it.label, []).append(_pair(it, mat, cache))
    out: dict[str, dict[str, Any]] = {}
    for label, pairs in by_label.items():
        made = [p for p in pairs if p is not None]
        out[label] = {
            "n": len(made),
            "psnr_db": _summary([p[0] for p in made]),
            "ssim": _summary([p[1] for p in made]),
            "identical": sum(1 for p in made if p[0] == math.inf),
            "unpaired": sum(1 for p in made if math.isnan(p[0])) + len(pairs) - len(made),
        }
    return out


def quality_lines(per_cell: dict[str, dict[str, dict[str, Any]]]) -> list[str]:
    """Report lines for ``meta.derived_quality``; one set when every cell agrees."""
    distinct = {json.dumps(v, sort_keys=True): (cell, v) for cell, v in per_cell.items() if v}
    lines: list[str] = []
    for cell, classes in distinct.values():
        where = f" (cell {cell})" if len(distinct) > 1 else ""
        parts = []
        for label, q in classes.items():
            p, s = q["psnr_db"], q["ssim"]
            text = f"{label} {_fmt(p['mean'], '.2f')} dB (min {_fmt(p['min'], '.2f')})"
            text += f", SSIM {_fmt(s['mean'], '.3f')}, n={q['n']}"
            if q["identical"]:
                text += f", {q['identical']} unchanged"
            if q["unpaired"]:
                text += f", {q['unpaired']} unpaired"
            parts.append(text)
        lines.append(f"derived classes against their sources{where}: " + "; ".join(parts))
    return lines


def _fmt(value: float | None, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)
