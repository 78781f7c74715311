"""Colour statistics and saturation cues (McCloskey & Albright 2019)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from pydantic import Field

import fzoo

if TYPE_CHECKING:
    import torch

CHANNELS = ("r", "g", "b")
MOMENTS = ("mean", "std", "skew", "kurt")


class ColorStats(fzoo.FeatureExtractor):
    """Colour moments and saturation cues after S. McCloskey and M. Albright, "Detecting
    GAN-generated imagery using saturation cues", ICIP 2019.

    McCloskey & Albright observe that GAN generators normalise their internal activations, which
    leaves fewer saturated (clipped) and under-exposed pixels and a different distribution of
    HSV saturation than camera images. Per image (values clipped to [0, 1]) the feature vector
    is, in this order (see :meth:`feature_names`):

    - the mean, standard deviation, skewness ``m3 / s**3`` and excess kurtosis ``m4 / s**4 - 3``
      of each RGB channel, grouped by statistic (12 values; skewness and kurtosis are 0 for a
      constant channel);
    - the mean and standard deviation of the HSV saturation ``S = (max - min) / max`` (0 where
      ``max == 0``), then its histogram over ``saturation_bins`` equal bins of [0, 1] as
      fractions of the pixels (``saturation_bins`` values summing to 1);
    - the fraction of over-exposed pixels (largest channel ``>= 1 - clip_tolerance``) and of
      under-exposed pixels (smallest channel ``<= clip_tolerance``).

    Output ``[B, 16 + saturation_bins]`` float32; any image size works. Training-free and cheap:
    pair it with a linear classifier or with ``nearest-centroid``.
    """

    name = "color-stats"
    description = "RGB moments + HSV saturation cues (McCloskey & Albright 2019, ICIP)"
    # Bump ``version`` whenever the output for the same input and params changes: it is part of
    # the fingerprint, so cached features of the old version are not reused.
    version = "1"

    class Params(fzoo.Params):
        saturation_bins: int = Field(
            8, ge=2, le=256, description="Number of bins of the saturation histogram on [0, 1]."
        )
        clip_tolerance: float = Field(
            1.0 / 512.0,
            ge=0.0,
            lt=0.5,
            description="A pixel is over-/under-exposed within this distance of 1 / 0 "
            "(default: half an 8-bit step).",
        )

    params: Params

    @property
    def dim(self) -> int:
        """Length of the feature vector."""
        return 16 + self.params.saturation_bins

    def feature_names(self) -> list[str]:
        """A name for every column of :meth:`extract`'s output."""
        names = [f"{m}_{c}" for m in MOMENTS for c in CHANNELS]
        names += ["sat_mean", "sat_std"]
        names += [f"sat_hist_{k}" for k in range(self.params.saturation_bins)]
        names += ["overexposed", "underexposed"]
        return names

    def extract(self, batch: torch.Tensor) -> np.ndarray:
        if batch.dim() != 4 or batch.shape[1] != 3:
            raise ValueError(
                f"{self.name}: expected an RGB batch of shape [B, 3, H, W], "
                f"got {tuple(batch.shape)}"
            )
        b = batch.shape[0]
        if b == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        rgb = np.clip(batch.detach().cpu().double().numpy(), 0.0, 1.0).reshape(b, 3, -1)

        mean = rgb.mean(axis=2)
        centred = rgb - mean[:, :, None]
        var = (centred**2).mean(axis=2)
        std = np.sqrt(var)
        flat = std < 1e-12
        safe = np.where(flat, 1.0, std)
        skew = np.where(flat, 0.0, (centred**3).mean(axis=2) / safe**3)
        kurt = np.where(flat, 0.0, (centred**4).mean(axis=2) / safe**4 - 3.0)

        hi = rgb.max(axis=1)  # [B, N]
        lo = rgb.min(axis=1)
        sat = np.where(hi > 0, (hi - lo) / np.where(hi > 0, hi, 1.0), 0.0)
        bins = self.params.saturation_bins
        idx = np.minimum((sat * bins).astype(np.int64), bins - 1)
        hist = np.stack([np.bincount(row, minlength=bins) for row in idx]) / idx.shape[1]

        tol = self.params.clip_tolerance
        over = (hi >= 1.0 - tol).mean(axis=1)
        under = (lo <= tol).mean(axis=1)

        out = np.concatenate(
            [
                mean,
                std,
                skew,
                kurt,
                sat.mean(axis=1, keepdims=True),
                sat.std(axis=1, keepdims=True),
                hist,
                over[:, None],
                under[:, None],
            ],
            axis=1,
        )
        return out.astype(np.float32)
