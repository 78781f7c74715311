"""Component contracts (#11): the mistakes a plugin author makes, each in a real installed plugin.

Every broken plugin below is a package of its own (``pyproject.toml`` with an ``fzoo`` entry
point), built and pip-installed (one pip call for all of them) into a temporary folder. At
registration the failing component, its class and the plugin's own file and line are named;
``fzoo plugins --strict`` exits 1. At run time a component that breaks its output contract is
named with the method and the problem, once, and is not called again for the other images.
"""

from __future__ import annotations

import importlib
import inspect
import json
import re
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import torch

import fzoo
from fzoo import contracts
from fzoo.config import load_experiment
from fzoo.experiment import run_experiment
from fzoo.plugin_manager import get_registry, register_plugin, unregister_plugin

from .conftest import make_class_folder
from .test_third_party_plugin import by_name, ok, run_fzoo

HEADER = """\
import numpy as np
import torch

import fzoo
"""

#: plugin name -> (module source, what it registers); the class of each case starts on line 7
PLUGINS: dict[str, str] = {
    "noextract": '''
class Glcm(fzoo.FeatureExtractor):
    """Grey-level co-occurrence statistics (Haralick 1973)."""

    name = "glcm"

    class Params(fzoo.Params):
        levels: int = 8


class Brighten(fzoo.Perturbation):
    """Adds 0.1 (test double)."""

    name = "brighten"

    class Params(fzoo.Params):
        pass

    def apply(self, batch, rng):
        return (batch + 0.1).clamp(0, 1)


@fzoo.hookimpl
def fzoo_register_feature_extractors(register):
    register(Glcm)


@fzoo.hookimpl
def fzoo_register_perturbations(register):
    register(Brighten)
''',
    "nolaunder": '''
class Median(fzoo.Launderer):
    """A median filter (test double)."""

    name = "median"

    class Params(fzoo.Params):
        size: int = 3


@fzoo.hookimpl
def fzoo_register_launderers(register):
    register(Median)
''',
    "nofit": '''
class Knn(fzoo.Classifier):
    """k nearest neighbours (test double)."""

    name = "knn"

    class Params(fzoo.Params):
        k: int = 3


@fzoo.hookimpl
def fzoo_register_classifiers(register):
    register(Knn)
''',
    "nosave": '''
class Pca(fzoo.FeatureExtractor):
    """Principal components of the pixels (test double)."""

    name = "pca"
    requires_fit = True

    class Params(fzoo.Params):
        components: int = 2

    def fit(self, batches, labels):
        return self

    def extract(self, batch):
        return batch.mean(dim=(2, 3)).numpy()


@fzoo.hookimpl
def fzoo_register_feature_extractors(register):
    register(Pca)
''',
    "noname": '''
class Nameless(fzoo.FeatureExtractor):
    """An extractor without a name (test double)."""

    class Params(fzoo.Params):
        pass

    def extract(self, batch):
        return batch.mean(dim=(2, 3)).numpy()


@fzoo.hookimpl
def fzoo_register_feature_extractors(register):
    register(Nameless)
''',
    "noparams": '''
class Levels(fzoo.FeatureExtractor):
    """Histogram of grey levels (test double)."""

    name = "levels"

    def extract(self, batch):
        n = self.params.levels
        return batch.mean(dim=1).flatten(1)[:, :n].numpy()


@fzoo.hookimpl
def fzoo_register_feature_extractors(register):
    register(Levels)
''',
    "badimport": """
raise ImportError("fzoo_badimport needs the package 'not-installed-anywhere'")
""",
    "badpreset": """
@fzoo.hookimpl
def fzoo_register_presets(register):
    register("glcm-16", component="glcm-typo", params={"levels": 16}, kind="feature_extractor")
""",
}
CLASS_LINE = 7  # HEADER is 4 lines, then a blank line, then the module text's blank first line

#: plugin -> (component kind, class, the words of the problem)
FAILED: dict[str, tuple[str, str, str]] = {
    "noextract": ("feature_extractor", "Glcm", "no extract() method"),
    "nolaunder": ("launderer", "Median", "no launder() method"),
    "nofit": ("classifier", "Knn", "no build_estimator() or fit() + predict_proba() method"),
    "nosave": ("feature_extractor", "Pca", "requires_fit is set but it has no save_state()"),
    "noname": ("feature_extractor", "Nameless", "no 'name'"),
    "noparams": ("feature_extractor", "Levels", "no 'Params' model"),
}


def _package(root: Path, plugin: str, source: str) -> Path:
    pkg = root / f"fzoo-{plugin}"
    module = pkg / f"fzoo_{plugin}"
    module.mkdir(parents=True)
    (module / "__init__.py").write_text(HEADER + "\n" + source, encoding="utf-8")
    (pkg / "pyproject.toml").write_text(
        textwrap.dedent(
            f"""\
            [build-system]
            requires = ["setuptools>=68"]
            build-backend = "setuptools.build_meta"

            [project]
            name = "fzoo-{plugin}"
            version = "0.0.1"

            [project.entry-points.fzoo]
            {plugin} = "fzoo_{plugin}"

            [tool.setuptools]
            packages = ["fzoo_{plugin}"]
            """
        ),
        encoding="utf-8",
    )
    return pkg


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every broken plugin of :data:`PLUGINS`, and ``runtime`` (components that register but
    break their output contract), built and pip-installed into one folder."""
    root = tmp_path_factory.mktemp("broken-plugins")
    sources = {**PLUGINS, "runtime": _runtime_source()}
    packages = [str(_package(root / "src", p, s)) for p, s in sources.items()]
    target = root / "site"
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation",
         "--no-index", "--no-cache-dir", "--disable-pip-version-check", "--quiet",
         "--target", str(target), *packages],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, f"pip install failed:\n{proc.stdout}\n{proc.stderr}"
    return target


def _file(site: Path, plugin: str) -> str:
    return str(site / f"fzoo_{plugin}" / "__init__.py")


# --------------------------------------------------------------------------- registration


def test_each_broken_component_is_named_with_its_own_file_and_line(site: Path) -> None:
    plugins = by_name(json.loads(ok(run_fzoo("plugins", "--json", paths=[site]))))
    for plugin, (kind, cls, problem) in FAILED.items():
        info = plugins[plugin]
        assert info["error"] is None, info  # the plugin loaded; one component failed
        others = {"perturbation": ["brighten"]} if plugin == "noextract" else {}
        assert info["components"] == others, info  # the plugin's good component registers
        [failed] = info["failed"]
        assert (failed["kind"], failed["class"]) == (kind, cls)
        assert failed["file"] == _file(site, plugin)
        assert failed["line"] == CLASS_LINE
        assert any(problem in p for p in failed["problems"]), failed["problems"]
        assert failed["error"].startswith(f"{_file(site, plugin)}:{CLASS_LINE}: ")
        assert "plugin_manager" not in failed["error"]
    assert plugins["noextract"]["failed"][0]["name"] == "glcm"


def test_the_good_component_of_a_plugin_with_a_broken_one_registers(site: Path) -> None:
    listing = json.loads(ok(run_fzoo("list", "--json", paths=[site])))
    perturbations = by_name(listing["perturbation"])
    assert perturbations["brighten"]["plugin"] == "noextract"
    assert "failed" not in perturbations["brighten"]
    glcm = by_name(listing["feature_extractor"])["glcm"]
    assert glcm["failed"] == f"{_file(site, 'noextract')}:{CLASS_LINE}: feature extractor Glcm " \
        "('glcm'): no extract() method (override fzoo.FeatureExtractor's)"  # fmt: skip
    text = ok(run_fzoo("list", "feature_extractor", paths=[site]))
    assert re.search(r"^  glcm \[noextract\]  FAILED: .*no extract\(\) method", text, re.M)


def test_plugins_shows_failed_components_and_strict_exits_1(site: Path) -> None:
    text = ok(run_fzoo("plugins", paths=[site]))
    for plugin, (kind, _, _) in FAILED.items():
        assert f"  FAILED {kind}: {_file(site, plugin)}:{CLASS_LINE}: " in text
    proc = run_fzoo("plugins", "--strict", paths=[site])
    assert proc.returncode == 1, proc.stdout + proc.stderr
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("fzoo plugins --strict: ")]
    assert len(errors) == len(FAILED) + 2  # a line per failed component, preset and plugin
    assert any("plugin 'badimport': ImportError: fzoo_badimport needs" in e for e in errors)
    assert any("preset 'glcm-16'" in e and "'glcm-typo' is not registered" in e for e in errors)
    assert any(f"plugin 'nolaunder': {_file(site, 'nolaunder')}:7: " in e for e in errors)


def test_strict_accepts_the_builtins_and_warns_of_a_bad_preset(site: Path) -> None:
    ok(run_fzoo("plugins", "--strict", paths=[]))
    blocked = ",".join(p for p in PLUGINS if p != "badpreset")  # "runtime" registers fine
    proc = run_fzoo("plugins", paths=[site], env={"FZOO_BLOCK_PLUGINS": blocked})
    assert proc.returncode == 0
    assert "warning: preset 'glcm-16' (badpreset): feature extractor 'glcm-typo'" in proc.stderr
    proc = run_fzoo("plugins", "--strict", paths=[site], env={"FZOO_BLOCK_PLUGINS": blocked})
    assert proc.returncode == 1 and "glcm-typo" in proc.stderr


def test_a_failed_component_in_an_experiment_is_named_at_validation(
    site: Path, tmp_path: Path
) -> None:
    exp = tmp_path / "exp.yaml"
    exp.write_text(
        textwrap.dedent(
            """\
            name: uses-levels
            data:
              dataset: {name: sample-photos, params: {crop: 64, crops_per_photo: 2}}
            pipelines:
              - name: p
                features: [{name: levels, params: {levels: 4}}]
                classifier: logistic-regression
            tasks:
              - {name: t, type: binary, positive: [processed]}
            """
        )
    )
    proc = run_fzoo("validate", str(exp), paths=[site])
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert f"feature extractor 'levels' is not usable: {_file(site, 'noparams')}:7" in proc.stderr
    assert "no 'Params' model" in proc.stderr
    assert "Valid parameters: (none)" not in proc.stderr


# --------------------------------------------------------------------------- run time


class Shrinker(fzoo.Launderer):
    """Returns half-size float64 images brighter than 1 (a broken launderer: test double)."""

    name = "shrinker-test"
    calls = 0

    class Params(fzoo.Params):
        pass

    def launder(self, batch: torch.Tensor) -> torch.Tensor:
        Shrinker.calls += 1
        return batch[:, :, ::2, ::2].double() * 2


class Wobbly(fzoo.FeatureExtractor):
    """Two features on its first call, three afterwards (a broken extractor: test double)."""

    name = "wobbly-test"
    calls = 0

    class Params(fzoo.Params):
        pass

    def extract(self, batch: torch.Tensor) -> np.ndarray:
        Wobbly.calls += 1
        width = 2 if Wobbly.calls == 1 else 3
        return batch.mean(dim=(2, 3))[:, :1].repeat(1, width).numpy()


class Grey(fzoo.Perturbation):
    """Returns one channel (a broken perturbation: test double)."""

    name = "grey-test"
    calls = 0

    class Params(fzoo.Params):
        pass

    def apply(self, batch: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
        Grey.calls += 1
        return batch.mean(dim=1, keepdim=True)


RUNTIME_HOOKS = """

@fzoo.hookimpl
def fzoo_register_launderers(register):
    register(Shrinker)


@fzoo.hookimpl
def fzoo_register_feature_extractors(register):
    register(Wobbly)


@fzoo.hookimpl
def fzoo_register_perturbations(register):
    register(Grey)
"""


def _runtime_source() -> str:
    """The ``runtime`` plugin: the three classes above, and hooks registering them."""
    classes = (Shrinker, Wobbly, Grey)
    return "\n\n".join(inspect.getsource(c) for c in classes) + RUNTIME_HOOKS


@pytest.fixture
def runtime(site: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    """The installed ``runtime`` plugin, imported from the site and registered in-process."""
    get_registry()  # built before the site is on sys.path: its entry points do not autoload
    monkeypatch.syspath_prepend(str(site))
    module = importlib.import_module("fzoo_runtime")
    assert module.__file__ == _file(site, "runtime")
    register_plugin(module, name="runtime-contracts-test")
    module.Shrinker.calls = module.Wobbly.calls = module.Grey.calls = 0
    contracts.reset()
    try:
        yield module
    finally:
        unregister_plugin("runtime-contracts-test")


RUN = """\
name: contracts
seed: 1
engine: {{batch_size: 4}}
data:
  dataset: {{name: folder, params: {{root: "{root}"}}}}
split: {{test_size: 0.34}}
conditions:
  - name: clean
  - {condition}
pipelines:
  - name: dct
    features: [{{name: dct-spectrum, params: {{size: 8}}}}]
    classifier: logistic-regression
  - name: wobbly
    features: [wobbly-test]
    classifier: logistic-regression
tasks:
  - {{name: processed, type: binary, positive: [processed]}}
"""
SHRUNK = (
    "launderer 'shrinker-test': launder() returned dtype torch.float64; expected torch.float32; "
    "not used for the rest of the run"
)
GREY = (
    "perturbation 'grey-test': apply() returned 1 channels; expected 3; not used for the rest "
    "of the run"
)


@pytest.mark.parametrize(
    ("condition", "message", "component"),
    [
        ("{name: shrunk, launderer: shrinker-test}", SHRUNK, "Shrinker"),
        ("{name: grey, perturbations: [grey-test]}", GREY, "Grey"),
    ],
    ids=["launderer", "perturbation"],
)
def test_broken_outputs_are_named_once_and_the_component_is_not_called_again(
    tmp_path: Path,
    runtime: ModuleType,
    capsys: pytest.CaptureFixture[str],
    condition: str,
    message: str,
    component: str,
) -> None:
    root = make_class_folder(tmp_path / "imgs", n_per_photo=2)
    exp = tmp_path / "exp.yaml"
    exp.write_text(RUN.format(root=root, condition=condition))
    result = run_experiment(load_experiment(exp), tmp_path / "out", progress=None)
    lines = capsys.readouterr().err.splitlines()

    # the broken transform: one "skipped" line for the first image; the other images are
    # counted in the report with the same reason, not logged again
    skips = [ln for ln in lines if ln.startswith("skipped ")]
    assert len(skips) == 1 and skips[0].endswith(f"cannot make image: {message}"), lines
    assert sum(message in ln for ln in lines) == 1, lines
    cond = condition.split(",")[0].removeprefix("{name: ")
    reasons = [s["reason"] for s in result.skipped if s["condition"] == cond]
    assert len(reasons) > 4 and set(reasons) == {f"cannot make image: {message}"}
    assert getattr(runtime, component).calls == 1  # called once, never again for the others

    wobbly = (
        "error: feature extractor 'wobbly-test': extract() returned 3 features per image after "
        "2 earlier; the width must be constant for one fingerprint; not used for the rest of "
        "the run"
    )
    assert lines.count(wobbly) == 1, lines
    assert runtime.Wobbly.calls == 2  # the second batch showed the change: no retry per image
    # the condition fails, not the extractor: dct-spectrum still scores the clean images
    rows = {(r["pipeline"], r["condition"]): r for r in result.rows}
    assert not rows[("dct", "clean")].get("error") and rows[("dct", "clean")]["auc"] is not None
    assert rows[("dct", cond)]["error"] == "no test images for this task"
    assert rows[("wobbly", "*")]["error"] == wobbly.removeprefix("error: ")


def test_image_contract_details() -> None:
    x = torch.rand(2, 3, 16, 24, generator=torch.Generator().manual_seed(0))
    x[0, 0, 0, 0], x[1, 1, 1, 1] = 0.0, 1.0
    perturbation = Grey()
    problems = {
        "2 image(s) for 3": contracts.image_problem(perturbation, x, 3, x),
        "4 channels": contracts.image_problem(perturbation, torch.rand(2, 4, 16, 24), 2, x),
        "float64": contracts.image_problem(perturbation, x.double(), 2, x),
        "12x8 images for 24x16": contracts.image_problem(perturbation, x[..., ::2, ::2], 2, x),
        "in [0, 1.5]; expected [0, 1]": contracts.image_problem(perturbation, x * 1.5, 2, x),
        "non-finite": contracts.image_problem(perturbation, x * torch.nan, 2, x),
        "ndarray": contracts.image_problem(perturbation, x.numpy(), 2, x),
    }
    for words, problem in problems.items():
        assert problem is not None and words in problem, (words, problem)
    assert contracts.image_problem(perturbation, x.clamp(0, 1) + 5e-4, 2, x) is None
    assert contracts.image_problem(perturbation, x, 2, x) is None

    class Cropper(fzoo.Launderer):
        multiple = 8

    assert contracts.image_problem(Cropper(), x[..., :16, :16], 2, x) is None  # to a multiple
    assert "14x16" in (contracts.image_problem(Cropper(), x[..., :16, :14], 2, x) or "")

    class Resizer(fzoo.Perturbation):
        changes_size = True

    assert contracts.image_problem(Resizer(), x[..., ::2, ::2], 2, x) is None


def test_feature_contract_details() -> None:
    ext = Wobbly()
    assert contracts.check_features(ext, np.ones((2, 3), np.int64), 2).dtype == np.float32
    assert contracts.check_features(ext, np.ones((2, 3), np.float64), 2).dtype == np.float32
    for bad, words in [
        (np.ones((2, 3), np.complex64), "dtype complex64"),
        (np.full((2, 3), 1e39), "float32 cannot hold"),
        (np.ones((3, 3)), "shape (3, 3) for a batch of 2"),
        (np.ones((2, 3, 1)), "expected [2, D]"),
        (np.array(["a", "b"]), "dtype <U1"),
    ]:
        with pytest.raises(contracts.ContractError, match=re.escape(words)) as info:
            contracts.check_features(ext, bad, 2)
        assert str(info.value).startswith("feature extractor 'wobbly-test': extract() ")
    rows = contracts.check_features(ext, np.array([[1.0, np.nan], [1.0, 2.0]]), 2)
    got = contracts.finite_rows(ext, rows)
    assert got[0] == "wobbly-test: extract() returned non-finite features (NaN or inf)"
    assert isinstance(got[1], np.ndarray)


def test_a_broken_component_raises_once_then_repeats_without_running() -> None:
    grey = Grey()
    Grey.calls = 0
    batch = torch.rand(1, 3, 8, 8)
    with pytest.raises(contracts.ContractError) as first:
        contracts.transform(grey, batch, 0)
    assert not first.value.repeated and Grey.calls == 1
    with pytest.raises(contracts.ContractError) as again:
        contracts.transform(grey, batch, 0)
    assert again.value.repeated and str(again.value) == str(first.value) and Grey.calls == 1
    assert isinstance(contracts.load_failure(again.value), contracts.Reported)
    assert not isinstance(contracts.load_failure(first.value), contracts.Reported)
    assert Grey().fingerprint() == grey.fingerprint()  # a fresh instance is not marked
    assert contracts.broken(Grey()) is None


def test_registry_refuses_a_runtime_class_that_breaks_the_contract() -> None:
    class NoDoc(fzoo.FeatureExtractor):
        name = "nodoc-test"

        class Params(fzoo.Params):
            pass

        def extract(self, batch):
            return np.zeros((batch.shape[0], 1), np.float32)

    class Plugin:
        @staticmethod
        @fzoo.hookimpl
        def fzoo_register_feature_extractors(register):
            register(NoDoc)

    register_plugin(Plugin, name="nodoc-plugin-test")
    try:
        reg = get_registry()
        assert "nodoc-test" not in reg.names("feature_extractor")
        [failure] = [f for p, f in reg.failed_components() if p == "nodoc-plugin-test"]
        assert failure.qualname.endswith("NoDoc")
        assert failure.problems == (
            "no docstring (say in one line what it does and what it cites)",
        )
        assert failure.file == __file__
        with pytest.raises(LookupError, match="'nodoc-test' is not usable: .*test_contracts.py:"):
            reg.get("feature_extractor", "nodoc-test")
    finally:
        unregister_plugin("nodoc-plugin-test")
    assert importlib.import_module("fzoo.contracts") is contracts


def test_fzoo_launder_stops_at_the_first_broken_output(site: Path, tmp_path: Path) -> None:
    root = make_class_folder(tmp_path / "imgs", n_per_photo=1)
    args = ["launder", str(root), str(tmp_path / "out"), "--launderer", "shrinker-test"]
    proc = run_fzoo(*args, "--quiet", paths=[site])
    assert proc.returncode == 1, proc.stdout + proc.stderr
    message = (
        "fzoo launder: launderer 'shrinker-test': launder() returned dtype torch.float64; "
        "expected torch.float32; not used for the rest of the run"
    )
    assert proc.stderr.strip().splitlines()[-1] == message, proc.stderr
    assert "skipped" not in proc.stderr  # not one line per image
    assert not list((tmp_path / "out").rglob("*.png"))
