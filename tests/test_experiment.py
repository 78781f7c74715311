"""End-to-end runs on real images: skipping, caching, splitting, grids, fault isolation."""

from __future__ import annotations

import csv
import json
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

import fzoo
from fzoo.config import load_experiment
from fzoo.data import Item, split_by_source
from fzoo.experiment import run_experiment
from fzoo.plugin_manager import register_plugin, unregister_plugin

from .conftest import make_class_folder, write_odd_images

EXP = """\
name: folder-test
seed: 3
data:
  dataset: {{name: folder, params: {{root: "{root}"}}}}
# rgba.png (alpha dropped) and misnamed.jpg of the odd images have the same RGB pixels
split: {{test_size: 0.34, allow_duplicates: true}}
conditions:
  - name: clean
  - name: jpeg90
    perturbations: [jpeg-90]
pipelines:
  - name: dct-lr
    features: [{{name: dct-spectrum, params: {{size: 8}}}}]
    classifier: logistic-regression
  - name: fft-rf
    features: [{{name: fft-spectrum, params: {{bins: 16}}}}]
    classifier: {{name: random-forest, params: {{n_estimators: 30}}}}
tasks:
  - {{name: processed, type: binary, positive: [processed]}}
"""


def write_exp(tmp_path: Path, root: Path, extra: str = "", text: str = EXP) -> Path:
    path = tmp_path / "exp.yaml"
    path.write_text(text.format(root=root) + textwrap.dedent(extra))
    return path


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="module")
def image_root(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    root = make_class_folder(tmp_path_factory.mktemp("imgs"))
    expect = write_odd_images(root / "pristine")
    return root, expect


def test_odd_folder_runs_to_the_end_and_reports_skips(tmp_path, image_root):
    root, expect = image_root
    out = tmp_path / "out"
    result = run_experiment(load_experiment(write_exp(tmp_path, root)), out, progress=None)
    for name in ("results.csv", "results.json", "predictions.csv", "report.md"):
        assert (out / name).exists()
    report = (out / "report.md").read_text()
    skipped = {Path(s["path"]).name: s["reason"] for s in result.skipped}
    for name, what in expect.items():
        if what == "skip":
            assert name in skipped, name
            assert name in report
        else:
            assert name not in skipped, (name, skipped.get(name))
    assert "empty file" in skipped["zero.png"]
    assert "cannot decode" in skipped["truncated.jpg"]
    assert "too small" in skipped["one.png"]  # decodes, but no spectral feature fits 1x1
    assert "CMYK converted" in report and "alpha channel dropped" in report
    rows = read_csv(out / "results.csv")
    assert {(r["pipeline"], r["condition"]) for r in rows} == {
        (p, c) for p in ("dct-lr", "fft-rf") for c in ("clean", "jpeg90")
    }
    clean = next(r for r in rows if r["pipeline"] == "dct-lr" and r["condition"] == "clean")
    # JPEG-50 twins against their PNG originals: the DCT features separate them
    assert float(clean["auc"]) > 0.8
    meta = json.loads((out / "results.json").read_text())["meta"]
    assert meta["seed"] == 3 and torch.__version__.startswith(meta["versions"]["torch"])
    assert set(meta["fingerprints"][""]) >= {"dataset", "pipelines.dct-lr.features[0]"}


def test_second_run_recomputes_no_feature(tmp_path, image_root):
    root, _ = image_root
    exp = load_experiment(write_exp(tmp_path, root))
    first = run_experiment(exp, tmp_path / "a", cache_dir=tmp_path / "cache", progress=None)
    second = run_experiment(exp, tmp_path / "b", cache_dir=tmp_path / "cache", progress=None)
    feats_first = first.meta["cache"]["by_namespace"]["features"]
    feats_second = second.meta["cache"]["by_namespace"]["features"]
    assert feats_first[1] > 0  # misses on the first run
    assert feats_second[1] == 0 and feats_second[0] == sum(feats_first)
    assert second.meta["cache"]["writes"] == 0
    assert (tmp_path / "a" / "results.csv").read_text() == (
        tmp_path / "b" / "results.csv"
    ).read_text()


def test_split_never_separates_a_source():
    items = []
    for s in range(20):
        for label in ("pristine", "laundered"):
            items.append(Item(id=f"{label}/{s}", label=label, source=f"s{s}", base_hash=str(s)))
    for s in range(6):
        items.append(Item(id=f"synthetic/{s}", label="synthetic", source=f"g{s}", base_hash="g"))
    from fzoo.config import SplitSpec

    side = split_by_source(items, SplitSpec(test_size=0.25), seed=0)
    assert {side[f"s{s}"] for s in range(20)} == {"train", "test"}
    assert sum(side[f"s{s}"] == "test" for s in range(20)) == 5
    assert sum(side[f"g{s}"] == "test" for s in range(6)) in (1, 2)  # stratified per stratum
    assert side == split_by_source(items, SplitSpec(test_size=0.25), seed=0)
    assert side != split_by_source(items, SplitSpec(test_size=0.25), seed=1)


def test_derived_twins_share_their_photos_side(tmp_path):
    text = """\
    name: twins
    data:
      dataset: {name: sample-photos, params: {crop: 64, crops_per_photo: 2, photos: [astronaut, coffee, chelsea, rocket]}}
      derive:
        - {label: processed, from: pristine, perturbations: [jpeg-75]}
    pipelines:
      - {name: p, features: [{name: dct-spectrum, params: {size: 4}}], classifier: logistic-regression}
    tasks:
      - {name: t, type: binary, positive: [processed]}
    """  # noqa: E501
    path = tmp_path / "twins.yaml"
    path.write_text(textwrap.dedent(text))
    out = tmp_path / "out"
    run_experiment(load_experiment(path), out, progress=None)
    preds = read_csv(out / "predictions.csv")
    test_sources = {p["source"] for p in preds}
    labels_per_source = {s: {p["label"] for p in preds if p["source"] == s} for s in test_sources}
    assert all(v == {"pristine", "processed"} for v in labels_per_source.values())
    saved = json.loads((out / "pipelines" / "p--t" / "pipeline.json").read_text())
    # 4 photos x 2 crops x 2 classes; the test photo's 4 images are not in training
    assert saved["n_train"] == 16 - 4 * len(test_sources)


def test_grid_cells_share_cached_features(tmp_path, image_root):
    root, _ = image_root
    extra = """\
    grid:
      pipelines.dct-lr.classifier.params.C: [0.1, 10.0]
    """
    text = EXP.replace(
        "classifier: logistic-regression", "classifier: {{name: logistic-regression}}"
    )
    exp = load_experiment(write_exp(tmp_path, root, extra, text))
    assert len(exp.cells) == 2
    result = run_experiment(exp, tmp_path / "out", cache_dir=tmp_path / "c", progress=None)
    rows = read_csv(tmp_path / "out" / "results.csv")
    assert {r["pipelines.dct-lr.classifier.params.C"] for r in rows} == {"0.1", "10.0"}
    single = run_experiment(
        load_experiment(write_exp(tmp_path, root, "", text)), tmp_path / "one", progress=None
    )
    h1, m1 = single.meta["cache"]["by_namespace"]["features"]
    hits, misses = result.meta["cache"]["by_namespace"]["features"]
    # the second cell found every feature of the first in the cache: no extra misses
    assert misses == m1 and hits == h1 + (h1 + m1)
    assert (tmp_path / "out" / "pipelines").is_dir()


class Exploding(fzoo.FeatureExtractor):
    """A deliberately broken extractor (for the fault-isolation test)."""

    name = "exploding"
    description = "raises on every batch"

    class Params(fzoo.Params):
        pass

    def extract(self, batch: torch.Tensor) -> np.ndarray:
        raise RuntimeError("boom")


class ExplodingPlugin:
    @staticmethod
    @fzoo.hookimpl
    def fzoo_register_feature_extractors(register):
        register(Exploding)


def test_failing_extractor_fails_only_its_pipelines(tmp_path, image_root):
    root, _ = image_root
    register_plugin(ExplodingPlugin, name="exploding-test")
    try:
        text = EXP.replace("[{{name: fft-spectrum, params: {{bins: 16}}}}]", "[exploding]")
        result = run_experiment(
            load_experiment(write_exp(tmp_path, root, text=text)), tmp_path / "o", progress=None
        )
    finally:
        unregister_plugin("exploding-test")
    bad = [r for r in result.rows if r["pipeline"] == "fft-rf"]
    good = [r for r in result.rows if r["pipeline"] == "dct-lr"]
    assert len(bad) == 1 and "boom" in bad[0]["error"] and "exploding" in bad[0]["error"]
    assert len(good) == 2 and all(r["auc"] > 0.5 for r in good)
    assert "Failed cells" in (tmp_path / "o" / "report.md").read_text()


def test_camera_and_multiclass_tasks_from_a_manifest(tmp_path):
    from .conftest import photo_crops

    rows = ["path,label,source,camera"]
    rng = np.random.default_rng(0)
    from PIL import Image

    for k, (name, arr) in enumerate(photo_crops(3, 48).items()):
        for cam, sigma in (("camA", 0.0), ("camB", 10.0)):
            noisy = np.clip(arr + rng.normal(0, sigma, arr.shape), 0, 255).astype(np.uint8)
            Image.fromarray(noisy).save(tmp_path / f"{name}-{cam}.png")
            rows.append(f"{name}-{cam}.png,{'pristine' if k % 2 else 'other'},{name},{cam}")
    (tmp_path / "m.csv").write_text("\n".join(rows) + "\n")
    text = f"""\
    name: cams
    data:
      dataset: {{name: manifest, params: {{path: "{tmp_path / "m.csv"}"}}}}
    pipelines:
      - name: res
        features: [{{name: residual-fingerprint, params: {{bins: 8, max_lag: 4}}}}]
        classifier: logistic-regression
    tasks:
      - {{name: camera-id, type: multiclass, target: camera}}
      - {{name: labels, type: multiclass, classes: [pristine, other]}}
    """
    path = tmp_path / "cams.yaml"
    path.write_text(textwrap.dedent(text))
    result = run_experiment(load_experiment(path), tmp_path / "out", progress=None)
    cam = next(r for r in result.rows if r["task"] == "camera-id")
    assert cam["balanced_accuracy"] >= 0.75  # sensor noise vs none: easy for a residual feature
    detail = next(d for d in result.details if d["task"] == "camera-id")
    assert detail["labels"] == ["camA", "camB"]
    assert sum(map(sum, detail["confusion"])) == cam["n_test"]


class Centroids(fzoo.FeatureExtractor):
    """A learned extractor (test double): distances to per-class mean colour."""

    name = "centroids"
    requires_fit = True
    fits = 0

    class Params(fzoo.Params):
        fit_target: str = "label"

    def fit(self, batches, labels):
        Centroids.fits += 1
        feats = np.stack([b.mean(dim=(0, 2, 3)).numpy() for b in batches])
        self.classes_ = sorted(set(labels))
        self.means_ = np.stack([feats[np.asarray(labels) == c].mean(0) for c in self.classes_])
        return self

    def extract(self, batch):
        x = batch.mean(dim=(2, 3)).numpy()
        return np.linalg.norm(x[:, None, :] - self.means_[None], axis=2).astype(np.float32)

    def save_state(self, directory):
        np.savez(directory / "state.npz", means=self.means_, classes=np.asarray(self.classes_))

    def load_state(self, directory):
        with np.load(directory / "state.npz") as data:
            self.means_, self.classes_ = data["means"], list(data["classes"])


class CentroidPlugin:
    @staticmethod
    @fzoo.hookimpl
    def fzoo_register_feature_extractors(register):
        register(Centroids)


def test_learned_extractor_is_fitted_once_cached_and_saved(tmp_path, image_root):
    root, _ = image_root
    register_plugin(CentroidPlugin, name="centroid-test")
    try:
        text = EXP.replace("[{{name: fft-spectrum, params: {{bins: 16}}}}]", "[centroids]")
        exp = load_experiment(write_exp(tmp_path, root, text=text))
        Centroids.fits = 0
        run_experiment(exp, tmp_path / "a", cache_dir=tmp_path / "c", progress=None)
        run_experiment(exp, tmp_path / "b", cache_dir=tmp_path / "c", progress=None)
        assert Centroids.fits == 1  # the second run loaded the fitted state from the cache
        assert len(list((tmp_path / "c" / "fitted").iterdir())) == 1
        pipe = tmp_path / "b" / "pipelines" / "fft-rf--processed"
        assert (pipe / "extractors" / "0" / "state.npz").exists()
        from fzoo.pipeline import load_pipeline

        loaded = load_pipeline(pipe)
        img = fzoo.load_image(next((root / "processed").glob("*.png")))
        proba = loaded.predict_proba(fzoo.to_tensor(img.pixels))
        assert proba.shape == (1, 2) and abs(proba.sum() - 1) < 1e-6
    finally:
        unregister_plugin("centroid-test")


class FitBoom(Centroids):
    """A learned extractor whose fit raises (test double)."""

    name = "fit-boom"

    def fit(self, batches, labels):
        raise RuntimeError("no convergence")


class NoWeights(fzoo.FeatureExtractor):
    """An extractor whose weights are missing: fingerprint() raises (test double)."""

    name = "no-weights"

    class Params(fzoo.Params):
        pass

    def extract(self, batch: torch.Tensor) -> np.ndarray:
        return np.zeros((batch.shape[0], 1), np.float32)

    def weight_hashes(self):
        raise fzoo.WeightsNotFoundError("weights 'org/x' are not in the local cache")


class FaultPlugin:
    @staticmethod
    @fzoo.hookimpl
    def fzoo_register_feature_extractors(register):
        register(FitBoom)
        register(NoWeights)


@pytest.mark.parametrize(("name", "reason"), [("fit-boom", "fit failed"), ("no-weights", "cache")])
def test_faults_in_fit_or_weights_fail_only_their_pipeline(tmp_path, image_root, name, reason):
    root, _ = image_root
    register_plugin(FaultPlugin, name="fault-test")
    try:
        text = EXP.replace("[{{name: fft-spectrum, params: {{bins: 16}}}}]", f"[{name}]")
        result = run_experiment(
            load_experiment(write_exp(tmp_path, root, text=text)), tmp_path / "o", progress=None
        )
    finally:
        unregister_plugin("fault-test")
    bad = [r for r in result.rows if r["pipeline"] == "fft-rf"]
    assert len(bad) == 1 and reason in bad[0]["error"] and name in bad[0]["error"]
    assert [r["condition"] for r in result.rows if r["pipeline"] == "dct-lr"] == [
        "clean",
        "jpeg90",
    ]


def test_labels_that_match_no_image_are_an_error(tmp_path, image_root, capsys):
    from fzoo.cli import main

    root, _ = image_root
    text = EXP.replace("positive: [processed]", "positive: [procesed]")
    path = write_exp(tmp_path, root, text=text)
    assert main(["run", str(path), "--out", str(tmp_path / "o"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "task 'processed': positive 'procesed' matches no image" in err
    assert "Labels present: ['pristine', 'processed']" in err


def test_headline_and_pipeline_task_lists(tmp_path, image_root):
    root, _ = image_root
    extra = """\
    headline:
      dct_auc: {task: processed, pipeline: dct-lr, metric: auc}
      dct_missed: {task: processed, pipeline: dct-lr, rate: "processed->not-processed"}
      chance: {task: processed, pipeline: dct-lr, chance: true}
      rf_auc: {task: processed, pipeline: fft-rf, metric: auc}
    """
    text = EXP.replace(
        "classifier: {{name: random-forest, params: {{n_estimators: 30}}}}",
        "classifier: {{name: random-forest, params: {{n_estimators: 30}}}}\n    tasks: []",
    )
    result = run_experiment(
        load_experiment(write_exp(tmp_path, root, extra, text)), tmp_path / "o", progress=None
    )
    headline = json.loads((tmp_path / "o" / "headline.json").read_text())
    row = next(r for r in result.rows if r["pipeline"] == "dct-lr" and r["condition"] == "clean")
    assert headline["dct_auc"] == pytest.approx(row["auc"])
    assert headline["chance"] == 0.5 and 0.0 <= headline["dct_missed"] <= 1.0
    assert headline["rf_auc"] is None  # the pipeline runs no task
    assert not [r for r in result.rows if r["pipeline"] == "fft-rf"]
