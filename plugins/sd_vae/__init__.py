"""Built-in launderers: Stable Diffusion VAE round trips (``sd-vae``) and TAESD (``taesd``).

Also registers the preset ``fzoo-tiny-vae`` when the bundled tiny VAE (trained on CPU from pip
photos by ``train_tiny_vae.py``) is present in ``weights/fzoo-tiny-vae``; its files are checked
against ``SHA256SUMS`` when it is loaded.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fzoo import hookimpl
from fzoo.plugins.sd_vae.launderers import SDVAELaunderer, TAESDLaunderer

__all__ = ["BUNDLED_VAE", "SDVAELaunderer", "TAESDLaunderer"]

BUNDLED_VAE = Path(__file__).resolve().parent / "weights" / "fzoo-tiny-vae"


@hookimpl
def fzoo_register_launderers(register: Any) -> None:
    register(SDVAELaunderer)
    register(TAESDLaunderer)


@hookimpl
def fzoo_register_presets(register: Any) -> None:
    if (BUNDLED_VAE / "config.json").exists():
        register(
            "fzoo-tiny-vae",
            component="sd-vae",
            params={"weights": str(BUNDLED_VAE)},
            kind="launderer",
            description="bundled tiny SD-style KL autoencoder (8x, trained on CPU from pip "
            "photos; see plugins/sd_vae/train_tiny_vae.py)",
        )
