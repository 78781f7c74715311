"""Built-in generators: ``tiny-ldm`` (bundled latent diffusion) and ``diffusers-pipeline``.

Also registers the preset ``tiny-ldm-tae4ch``: ``tiny-ldm`` with the bundled weights trained on
the latents of ``fzoo-tae-4ch`` (a TAESD-architecture autoencoder, the laundering study's
launderer), whose images decode through that same decoder. Its weights lie inside the package,
so the preset is registered here rather than in registry.yaml; it is listed even when the
weights are absent, and using it then prints the commands that train them.
"""

from __future__ import annotations

from typing import Any

from fzoo import hookimpl
from fzoo_builtins.generators.pipeline import DiffusersPipeline
from fzoo_builtins.generators.tiny_ldm import TinyLDM, bundled_weights_dir

__all__ = ["DiffusersPipeline", "TinyLDM"]


@hookimpl
def fzoo_register_generators(register: Any) -> None:
    register(TinyLDM)
    register(DiffusersPipeline)


@hookimpl
def fzoo_register_presets(register: Any) -> None:
    register(
        "tiny-ldm-tae4ch",
        component="tiny-ldm",
        params={"weights": str(bundled_weights_dir("tiny-ldm-tae4ch"))},
        kind="generator",
        description="bundled tiny latent diffusion model on fzoo-tae-4ch latents, decoded by "
        "that same TAESD-architecture decoder (the study's launderer); see "
        "docs/models/tiny-ldm.md",
    )
