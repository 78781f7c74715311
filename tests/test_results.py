"""Typed result rows: what the runner makes is MetricRow / Detail / Prediction, the files keep the
keys and order they had as dicts, and a finished run's folder reads back into the same report."""

from __future__ import annotations

import dataclasses
import json
import math
import textwrap

import pytest

from fzoo.config import load_experiment
from fzoo.experiment import run_experiment
from fzoo.metrics import METRIC_NAMES
from fzoo.report import to_json, write_report
from fzoo.results import (
    Detail,
    MetricRow,
    Prediction,
    RunResult,
    StepName,
    load_results,
)

EXP = """\
name: results-test
seed: 5
data:
  dataset:
    name: sample-photos
    params: {crop: 32, crops_per_photo: 3, photos: [astronaut, coffee, chelsea]}
  derive:
    - {label: jpeg, from: pristine, perturbations: [jpeg-75]}
split: {test_size: 0.4}
conditions:
  - {name: clean}
  - {name: blur, perturbations: [{name: blur, params: {sigma: 1}}]}
pipelines:
  - name: dct-lr
    features: [{name: dct-spectrum, params: {size: 4}}]
    classifier: logistic-regression
tasks:
  - {name: jpeg, type: binary, positive: [jpeg]}
  - {name: both, type: multiclass}
  - {name: broken, type: binary, positive: [jpeg], train_on: [jpeg]}
headline:
  auc: {task: jpeg, pipeline: dct-lr, metric: auc, cell: "pipelines.dct-lr.classifier.params.C=1.0"}
  rate:
    task: jpeg
    pipeline: dct-lr
    rate: "jpeg->pristine"
    cell: "pipelines.dct-lr.classifier.params.C=1.0"
grid:
  pipelines.dct-lr.classifier.params.C: [0.1, 1.0]
"""


def test_a_row_writes_the_keys_of_the_old_dicts_in_their_order():
    row = MetricRow(
        "C=1", "p", "t", "blur", {"C": 1.0}, 10, 4, None, True, metrics={"auc": 0.5, "ap": 0.25}
    )
    assert list(row.to_dict()) == [
        "cell", "C", "pipeline", "task", "condition", "n_train", "n_test", "psnr", "auc", "ap"
    ]  # fmt: skip
    assert row.to_dict()["psnr"] is None  # measured, but no finite PSNR: a null, not absent
    assert MetricRow.from_dict(row.to_dict()) == row
    # a failed row: no sizes, no PSNR, the error last
    failed = MetricRow("", "p", "t", "*", error="boom")
    assert failed.to_dict() == {
        "cell": "", "pipeline": "p", "task": "t", "condition": "*", "error": "boom"
    }  # fmt: skip
    assert not failed.ok and row.ok and MetricRow.from_dict(failed.to_dict()) == failed
    # read as a mapping, as scripts read the old dicts
    assert row["auc"] == 0.5 and "error" not in row and "error" in failed and row["C"] == 1.0
    assert row.metric("auc") == 0.5 and row.metric("n_test") == 4 and row.metric("eer") is None
    # JSON of typed rows (fzoo run --json) is their file form, NaN as null
    nan_row = dataclasses.replace(row, metrics={"auc": math.nan})
    assert json.loads(to_json({"rows": [nan_row]})) == {
        "rows": [{**nan_row.to_dict(), "auc": None}]
    }

    roc = {"fpr": [0.0, 1.0], "tpr": [0.0, 1.0]}
    steps = (StepName("perturbation", "blur"),)
    detail = Detail("", "p", "t", "blur", ["a", "b"], [[1, 0], [0, 1]], {"a": {"a": 1}}, roc)
    detail = dataclasses.replace(detail, psnr=31.5, steps=steps)
    assert list(detail.to_dict()) == [
        "cell", "pipeline", "task", "condition", "psnr", "steps", "roc", "labels", "confusion",
        "by_label",
    ]  # fmt: skip
    assert detail.to_dict()["steps"] == [{"kind": "perturbation", "name": "blur"}]
    assert Detail.from_dict(json.loads(json.dumps(detail.to_dict()))) == detail
    assert detail.count("a", "a") == (1, 1) and detail.count("b", "a") == (0, 0)

    pred = Prediction("", "p", "t", "clean", "x/1", "x", "s", "", "x", "y", {"x": 0.25, "y": 0.75})
    assert list(pred.to_dict())[-3:] == ["predicted", "p_x", "p_y"]
    csv_row = {k: str(v) for k, v in pred.to_dict().items()} | {"p_z": ""}  # another task's class
    assert Prediction.from_dict(csv_row) == pred


def test_run_result_reads_dicts_into_types(tmp_path):
    spec = load_experiment_text(tmp_path).spec
    row = {"cell": "", "pipeline": "p", "task": "t", "condition": "c", "auc": math.nan}
    result = RunResult(spec, [row], [], [], {}, [], {}, [])
    (typed,) = result.rows
    assert isinstance(typed, MetricRow) and typed.metrics.keys() == {"auc"}


def load_experiment_text(tmp_path):
    path = tmp_path / "exp.yaml"
    path.write_text(textwrap.dedent(EXP))
    return load_experiment(path)


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("results")
    exp = load_experiment_text(tmp)
    result = run_experiment(exp, tmp / "out", tmp / "cache", progress=None)
    return result, tmp / "out"


def test_the_runner_makes_typed_rows_and_the_files_keep_their_form(finished):
    result, out = finished
    assert all(isinstance(r, MetricRow) for r in result.rows)
    assert all(isinstance(d, Detail) for d in result.details)
    assert all(isinstance(p, Prediction) for p in result.predictions)
    rows = json.loads((out / "results.json").read_text())["rows"]
    ok = next(r for r in rows if r["task"] == "jpeg" and r["condition"] == "blur")
    assert list(ok)[:8] == [
        "cell", "pipelines.dct-lr.classifier.params.C", "pipeline", "task", "condition",
        "n_train", "n_test", "psnr",
    ]  # fmt: skip
    assert set(list(ok)[8:]) == set(METRIC_NAMES)  # the metrics, in binary_metrics' order
    broken = [r for r in rows if r["task"] == "broken"]
    assert len(broken) == 2 and all(list(r)[-2:] == ["condition", "error"] for r in broken)
    header = (out / "predictions.csv").read_text().splitlines()[0].split(",")
    assert header[:10] == ["cell", "pipeline", "task", "condition", "item", "label", "source",
                           "camera", "target", "predicted"]  # fmt: skip
    assert set(header[10:]) == {"p_jpeg", "p_not-jpeg", "p_pristine"}  # binary, multiclass
    headline = json.loads((out / "headline.json").read_text())
    assert set(headline) == {"auc", "rate"} and 0.0 <= headline["rate"] <= 1.0


def test_a_finished_folder_reads_back_into_the_same_report(finished, tmp_path):
    result, _ = finished
    # names the report writes escaped are read back unescaped, so they are escaped once again
    odd = "photos/a\nb\\c\udcff.png"
    result = dataclasses.replace(
        result,
        skipped=[{"path": odd, "label": "pristine", "reason": "cannot decode"}],
        notes={odd: ["16-bit PNG read as 8 bits"]},
    )
    out = tmp_path / "first"
    write_report(result, out)
    (out / "headline.json").write_text(json.dumps(result.headline))
    on_disk = json.loads((out / "results.json").read_text())["skipped"][0]["path"]
    assert on_disk == "photos/a\\nb\\\\c\\xff.png"  # escaped on disk
    back = load_results(out)
    assert back.skipped[0]["path"] == odd and list(back.notes) == [odd]
    assert [r.to_dict() for r in back.rows] == [
        json.loads(json.dumps(r.to_dict()).replace("NaN", "null")) for r in result.rows
    ]
    assert back.headline == result.headline and len(back.predictions) == len(result.predictions)
    assert back.details[0] == result.details[0]
    write_report(back, tmp_path / "again")
    for name in ("results.json", "results.csv", "predictions.csv", "report.md"):
        assert (tmp_path / "again" / name).read_bytes() == (out / name).read_bytes(), name
