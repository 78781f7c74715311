"""Detection metrics: ROC AUC (one-vs-rest for several classes), AP, balanced accuracy,
accuracy at a threshold, TPR at 1% and 5% FPR, EER, and the confusion matrix."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

METRIC_NAMES: tuple[str, ...] = (
    "auc",
    "ap",
    "balanced_accuracy",
    "accuracy",
    "tpr_at_1fpr",
    "tpr_at_5fpr",
    "eer",
)


def tpr_at_fpr(y: np.ndarray, score: np.ndarray, fpr_target: float) -> float:
    """Highest TPR whose FPR does not exceed ``fpr_target`` (ROC interpolation-free)."""
    from sklearn import metrics as skm

    fpr, tpr, _ = skm.roc_curve(y, score)
    ok = fpr <= fpr_target + 1e-12
    return float(tpr[ok].max()) if ok.any() else 0.0


def equal_error_rate(y: np.ndarray, score: np.ndarray) -> float:
    """The error rate where FPR equals FNR (linear interpolation on the ROC)."""
    from sklearn import metrics as skm

    fpr, tpr, _ = skm.roc_curve(y, score)
    fnr = 1.0 - tpr
    diff = fpr - fnr
    idx = int(np.argmax(diff >= 0))
    if idx == 0:
        return float(fpr[0])
    x0, x1 = diff[idx - 1], diff[idx]
    t = 0.0 if x1 == x0 else -x0 / (x1 - x0)
    return float(fpr[idx - 1] + t * (fpr[idx] - fpr[idx - 1]))


def decide(score: float, threshold: float, positive: str, negative: str) -> str:
    """The binary decision rule, for the runner and ``fzoo detect`` alike: ``positive`` where the
    score of the positive class reaches ``threshold``, else ``negative``."""
    return positive if score >= threshold else negative


def binary_metrics(y: Sequence[int], score: Any, threshold: float) -> dict[str, float]:
    """Metrics for a binary task: ``y`` in {0, 1}, ``score`` = P(positive)."""
    from sklearn import metrics as skm

    y_arr = np.asarray(y, dtype=int)
    s = np.asarray(score, dtype=float)
    pred = (s >= threshold).astype(int)
    out: dict[str, float] = {
        "balanced_accuracy": float(skm.balanced_accuracy_score(y_arr, pred)),
        "accuracy": float(skm.accuracy_score(y_arr, pred)),
    }
    if len(np.unique(y_arr)) < 2:
        out.update({k: math.nan for k in ("auc", "ap", "tpr_at_1fpr", "tpr_at_5fpr", "eer")})
        return out
    out["auc"] = float(skm.roc_auc_score(y_arr, s))
    out["ap"] = float(skm.average_precision_score(y_arr, s))
    out["tpr_at_1fpr"] = tpr_at_fpr(y_arr, s, 0.01)
    out["tpr_at_5fpr"] = tpr_at_fpr(y_arr, s, 0.05)
    out["eer"] = equal_error_rate(y_arr, s)
    return out


def multiclass_metrics(
    y: Sequence[str], proba: np.ndarray, classes: Sequence[str]
) -> dict[str, float]:
    """Metrics for several classes: macro one-vs-rest AUC and AP; TPR/EER are not defined."""
    from sklearn import metrics as skm

    y_arr = np.asarray(y)
    cls = np.asarray(classes)
    pred = cls[np.argmax(proba, axis=1)]
    out: dict[str, float] = {
        "balanced_accuracy": float(skm.balanced_accuracy_score(y_arr, pred)),
        "accuracy": float(skm.accuracy_score(y_arr, pred)),
        "tpr_at_1fpr": math.nan,
        "tpr_at_5fpr": math.nan,
        "eer": math.nan,
    }
    present = [c for c in cls if c in set(y_arr)]
    if len(present) < 2:
        out["auc"] = out["ap"] = math.nan
        return out
    aucs, aps = [], []
    for k, c in enumerate(cls):
        if c not in present:
            continue
        yk = (y_arr == c).astype(int)
        aucs.append(skm.roc_auc_score(yk, proba[:, k]))
        aps.append(skm.average_precision_score(yk, proba[:, k]))
    out["auc"] = float(np.mean(aucs))
    out["ap"] = float(np.mean(aps))
    return out


def confusion(y: Sequence[Any], pred: Sequence[Any], labels: Sequence[Any]) -> list[list[int]]:
    """Confusion matrix, rows = true class, columns = predicted, in ``labels`` order."""
    from sklearn import metrics as skm

    return skm.confusion_matrix(list(y), list(pred), labels=list(labels)).tolist()


def roc_points(y: Sequence[int], score: Any, max_points: int = 200) -> dict[str, list]:
    """A thinned ROC curve for plotting."""
    from sklearn import metrics as skm

    fpr, tpr, _ = skm.roc_curve(np.asarray(y, dtype=int), np.asarray(score, dtype=float))
    if len(fpr) > max_points:
        idx = np.unique(np.linspace(0, len(fpr) - 1, max_points).astype(int))
        fpr, tpr = fpr[idx], tpr[idx]
    return {"fpr": [round(float(v), 6) for v in fpr], "tpr": [round(float(v), 6) for v in tpr]}
