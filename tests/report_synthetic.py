"""A synthetic RunResult for report tests: the spec of a real YAML, made-up metrics, and per-cell
fingerprints as the runner writes them (dataset, derived classes, conditions, each pipeline's
features and classifier), so a report can be drawn for any grid without running anything."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from fzoo.config import load_experiment
from fzoo.results import RunResult


def synthetic_result(
    yaml_text: str, folder: Path, touches: dict[str, set[str]], details: bool = True
) -> RunResult:
    """``touches``: per grid path, the pipelines whose fingerprints it changes (all: ``*``)."""
    (folder / "exp.yaml").write_text(yaml_text)
    exp = load_experiment(folder / "exp.yaml")
    spec = exp.spec
    rows: list[dict[str, Any]] = []
    dets: list[dict[str, Any]] = []
    fps: dict[str, dict[str, str]] = {}
    pipelines = [p.name for p in spec.pipelines]
    conditions = [c.name for c in spec.conditions] or ["clean"]
    for n, cell in enumerate(exp.cells):
        fp = {"dataset": "d0"}
        for path, value in cell.values.items():
            for p in pipelines:
                if p in touches.get(path, set()) or "*" in touches.get(path, set()):
                    fp[f"pipelines.{p}.classifier"] = fp.get(f"pipelines.{p}.classifier", "")
                    fp[f"pipelines.{p}.classifier"] += f"{path}={value};"
        for p in pipelines:
            fp[f"pipelines.{p}.features[0]"] = f"f-{p}"
            fp.setdefault(f"pipelines.{p}.classifier", "c")
        fps[cell.id] = fp
        for k, p in enumerate(pipelines):
            touched = [path for path in cell.values if p in touches.get(path, set())
                       or "*" in touches.get(path, set())]  # fmt: skip
            shift = sum(0.03 * (list(spec.grid[a]).index(cell.values[a]) + 1) for a in touched)
            for t, task in enumerate(spec.tasks):
                for c, cond in enumerate(conditions):
                    base = 0.6 + 0.08 * k + shift - 0.07 * c - 0.02 * t
                    auc = max(0.0, min(1.0, base))
                    row: dict[str, Any] = {
                        "cell": cell.id,
                        **cell.values,
                        "pipeline": p,
                        "task": task.name,
                        "condition": cond,
                        "n_train": 100,
                        "n_test": 40,
                        "auc": auc,
                        "ap": auc,
                        "balanced_accuracy": auc - 0.05,
                        "accuracy": auc - 0.05,
                        "tpr_at_1fpr": auc / 3 if task.type == "binary" else math.nan,
                        "tpr_at_5fpr": auc / 2 if task.type == "binary" else math.nan,
                        "eer": 1 - auc if task.type == "binary" else math.nan,
                    }
                    rows.append(row)
                    if not details:
                        continue
                    d: dict[str, Any] = {
                        k2: row[k2] for k2 in ("cell", "pipeline", "task", "condition")
                    }
                    d["labels"] = ["neg", "pos"]
                    d["confusion"] = [[15 + n % 5, 5], [4, 16]]
                    if task.type == "binary":
                        d["roc"] = {"fpr": [0.0, 1 - auc, 1.0], "tpr": [0.0, auc, 1.0]}
                    dets.append(d)
    meta = {
        "experiment": spec.name,
        "config_file": str(folder / "exp.yaml"),
        "seed": 0,
        "split_seed": 0,
        "test_size": 0.3,
        "grid": spec.grid,
        "versions": {"fzoo": "test"},
        "fingerprints": fps,
        "images_per_class": {"pristine": 10, "jpeg": 10},
        "cache": {"dir": "/tmp", "hits": 0, "misses": 0},
        "wall_time_s": 0.0,
    }
    return RunResult(spec, rows, dets, [], meta, [], {}, [])
