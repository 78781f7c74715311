"""Shared helper of the scikit-learn classifiers: the standardising pipeline."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sklearn.pipeline import Pipeline


def scaled_pipeline(model: Any, standardize: bool = True) -> Pipeline:
    """``Pipeline([("scale", StandardScaler()), ("model", model)])``; no scaler when disabled."""
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    steps: list[tuple[str, Any]] = []
    if standardize:
        steps.append(("scale", StandardScaler()))
    steps.append(("model", model))
    return Pipeline(steps)


STANDARDIZE_DESCRIPTION = (
    "Standardise every feature to zero mean and unit variance (fitted on the training set) "
    "before the model; features of different extractors have very different scales."
)
