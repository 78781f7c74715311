"""Published detectors: the field's detectors run from the weights their authors released.

One module per paper. Every detector is a :class:`PublishedDetector` feature extractor (class
attribute ``published = True``, with ``paper``, ``protocol``, ``weights_url`` and
``weights_licence`` for ``fzoo list detectors``), so it mixes with every other component and is
cached; ``published-score`` reads its score column as the authors do (probability =
sigmoid(score), threshold 0). Heavy libraries (torch, torchvision, transformers) are imported
only when a network is built.
"""

from __future__ import annotations

from typing import Any

from fzoo import hookimpl
from fzoo_builtins.published._checkpoint import CheckpointError, PublishedDetector
from fzoo_builtins.published.cnndetection import CNNDetection
from fzoo_builtins.published.grag2021 import Grag2021
from fzoo_builtins.published.npr import NPR
from fzoo_builtins.published.score import PublishedScore
from fzoo_builtins.published.univfd import UnivFD

__all__ = [
    "NPR",
    "CNNDetection",
    "CheckpointError",
    "Grag2021",
    "PublishedDetector",
    "PublishedScore",
    "UnivFD",
]

DETECTORS: tuple[type[PublishedDetector], ...] = (CNNDetection, Grag2021, NPR, UnivFD)


@hookimpl
def fzoo_register_feature_extractors(register: Any) -> None:
    for cls in DETECTORS:
        register(cls)
    for cls in _mandelli_detectors():
        register(cls)


def _mandelli_detectors() -> list[type[PublishedDetector]]:
    """The detectors of ``mandelli.py`` (Mandelli et al., WIFS 2024), when that module exists."""
    import importlib
    import inspect

    module_name = f"{__name__}.mandelli"
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name == module_name:
            return []
        raise
    found: list[type[PublishedDetector]] = []
    for _, obj in inspect.getmembers(module, inspect.isclass):
        if issubclass(obj, PublishedDetector) and obj.__module__ == module_name:
            detector: type[PublishedDetector] = obj
            if detector.name:
                found.append(detector)
    return sorted(found, key=lambda c: c.name)


@hookimpl
def fzoo_register_classifiers(register: Any) -> None:
    register(PublishedScore)
