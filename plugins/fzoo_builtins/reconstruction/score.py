"""``feature-score``: one feature column used directly as a detection score (AEROBLADE's rule)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import Field

import fzoo

STATE_FILE = "feature_score.json"


class FeatureScore(fzoo.Classifier):
    """Scores images by one feature column, with nothing else learned (Ricker et al., CVPR 2024).

    AEROBLADE detects generated images by their autoencoder reconstruction distance alone: a low
    distance means "made by this autoencoder". This classifier does exactly that with any
    feature: ``column`` (default ``-1``, the aggregated mean error of ``recon-error``) is the
    score. ``fit`` learns only what a threshold needs, from the training set: which of the two
    classes has the larger mean of the column (the score's direction), the threshold that maximises
    balanced accuracy on the training images, and the column's standard deviation (the scale of
    the returned probabilities). ROC AUC does not depend on any of it, only on the ranking.

    Binary tasks only. State: a JSON file (no pickle).
    """

    name = "feature-score"
    description = "One feature column as the score, e.g. AEROBLADE's reconstruction distance"
    version = "1"

    class Params(fzoo.Params):
        column: int = Field(
            -1,
            ge=-100_000,
            le=100_000,
            description="feature column used as the score (Python index)",
        )
        temperature: float = Field(
            0.25,
            gt=0,
            le=1e6,
            description="probability = sigmoid(z / temperature), z in training stds",
        )

    params: Params

    def fit(self, X: np.ndarray, y: Sequence[Any]) -> FeatureScore:
        x = self._column(X)
        labels = np.asarray([str(v) for v in y])
        classes = sorted(set(labels.tolist()))
        if len(classes) != 2:
            raise ValueError(
                f"{self.name}: binary tasks only; the training labels have {len(classes)} "
                f"classes {classes}"
            )
        means = [float(x[labels == c].mean()) for c in classes]
        high = classes[int(np.argmax(means))]
        sign = 1.0 if high == classes[1] else -1.0  # score grows with classes_[1]
        s = sign * x
        pos = labels == classes[1]
        candidates = np.unique(s)
        best, threshold = -1.0, float(candidates[0])
        for t in (candidates[:-1] + candidates[1:]) / 2 if candidates.size > 1 else candidates:
            pred = s > t
            bal = 0.5 * (pred[pos].mean() + (~pred[~pos]).mean())
            if bal > best:
                best, threshold = float(bal), float(t)
        self.classes_ = np.asarray(classes)
        self.sign_ = sign
        self.threshold_ = threshold
        self.scale_ = float(x.std()) or 1.0
        return self

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        z = (self.sign_ * self._column(X) - self.threshold_) / self.scale_
        p1 = 1.0 / (1.0 + np.exp(-np.clip(z / self.params.temperature, -50, 50)))
        return np.stack([1.0 - p1, p1], axis=1)

    def _column(self, X: np.ndarray) -> np.ndarray:
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or not -X.shape[1] <= self.params.column < X.shape[1]:
            raise ValueError(
                f"{self.name}: column {self.params.column} does not exist in features of shape "
                f"{X.shape}"
            )
        return X[:, self.params.column]

    def save_state(self, directory: Path) -> None:
        data = {
            "classes": [str(c) for c in self.classes_],
            "sign": self.sign_,
            "threshold": self.threshold_,
            "scale": self.scale_,
            "params": self.get_params(),
        }
        fzoo.atomic_write_text(Path(directory) / STATE_FILE, json.dumps(data, indent=2))

    def load_state(self, directory: Path) -> None:
        data = json.loads((Path(directory) / STATE_FILE).read_text(encoding="utf-8"))
        self.classes_ = np.asarray(data["classes"])
        self.sign_ = float(data["sign"])
        self.threshold_ = float(data["threshold"])
        self.scale_ = float(data["scale"])
