"""Built-in generators: ``tiny-ldm`` (bundled latent diffusion) and ``diffusers-pipeline``."""

from __future__ import annotations

from typing import Any

from fzoo import hookimpl
from fzoo.plugins.generators.pipeline import DiffusersPipeline
from fzoo.plugins.generators.tiny_ldm import TinyLDM

__all__ = ["DiffusersPipeline", "TinyLDM"]


@hookimpl
def fzoo_register_generators(register: Any) -> None:
    register(TinyLDM)
    register(DiffusersPipeline)
