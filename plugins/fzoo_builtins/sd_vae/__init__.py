"""Built-in launderers: Stable Diffusion VAE round trips (``sd-vae``) and TAESD (``taesd``).

Also registers the presets ``fzoo-tiny-vae`` (4 latent channels, like SD 1.x/2.x/XL) and
``fzoo-tiny-vae-16ch`` (16 channels, like SD3 and FLUX) when the bundled tiny VAEs (trained on
CPU from pip photos by ``train_tiny_vae.py``) are present under ``weights/``, and
``fzoo-tae-4ch`` (a 4-channel TAESD-architecture autoencoder in the reconstruction regime of SD's
VAEs, trained from a random initialisation on real photos by ``training/distill_tae_4ch.py``,
distilled from a TAEF2-based teacher). Files are checked against ``SHA256SUMS`` when they are
loaded; a missing bundled folder names the commands that rebuild it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fzoo import hookimpl
from fzoo_builtins.sd_vae.launderers import SDVAELaunderer, TAESDLaunderer

__all__ = [
    "BUNDLED_TAE_4CH",
    "BUNDLED_VAE",
    "BUNDLED_VAE_16CH",
    "SDVAELaunderer",
    "TAESDLaunderer",
]

BUNDLED_VAE = Path(__file__).resolve().parent / "weights" / "fzoo-tiny-vae"
BUNDLED_VAE_16CH = BUNDLED_VAE.with_name("fzoo-tiny-vae-16ch")
BUNDLED_TAE_4CH = BUNDLED_VAE.with_name("fzoo-tae-4ch")


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
            "photos; see training/train_tiny_vae.py)",
        )
    if (BUNDLED_VAE_16CH / "config.json").exists():
        register(
            "fzoo-tiny-vae-16ch",
            component="sd-vae",
            params={"weights": str(BUNDLED_VAE_16CH)},
            kind="launderer",
            description="bundled tiny KL autoencoder with 16 latent channels (as SD3/FLUX; "
            "see docs/models/fzoo-tiny-vae.md)",
        )
    register(
        "fzoo-tae-4ch",
        component="taesd",
        params={"weights": str(BUNDLED_TAE_4CH)},
        kind="launderer",
        description="bundled 4-channel 8x tiny autoencoder (TAESD architecture, trained from "
        "scratch on real photos by distillation; the laundering study's autoencoder; see "
        "docs/models/fzoo-tae-4ch.md)",
    )
