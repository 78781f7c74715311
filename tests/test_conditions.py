"""Launderer conditions, per-task conditions, PSNR per condition, class groups, variants, --set."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from fzoo.cli import main
from fzoo.config import ConfigError, load_experiment
from fzoo.experiment import run_experiment
from fzoo_builtins.reconstruction.score import FeatureScore

from .conftest import make_class_folder

STUDY = """\
name: conditions-test
seed: 1
data:
  dataset: {{name: folder, params: {{root: "{root}"}}}}
  derive:
    - label: laundered
      from: pristine
      launderer: &vae {{name: sd-vae, params: {{weights: "{vae}"}}}}
split: {{test_size: 0.34}}
conditions:
  - name: clean
  - {{name: jpeg-90, perturbations: [jpeg-90], tasks: [three-way]}}
  - {{name: jpeg-30, perturbations: [{{name: jpeg, params: {{quality: 30}}}}], tasks: [three-way]}}
  - {{name: vae, launderer: *vae, tasks: [three-way]}}
pipelines:
  - name: dct-lr
    features: [{{name: dct-spectrum, params: {{size: 8}}}}]
    classifier: lr-balanced
  - name: recon-score
    features: [{{name: recon-error, params: {{launderers: [*vae], grid: 0}}}}]
    classifier: feature-score
    tasks: [laundered]
tasks:
  - name: three-way
    type: multiclass
    classes: [pristine, {{altered: [processed, laundered]}}]
  - {{name: laundered, type: binary, positive: [laundered], test_on: [pristine, laundered],
     train_on: [pristine, laundered]}}
headline:
  vae_bacc: {{task: three-way, pipeline: dct-lr, condition: vae, metric: balanced_accuracy,
             description: under the VAE}}
  processed_as_altered: {{task: three-way, pipeline: dct-lr, rate: processed->altered}}
variants:
  small:
    conditions.jpeg-30.perturbations.0.params.quality: 50
    pipelines.dct-lr.features.0.params.size: 4
"""


@pytest.fixture(scope="module")
def tiny_vae(tmp_path_factory) -> Path:
    from diffusers import AutoencoderKL

    torch.manual_seed(0)
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(8, 8, 8, 8),
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=4,
        sample_size=32,
    )
    folder = tmp_path_factory.mktemp("vae") / "tiny-vae"
    vae.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def study(tmp_path_factory, tiny_vae: Path) -> Path:
    root = make_class_folder(tmp_path_factory.mktemp("imgs"), n_per_photo=2)
    path = tmp_path_factory.mktemp("cfg") / "study.yaml"
    path.write_text(STUDY.format(root=root, vae=tiny_vae))
    return path


@pytest.fixture(scope="module")
def study_run(study: Path, tmp_path_factory):
    out = tmp_path_factory.mktemp("out")
    return run_experiment(load_experiment(study), out, progress=None), out


def test_conditions_apply_to_their_tasks_and_report_psnr(study_run) -> None:
    result, out = study_run
    assert not result.errors
    by = {(r["pipeline"], r["task"], r["condition"]): r for r in result.rows}
    # per-task conditions: the laundered task runs under 'clean' only
    assert {c for p, t, c in by if t == "laundered"} == {"clean"}
    assert {c for p, t, c in by if t == "three-way"} == {"clean", "jpeg-90", "jpeg-30", "vae"}
    # PSNR: measured for conditions that change images, ordered as their strength
    assert "psnr" not in by[("dct-lr", "three-way", "clean")]
    p90 = by[("dct-lr", "three-way", "jpeg-90")]["psnr"]
    p30 = by[("dct-lr", "three-way", "jpeg-30")]["psnr"]
    pvae = by[("dct-lr", "three-way", "vae")]["psnr"]
    assert 25 < p30 < p90 < 60
    assert 0 < pvae < p30  # a random tiny VAE destroys the image
    report = (out / "report.md").read_text()
    assert "## Detection against image quality" in report
    assert "## Headline" in report and "under the VAE" in report
    html = (out / "report.html").read_text()
    assert "Detection against image quality" in html
    assert list((out / "figures").glob("quality-*.png"))


def test_class_groups_map_labels_and_keep_per_label_rates(study_run) -> None:
    result, out = study_run
    detail = next(
        d
        for d in result.details
        if (d["pipeline"], d["task"], d["condition"]) == ("dct-lr", "three-way", "clean")
    )
    assert detail["labels"] == ["altered", "pristine"]
    assert set(detail["by_label"]) == {"pristine", "processed", "laundered"}
    headline = json.loads((out / "headline.json").read_text())
    counts = detail["by_label"]["processed"]
    assert headline["processed_as_altered"] == pytest.approx(
        counts.get("altered", 0) / sum(counts.values())
    )
    assert headline["vae_bacc"] is not None


def test_feature_score_is_the_reconstruction_distance(study_run) -> None:
    result, _ = study_run
    row = next(r for r in result.rows if r["pipeline"] == "recon-score")
    # a random autoencoder's round trip of its own output is closer than of a photo
    assert row["auc"] > 0.9


def test_feature_score_learns_direction_threshold_and_roundtrips(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    X = np.concatenate([rng.normal(0, 1, (50, 3)), rng.normal(0, 1, (50, 3))])
    X[50:, -1] -= 3.0  # class "b" has the lower score
    y = ["a"] * 50 + ["b"] * 50
    clf = FeatureScore().fit(X, y)
    assert clf.sign_ == -1.0
    acc = np.mean(clf.predict(X) == np.asarray(y))
    assert acc > 0.9
    clf.save_state(tmp_path)
    again = FeatureScore()
    again.load_state(tmp_path)
    np.testing.assert_allclose(again.predict_proba(X), clf.predict_proba(X))
    with pytest.raises(ValueError, match="binary"):
        FeatureScore().fit(X, ["a"] * 30 + ["b"] * 30 + ["c"] * 40)
    with pytest.raises(ValueError, match="column 5"):
        FeatureScore(column=5).fit(X, y)


def test_variants_and_overrides(study: Path) -> None:
    exp = load_experiment(study, variant="small")
    assert exp.spec.variant == "small"
    assert exp.spec.conditions[2].perturbations[0].params == {"quality": 50}
    assert exp.spec.pipelines[0].features[0].params == {"size": 4}
    exp = load_experiment(
        study,
        overrides=[
            ("split.test_size", 0.5),
            ("conditions+", {"name": "blur", "perturbations": [{"name": "blur"}]}),
        ],
    )
    assert exp.spec.split.test_size == 0.5 and exp.spec.conditions[-1].name == "blur"
    with pytest.raises(ConfigError, match="Did you mean 'small'"):
        load_experiment(study, variant="smal")
    with pytest.raises(ConfigError, match="no item 'nope'"):
        load_experiment(study, overrides={"pipelines.nope.classifier": "svm"})


def test_condition_and_headline_names_are_checked(study: Path, tmp_path: Path) -> None:
    text = study.read_text()
    bad = tmp_path / "bad.yaml"
    bad.write_text(text.replace("tasks: [three-way]}", "tasks: [three-wya]}", 1))
    with pytest.raises(ConfigError, match="condition 'jpeg-90' names unknown task 'three-wya'"):
        load_experiment(bad)
    bad.write_text(text.replace("condition: vae,", "condition: vea,"))
    with pytest.raises(ConfigError, match="unknown condition 'vea'"):
        load_experiment(bad)
    bad.write_text(text.replace("{altered: [processed, laundered]}", "{altered: []}"))
    with pytest.raises(ConfigError, match="class group"):
        load_experiment(bad)
    bad.write_text(text + "variant: small\n")
    with pytest.raises(ConfigError, match="set by `--variant`"):
        load_experiment(bad)


def test_cli_set_and_variant(study: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(study), "--variant", "small", "--set", "seed=4"]) == 0
    assert "[variant small]: OK" in capsys.readouterr().out
    assert main(["validate", str(study), "--set", "conditions+={name: x, tasks: [nope]}"]) == 2
    assert "unknown task 'nope'" in capsys.readouterr().err
    assert main(["validate", str(study), "--set", "novalue"]) == 2
    assert "KEY=VALUE" in capsys.readouterr().err


def test_condition_yaml_reports_line_of_bad_launderer(study: Path, tmp_path: Path) -> None:
    text = study.read_text().replace(
        "{name: vae, launderer: *vae,", "{name: vae, launderer: sd-vea,"
    )
    bad = tmp_path / "bad.yaml"
    bad.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_experiment(bad)
    line = next(i for i, t in enumerate(textwrap.dedent(text).splitlines(), 1) if "sd-vea" in t)
    assert any(issue.line == line and "sd-vae" in issue.message for issue in info.value.issues)
