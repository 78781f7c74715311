"""Two-stage cascade detector, after Mandelli et al. (WIFS 2024).

Stage 1 tells negatives (pristine photos, by default) from everything else; stage 2 tells the
remaining classes apart (e.g. laundered vs. fully synthetic) among the positives. The combined
class probabilities are ``P(negative) = 1 - p1`` and ``P(k) = p1 * p2(k)`` for every other class
``k``, where ``p1`` is stage 1's probability of "not negative" and ``p2`` stage 2's distribution.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from pydantic import Field

import fzoo
from fzoo_builtins.sklearn.ensemble import GradientBoostingClassifier, RandomForestClassifier
from fzoo_builtins.sklearn.linear import LogisticRegressionClassifier, SVMClassifier
from fzoo_builtins.sklearn.neural import MLPClassifier

if TYPE_CHECKING:
    from fzoo_builtins.sklearn.cascade_estimator import TwoStageEstimator

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
        from fzoo_builtins.sklearn.cascade_estimator import TwoStageEstimator

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
        from fzoo_builtins.sklearn.cascade_estimator import TwoStageEstimator

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
        from fzoo_builtins.sklearn.cascade_estimator import TwoStageEstimator

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


def __getattr__(name: str) -> Any:
    """``TwoStageEstimator`` on first use (it lives in :mod:`.cascade_estimator`: scikit-learn)."""
    if name == "TwoStageEstimator":
        from fzoo_builtins.sklearn.cascade_estimator import TwoStageEstimator

        return TwoStageEstimator
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _write_json(path: Path, obj: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fzoo.atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True))
