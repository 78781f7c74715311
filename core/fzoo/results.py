"""What a run produces: the rows, details and predictions of each cell, and of the whole run.

The report, headline and quality modules read these; they import this module, not the runner
(:mod:`fzoo.experiment`). Rows, details and predictions are plain dicts with the field names the
report expects (``cell``, grid values, ``pipeline``, ``task``, ``condition``, metrics, ...).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fzoo.schema import ExperimentSpec


@dataclass
class CellResult:
    """The rows, details and predictions of one grid cell, and its errors."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    details: list[dict[str, Any]] = field(default_factory=list)
    predictions: list[dict[str, Any]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


@dataclass
class RunResult:
    """Everything a run produced; :mod:`fzoo.report` writes it to disk."""

    experiment: ExperimentSpec
    rows: list[dict[str, Any]]
    details: list[dict[str, Any]]
    predictions: list[dict[str, Any]]
    meta: dict[str, Any]
    skipped: list[dict[str, str]]
    notes: dict[str, list[str]]
    errors: list[str]
    gallery: dict[str, Any] = field(default_factory=dict)
    headline: dict[str, float | None] = field(default_factory=dict)
