"""YAML experiments: locations on every error, did-you-mean, presets, grids, safe loading."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from fzoo.cli import main
from fzoo.config import ConfigError, load_experiment, parse_yaml

GOOD = """\
name: t
data:
  dataset:
    name: sample-photos
    params: {crop: 64, crops_per_photo: 2}
  derive:
    - label: processed
      from: pristine
      perturbations: [jpeg-75]
pipelines:
  - name: fft-lr
    features:
      - name: fft-spectrum
        params: {bins: 32}
    classifier: logistic-regression
tasks:
  - {name: t1, type: binary, positive: [processed]}
"""


def write(tmp_path: Path, text: str, name: str = "exp.yaml") -> Path:
    p = tmp_path / name
    p.write_text(textwrap.dedent(text))
    return p


def issues_of(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_experiment(path)
    return [str(i) for i in info.value.issues]


def test_good_config_validates(tmp_path):
    exp = load_experiment(write(tmp_path, GOOD))
    assert exp.spec.pipelines[0].features[0].params == {"bins": 32}
    assert len(exp.cells) == 1


def test_misspelled_component_has_location_and_suggestion(tmp_path):
    path = write(tmp_path, GOOD.replace("name: fft-spectrum", "name: fft-spectrun"))
    (msg,) = issues_of(path)
    assert msg.startswith(f"{path}:13:15: ")
    assert "did you mean 'fft-spectrum'?" in msg
    assert "dct-spectrum" in msg  # the installed names are listed


def test_wrong_parameter_type_points_at_the_value(tmp_path):
    path = write(tmp_path, GOOD.replace("{bins: 32}", "{bins: many}"))
    (msg,) = issues_of(path)
    assert msg.startswith(f"{path}:14:24: ")
    assert "'bins'" in msg and "many" in msg


def test_unknown_parameter_lists_valid_ones(tmp_path):
    path = write(tmp_path, GOOD.replace("{bins: 32}", "{bnis: 32}"))
    (msg,) = issues_of(path)
    assert ":14:" in msg and "did you mean 'bins'?" in msg and "Valid parameters: bins" in msg


def test_unknown_top_level_key(tmp_path):
    path = write(tmp_path, GOOD + "pipelnes: []\n")
    (msg,) = issues_of(path)
    assert msg.startswith(f"{path}:18:") and "unknown key 'pipelnes'" in msg


def test_missing_section(tmp_path):
    text = GOOD.split("tasks:")[0]
    (msg,) = issues_of(write(tmp_path, text))
    assert "missing required key 'tasks'" in msg and ":1:1:" in msg


def test_duplicate_key_rejected(tmp_path):
    path = write(tmp_path, GOOD.replace("name: t\n", "name: t\nseed: 1\nseed: 2\n"))
    (msg,) = issues_of(path)
    assert msg.startswith(f"{path}:3:1: ") and "duplicate key 'seed'" in msg


def test_object_constructing_tags_rejected(tmp_path):
    path = write(
        tmp_path, GOOD.replace("name: t\n", "name: !!python/object/apply:os.system [ls]\n")
    )
    (msg,) = issues_of(path)
    assert msg.startswith(f"{path}:1:7: ") and "not allowed" in msg


def test_yaml_syntax_error_has_location(tmp_path):
    path = write(tmp_path, "name: [unclosed\nseed: 1\n")
    (msg,) = issues_of(path)
    assert msg.startswith(f"{path}:") and msg.count(":") >= 3


def test_wrong_kind_of_component(tmp_path):
    # a classifier name where a feature extractor is expected
    path = write(tmp_path, GOOD.replace("name: fft-spectrum", "name: svm"))
    (msg,) = issues_of(path)
    assert "unknown feature extractor 'svm'" in msg


def test_binary_task_needs_positive(tmp_path):
    path = write(tmp_path, GOOD.replace("positive: [processed]", "classes: [a]"))
    (msg,) = issues_of(path)
    assert ":17:5:" in msg and "positive" in msg


def test_derive_order_checked(tmp_path):
    text = GOOD.replace("from: pristine", "from: processed")
    (msg,) = issues_of(write(tmp_path, text))
    assert ":8:13:" in msg and "derived later or from itself" in msg


def test_presets_resolve_with_overrides(tmp_path):
    from fzoo.config import ComponentSpec, resolve_component

    rc = resolve_component(ComponentSpec(name="jpeg-75"), "perturbation")
    assert (rc.component, rc.params["quality"], rc.preset) == ("jpeg", 75, "jpeg-75")
    rc = resolve_component(ComponentSpec(name="fft-64", params={"bins": 16}), "feature_extractor")
    assert rc.component == "fft-spectrum" and rc.params["bins"] == 16


def test_grid_expands_cells_and_validates_each(tmp_path):
    text = GOOD + "grid:\n  pipelines.fft-lr.features.0.params.bins: [16, 32, 64]\n"
    exp = load_experiment(write(tmp_path, text))
    assert [c.spec.pipelines[0].features[0].params["bins"] for c in exp.cells] == [16, 32, 64]
    assert exp.cells[0].id == "pipelines.fft-lr.features.0.params.bins=16"

    bad = GOOD + "grid:\n  pipelines.fft-lr.features.0.params.bins: [16, 1]\n"
    (msg,) = issues_of(write(tmp_path, bad, "bad.yaml"))
    # at the offending value in the grid (line 19, column 49), not at the extractor's line
    assert ":19:49: grid 'pipelines.fft-lr.features.0.params.bins' = 1: fft-spectrum" in msg

    missing = GOOD + "grid:\n  pipelines.nope.classifier.name: [svm]\n"
    (msg,) = issues_of(write(tmp_path, missing, "missing.yaml"))
    assert ":19:" in msg and "no item 'nope'" in msg


def test_named_experiment_from_registry():
    exp = load_experiment("skimage-demo")
    assert exp.spec.name == "skimage-demo" and exp.file.endswith("registry.yaml")


def test_unknown_experiment_name_suggests():
    with pytest.raises(ConfigError, match="Did you mean 'skimage-demo'"):
        load_experiment("skimage-dmeo")


def test_parse_yaml_locations():
    located = parse_yaml("a:\n  b: [1, 2]\n", "x.yaml")
    assert located.data == {"a": {"b": [1, 2]}}
    assert located.loc(("a", "b", 1)) == (2, 10)


def test_cli_validate_exit_codes(tmp_path, capsys):
    assert main(["validate", str(write(tmp_path, GOOD))]) == 0
    assert "OK" in capsys.readouterr().out
    bad = write(tmp_path, GOOD.replace("logistic-regression", "logistic-regresion"), "b.yaml")
    assert main(["validate", str(bad)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[0].startswith(f"{bad}:15:17: ") and "did you mean 'logistic-regression'" in err[0]
