"""Linear and kernel classifiers: logistic regression and the support-vector machine.

Durall et al., "Watch your up-convolution" (CVPR 2020) detect GAN images with logistic regression
and SVMs on azimuthally averaged Fourier spectra; these are the natural baselines for any
hand-crafted forensic feature.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import Field

import fzoo
from fzoo_builtins.sklearn.common import STANDARDIZE_DESCRIPTION, scaled_pipeline

STATE_FILE = "logistic_regression"


class LogisticRegressionClassifier(fzoo.Classifier):
    """L2-regularised (multinomial) logistic regression on standardised features.

    Method: D. R. Cox, "The regression analysis of binary sequences", JRSS B 20(2), 1958;
    implementation ``sklearn.linear_model.LogisticRegression`` (lbfgs solver), Pedregosa et al.,
    JMLR 12, 2011. Forensic use: Durall et al., CVPR 2020 (1-D power spectra + LR/SVM).
    """

    name = "logistic-regression"
    description = "Logistic regression (Cox 1958; scikit-learn) on standardised features"
    version = "1"

    class Params(fzoo.Params):
        C: float = Field(1.0, gt=0, le=1e12, description="Inverse L2 regularisation strength.")
        max_iter: int = Field(
            1000, ge=1, le=10**7, description="Maximum number of lbfgs iterations."
        )
        class_weight: Literal["balanced"] | None = Field(
            "balanced",
            description="'balanced' weights classes inversely to their frequency; null: equal.",
        )
        standardize: bool = Field(True, description=STANDARDIZE_DESCRIPTION)

    params: Params

    def build_estimator(self) -> Any:
        from sklearn import linear_model

        p = self.params
        model = linear_model.LogisticRegression(
            C=p.C, max_iter=p.max_iter, class_weight=p.class_weight
        )
        return scaled_pipeline(model, p.standardize)

    # A fitted logistic regression is a few arrays: it is saved as JSON + safetensors, so loading
    # a shared pipeline that uses it rebuilds no object graph at all (no skops, no pickle).

    def save_state(self, directory: Path) -> None:
        """Write ``logistic_regression.json`` (classes, shapes) and ``.safetensors`` (arrays)."""
        from safetensors.numpy import save

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        steps = dict(self.estimator_.named_steps)
        model = steps["model"]
        arrays = {"coef": model.coef_, "intercept": model.intercept_}
        if "scale" in steps:
            arrays["mean"] = steps["scale"].mean_
            arrays["scale"] = steps["scale"].scale_
        tensors = save({k: np.ascontiguousarray(v) for k, v in arrays.items()})
        fzoo.atomic_write_bytes(directory / f"{STATE_FILE}.safetensors", tensors)
        meta = {"classes": [c.item() for c in self.classes_], "format": 1}
        fzoo.atomic_write_text(directory / f"{STATE_FILE}.json", json.dumps(meta))

    def load_state(self, directory: Path) -> None:
        """Read what :meth:`save_state` wrote (or an older ``estimator.skops``)."""
        from safetensors.numpy import load_file

        directory = Path(directory)
        meta_path = directory / f"{STATE_FILE}.json"
        if not meta_path.exists():
            super().load_state(directory)
            return
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        arrays = load_file(directory / f"{STATE_FILE}.safetensors")
        classes = np.asarray(meta["classes"])
        coef, intercept = arrays["coef"], arrays["intercept"]
        n_rows = 1 if len(classes) == 2 else len(classes)
        if coef.ndim != 2 or coef.shape[0] != n_rows or intercept.shape != (n_rows,):
            raise ValueError(
                f"{directory}: logistic-regression state does not match its {len(classes)} classes"
            )
        estimator = self.build_estimator()
        steps = dict(estimator.named_steps)
        if ("scale" in steps) != ("mean" in arrays):
            raise ValueError(f"{directory}: standardize={self.params.standardize} does not match")
        if "scale" in steps:
            scaler = steps["scale"]
            scaler.mean_, scaler.scale_ = arrays["mean"], arrays["scale"]
            scaler.var_ = arrays["scale"] ** 2
            scaler.n_features_in_ = coef.shape[1]
            scaler.n_samples_seen_ = 0
        model = steps["model"]
        model.coef_, model.intercept_, model.classes_ = coef, intercept, classes
        model.n_features_in_ = coef.shape[1]
        model.n_iter_ = np.zeros(1, dtype=np.int32)
        self.estimator_ = estimator
        self.classes_ = classes


class SVMClassifier(fzoo.Classifier):
    """Support-vector machine (``sklearn.svm.SVC``) with Platt-scaled probabilities.

    Method: C. Cortes and V. Vapnik, "Support-vector networks", Machine Learning 20, 1995;
    probabilities by Platt scaling (J. Platt, 1999) fitted on 5-fold cross-validated decision
    values (folds shuffled with ``random_state``), the final SVC refitted on all the data. This is
    ``SVC(probability=True)`` written as ``CalibratedClassifierCV(SVC(), ensemble=False)``, the
    form scikit-learn 1.9 asks for. Forensic use: Durall et al., CVPR 2020 (spectra + SVM).
    Every class needs at least 5 training samples (one per fold).
    """

    name = "svm"
    description = "Support-vector machine (Cortes & Vapnik 1995) with Platt probabilities"
    version = "1"

    class Params(fzoo.Params):
        kernel: Literal["rbf", "linear"] = Field("rbf", description="Kernel function.")
        C: float = Field(1.0, gt=0, le=1e12, description="Inverse regularisation strength.")
        gamma: Literal["scale", "auto"] | Annotated[float, Field(gt=0, le=1e12)] = Field(
            "scale", description="RBF kernel width: 'scale', 'auto' or a positive number."
        )
        random_state: int = Field(
            0, ge=0, le=2**32 - 1, description="Seed of the Platt-scaling CV folds."
        )
        standardize: bool = Field(True, description=STANDARDIZE_DESCRIPTION)

    params: Params

    def build_estimator(self) -> Any:
        from sklearn import calibration, model_selection, svm

        p = self.params
        # Platt scaling on cross-validated decision values, then one SVC fitted on all the data:
        # what SVC(probability=True) does, deprecated in scikit-learn 1.9 in favour of this.
        model = calibration.CalibratedClassifierCV(
            svm.SVC(kernel=p.kernel, C=p.C, gamma=p.gamma),
            method="sigmoid",
            cv=model_selection.StratifiedKFold(5, shuffle=True, random_state=p.random_state),
            ensemble=False,
        )
        return scaled_pipeline(model, p.standardize)
