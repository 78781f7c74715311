"""benchmarks/mandelli_learning_curve.py, its pure parts: the study subset and the table.

No detector is trained here (the benchmark is not a test); the subset is built from the real
``registry.yaml`` and checked against the study it copies.
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

import mandelli_learning_curve as lc  # noqa: E402


def test_subset_keeps_the_study_and_changes_only_photos_noise_and_split():
    study = lc.study_subset(6, None)
    assert study["data"]["dataset"] == {
        "name": "virtual-cameras",
        "params": {"photos": list(lc.ORDER[:6])},
    }
    noise = [s for s in study["data"]["derive"] if s["label"] == "synthetic-noise"]
    assert noise[0]["n"] == 6 * lc.NOISE_PER_PHOTO
    assert [p["name"] for p in study["pipelines"]] == list(lc.PIPELINES)
    assert [t["name"] for t in study["tasks"]] == ["ternary"]
    assert "seed" not in study["split"]  # the study's own split
    other = lc.study_subset(6, None, split_seed=3)
    assert other["split"] == {**study["split"], "seed": 3}
    assert other["pipelines"] == study["pipelines"]


def row(photos: int, seed: object, bacc: float) -> dict:
    return {
        "photos": photos,
        "split_seed": seed,
        "train_photos": ["a"] * (photos - 2),
        "test_photos": ["b", "c"],
        "n_train": 10,
        "n_test": 5,
        "bacc_mandelli": bacc,
        "bacc_mandelli-two-stage": bacc,
        "l2p_mandelli": 0.0,
        "l2s_mandelli": 0.5,
        "wall_s": 12.0,
    }


def test_table_summarises_several_splits_per_point():
    one = lc.table([row(6, "study", 0.8)])
    assert "| 6 (4 / 2) | study | 10 / 5 | 0.800 |" in one
    assert "splits" not in one  # one split a point: no summary
    many = lc.table([row(6, 0, 0.7), row(6, 1, 0.9), row(9, 0, 0.85)])
    assert "| 6 | 2 | 0.800 | 0.700 | 0.900 |" in many
    assert "| 9 | 1 | 0.850 | 0.850 | 0.850 |" in many
