"""``fzoo.testing``: every check passes on real components and fails, by name, on broken ones."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from pydantic import ConfigDict

import fzoo
from fzoo import testing
from fzoo.testing import (
    ComponentCheckError,
    check_component,
    check_plugin,
    checks_for,
    parametrize_with_checks,
    sample_images,
)
from fzoo_builtins.frequency import FFTSpectrum
from fzoo_builtins.perturbations import JPEG, Resize


class Mean(fzoo.FeatureExtractor):
    """Mean colour (a correct extractor: test double)."""

    name = "mean-test"

    class Params(fzoo.Params):
        scale: float = 1.0

    def extract(self, batch: torch.Tensor) -> np.ndarray:
        return (batch.mean(dim=(2, 3)) * self.params.scale).numpy()


class Centroids(fzoo.FeatureExtractor):
    """Distances to the class mean colours (a learned extractor: test double)."""

    name = "centroids-test"
    requires_fit = True

    class Params(fzoo.Params):
        pass

    def fit(self, batches: Any, labels: Any) -> Centroids:
        feats = np.stack([b.mean(dim=(0, 2, 3)).numpy() for b in batches])
        y = np.asarray(labels)
        self.means_ = np.stack([feats[y == c].mean(0) for c in sorted(set(labels))])
        return self

    def extract(self, batch: torch.Tensor) -> np.ndarray:
        x = batch.mean(dim=(2, 3)).numpy()
        return np.linalg.norm(x[:, None, :] - self.means_[None], axis=2).astype(np.float32)

    def save_state(self, directory: Path) -> None:
        (Path(directory) / "means.json").write_text(json.dumps(self.means_.tolist()))

    def load_state(self, directory: Path) -> None:
        self.means_ = np.asarray(json.loads((Path(directory) / "means.json").read_text()))


# --------------------------------------------------------------------------- broken doubles


class NoDoc(Mean):
    name = "nodoc-test"


class LaxParams(Mean):
    """Accepts any parameter (a broken Params model: test double)."""

    name = "lax-test"

    class Params(fzoo.Params):
        model_config = ConfigDict(extra="allow", frozen=True)


class Flat(Mean):
    """Returns a vector per image instead of a matrix (test double)."""

    name = "flat-test"

    def extract(self, batch: torch.Tensor) -> np.ndarray:
        return batch.mean(dim=(1, 2, 3)).numpy()


class Random(Mean):
    """Unseeded noise (test double)."""

    name = "random-test"

    def extract(self, batch: torch.Tensor) -> np.ndarray:
        return np.random.default_rng().random((batch.shape[0], 2)).astype(np.float32)


class Drifting(Mean):
    """Its fingerprint changes once it has run (test double)."""

    name = "drifting-test"

    def extract(self, batch: torch.Tensor) -> np.ndarray:
        self.__dict__["_ran"] = True
        return super().extract(batch)

    def weight_hashes(self) -> dict[str, str]:
        return {"w": "after" if self.__dict__.get("_ran") else "before"}


class Pickler(Centroids):
    """Saves its state with pickle (test double)."""

    name = "pickler-test"

    def save_state(self, directory: Path) -> None:
        (Path(directory) / "means.bin").write_bytes(pickle.dumps(self.means_, protocol=4))

    def load_state(self, directory: Path) -> None:
        self.means_ = pickle.loads((Path(directory) / "means.bin").read_bytes())  # noqa: S301


class Forgetful(Centroids):
    """load_state restores the wrong thing (test double)."""

    name = "forgetful-test"

    def load_state(self, directory: Path) -> None:
        super().load_state(directory)
        self.means_ = self.means_ * 0


class Brightener(fzoo.Perturbation):
    """Adds 0.2 without clipping (values above 1: test double)."""

    name = "brightener-test"

    class Params(fzoo.Params):
        pass

    def apply(self, batch: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
        return batch + 0.2


@pytest.mark.parametrize(
    ("cls", "check", "words"),
    [
        (NoDoc, "registration", "no docstring"),
        (LaxParams, "params", "an unknown parameter was accepted"),
        (Flat, "output", "extract() returned shape (2,) for a batch of 2"),
        (Random, "determinism", "two instances with the same parameters and seed differ"),
        (Drifting, "fingerprint", "running the component changed its fingerprint"),
        (Pickler, "state", "save_state() wrote pickles: means.bin"),
        (Forgetful, "state", "the output after save_state()/load_state() differs"),
        (Brightener, "output", "apply() returned values in [0."),
    ],
)
def test_each_check_fails_by_name(cls: type[fzoo.Component], check: str, words: str) -> None:
    with pytest.raises(ComponentCheckError) as info:
        check_component(cls)
    assert info.value.check == check
    assert info.value.component == cls.name
    assert words in info.value.problem
    assert str(info.value).startswith(f"{cls.name}: check {check!r} failed: ")


def test_a_component_that_raises_fails_the_check_with_its_error() -> None:
    with pytest.raises(ComponentCheckError) as info:
        check_component(Mean, scale="x")  # the parameters do not validate
    assert info.value.check == "params" and "ValidationError" in info.value.problem


def test_correct_components_pass_every_check() -> None:
    check_component(Mean, scale=2.0)
    check_component(Centroids)
    check_component(FFTSpectrum, bins=16)
    check_component(Resize, scale=0.5)  # changes the size and says so
    assert [c.name for c in checks_for(Centroids)] == [c.name for c in testing.CHECKS]
    assert "state" not in [c.name for c in checks_for(Mean)]
    assert [c.name for c in checks_for(NoDoc)] == ["registration"]


def test_sample_images_are_real_photos_and_deterministic(monkeypatch: pytest.MonkeyPatch) -> None:
    x = sample_images(3, size=48)
    assert x.shape == (3, 3, 48, 48) and x.dtype == torch.float32
    assert float(x.min()) >= 0 and float(x.max()) <= 1
    assert torch.equal(x, sample_images(3, size=48))
    assert float(x[0].std()) > 0.05 and not torch.equal(x[0], x[1])
    assert not torch.equal(sample_images(1, offset=4), sample_images(1))  # the next crop
    monkeypatch.setattr(testing, "_photo_file", lambda name: None)  # no scikit-image
    y = sample_images(2)
    assert y.shape == (2, 3, 64, 64) and float(y.min()) >= 0 and float(y.max()) <= 1
    assert float(y.std()) > 0.05


def test_parametrize_with_checks_ids_and_cases() -> None:
    mark = parametrize_with_checks([Mean, (JPEG, {"quality": 70}), Centroids])
    argnames, cases = mark.args
    assert argnames == ("component", "check")
    ids = [case.id for case in cases]
    assert ids[:5] == [
        "mean-test-registration",
        "mean-test-params",
        "mean-test-output",
        "mean-test-determinism",
        "mean-test-fingerprint",
    ]
    assert "jpeg(quality=70)-determinism" in ids and "centroids-test-state" in ids
    assert len(ids) == 5 + 5 + 6
    component, check = cases[5].values
    assert component.params == {"quality": 70} and check.name == "registration"


@parametrize_with_checks([Mean, (Mean, {"scale": 0.5}), Centroids, (JPEG, {"quality": 70})])
def test_fzoo_contract(component: testing.Candidate, check: testing.Check) -> None:
    check(component)


def test_check_plugin_reports_hooks_classes_and_presets() -> None:
    class Good:
        @staticmethod
        def fzoo_register_feature_extractors(register: Any) -> None:
            register(Mean)
            register(Centroids)

        @staticmethod
        def fzoo_register_presets(register: Any) -> None:
            register("mean-half", component="mean-test", params={"scale": 0.5})
            register("fft-8", component="fft-spectrum", params={"bins": 8})

    found = check_plugin(Good)
    assert found.components == {"feature_extractor": [Mean, Centroids]}
    assert found.presets["mean-half"]["params"] == {"scale": 0.5}
    assert found.presets["fft-8"]["kind"] == "feature_extractor"

    class Typo:
        @staticmethod
        def fzoo_register_feature_extractor(register: Any) -> None:
            register(Mean)

    with pytest.raises(ComponentCheckError, match="did you mean 'fzoo_register_feature_ex"):
        check_plugin(Typo)

    class Broken:
        @staticmethod
        def fzoo_register_feature_extractors(register: Any) -> None:
            register(NoDoc)

    with pytest.raises(ComponentCheckError, match="nodoc-test: check 'registration'"):
        check_plugin(Broken)

    class BadPreset:
        @staticmethod
        def fzoo_register_presets(register: Any) -> None:
            register("x", component="no-such-thing")

    with pytest.raises(ComponentCheckError, match="'no-such-thing', which is not registered"):
        check_plugin(BadPreset)


def test_importing_fzoo_testing_imports_neither_pytest_nor_torch() -> None:
    code = (
        "import sys, fzoo; assert 'fzoo.testing' not in sys.modules; "
        "import fzoo.testing; bad = {'pytest', 'torch'} & set(sys.modules); "
        "assert not bad, bad; assert fzoo.testing.check_component"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert fzoo.testing is testing  # the lazy attribute


def test_pickle_files_finds_pickles_however_they_are_wrapped(tmp_path: Path) -> None:
    np.save(tmp_path / "plain.npy", np.ones(3))
    np.savez(tmp_path / "plain.npz", a=np.ones(2))
    (tmp_path / "state.json").write_text("{}")
    np.save(tmp_path / "objects.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    np.savez(tmp_path / "objects.npz", a=np.array([None], dtype=object))
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "state.bin").write_bytes(pickle.dumps([1], protocol=2))
    torch.save({"w": torch.ones(2)}, tmp_path / "model.pt")
    found = testing.pickle_files(tmp_path)
    assert found == ["model.pt", "objects.npy", "objects.npz", "sub/state.bin"]
