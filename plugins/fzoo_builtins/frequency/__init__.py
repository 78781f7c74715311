"""Built-in frequency feature extractors: fft-spectrum, dct-spectrum, residual-fingerprint."""

from __future__ import annotations

from typing import Any

from fzoo import hookimpl
from fzoo_builtins.frequency.dct import DCTSpectrum
from fzoo_builtins.frequency.fft import FFTSpectrum
from fzoo_builtins.frequency.residual import ResidualFingerprint

__all__ = ["DCTSpectrum", "FFTSpectrum", "ResidualFingerprint"]


@hookimpl
def fzoo_register_feature_extractors(register: Any) -> None:
    register(FFTSpectrum)
    register(DCTSpectrum)
    register(ResidualFingerprint)
