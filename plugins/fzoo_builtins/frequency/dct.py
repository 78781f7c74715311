"""Pooled 2-D DCT log-spectrum (Frank et al. 2020)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import numpy as np
from pydantic import Field

import fzoo
from fzoo_builtins.frequency._common import batch_to_numpy, luma, pooling_matrix

if TYPE_CHECKING:
    import torch

EPS = 1e-6


class DCTSpectrum(fzoo.FeatureExtractor):
    """Pooled DCT log-spectrum after Frank et al. 2020, "Leveraging frequency analysis for deep
    fake image recognition" (ICML).

    Per image (optionally centre-cropped to ``crop`` x ``crop`` first; a smaller image raises
    ``ValueError``): the orthonormal 2-D DCT-II (``scipy.fft.dctn(type=2, norm="ortho")``) of the
    BT.601 luma (``channels="gray"``) or of each RGB channel (``channels="rgb"``), then
    ``log(|DCT| + 1e-6)``.

    Pooling (not in the paper, which uses fixed 256 x 256 inputs and keeps every coefficient):
    the ``H x W`` coefficient plane is split into a regular ``size x size`` grid of equal cells
    (cell ``(i, j)`` spans rows ``[i H/size, (i+1) H/size)`` and columns likewise) and the
    log-magnitude is averaged in each cell, coefficients straddling a cell border counting with
    their overlap fraction. Any image size thus gives the same vector length, and cell ``(i, j)``
    always covers the same band of normalised frequencies. Output ``[B, C * size * size]`` float32,
    channel-major then row-major (``C`` = 1 for gray, 3 for rgb). The paper standardises every
    coefficient with train-set mean and std; do that in the classifier (e.g. a StandardScaler).
    """

    name = "dct-spectrum"
    description = "Block-pooled 2-D DCT-II log-magnitude spectrum (Frank et al. 2020, ICML)"
    version = "1"

    class Params(fzoo.Params):
        channels: Literal["gray", "rgb"] = Field(
            "gray", description="Transform the BT.601 luma ('gray') or each RGB channel ('rgb')."
        )
        size: int = Field(
            16, ge=1, le=1024, description="Pooled grid side: size*size values per channel."
        )
        crop: int | None = Field(
            None,
            ge=1,
            le=65_536,
            description="Centre-crop to crop x crop pixels before the DCT (None: whole image); "
            "an image smaller than crop raises an error.",
        )

    params: Params

    def extract(self, batch: torch.Tensor) -> np.ndarray:
        from scipy.fft import dctn

        p = self.params
        rgb = batch_to_numpy(batch, self.name)
        _, _, h, w = rgb.shape
        if p.crop is not None:
            if h < p.crop or w < p.crop:
                raise ValueError(
                    f"{self.name}: cannot centre-crop {p.crop}x{p.crop} from a {w}x{h} (WxH) image"
                )
            top, left = (h - p.crop) // 2, (w - p.crop) // 2
            rgb = rgb[:, :, top : top + p.crop, left : left + p.crop]
            h = w = p.crop
        planes = luma(rgb)[:, None] if p.channels == "gray" else rgb
        coeffs = dctn(planes, type=2, norm="ortho", axes=(-2, -1))
        logmag = np.log(np.abs(coeffs) + EPS)
        rows, cols = pooling_matrix(h, p.size), pooling_matrix(w, p.size)
        pooled = np.einsum("ih,bchw,jw->bcij", rows, logmag, cols, optimize=True)
        b, c = pooled.shape[:2]
        return pooled.reshape(b, c * p.size * p.size).astype(np.float32)
