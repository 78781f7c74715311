"""Built-in generators: ``tiny-ldm`` (bundled latent diffusion) and ``diffusers-pipeline``."""

from __future__ import annotations

from typing import Any

from fzoo import hookimpl
from fzoo_builtins.generators.pipeline import DiffusersPipeline
from fzoo_builtins.generators.tiny_ldm import TinyLDM

__all__ = ["DiffusersPipeline", "TinyLDM"]


@hookimpl
def fzoo_register_generators(register: Any) -> None:
    register(TinyLDM)
    register(DiffusersPipeline)
