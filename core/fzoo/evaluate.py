"""Tasks and metrics: train a pipeline's classifier for a task, then score it under every
condition the task is tested in.

Rows, details and predictions are appended to a :class:`~fzoo.results.CellResult` as
:class:`~fzoo.results.MetricRow`, :class:`~fzoo.results.Detail` and
:class:`~fzoo.results.Prediction`. The binary decision rule is :func:`fzoo.metrics.decide`, the
one ``fzoo detect`` applies too.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

import numpy as np

from fzoo.components import Classifier, Launderer
from fzoo.conditions import Condition
from fzoo.engines.timeout import call_with_timeout
from fzoo.metrics import binary_metrics, confusion, decide, multiclass_metrics, roc_points
from fzoo.plan import PipelinePlan
from fzoo.results import CellResult, Detail, MetricRow, Prediction, StepName
from fzoo.tasks import negative_name, positive_name, task_target

if TYPE_CHECKING:
    from fzoo.data import Item
    from fzoo.grid import Cell
    from fzoo.schema import TaskSpec


@dataclass
class TestGroup:
    """The test images of one condition, their features, and their PSNR under it (or None)."""

    condition: Condition
    items: list[Item]
    features: dict[str, list[np.ndarray | None]]
    psnr: list[float | None] | None = None


@dataclass
class TaskRun:
    """One pipeline on one task in one cell: what training and scoring need."""

    cell: Cell
    pipeline: PipelinePlan
    task: TaskSpec
    fingerprints: list[str]  # the pipeline's extractors, fitted fingerprints where fitted
    limit: float | None  # time limit per classifier call


@dataclass
class TrainedTask:
    """A task's classifier, fitted on the training split."""

    classifier: Classifier
    classes: list[str]
    positive: str | None  # the positive class of a binary task
    n_train: int


def select(
    run: TaskRun, items: list[Item], allowed: list[str] | None, feats: dict[str, list[Any]]
) -> tuple[list[int], list[str]]:
    """The items of a task that have every feature: their indices and their targets."""
    idx, ys = [], []
    for i, it in enumerate(items):
        if allowed is not None and it.label not in allowed:
            continue
        if any(feats[fp][i] is None for fp in run.fingerprints):
            continue
        y = task_target(run.task, it)
        if y is not None:
            idx.append(i)
            ys.append(y)
    return idx, ys


def matrix(run: TaskRun, feats: dict[str, list[Any]], idx: list[int]) -> np.ndarray:
    """The feature matrix of the items ``idx``: the pipeline's extractors side by side."""
    if not idx:
        return np.zeros((0, 0), dtype=np.float32)
    return np.concatenate([np.stack([feats[fp][i] for i in idx]) for fp in run.fingerprints], 1)


def train_task(run: TaskRun, train: list[Item], train_feats: dict[str, list[Any]]) -> TrainedTask:
    """Fit a fresh classifier of the pipeline on the task's training images."""
    task = run.task
    tr_idx, y_train = select(run, train, task.train_on, train_feats)
    if len(set(y_train)) < 2:
        raise ValueError(
            f"the training split has {len(set(y_train))} class(es) {sorted(set(y_train))} "
            "for this task; a classifier needs at least two"
        )
    X_train = matrix(run, train_feats, tr_idx)
    clf = run.pipeline.classifier.build()
    assert isinstance(clf, Classifier)
    call_with_timeout(lambda: clf.fit(X_train, y_train), run.limit, f"{clf.name}.fit")
    classes = [str(c) for c in clf.classes_]
    positive = positive_name(task) if task.type == "binary" else None
    return TrainedTask(clf, classes, positive, len(y_train))


def score_task(
    run: TaskRun, trained: TrainedTask, test_feats: dict[str, TestGroup], result: CellResult
) -> None:
    """Score the trained classifier under every condition of the task; rows, details and
    predictions go into ``result``."""
    cell, task, pl_name = run.cell, run.task, run.pipeline.name
    clf, classes, positive = trained.classifier, trained.classes, trained.positive
    for cond_name, group in test_feats.items():
        if not group.condition.applies_to(task.name):
            continue
        test, feats = group.items, group.features
        te_idx, y_test = select(run, test, task.test_on, feats)
        X_test = matrix(run, feats, te_idx)
        proba = (
            call_with_timeout(
                partial(clf.predict_proba, X_test), run.limit, f"{clf.name}.predict_proba"
            )
            if len(te_idx)
            else np.zeros((0, len(classes)))
        )
        pred = [classes[k] for k in np.argmax(proba, axis=1)] if len(te_idx) else []
        psnr: float | None = None
        steps: tuple[StepName, ...] | None = None
        if group.psnr is not None:
            values = [group.psnr[i] for i in te_idx]
            finite = [v for v in values if v is not None and np.isfinite(v)]
            psnr = round(float(np.mean(finite)), 3) if finite else None
            steps = tuple(
                StepName(
                    "launderer" if isinstance(st.built, Launderer) else "perturbation",
                    st.built.name,
                )
                for st in group.condition.steps
            )
        where = (cell.id, pl_name, task.name, cond_name)
        row = partial(
            MetricRow,
            *where,
            grid=dict(cell.values),
            n_train=trained.n_train,
            n_test=len(y_test),
            psnr=psnr,
            measured=steps is not None,
        )
        if len(te_idx) == 0:
            error = "no test images for this task"
            result.rows.append(row(error=error))
            continue
        roc = None
        if positive is not None:
            score = proba[:, classes.index(positive)] if positive in classes else proba[:, 0]
            y_bin = [int(y == positive) for y in y_test]
            metrics = binary_metrics(y_bin, score, task.threshold)
            pred = [decide(s, task.threshold, positive, negative_name(task)) for s in score]
            labels = [negative_name(task), positive]
            roc = roc_points(y_bin, score)
        else:
            metrics = multiclass_metrics(y_test, proba, classes)
            labels = sorted(set(classes) | set(y_test))
        # per original label: how each true label was classified (e.g. laundered-as-pristine)
        by_label: dict[str, dict[str, int]] = {}
        for k, i in enumerate(te_idx):
            by_label.setdefault(test[i].label, {}).setdefault(pred[k], 0)
            by_label[test[i].label][pred[k]] += 1
            result.predictions.append(
                Prediction(
                    *where,
                    item=test[i].id,
                    label=test[i].label,
                    source=test[i].source,
                    camera=test[i].camera or "",
                    target=y_test[k],
                    predicted=pred[k],
                    probabilities={
                        c: round(float(p), 6) for c, p in zip(classes, proba[k], strict=True)
                    },
                )
            )
        result.rows.append(row(metrics=dict(metrics)))
        confusion_ = confusion(y_test, pred, labels)
        result.details.append(
            Detail(*where, labels, confusion_, by_label, roc, psnr=psnr, steps=steps)
        )
