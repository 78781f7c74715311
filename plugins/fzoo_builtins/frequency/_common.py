"""Helpers of the frequency extractors: batch checks, BT.601 luma, radial pooling, resampling.

Private to ``fzoo_builtins.frequency``; everything works on numpy float64 arrays batched on axis 0.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

# ITU-R BT.601 luma weights (R, G, B), as used by Pillow's "L" conversion and Durall et al. 2020.
BT601 = np.array([0.299, 0.587, 0.114], dtype=np.float64)


def batch_to_numpy(batch: torch.Tensor, who: str) -> np.ndarray:
    """Check an NCHW RGB batch and return it as a float64 numpy array ``[B, 3, H, W]``."""
    if batch.dim() != 4 or batch.shape[1] != 3:
        raise ValueError(
            f"{who}: expected an RGB batch of shape [B, 3, H, W], got {tuple(batch.shape)}"
        )
    return batch.detach().cpu().double().numpy()


def luma(rgb: np.ndarray) -> np.ndarray:
    """ITU-R BT.601 luma ``0.299 R + 0.587 G + 0.114 B`` of ``[B, 3, H, W]`` -> ``[B, H, W]``."""
    return np.einsum("bchw,c->bhw", rgb, BT601)


def require_min_side(h: int, w: int, minimum: int, who: str, why: str) -> None:
    """Raise a clear ValueError when an image side is shorter than ``minimum`` pixels."""
    if min(h, w) < minimum:
        raise ValueError(
            f"{who}: image {w}x{h} (WxH) is too small; both sides must be at least {minimum} px "
            f"({why})"
        )


def radius_labels(h: int, w: int) -> tuple[np.ndarray, int]:
    """Integer radius of every bin of an fftshift-ed ``h x w`` spectrum, and the inscribed radius.

    The centre is the DC bin ``(h // 2, w // 2)``. Offsets are measured in frequency steps of the
    shorter side (``dy * m / h``, ``dx * m / w`` with ``m = min(h, w)``), so the rings are circles
    in frequency also for non-square images (for square images this is the plain pixel distance).
    Distances are rounded to the nearest integer; bins beyond the inscribed radius ``m // 2`` get
    the label ``-1`` (excluded).
    """
    m = min(h, w)
    dy = (np.arange(h) - h // 2) * (m / h)
    dx = (np.arange(w) - w // 2) * (m / w)
    dist = np.sqrt(dy[:, None] ** 2 + dx[None, :] ** 2)
    labels = np.rint(dist).astype(np.int64)
    r_max = m // 2
    labels[labels > r_max] = -1
    return labels, r_max


def radial_sums(
    values: np.ndarray, labels: np.ndarray, r_max: int
) -> tuple[np.ndarray, np.ndarray]:
    """Sums ``[B, r_max + 1]`` of ``values [B, H, W]`` over each integer radius, and the counts."""
    b = values.shape[0]
    n = r_max + 1
    keep = labels.ravel() >= 0
    lab = labels.ravel()[keep]
    flat = values.reshape(b, -1)[:, keep]
    offsets = (np.arange(b, dtype=np.int64) * n)[:, None]
    sums = np.bincount((lab[None, :] + offsets).ravel(), weights=flat.ravel(), minlength=b * n)
    counts = np.bincount(lab, minlength=n).astype(np.float64)
    return sums.reshape(b, n), counts


def radial_mean(values: np.ndarray, labels: np.ndarray, r_max: int) -> np.ndarray:
    """Mean of ``values [B, H, W]`` over each integer radius ``0..r_max`` -> ``[B, r_max + 1]``."""
    sums, counts = radial_sums(values, labels, r_max)
    return sums / np.maximum(counts, 1.0)[None, :]


def minmax(profile: np.ndarray) -> np.ndarray:
    """Min-max normalise each row to [0, 1]; a constant row becomes all zeros (no NaN)."""
    lo = profile.min(axis=1, keepdims=True)
    span = profile.max(axis=1, keepdims=True) - lo
    safe = np.where(span > 1e-12, span, 1.0)
    return np.where(span > 1e-12, (profile - lo) / safe, 0.0)


def resample_cubic(profile: np.ndarray, bins: int) -> np.ndarray:
    """Resample rows ``[B, n]`` (n >= 4) on [0, 1] to ``bins`` evenly spaced points (cubic spline).

    Not-a-knot cubic interpolation, the same as ``scipy.interpolate.interp1d(kind="cubic")``.
    """
    from scipy.interpolate import make_interp_spline

    n = profile.shape[1]
    if n == bins:
        return profile.copy()
    spline = make_interp_spline(np.linspace(0.0, 1.0, n), profile, k=3, axis=1)
    return np.asarray(spline(np.linspace(0.0, 1.0, bins)))


def pooling_matrix(n: int, size: int) -> np.ndarray:
    """``[size, n]`` matrix averaging ``n`` samples over ``size`` equal cells of ``[0, n)``.

    Cell ``i`` is the interval ``[i n / size, (i + 1) n / size)``; sample ``j`` covers
    ``[j, j + 1)`` and counts with its overlap length, so each row sums to 1. When ``size``
    divides ``n`` this is plain block averaging; when ``n < size`` a sample spreads over several
    cells (they get its value).
    """
    edges = np.arange(size + 1, dtype=np.float64) * (n / size)
    lo = np.maximum(edges[:-1, None], np.arange(n)[None, :])
    hi = np.minimum(edges[1:, None], np.arange(n)[None, :] + 1.0)
    overlap = np.clip(hi - lo, 0.0, None)
    return overlap / overlap.sum(axis=1, keepdims=True)
