"""Gaussian blur (separable, reflect padding)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
from pydantic import Field

import fzoo
from fzoo_builtins.perturbations._common import check_batch

if TYPE_CHECKING:
    import torch


def gaussian_kernel(sigma: float) -> np.ndarray:
    """Normalised 1-D Gaussian of radius ``ceil(3 sigma)``; ``[1.0]`` for ``sigma == 0``."""
    if sigma <= 0:
        return np.ones(1)
    radius = math.ceil(3.0 * sigma)
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    k = np.exp(-(x**2) / (2.0 * sigma**2))
    return k / k.sum()


class GaussianBlur(fzoo.Perturbation):
    """Gaussian blur, a robustness condition of Wang et al. 2020 (CNNDetection, CVPR: blur with
    sigma ~ U[0, 3] as augmentation and test perturbation) and Frank et al. 2020 (ICML).

    Separable convolution of every channel with a normalised Gaussian of standard deviation
    ``sigma`` pixels and radius ``ceil(3 sigma)``; borders by reflection about the edge pixel
    (``d c b | a b c d``, numpy/torch ``"reflect"``, scipy ``"mirror"``; valid for any image
    size). ``sigma=0`` is the identity. No quantisation; size, dtype and device are kept; values
    stay in [0, 1]. ``rng`` is not used.
    """

    name = "blur"
    description = "Gaussian blur with reflect padding (Wang et al. 2020 protocol)"
    version = "1"

    class Params(fzoo.Params):
        sigma: float = Field(
            1.0,
            ge=0,
            le=100,
            description="Standard deviation in pixels (kernel radius ceil(3 sigma)).",
        )

    params: Params

    def apply(self, batch: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
        import torch
        from scipy import ndimage

        check_batch(batch, self.name)
        kernel = gaussian_kernel(self.params.sigma)
        if kernel.size == 1 or batch.shape[0] == 0:
            return batch.clone()
        arr = batch.detach().cpu().double().numpy()
        arr = ndimage.correlate1d(arr, kernel, axis=2, mode="mirror")
        arr = ndimage.correlate1d(arr, kernel, axis=3, mode="mirror")
        return torch.from_numpy(arr).to(dtype=batch.dtype, device=batch.device)
