"""Errors an experiment's author meets, as they are printed: grid mistakes at the grid's line and
once, did-you-mean for list items, quoted numbers refused, blocked plugins named."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from fzoo.config import ConfigError, load_experiment

BASE = """\
name: t
data:
  dataset: {name: sample-photos, params: {crop: 32}}
pipelines:
  - name: fft-lr
    features: [{name: fft-spectrum, params: {bins: 16}}]
    classifier: {name: logistic-regression}
  - name: fft-svm
    features: [{name: fft-spectrum, params: {bins: 16}}]
    classifier: svm
tasks:
  - {name: t1, type: multiclass}
"""


def issues_of(tmp_path: Path, text: str) -> list[str]:
    path = tmp_path / "exp.yaml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_experiment(path)
    prefix = f"{path}:"
    return [str(i).removeprefix(prefix) for i in info.value.issues]


def test_grid_typo_reported_once_at_the_grid_line(tmp_path: Path) -> None:
    text = BASE + "grid:\n  pipelines.fft-lr.classifier.params.CC: [1, 2, 3]\n  seed: [1, 2]\n"
    (msg,) = issues_of(tmp_path, text)  # 6 cells, one message
    assert msg == (
        "14:42: grid 'pipelines.fft-lr.classifier.params.CC' (every value): "
        "'logistic-regression': unknown parameter 'CC'; did you mean 'C'? "
        "Valid parameters: C, max_iter, class_weight, standardize"
    )


def test_grid_bad_value_reported_at_that_value(tmp_path: Path) -> None:
    text = BASE + (
        "grid:\n"
        "  pipelines.fft-lr.features.0.params.bins: [8, 2, 16]\n"
        "  pipelines.fft-svm.features.0.name: [fft-spectrum, fft-spectrun]\n"
    )
    msgs = sorted(issues_of(tmp_path, text))
    assert len(msgs) == 2, msgs  # not once per cell (6 cells)
    assert msgs[0].startswith(
        "14:48: grid 'pipelines.fft-lr.features.0.params.bins' = 2: fft-spectrum: parameter 'bins'"
    )
    assert msgs[1].startswith(
        "15:53: grid 'pipelines.fft-svm.features.0.name' = 'fft-spectrun': unknown feature "
        "extractor 'fft-spectrun'; did you mean 'fft-spectrum'?"
    )


def test_grid_list_item_has_a_did_you_mean(tmp_path: Path) -> None:
    text = BASE + "grid:\n  pipelines.fft-svn.classifier.params.C: [1, 2]\n"
    (msg,) = issues_of(tmp_path, text)
    assert msg == (
        "14:42: grid path 'pipelines.fft-svn.classifier.params.C': no item 'fft-svn' in list "
        "pipelines; did you mean 'fft-svm'? Items: fft-lr, fft-svm"
    )


def test_override_list_item_has_a_did_you_mean(tmp_path: Path) -> None:
    path = tmp_path / "exp.yaml"
    path.write_text(BASE, encoding="utf-8")
    with pytest.raises(ConfigError, match="did you mean 'fft-lr'\\? Items: fft-lr, fft-svm"):
        load_experiment(path, overrides={"pipelines.fft-l.classifier.params.C": 2})


def test_quoted_numbers_and_booleans_are_refused(tmp_path: Path) -> None:
    text = BASE.replace("bins: 16}}]\n    classifier: {name: logistic-regression}", (
        'bins: "16"}}]\n    classifier: {name: logistic-regression, params: {standardize: "no"}}'
    ))  # fmt: skip
    msgs = issues_of(tmp_path, text)
    assert msgs == [
        "6:52: fft-spectrum: parameter 'bins': a number written as a string; write 16 without "
        "quotes (got '16')",
        "7:67: logistic-regression: parameter 'standardize': a boolean written as a string; "
        "write false without quotes (got 'no')",
    ]


def test_exponent_floats_are_numbers(tmp_path: Path) -> None:
    # PyYAML (YAML 1.1) reads 1e-2 as a string; it is taken as the number it is
    path = tmp_path / "exp.yaml"
    path.write_text(BASE.replace("classifier: svm", "classifier: {name: svm, params: {C: 1e-2}}"))
    exp = load_experiment(path)
    assert exp.cells[0].spec.pipelines[1].classifier.params == {"C": "1e-2"}
    assert exp.cells[0].plan is not None
    assert exp.cells[0].plan.pipelines[1].classifier.params["C"] == 0.01


def test_a_blocked_plugins_component_is_reported_as_blocked(tmp_path: Path) -> None:
    path = tmp_path / "exp.yaml"
    path.write_text(BASE, encoding="utf-8")
    env = {**os.environ, "FZOO_BLOCK_PLUGINS": "frequency", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "fzoo.cli", "validate", str(path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 2, proc.stderr
    first = proc.stderr.splitlines()[0]
    assert first.startswith(
        f"{path}:6:23: unknown feature extractor 'fft-spectrum' (blocked: plugin 'frequency' is "
        "installed but blocked by FZOO_BLOCK_PLUGINS"
    ), first
