"""Shared helpers of the built-in perturbations: batch checks and exact 8-bit round trips."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

import fzoo

if TYPE_CHECKING:
    import torch


def check_batch(batch: torch.Tensor, who: str) -> None:
    """Raise ValueError unless ``batch`` is an NCHW RGB floating-point tensor."""
    if batch.dim() != 4 or batch.shape[1] != 3:
        raise ValueError(
            f"{who}: expected an RGB batch of shape [B, 3, H, W], got {tuple(batch.shape)}"
        )
    if not batch.is_floating_point():
        raise ValueError(f"{who}: expected a floating-point batch, got {batch.dtype}")


def scaled(n: int, factor: float) -> int:
    """``n * factor`` rounded half up, at least 1 (a side length after scaling)."""
    return max(1, math.floor(n * factor + 0.5))


def to_uint8_images(batch: torch.Tensor) -> list[np.ndarray]:
    """NCHW float [0, 1] -> list of HWC uint8 arrays (round to nearest, clip to [0, 255])."""
    u8 = fzoo.to_uint8(batch.detach().cpu().float().numpy())
    return [np.ascontiguousarray(img.transpose(1, 2, 0)) for img in u8]


def from_uint8_images(images: list[np.ndarray], like: torch.Tensor) -> torch.Tensor:
    """List of HWC uint8 arrays (same shape) -> NCHW tensor in [0, 1], dtype/device of ``like``."""
    import torch

    if not images:
        return like.clone()
    stacked = np.stack(images).transpose(0, 3, 1, 2).astype(np.float32) / np.float32(255.0)
    return torch.from_numpy(np.ascontiguousarray(stacked)).to(dtype=like.dtype, device=like.device)
