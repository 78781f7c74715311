"""``published-score``: a published detector's score column read as its authors read it."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import Field

import fzoo

STATE_FILE = "published_score.json"


class PublishedScore(fzoo.Classifier):
    """The decision rule of the published detectors (Wang et al. CVPR 2020, Gragnaniello et al.
    ICME 2021, Ojha et al. CVPR 2023, Tan et al. CVPR 2024, Mandelli et al. WIFS 2024):
    probability of the positive class = sigmoid(score), decision threshold 0 on the score.

    Nothing is fitted: ``fit`` only records the two class names and which one is positive (the
    detector's "synthetic" side: in an fzoo binary task the class that is not ``not-...``; else
    the second in sorted order) and checks the features have the ``column``. Use
    ``feature-score`` or any other classifier on the same features to calibrate instead.
    State: a JSON file (no pickle).
    """

    name = "published-score"
    description = "The published decision rule: p = sigmoid(score), threshold 0, nothing fitted"
    version = "1"

    class Params(fzoo.Params):
        column: int = Field(
            0, ge=-4096, le=4096, description="feature column holding the detector's score"
        )

    params: Params

    def fit(self, X: np.ndarray, y: Sequence[Any]) -> PublishedScore:
        self._column(X)
        classes = sorted({str(v) for v in y})
        if len(classes) != 2:
            raise ValueError(
                f"{self.name}: binary tasks only; the training labels have {len(classes)} "
                f"classes {classes}"
            )
        self.classes_ = np.asarray(classes)
        self.positive_ = _positive_of(classes)
        return self

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        s = self._column(X)
        p_pos = 1.0 / (1.0 + np.exp(-np.clip(s, -500.0, 500.0)))
        cols = [p_pos if c == self.positive_ else 1.0 - p_pos for c in self.classes_.tolist()]
        return np.stack(cols, axis=1)

    def _column(self, X: np.ndarray) -> np.ndarray:
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or not -X.shape[1] <= self.params.column < X.shape[1]:
            raise ValueError(
                f"{self.name}: column {self.params.column} does not exist in features of shape "
                f"{X.shape}; use a published detector with output: score"
            )
        return X[:, self.params.column]

    def save_state(self, directory: Path) -> None:
        data = {
            "format": 1,
            "classes": [str(c) for c in self.classes_],
            "positive": str(self.positive_),
        }
        fzoo.atomic_write_text(Path(directory) / STATE_FILE, json.dumps(data, indent=2))

    def load_state(self, directory: Path) -> None:
        path = Path(directory) / STATE_FILE
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            classes = data["classes"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"{path}: not a published-score state ({exc})") from None
        if not (isinstance(classes, list) and len(classes) == 2):
            raise ValueError(f"{path}: 'classes' must list the two class names")
        positive = str(data.get("positive", _positive_of([str(c) for c in classes])))
        if positive not in [str(c) for c in classes]:
            raise ValueError(f"{path}: positive class {positive!r} is not one of {classes}")
        self.classes_ = np.asarray(sorted(str(c) for c in classes))
        self.positive_ = positive


def _positive_of(classes: list[str]) -> str:
    """The positive class of two labels: ``X`` against ``not-X``; else the second sorted one."""
    a, b = sorted(classes)
    if a == f"not-{b}":
        return b
    if b == f"not-{a}":
        return a
    return b
