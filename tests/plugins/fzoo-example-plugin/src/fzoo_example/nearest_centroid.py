"""A nearest-centroid classifier with softmax probabilities, implemented without scikit-learn.

It shows that an fzoo classifier need not wrap a scikit-learn estimator: it implements ``fit``,
``predict_proba`` and ``classes_`` itself, and saves its fitted state as plain JSON through
``save_state``/``load_state`` instead of the default skops file (whose loader trusts only
scikit-learn, numpy and scipy types, so it would refuse a custom class). Nothing is pickled.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import Field

import fzoo

STATE_FILE = "nearest_centroid.json"
STATE_FORMAT = 1


class NearestCentroid(fzoo.Classifier):
    """Nearest-centroid classifier (the "nearest shrunken centroid" rule of R. Tibshirani et al.,
    PNAS 99(10), 2002, without shrinkage) with softmax class probabilities.

    ``fit`` optionally standardises every feature (z-score with the training mean and standard
    deviation; constant features get scale 1) and stores each class's mean vector, its centroid.
    For a sample ``x`` with Euclidean distances ``d_k`` to the centroids,
    ``P(k | x) = softmax(-d_k / temperature)``: a lower temperature gives more confident
    probabilities; the arg-max is always the nearest centroid. Needs at least two classes.
    """

    name = "nearest-centroid"
    description = "Nearest class centroid with softmax(-distance / T) probabilities"
    version = "1"

    class Params(fzoo.Params):
        temperature: float = Field(
            1.0, gt=0, description="Softmax temperature on negative centroid distances."
        )
        standardize: bool = Field(
            True, description="Z-score every feature with the training statistics first."
        )

    params: Params
    centroids_: np.ndarray
    mean_: np.ndarray
    scale_: np.ndarray

    # ------------------------------------------------------------------ scikit-learn style API
    def fit(self, X: np.ndarray, y: Sequence[Any]) -> NearestCentroid:
        X = np.asarray(X, dtype=np.float64)
        labels = np.asarray(y)
        if X.ndim != 2 or X.shape[0] != labels.shape[0]:
            raise ValueError(
                f"{self.name}: expected X [n, d] and n labels, got X {X.shape} and "
                f"{labels.shape[0]} labels"
            )
        if not np.all(np.isfinite(X)):
            raise ValueError(f"{self.name}: X contains NaN or infinite values")
        classes = np.unique(labels)
        if classes.size < 2:
            raise ValueError(f"{self.name}: needs at least two classes, got {classes.tolist()}")
        if self.params.standardize:
            mean = X.mean(axis=0)
            scale = X.std(axis=0)
            scale[scale < 1e-12] = 1.0
        else:
            mean = np.zeros(X.shape[1])
            scale = np.ones(X.shape[1])
        Z = (X - mean) / scale
        self.classes_ = classes
        self.mean_ = mean
        self.scale_ = scale
        self.centroids_ = np.stack([Z[labels == c].mean(axis=0) for c in classes])
        return self

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        """Negative Euclidean distances to the centroids, ``[n, n_classes]``."""
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != self.centroids_.shape[1]:
            raise ValueError(
                f"{self.name}: expected X with {self.centroids_.shape[1]} columns, got {X.shape}"
            )
        Z = (X - self.mean_) / self.scale_
        d2 = ((Z[:, None, :] - self.centroids_[None, :, :]) ** 2).sum(axis=2)
        return -np.sqrt(d2)

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        logits = self.decision_function(X) / self.params.temperature
        logits -= logits.max(axis=1, keepdims=True)
        p = np.exp(logits)
        return p / p.sum(axis=1, keepdims=True)

    # ------------------------------------------------------------------ persistence (no pickle)
    def save_state(self, directory: Path) -> None:
        """Write the fitted state to ``directory/nearest_centroid.json`` (atomically).

        JSON writes floats with ``repr``, which round-trips float64 exactly.
        """
        state = {
            "format": STATE_FORMAT,
            "classes": self.classes_.tolist(),
            "mean": self.mean_.tolist(),
            "scale": self.scale_.tolist(),
            "centroids": self.centroids_.tolist(),
        }
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=".json")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(state, fh)
            os.replace(tmp, directory / STATE_FILE)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def load_state(self, directory: Path) -> None:
        """Read what :meth:`save_state` wrote; ``ValueError`` if it is malformed."""
        path = Path(directory) / STATE_FILE
        if not path.exists():
            raise FileNotFoundError(f"{path}: no {self.name} state (was the pipeline saved?)")
        state = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
            raise ValueError(f"{path}: unsupported {self.name} state format")
        classes = np.asarray(state["classes"])
        mean = np.asarray(state["mean"], dtype=np.float64)
        scale = np.asarray(state["scale"], dtype=np.float64)
        centroids = np.asarray(state["centroids"], dtype=np.float64)
        n, d = classes.shape[0], mean.shape[0]
        if classes.ndim != 1 or scale.shape != (d,) or centroids.shape != (n, d):
            raise ValueError(f"{path}: inconsistent array shapes in the {self.name} state")
        self.classes_, self.mean_, self.scale_, self.centroids_ = classes, mean, scale, centroids
