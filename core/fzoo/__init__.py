"""fzoo: the forensic detector zoo.

This module is the public API a plugin needs: ``hookimpl``, the component base classes, the
:class:`Record` type and exact image I/O. Plugins import nothing else from fzoo, but for their
tests :mod:`fzoo.testing` (``check_component``, ``parametrize_with_checks``, ``check_plugin``),
which ``import fzoo`` does not load.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

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
from fzoo.fsutil import atomic_write_bytes, atomic_write_text
from fzoo.hookspecs import hookimpl
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

if TYPE_CHECKING:
    from fzoo.config import create_component
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

__version__ = "0.1.0"

_IMAGES = (
    "DecodedImage",
    "ImageError",
    "decode_bytes",
    "fit_to_multiple",
    "is_image_path",
    "load_image",
    "quantize",
    "to_array",
    "to_tensor",
    "to_uint8",
)
#: Names imported on first use (``fzoo.X`` or ``from fzoo import X``), not by ``import fzoo``:
#: image I/O (:mod:`fzoo.images`) needs numpy and Pillow, ``create_component`` the experiment
#: schema (:mod:`fzoo.config`); ``fzoo --help`` and ``fzoo plugins`` need neither. The modules
#: that ``import fzoo`` used to load as a side effect stay reachable as attributes (``fzoo.config``
#: after a bare ``import fzoo``); ``testing`` is the contract suite for plugin tests.
_LAZY: dict[str, tuple[str, str]] = {
    **{name: ("fzoo.images", name) for name in _IMAGES},
    "create_component": ("fzoo.config", "create_component"),
    **{m: (f"fzoo.{m}", "") for m in ("config", "grid", "images", "plan", "schema", "yaml_loader")},
    "testing": ("fzoo.testing", ""),
}


def __getattr__(name: str) -> Any:
    """The names of :data:`_LAZY`, imported on first use."""
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        value = importlib.import_module(module)
        value = getattr(value, attr) if attr else value
        globals()[name] = value
        return value
    raise AttributeError(f"module 'fzoo' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})


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
