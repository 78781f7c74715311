"""What a run produces: the rows, details and predictions of each cell, and of the whole run.

The report, headline and quality modules read these; they import this module, not the runner
(:mod:`fzoo.experiment`). Rows, details and predictions are frozen dataclasses
(:class:`MetricRow`, :class:`Detail`, :class:`Prediction`); each writes itself as the dict of
results.json / results.csv / predictions.csv with ``to_dict()`` (the same keys, in the same order,
as before they were typed) and reads such a dict back with ``from_dict()``
(:func:`load_results` reads a finished run's folder). For the scripts that read them as dicts,
each is also a read-only mapping of those keys (``row["auc"]``, ``"error" in row``).
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, fields
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fzoo.schema import ExperimentSpec


class _AsMapping(Mapping[str, Any]):
    """A read-only mapping view of ``to_dict()`` (the file form), for code that reads dicts."""

    def to_dict(self) -> dict[str, Any]:  # pragma: no cover - each class defines it
        raise NotImplementedError

    @cached_property
    def _view(self) -> dict[str, Any]:
        return self.to_dict()

    def __getitem__(self, key: str) -> Any:
        return self._view[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._view)

    def __len__(self) -> int:
        return len(self._view)


#: the keys of a result row that are its own fields (the rest are grid values or metrics)
_ROW_KEYS = ("cell", "pipeline", "task", "condition", "n_train", "n_test", "psnr", "error")


@dataclass(frozen=True, eq=True)
class MetricRow(_AsMapping):
    """One (cell, pipeline, task, condition): its sizes, its metrics, or why it failed.

    ``grid`` holds the cell's grid values by dotted path (columns of their own in the files);
    ``measured`` says whether the condition's PSNR was measured (``psnr`` may still be None, when
    no test image had a finite one); ``error`` is set for a failed row (condition ``*`` when the
    whole pipeline failed) and ``metrics`` holds the metrics by name, in the metrics' order.
    """

    cell: str
    pipeline: str
    task: str
    condition: str
    grid: dict[str, Any] = field(default_factory=dict)
    n_train: int | None = None
    n_test: int | None = None
    psnr: float | None = None
    measured: bool = False
    error: str | None = None
    metrics: dict[str, Any] = field(default_factory=dict)

    __hash__ = None  # type: ignore[assignment]  # holds dicts

    @property
    def ok(self) -> bool:
        """Whether the row has metrics (no error)."""
        return self.error is None

    def metric(self, name: str) -> Any:
        """A metric (or ``n_train``, ``n_test``, ``psnr``) by name; None when absent."""
        if name in self.metrics:
            return self.metrics[name]
        return self.get(name) if name in _ROW_KEYS else None

    def to_dict(self) -> dict[str, Any]:
        """The row as results.json and results.csv write it."""
        out: dict[str, Any] = {"cell": self.cell, **self.grid}
        out |= {"pipeline": self.pipeline, "task": self.task, "condition": self.condition}
        if self.n_train is not None:
            out["n_train"] = self.n_train
        if self.n_test is not None:
            out["n_test"] = self.n_test
        if self.measured:
            out["psnr"] = self.psnr
        if self.error is not None:
            out["error"] = self.error
        out.update(self.metrics)
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> MetricRow:
        """A row from its dict (results.json): keys between ``cell`` and ``pipeline`` are grid
        values, keys that are not the row's own are metrics."""
        if isinstance(d, MetricRow):
            return d
        keys = list(d)
        start = keys.index("cell") + 1 if "cell" in keys else 0
        end = keys.index("pipeline") if "pipeline" in keys else start
        grid = {k: d[k] for k in keys[start:end] if k not in _ROW_KEYS}
        metrics = {k: v for k, v in d.items() if k not in _ROW_KEYS and k not in grid}
        return cls(
            cell=d.get("cell", ""),
            pipeline=d.get("pipeline", ""),
            task=d.get("task", ""),
            condition=d.get("condition", ""),
            grid=grid,
            n_train=d.get("n_train"),
            n_test=d.get("n_test"),
            psnr=d.get("psnr"),
            measured="psnr" in d,
            error=d.get("error"),
            metrics=metrics,
        )


@dataclass(frozen=True)
class StepName:
    """One transform of a condition, as a detail names it."""

    kind: str  # launderer or perturbation
    name: str


@dataclass(frozen=True, eq=True)
class Detail(_AsMapping):
    """What a row's numbers came from: the labels, the confusion matrix (rows = true), how each
    true label was classified, the ROC curve of a binary task, and the condition's steps and
    PSNR when it changes images (``steps`` None: not measured)."""

    cell: str
    pipeline: str
    task: str
    condition: str
    labels: list[str] | None = None
    confusion: list[list[int]] | None = None
    by_label: dict[str, dict[str, int]] | None = None
    roc: dict[str, list[float]] | None = None
    psnr: float | None = None
    steps: tuple[StepName, ...] | None = None

    __hash__ = None  # type: ignore[assignment]  # holds lists

    def count(self, true: str, predicted: str) -> tuple[int, int]:
        """How many test images of label ``true`` were called ``predicted``, out of how many."""
        counts = (self.by_label or {}).get(true, {})
        return counts.get(predicted, 0), sum(counts.values())

    def to_dict(self) -> dict[str, Any]:
        """The detail as results.json writes it."""
        out: dict[str, Any] = {
            "cell": self.cell,
            "pipeline": self.pipeline,
            "task": self.task,
            "condition": self.condition,
        }
        if self.steps is not None:
            out["psnr"] = self.psnr
            out["steps"] = [{"kind": s.kind, "name": s.name} for s in self.steps]
        for key in ("roc", "labels", "confusion", "by_label"):
            if (value := getattr(self, key)) is not None:
                out[key] = value
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Detail:
        if isinstance(d, Detail):
            return d
        steps = None
        if "steps" in d or "psnr" in d:
            steps = tuple(StepName(s["kind"], s["name"]) for s in d.get("steps") or [])
        return cls(
            cell=d.get("cell", ""),
            pipeline=d.get("pipeline", ""),
            task=d.get("task", ""),
            condition=d.get("condition", ""),
            labels=d.get("labels"),
            confusion=d.get("confusion"),
            by_label=d.get("by_label"),
            roc=d.get("roc"),
            psnr=d.get("psnr"),
            steps=steps,
        )


@dataclass(frozen=True, eq=True)
class Prediction(_AsMapping):
    """One test image under one condition: its true target, the predicted class and the
    probability of each class (columns ``p_<class>`` in predictions.csv)."""

    cell: str
    pipeline: str
    task: str
    condition: str
    item: str
    label: str
    source: str
    camera: str
    target: str
    predicted: str
    probabilities: dict[str, float] = field(default_factory=dict)

    __hash__ = None  # type: ignore[assignment]  # holds a dict

    def to_dict(self) -> dict[str, Any]:
        """The prediction as predictions.csv writes it."""
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "probabilities"}
        out.update({f"p_{c}": p for c, p in self.probabilities.items()})
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Prediction:
        """A prediction from its dict; from predictions.csv, probabilities are read as floats."""
        if isinstance(d, Prediction):
            return d
        own = {f.name for f in fields(cls)} - {"probabilities"}
        probs = {  # a CSV cell left empty: that class is not one of this row's task
            k[2:]: float(v)
            for k, v in d.items()
            if k.startswith("p_") and k not in own and v not in ("", None)
        }
        return cls(**{k: str(d.get(k, "")) for k in own}, probabilities=probs)


@dataclass
class CellResult:
    """The rows, details and predictions of one grid cell, and its errors."""

    rows: list[MetricRow] = field(default_factory=list)
    details: list[Detail] = field(default_factory=list)
    predictions: list[Prediction] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


@dataclass
class RunResult:
    """Everything a run produced; :mod:`fzoo.report` writes it to disk.

    Rows, details and predictions given as dicts (a script's, an old results.json's) are read
    into their types.
    """

    experiment: ExperimentSpec
    rows: list[MetricRow]
    details: list[Detail]
    predictions: list[Prediction]
    meta: dict[str, Any]
    skipped: list[dict[str, str]]
    notes: dict[str, list[str]]
    errors: list[str]
    gallery: dict[str, Any] = field(default_factory=dict)
    headline: dict[str, float | None] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.rows = [MetricRow.from_dict(r) for r in self.rows]
        self.details = [Detail.from_dict(d) for d in self.details]
        self.predictions = [Prediction.from_dict(p) for p in self.predictions]


def _unescaped(obj: Any) -> Any:
    """``obj`` with every string (keys too) as it was before the report escaped it."""
    from fzoo.names import unescape

    if isinstance(obj, str):
        return unescape(obj)
    if isinstance(obj, dict):
        return {_unescaped(k): _unescaped(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_unescaped(v) for v in obj]
    return obj


def load_results(out_dir: str | Path) -> RunResult:
    """The :class:`RunResult` of a finished run's folder: results.json, and predictions.csv and
    headline.json where they are (the gallery's images are not kept there). Strings are read
    back unescaped (the report writes them escaped, :mod:`fzoo.report`), so writing the report
    again gives the same files."""
    from fzoo.schema import ExperimentSpec

    out = Path(out_dir)
    payload = json.loads((out / "results.json").read_text(encoding="utf-8"))
    predictions: list[dict[str, Any]] = []
    if (out / "predictions.csv").is_file():
        with open(out / "predictions.csv", newline="", encoding="utf-8") as fh:
            predictions = list(csv.DictReader(fh))
    headline: dict[str, float | None] = {}
    if (out / "headline.json").is_file():
        headline = json.loads((out / "headline.json").read_text(encoding="utf-8"))
    got = {k: _unescaped(payload.get(k, empty)) for k, empty in _PAYLOAD.items()}
    return RunResult(
        experiment=ExperimentSpec.model_validate(payload["config"]),
        predictions=_unescaped(predictions),
        headline=_unescaped(headline),
        **got,
    )


#: the keys of results.json that :func:`load_results` reads, with their value when absent
_PAYLOAD: dict[str, Any] = {
    "rows": [],
    "details": [],
    "meta": {},
    "skipped": [],
    "notes": {},
    "errors": [],
}
