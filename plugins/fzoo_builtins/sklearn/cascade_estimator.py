"""The scikit-learn estimator of the two-stage cascade (see :mod:`fzoo_builtins.sklearn.cascade`).

A module of its own because it subclasses scikit-learn's ``BaseEstimator`` at import time;
:mod:`~fzoo_builtins.sklearn.cascade` (which registers ``two-stage``) imports it only when a
cascade is built or loaded, so listing the plugins does not import scikit-learn.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.utils.validation import check_is_fitted

from fzoo_builtins.sklearn.linear import LogisticRegressionClassifier


class TwoStageEstimator(ClassifierMixin, BaseEstimator):
    """scikit-learn estimator of the cascade; ``estimator`` is cloned for each stage.

    Fitted attributes: ``classes_`` (sorted labels), ``negative_`` (the negative label),
    ``positive_classes_`` (the others, sorted), ``stage1_`` (binary: 1 = not negative) and
    ``stage2_`` (over ``positive_classes_``; ``None`` when there is a single positive class).
    """

    def __init__(self, estimator: Any = None, negative: Sequence[str] = ("pristine",)) -> None:
        self.estimator = estimator
        self.negative = negative

    def _template(self) -> Any:
        if self.estimator is None:
            return LogisticRegressionClassifier().build_estimator()
        return self.estimator

    def fit(self, X: Any, y: Any) -> TwoStageEstimator:
        X = np.asarray(X)
        y = np.asarray(y)
        if X.shape[0] != y.shape[0]:
            raise ValueError(f"two-stage: X has {X.shape[0]} rows but y has {y.shape[0]} labels")
        classes = np.unique(y)
        wanted = [str(n) for n in self.negative]
        present = [c for c in classes if str(c) in wanted]
        if len(present) != 1:
            found = "none of them" if not present else f"{[str(c) for c in present]}"
            raise ValueError(
                f"two-stage: exactly one of the negative labels {wanted} must occur in the "
                f"training labels {[str(c) for c in classes]}; found {found}"
            )
        negative = present[0]
        is_pos = y != negative
        positives = classes[classes != negative]
        if positives.size == 0:
            raise ValueError(
                f"two-stage: the training labels contain only the negative class {negative!r}"
            )
        stage1 = clone(self._template()).fit(X, is_pos.astype(np.int64))
        stage2 = None
        if positives.size > 1:
            stage2 = clone(self._template()).fit(X[is_pos], y[is_pos])
        self._set_fitted(classes, negative, positives, stage1, stage2)
        return self

    def _set_fitted(
        self, classes: np.ndarray, negative: Any, positives: np.ndarray, stage1: Any, stage2: Any
    ) -> None:
        self.classes_ = np.asarray(classes)
        self.negative_ = negative
        self.positive_classes_ = np.asarray(positives)
        self.stage1_ = stage1
        self.stage2_ = stage2

    @classmethod
    def from_fitted(
        cls,
        classes: np.ndarray,
        negative: Any,
        positives: np.ndarray,
        stage1: Any,
        stage2: Any,
        estimator: Any = None,
        negative_labels: Sequence[str] = ("pristine",),
    ) -> TwoStageEstimator:
        """Rebuild a fitted cascade from its parts (what :class:`TwoStageClassifier` saves)."""
        obj = cls(estimator=estimator, negative=tuple(negative_labels))
        obj._set_fitted(classes, negative, positives, stage1, stage2)
        return obj

    def predict_proba(self, X: Any) -> np.ndarray:
        check_is_fitted(self, "stage1_")
        X = np.asarray(X)
        s1 = np.asarray(self.stage1_.predict_proba(X), dtype=np.float64)
        p1 = s1[:, list(self.stage1_.classes_).index(1)]
        out = np.zeros((X.shape[0], self.classes_.size), dtype=np.float64)
        column = {c: i for i, c in enumerate(self.classes_.tolist())}
        out[:, column[self._item(self.negative_)]] = 1.0 - p1
        if self.stage2_ is None:
            out[:, column[self._item(self.positive_classes_[0])]] = p1
        else:
            p2 = np.asarray(self.stage2_.predict_proba(X), dtype=np.float64)
            for j, c in enumerate(self.stage2_.classes_.tolist()):
                out[:, column[c]] = p1 * p2[:, j]
        return out

    @staticmethod
    def _item(value: Any) -> Any:
        return value.item() if isinstance(value, np.generic) else value

    def predict(self, X: Any) -> np.ndarray:
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]
