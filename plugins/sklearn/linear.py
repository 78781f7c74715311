"""Linear and kernel classifiers: logistic regression and the support-vector machine.

Durall et al., "Watch your up-convolution" (CVPR 2020) detect GAN images with logistic regression
and SVMs on azimuthally averaged Fourier spectra; these are the natural baselines for any
hand-crafted forensic feature.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field
from sklearn import calibration, linear_model, model_selection, svm

import fzoo
from fzoo.plugins.sklearn.common import STANDARDIZE_DESCRIPTION, scaled_pipeline


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
        C: float = Field(1.0, gt=0, description="Inverse L2 regularisation strength.")
        max_iter: int = Field(1000, ge=1, description="Maximum number of lbfgs iterations.")
        class_weight: Literal["balanced"] | None = Field(
            "balanced",
            description="'balanced' weights classes inversely to their frequency; null: equal.",
        )
        standardize: bool = Field(True, description=STANDARDIZE_DESCRIPTION)

    params: Params

    def build_estimator(self) -> Any:
        p = self.params
        model = linear_model.LogisticRegression(
            C=p.C, max_iter=p.max_iter, class_weight=p.class_weight
        )
        return scaled_pipeline(model, p.standardize)


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
        C: float = Field(1.0, gt=0, description="Inverse regularisation strength.")
        gamma: Literal["scale", "auto"] | float = Field(
            "scale", description="RBF kernel width: 'scale', 'auto' or a positive number."
        )
        random_state: int = Field(0, description="Seed of the Platt-scaling CV folds.")
        standardize: bool = Field(True, description=STANDARDIZE_DESCRIPTION)

    params: Params

    def build_estimator(self) -> Any:
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
