"""Multi-layer perceptron classifier."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field

import fzoo
from fzoo_builtins.sklearn.common import STANDARDIZE_DESCRIPTION, scaled_pipeline


class MLPClassifier(fzoo.Classifier):
    """Fully connected network trained with Adam (``sklearn.neural_network.MLPClassifier``).

    Method: D. E. Rumelhart, G. E. Hinton and R. J. Williams, "Learning representations by
    back-propagating errors", Nature 323, 1986; optimiser Adam (Kingma & Ba 2015).
    """

    name = "mlp"
    description = "Multi-layer perceptron (Rumelhart et al. 1986) on standardised features"
    version = "1"

    class Params(fzoo.Params):
        hidden_layer_sizes: tuple[Annotated[int, Field(ge=1, le=100_000)], ...] = Field(
            (128,),
            min_length=1,
            max_length=100,
            description="Width of each hidden layer, e.g. [128] or [256, 64].",
        )
        alpha: float = Field(1e-4, ge=0, le=1e6, description="L2 penalty of the weights.")
        max_iter: int = Field(500, ge=1, le=10**6, description="Maximum number of training epochs.")
        random_state: int = Field(
            0, ge=0, le=2**32 - 1, description="Seed of weight initialisation and shuffling."
        )
        standardize: bool = Field(True, description=STANDARDIZE_DESCRIPTION)

    params: Params

    def build_estimator(self) -> Any:
        from sklearn import neural_network

        p = self.params
        model = neural_network.MLPClassifier(
            hidden_layer_sizes=tuple(p.hidden_layer_sizes),
            alpha=p.alpha,
            max_iter=p.max_iter,
            random_state=p.random_state,
        )
        return scaled_pipeline(model, p.standardize)
