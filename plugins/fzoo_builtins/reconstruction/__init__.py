"""Reconstruction-based feature extractors, recon-error (AEROBLADE) and dire (DIRE), and the
``feature-score`` classifier (a reconstruction distance used directly as the score).

Also registers the preset ``aeroblade-sd``: ``recon-error`` over the SD 1.5 and SD 2.1 VAEs (the
``sd15-vae`` and ``sd21-vae`` launderer presets; their weights must be in the Hugging Face cache
or given as folders), the autoencoders of Ricker et al. 2024 that are available as diffusers
folders (their third, Kandinsky 2.1's MoVQ, is not an ``AutoencoderKL``).
"""

from __future__ import annotations

from typing import Any

from fzoo import hookimpl
from fzoo_builtins.reconstruction.dire import DIRE
from fzoo_builtins.reconstruction.recon_error import ReconError
from fzoo_builtins.reconstruction.score import FeatureScore

__all__ = ["DIRE", "FeatureScore", "ReconError"]


@hookimpl
def fzoo_register_feature_extractors(register: Any) -> None:
    register(ReconError)
    register(DIRE)


@hookimpl
def fzoo_register_classifiers(register: Any) -> None:
    register(FeatureScore)


@hookimpl
def fzoo_register_presets(register: Any) -> None:
    register(
        "aeroblade-sd",
        component="recon-error",
        params={"launderers": ["sd15-vae", "sd21-vae"], "aggregate": "min"},
        kind="feature_extractor",
        description="AEROBLADE-style min reconstruction error over the SD 1.5 and SD 2.1 VAEs "
        "(L1 distance, not LPIPS)",
    )
