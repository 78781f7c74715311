"""Built-in perturbations (robustness conditions): jpeg, resize, blur, crop, noise."""

from __future__ import annotations

from typing import Any

from fzoo import hookimpl
from fzoo_builtins.perturbations.blur import GaussianBlur
from fzoo_builtins.perturbations.crop import Crop
from fzoo_builtins.perturbations.jpeg import JPEG
from fzoo_builtins.perturbations.noise import GaussianNoise
from fzoo_builtins.perturbations.resize import Resize

__all__ = ["JPEG", "Crop", "GaussianBlur", "GaussianNoise", "Resize"]


@hookimpl
def fzoo_register_perturbations(register: Any) -> None:
    register(JPEG)
    register(Resize)
    register(GaussianBlur)
    register(Crop)
    register(GaussianNoise)
