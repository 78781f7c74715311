"""Gamma correction, a benign tonal post-processing condition."""

from __future__ import annotations

import numpy as np
import torch
from pydantic import Field

import fzoo


class Gamma(fzoo.Perturbation):
    """Gamma correction ``y = x ** gamma``: the power-law contrast enhancement whose detection
    M. C. Stamm and K. J. R. Liu study in "Forensic detection of image manipulation using
    statistical intrinsic fingerprints" (IEEE TIFS 5(3), 2010).

    Applied to every channel of the batch after clipping it to [0, 1]; ``gamma > 1`` darkens the
    mid-tones, ``gamma < 1`` brightens them, ``gamma = 1`` is the identity; 0 and 1 are fixed
    points, so clipped pixels stay clipped. No 8-bit quantisation; shape, dtype and device are
    kept. Deterministic: ``rng`` is not used.
    """

    name = "gamma"
    description = "Gamma correction x ** gamma (a benign tonal adjustment)"
    version = "1"

    class Params(fzoo.Params):
        gamma: float = Field(
            1.2, gt=0, le=10, description="Exponent: > 1 darkens, < 1 brightens, 1 = identity."
        )

    params: Params

    def apply(self, batch: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
        if batch.dim() != 4 or batch.shape[1] != 3 or not batch.is_floating_point():
            raise ValueError(
                f"{self.name}: expected a float RGB batch [B, 3, H, W], got "
                f"{tuple(batch.shape)} {batch.dtype}"
            )
        return batch.clamp(0.0, 1.0).pow(self.params.gamma)
