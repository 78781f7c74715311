"""Published detectors: the field's detectors run from the weights their authors released.

One module per paper; every detector is a :class:`PublishedDetector` feature extractor (marked
``published = True``) so it mixes with every other component, and ``published-score`` reads its
score column as the authors do (probability = sigmoid(score), threshold 0).
"""

from __future__ import annotations

from typing import Any

from fzoo import hookimpl
from fzoo.plugins.published._checkpoint import PublishedDetector

__all__ = ["PublishedDetector"]


@hookimpl
def fzoo_register_feature_extractors(register: Any) -> None:
    pass
