"""Tree ensembles: random forest and histogram gradient boosting."""

from __future__ import annotations

from typing import Any

from pydantic import Field

import fzoo
from fzoo_builtins.sklearn.common import STANDARDIZE_DESCRIPTION, scaled_pipeline


class RandomForestClassifier(fzoo.Classifier):
    """Random forest of bootstrapped decision trees (``sklearn.ensemble.RandomForestClassifier``).

    Method: L. Breiman, "Random forests", Machine Learning 45, 2001. Standardisation does not
    change a tree's splits; it is kept for a uniform pipeline across classifiers.
    """

    name = "random-forest"
    description = "Random forest (Breiman 2001)"
    version = "1"

    class Params(fzoo.Params):
        n_estimators: int = Field(200, ge=1, le=100_000, description="Number of trees.")
        max_depth: int | None = Field(
            None,
            ge=1,
            le=10_000,
            description="Maximum tree depth; null grows trees until leaves are pure.",
        )
        random_state: int = Field(
            0, ge=0, le=2**32 - 1, description="Seed of the bootstrap and feature sampling."
        )
        standardize: bool = Field(True, description=STANDARDIZE_DESCRIPTION)

    params: Params

    def build_estimator(self) -> Any:
        from sklearn import ensemble

        p = self.params
        model = ensemble.RandomForestClassifier(
            n_estimators=p.n_estimators, max_depth=p.max_depth, random_state=p.random_state
        )
        return scaled_pipeline(model, p.standardize)


class GradientBoostingClassifier(fzoo.Classifier):
    """Histogram gradient-boosted trees (``sklearn.ensemble.HistGradientBoostingClassifier``).

    Method: J. H. Friedman, "Greedy function approximation: a gradient boosting machine",
    Annals of Statistics 29(5), 2001; histogram binning as in LightGBM, Ke et al., NeurIPS 2017.
    """

    name = "gradient-boosting"
    description = "Histogram gradient boosting (Friedman 2001; Ke et al. 2017)"
    version = "1"

    class Params(fzoo.Params):
        max_iter: int = Field(200, ge=1, le=100_000, description="Number of boosting iterations.")
        learning_rate: float = Field(0.1, gt=0, le=100, description="Shrinkage of each tree.")
        random_state: int = Field(
            0,
            ge=0,
            le=2**32 - 1,
            description="Seed of the early-stopping split (used above 10000 samples).",
        )
        standardize: bool = Field(True, description=STANDARDIZE_DESCRIPTION)

    params: Params

    def build_estimator(self) -> Any:
        from sklearn import ensemble

        p = self.params
        model = ensemble.HistGradientBoostingClassifier(
            max_iter=p.max_iter, learning_rate=p.learning_rate, random_state=p.random_state
        )
        return scaled_pipeline(model, p.standardize)
