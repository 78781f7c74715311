"""Additive white Gaussian noise."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from pydantic import Field

import fzoo
from fzoo_builtins.perturbations._common import check_batch

if TYPE_CHECKING:
    import torch


class GaussianNoise(fzoo.Perturbation):
    """Additive Gaussian noise, a robustness condition of Frank et al. 2020 (ICML) and of the
    perturbation studies following Wang et al. 2020 (CNNDetection, CVPR).

    ``x + n`` with ``n ~ N(0, (sigma / 255)^2)`` i.i.d. per pixel and channel, drawn from ``rng``
    (``rng.standard_normal`` over the whole ``[B, 3, H, W]`` batch, so the same seed gives the same
    noise), then clipped to [0, 1]. ``sigma`` is in 8-bit grey levels. No quantisation; size,
    dtype and device are kept.
    """

    name = "noise"
    description = "Additive Gaussian noise, sigma in 8-bit levels (Frank et al. 2020 protocol)"
    version = "1"

    class Params(fzoo.Params):
        sigma: float = Field(
            2.0, ge=0, le=255, description="Noise standard deviation in 8-bit grey levels (0..255)."
        )

    params: Params

    def apply(self, batch: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
        import torch

        check_batch(batch, self.name)
        noise = rng.standard_normal(tuple(batch.shape)) * (self.params.sigma / 255.0)
        noisy = batch.detach().cpu().double() + torch.from_numpy(noise)
        return noisy.clamp_(0.0, 1.0).to(dtype=batch.dtype, device=batch.device)
