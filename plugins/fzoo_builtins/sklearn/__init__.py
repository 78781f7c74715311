"""Built-in scikit-learn classifiers: linear, kernel, tree ensembles, MLP and a two-stage cascade.

Every classifier is a ``Pipeline([StandardScaler(), model])`` (``standardize=True`` by default):
features from different extractors live on very different scales. Fitted pipelines are saved
with skops and loaded back with the trusted-types check of the core (no pickle).
"""

from __future__ import annotations

from typing import Any

from fzoo import hookimpl
from fzoo_builtins.sklearn.cascade import TwoStageClassifier
from fzoo_builtins.sklearn.ensemble import GradientBoostingClassifier, RandomForestClassifier
from fzoo_builtins.sklearn.linear import LogisticRegressionClassifier, SVMClassifier
from fzoo_builtins.sklearn.neural import MLPClassifier

CLASSIFIERS = (
    LogisticRegressionClassifier,
    SVMClassifier,
    RandomForestClassifier,
    GradientBoostingClassifier,
    MLPClassifier,
    TwoStageClassifier,
)


@hookimpl
def fzoo_register_classifiers(register: Any) -> None:
    for cls in CLASSIFIERS:
        register(cls)


__all__ = [
    "CLASSIFIERS",
    "GradientBoostingClassifier",
    "LogisticRegressionClassifier",
    "MLPClassifier",
    "RandomForestClassifier",
    "SVMClassifier",
    "TwoStageClassifier",
    "fzoo_register_classifiers",
]
