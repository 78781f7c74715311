"""fzoo: the forensic detector zoo.

This module is the public API a plugin needs: ``hookimpl``, the component base classes, the
:class:`Record` type and exact image I/O. Plugins import nothing else from fzoo, but for their
tests :mod:`fzoo.testing` (``check_component``, ``parametrize_with_checks``, ``check_plugin``),
which ``import fzoo`` does not load.
"""

from __future__ import annotations

from typing import Any

from fzoo.components import (
    Classifier,
    Component,
    Dataset,
    FeatureExtractor,
    Generator,
    Launderer,
    Params,
    Perturbation,
    Record,
    stable_hash,
)
from fzoo.config import create_component
from fzoo.fsutil import atomic_write_bytes, atomic_write_text
from fzoo.hookspecs import hookimpl
from fzoo.images import (
    DecodedImage,
    ImageError,
    decode_bytes,
    fit_to_multiple,
    is_image_path,
    load_image,
    quantize,
    to_array,
    to_tensor,
    to_uint8,
)
from fzoo.weights import (
    ResolvedWeights,
    WeightsError,
    WeightsIntegrityError,
    WeightsNotFoundError,
    verify_sha256,
    verify_sums,
    weight_hashes,
)
from fzoo.weights import resolve as resolve_weights

__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    """``fzoo.testing`` (the contract suite for plugin tests) is imported on first use."""
    if name == "testing":
        import importlib

        return importlib.import_module("fzoo.testing")
    raise AttributeError(f"module 'fzoo' has no attribute {name!r}")


__all__ = [
    "Classifier",
    "Component",
    "Dataset",
    "DecodedImage",
    "FeatureExtractor",
    "Generator",
    "ImageError",
    "Launderer",
    "Params",
    "Perturbation",
    "Record",
    "ResolvedWeights",
    "WeightsError",
    "WeightsIntegrityError",
    "WeightsNotFoundError",
    "__version__",
    "atomic_write_bytes",
    "atomic_write_text",
    "create_component",
    "decode_bytes",
    "fit_to_multiple",
    "hookimpl",
    "is_image_path",
    "load_image",
    "quantize",
    "resolve_weights",
    "stable_hash",
    "to_array",
    "to_tensor",
    "to_uint8",
    "verify_sha256",
    "verify_sums",
    "weight_hashes",
]
