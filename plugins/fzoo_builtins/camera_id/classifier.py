"""``argmax-logits``: a classifier that reads its features as class scores (no learned weights)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field

import fzoo

STATE_FILE = "argmax_logits.json"


class ArgmaxLogits(fzoo.Classifier):
    """Turns the logits of a network that already classifies (``camera-id-cnn``) into a classifier.

    Column ``k`` of the features is the score of class ``classes_[k]``. ``fit(X, y)`` learns only
    the class names: ``columns`` when given, else ``sorted(set(y))`` - the order in which
    ``camera-id-cnn`` writes its logit columns (the sorted classes it was trained on, which are
    the task's classes when its ``fit_target`` is the task's target). A feature width that differs
    from the number of classes raises ``ValueError`` (e.g. several extractors concatenated, an
    embedding instead of logits, or a task whose classes the network was not trained on).

    ``predict_proba``: ``softmax(X / temperature)`` for ``inputs: logits``; for ``inputs:
    probabilities`` (``camera-id-cnn`` with ``output: probabilities`` or ``fusion: majority``)
    the rows are clipped at 0 and renormalised. State: a JSON file (no pickle).
    """

    name = "argmax-logits"
    description = "Class = argmax of the incoming logits (for camera-id-cnn; nothing learned)"
    version = "1"

    class Params(fzoo.Params):
        inputs: Literal["logits", "probabilities"] = Field(
            "logits", description="what the feature columns are: logits or probabilities"
        )
        temperature: float = Field(1.0, gt=0, le=1e6, description="softmax temperature for logits")
        columns: list[str] | None = Field(
            None,
            description="class name of each feature column (default: the sorted training labels)",
        )

    params: Params

    def fit(self, X: np.ndarray, y: Sequence[Any]) -> ArgmaxLogits:
        X = np.asarray(X)
        classes = list(self.params.columns) if self.params.columns else sorted({str(v) for v in y})
        if X.ndim != 2 or X.shape[1] != len(classes):
            raise ValueError(
                f"{self.name}: the features have {X.shape[1] if X.ndim == 2 else '?'} columns but "
                f"there are {len(classes)} classes {classes}; the features must be one logit per "
                "class in sorted class order (e.g. camera-id-cnn with output: logits and the "
                "task's target as fit_target, alone in the pipeline), or set 'columns'"
            )
        if self.params.columns:
            unknown = sorted({str(v) for v in y} - set(classes))
            if unknown:
                raise ValueError(f"{self.name}: training labels {unknown} are not in 'columns'")
        self.classes_ = np.asarray(classes)
        return self

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != len(self.classes_):
            raise ValueError(
                f"{self.name}: expected {len(self.classes_)} feature columns, got shape {X.shape}"
            )
        if self.params.inputs == "probabilities":
            p = np.clip(X, 0.0, None)
            s = p.sum(axis=1, keepdims=True)
            return np.where(s > 0, p / np.where(s > 0, s, 1.0), 1.0 / X.shape[1])
        z = X / self.params.temperature
        z = z - z.max(axis=1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(axis=1, keepdims=True)

    def save_state(self, directory: Path) -> None:
        data = {"classes": [str(c) for c in self.classes_], "params": self.get_params()}
        fzoo.atomic_write_text(Path(directory) / STATE_FILE, json.dumps(data, indent=2))

    def load_state(self, directory: Path) -> None:
        data = json.loads((Path(directory) / STATE_FILE).read_text(encoding="utf-8"))
        self.classes_ = np.asarray(data["classes"])
