"""The Ray engine gives the local engine's features bit for bit, shares its cache, and resumes.

One local Ray per module (``num_cpus=2``, one actor: Ray Data deadlocks on 2 CPUs with two).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

ray = pytest.importorskip("ray")
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # Ray Data's own

import fzoo  # noqa: E402
from fzoo.config import load_experiment  # noqa: E402
from fzoo.experiment import Runner, run_experiment  # noqa: E402
from fzoo.plugin_manager import register_plugin, unregister_plugin  # noqa: E402
from fzoo.report import write_report  # noqa: E402

from .conftest import make_class_folder, write_odd_images  # noqa: E402

ENGINE = "engine: {name: ray, num_cpus: 2, concurrency: 1, batch_size: 4}\n"

FOLDER_EXP = """\
name: ray-equal
seed: 5
data:
  dataset: {{name: folder, params: {{root: "{root}"}}}}
  derive:
    - {{label: darkened, from: pristine, launderer: darken-test}}
    - {{label: jpeg, from: pristine, perturbations: [{{name: jpeg, params: {{quality: 70}}}}]}}
split: {{test_size: 0.34}}
conditions:
  - name: clean
  - name: noise
    perturbations: [{{name: noise, params: {{sigma: 2.0}}}}]
pipelines:
  - name: fft
    features: [{{name: fft-spectrum, params: {{bins: 16}}}}]
    classifier: logistic-regression
  - name: learned
    features: [mean-colour-test]
    classifier: logistic-regression
  - name: both
    features: [{{name: fft-spectrum, params: {{bins: 16}}}}, {{name: dct-spectrum, params: {{size: 8}}}}]
    classifier: logistic-regression
tasks:
  - {{name: processed, type: binary, positive: [processed, jpeg]}}
"""  # noqa: E501

PHOTOS_EXP = """\
name: ray-bytes
data:
  dataset: {name: sample-photos, params: {crop: 64, crops_per_photo: 2, photos: [astronaut, coffee, chelsea, rocket]}}
  derive:
    - {label: jpeg, from: pristine, perturbations: [jpeg-80]}
conditions:
  - name: clean
  - name: noise
    perturbations: [{name: noise, params: {sigma: 1.0}}]
pipelines:
  - {name: dct, features: [{name: dct-spectrum, params: {size: 8}}], classifier: logistic-regression}
tasks:
  - {name: jpeg, type: binary, positive: [jpeg]}
"""  # noqa: E501


class Darken(fzoo.Launderer):
    """A test launderer registered at runtime: Ray workers rebuild it from its class path."""

    name = "darken-test"
    description = "multiplies pixels by a factor (leaves a note)"

    class Params(fzoo.Params):
        factor: float = 0.9

    def launder(self, batch: torch.Tensor) -> torch.Tensor:
        self.note("darkened")
        return batch * self.params.factor


class MeanColour(fzoo.FeatureExtractor):
    """A learned extractor: its fitted state (fitted on the driver) travels to the workers."""

    name = "mean-colour-test"
    description = "distances to the per-class mean colours of the training split"
    requires_fit = True

    class Params(fzoo.Params):
        pass

    def fit(self, batches, labels):
        feats = np.stack([b.mean(dim=(0, 2, 3)).numpy() for b in batches])
        self.means_ = np.stack(
            [feats[np.asarray(labels) == c].mean(0) for c in sorted(set(labels))]
        )
        return self

    def extract(self, batch):
        x = batch.mean(dim=(2, 3)).numpy()
        return np.linalg.norm(x[:, None, :] - self.means_[None], axis=2).astype(np.float32)

    def save_state(self, directory):
        np.save(directory / "means.npy", self.means_)

    def load_state(self, directory):
        self.means_ = np.load(directory / "means.npy")


class DarkenPlugin:
    @staticmethod
    @fzoo.hookimpl
    def fzoo_register_launderers(register):
        register(Darken)

    @staticmethod
    @fzoo.hookimpl
    def fzoo_register_feature_extractors(register):
        register(MeanColour)


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    ray.init(
        address="local",
        num_cpus=2,
        include_dashboard=False,
        ignore_reinit_error=True,
        log_to_driver=False,
    )
    register_plugin(DarkenPlugin, name="darken-test")
    yield
    unregister_plugin("darken-test")
    ray.shutdown()


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("imgs")
    make_class_folder(root, n_per_photo=2)
    write_odd_images(root / "pristine")
    return root


def features_of(cache: Path) -> dict[str, np.ndarray]:
    return {p.name: np.load(p) for p in sorted((cache / "features").rglob("*.npy"))}


def run(path: Path, out: Path, cache: Path) -> tuple[Runner, object]:
    runner = Runner(load_experiment(path), out, cache, progress=None, log=lambda m: None)
    result = runner.run()
    write_report(result, out)
    return runner, result


def assert_same_features(a: Path, b: Path) -> int:
    fa, fb = features_of(a), features_of(b)
    assert fa.keys() == fb.keys()
    for key, value in fa.items():
        assert value.dtype == fb[key].dtype and value.shape == fb[key].shape, key
        assert value.tobytes() == fb[key].tobytes(), key  # bit for bit
    return len(fa)


def test_ray_features_equal_local_bit_for_bit_and_resume(tmp_path, folder):
    local_yaml = tmp_path / "local.yaml"
    local_yaml.write_text(FOLDER_EXP.format(root=folder))
    ray_yaml = tmp_path / "ray.yaml"
    ray_yaml.write_text(FOLDER_EXP.format(root=folder) + ENGINE)

    local_runner, local = run(local_yaml, tmp_path / "a", tmp_path / "cache-local")
    ray_runner, on_ray = run(ray_yaml, tmp_path / "b", tmp_path / "cache-ray")
    assert local_runner.engine.name == "local" and ray_runner.engine.name == "ray"
    assert ray_runner.engine.units_sent > 0

    n = assert_same_features(tmp_path / "cache-local", tmp_path / "cache-ray")
    assert n > 100
    for name in ("results.csv", "predictions.csv"):
        assert (tmp_path / "a" / name).read_text() == (tmp_path / "b" / name).read_text()
    # corrupt files are skipped alike; 'one.png' (1x1) fails inside the workers alike
    assert local.skipped == on_ray.skipped
    reasons = {Path(s["path"]).name: s["reason"] for s in on_ray.skipped}
    assert "empty file" in reasons["zero.png"] and "too small" in reasons["one.png"]
    # notes left by transforms inside the workers reach the report
    assert local.notes == on_ray.notes
    assert any("darken-test: darkened" in v for v in on_ray.notes.values())

    # a warm cache sends no work to Ray, and results stay the same
    again, _ = run(ray_yaml, tmp_path / "c", tmp_path / "cache-ray")
    assert again.engine.units_sent == 0
    assert again.cache.stats.by_namespace["features"][1] == 0
    assert (tmp_path / "c" / "results.csv").read_text() == (
        tmp_path / "a" / "results.csv"
    ).read_text()

    # the local engine resumes from what Ray cached: nothing to compute
    mixed, _ = run(local_yaml, tmp_path / "d", tmp_path / "cache-ray")
    assert mixed.cache.stats.by_namespace["features"][1] == 0


def test_in_memory_records_travel_as_bytes(tmp_path):
    path = tmp_path / "exp.yaml"
    path.write_text(PHOTOS_EXP)
    run_experiment(load_experiment(path), tmp_path / "a", tmp_path / "c1", progress=None)
    path.write_text(PHOTOS_EXP + ENGINE)
    run_experiment(load_experiment(path), tmp_path / "b", tmp_path / "c2", progress=None)
    # every pristine and jpeg crop for training, and the test ones under two conditions
    assert assert_same_features(tmp_path / "c1", tmp_path / "c2") > 16
    assert (tmp_path / "a" / "results.csv").read_text() == (
        tmp_path / "b" / "results.csv"
    ).read_text()
