"""Azimuthally averaged Fourier log-spectrum (Durall et al. 2020)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from pydantic import Field

import fzoo
from fzoo_builtins.frequency._common import (
    batch_to_numpy,
    luma,
    minmax,
    radial_mean,
    radius_labels,
    require_min_side,
    resample_cubic,
)

if TYPE_CHECKING:
    import torch

MIN_SIDE = 8


class FFTSpectrum(fzoo.FeatureExtractor):
    """1-D Fourier power profile of Durall et al. 2020, "Watch your up-convolution" (CVPR).

    Per image: grayscale ``g`` (ITU-R BT.601 luma of the RGB values in [0, 1]);
    ``F = fftshift(fft2(g)) + 1e-8``; ``M = 20 * ln|F|``; the profile is the azimuthal average of
    ``M`` over integer radii ``0..R`` from the DC bin, ``R = min(H, W) // 2`` the inscribed radius
    (rings are circles in frequency also for non-square images, see ``radius_labels``); it is
    min-max normalised to [0, 1] (a flat profile gives zeros), resampled to ``bins`` evenly
    spaced points with a cubic spline (scipy, not-a-knot, as ``interp1d(kind="cubic")``) and
    clipped to [0, 1] to remove the spline's overshoot. Bin 0 is DC, the last bin the Nyquist
    radius of the shorter side, whatever the image size.

    Images with a side shorter than 8 px raise ``ValueError``: their profile would have fewer
    than 5 radii, too few for a meaningful spectrum or for cubic resampling. Output
    ``[B, bins]`` float32. Durall et al. classify it with logistic regression or an SVM.
    """

    name = "fft-spectrum"
    description = "Azimuthally averaged FFT log-magnitude profile (Durall et al. 2020, CVPR)"
    version = "1"

    class Params(fzoo.Params):
        bins: int = Field(
            64, ge=4, le=4096, description="Points of the resampled radial profile (4..4096)."
        )

    params: Params

    def extract(self, batch: torch.Tensor) -> np.ndarray:
        rgb = batch_to_numpy(batch, self.name)
        b, _, h, w = rgb.shape
        require_min_side(h, w, MIN_SIDE, self.name, "the radial profile needs at least 5 radii")
        if b == 0:
            return np.zeros((0, self.params.bins), dtype=np.float32)
        g = luma(rgb)
        spectrum = np.fft.fftshift(np.fft.fft2(g, axes=(-2, -1)), axes=(-2, -1)) + 1e-8
        magnitude = 20.0 * np.log(np.abs(spectrum))
        labels, r_max = radius_labels(h, w)
        profile = minmax(radial_mean(magnitude, labels, r_max))
        out = np.clip(resample_cubic(profile, self.params.bins), 0.0, 1.0)
        return out.astype(np.float32)
