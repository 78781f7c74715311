"""fzoo: the forensic detector zoo.

This module is the public API a plugin needs: ``hookimpl``, the component base classes, the
:class:`Record` type and exact image I/O. Plugins import nothing else from fzoo.
"""

from __future__ import annotations

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
)

__version__ = "0.1.0"

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
    "__version__",
    "decode_bytes",
    "fit_to_multiple",
    "hookimpl",
    "is_image_path",
    "load_image",
    "quantize",
    "stable_hash",
    "to_array",
    "to_tensor",
]
