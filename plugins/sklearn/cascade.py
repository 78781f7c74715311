"""Two-stage cascade detector, after Mandelli et al. (WIFS 2024).

Stage 1 tells negatives (pristine photos, by default) from everything else; stage 2 tells the
remaining classes apart (e.g. laundered vs. fully synthetic) among the positives. The combined
class probabilities are ``P(negative) = 1 - p1`` and ``P(k) = p1 * p2(k)`` for every other class
``k``, where ``p1`` is stage 1's probability of "not negative" and ``p2`` stage 2's distribution.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.utils.validation import check_is_fitted

import fzoo
from fzoo.plugins.sklearn.ensemble import GradientBoostingClassifier, RandomForestClassifier
from fzoo.plugins.sklearn.linear import LogisticRegressionClassifier, SVMClassifier
from fzoo.plugins.sklearn.neural import MLPClassifier

BASES: dict[str, type[fzoo.Classifier]] = {
    cls.name: cls
    for cls in (
        LogisticRegressionClassifier,
        SVMClassifier,
        RandomForestClassifier,
        GradientBoostingClassifier,
        MLPClassifier,
    )
}

STATE_FORMAT = 1
STATE_FILE = "cascade.json"


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


class TwoStageClassifier(fzoo.Classifier):
    """Two-stage cascade (Mandelli et al., WIFS 2024): negatives vs. rest, then among the rest.

    Stage 1 separates the ``stage1_negative`` class (default ``pristine``) from every other
    class; stage 2 separates the other classes, trained on them only. Both stages use the
    ``base`` classifier with its default parameters (standardised pipeline, seed 0). Exactly one
    of the ``stage1_negative`` labels must occur in the training labels.

    The cascade estimator class lives in this plugin, so the core's skops loader (which trusts
    only scikit-learn/numpy/scipy types) would refuse it whole. The fitted state is therefore
    saved as its two scikit-learn pipelines, ``stage1/`` and ``stage2/`` (the latter only when
    there are several positive classes), plus ``cascade.json`` with the classes and labels.
    """

    name = "two-stage"
    description = "Two-stage cascade (Mandelli et al. 2024): negative vs. rest, then among the rest"
    version = "1"

    class Params(fzoo.Params):
        base: Literal["logistic-regression", "svm", "random-forest", "gradient-boosting", "mlp"] = (
            Field(
                "logistic-regression",
                description="Classifier used by both stages, with its default parameters.",
            )
        )
        stage1_negative: tuple[str, ...] = Field(
            ("pristine",),
            min_length=1,
            description="Labels that stage 1 treats as negative (exactly one must occur).",
        )

    params: Params
    estimator_: TwoStageEstimator

    def build_estimator(self) -> TwoStageEstimator:
        base = BASES[self.params.base]().build_estimator()
        return TwoStageEstimator(estimator=base, negative=tuple(self.params.stage1_negative))

    def _holder(self, estimator: Any = None) -> fzoo.Classifier:
        """A plain classifier of the base kind: saves/loads one pipeline with the core's checks."""
        holder = BASES[self.params.base]()
        if estimator is not None:
            holder.estimator_ = estimator
            holder.classes_ = np.asarray(estimator.classes_)
        return holder

    def save_state(self, directory: Path) -> None:
        """Write ``stage1/`` and ``stage2/`` (one skops pipeline each) and ``cascade.json``."""
        directory = Path(directory)
        est = self.estimator_
        self._holder(est.stage1_).save_state(directory / "stage1")
        if est.stage2_ is not None:
            self._holder(est.stage2_).save_state(directory / "stage2")
        info = {
            "format": STATE_FORMAT,
            "base": self.params.base,
            "classes": est.classes_.tolist(),
            "negative": TwoStageEstimator._item(est.negative_),
            "positive_classes": est.positive_classes_.tolist(),
            "stage2": est.stage2_ is not None,
        }
        _write_json(directory / STATE_FILE, info)

    def load_state(self, directory: Path) -> None:
        """Read what :meth:`save_state` wrote; the pipelines pass the core's trusted-types check."""
        directory = Path(directory)
        info_path = directory / STATE_FILE
        info = json.loads(info_path.read_text(encoding="utf-8"))
        if info.get("format") != STATE_FORMAT:
            raise ValueError(f"{info_path}: unsupported cascade state format {info.get('format')}")
        stage1 = self._holder()
        stage1.load_state(directory / "stage1")
        stage2 = None
        if info["stage2"]:
            holder = self._holder()
            holder.load_state(directory / "stage2")
            stage2 = holder.estimator_
        self.estimator_ = TwoStageEstimator.from_fitted(
            classes=np.asarray(info["classes"]),
            negative=info["negative"],
            positives=np.asarray(info["positive_classes"]),
            stage1=stage1.estimator_,
            stage2=stage2,
            estimator=BASES[self.params.base]().build_estimator(),
            negative_labels=tuple(self.params.stage1_negative),
        )
        self.classes_ = np.asarray(self.estimator_.classes_)


def _write_json(path: Path, obj: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".json")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(obj, fh, indent=2, sort_keys=True)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
