"""A real third-party plugin, installed with pip and used through the ``fzoo`` command line.

``tests/plugins/fzoo-example-plugin`` is built and installed with pip into a temporary folder
(no network, no build isolation); ``fzoo`` then runs in subprocesses with that folder on
``PYTHONPATH``, so the plugin is found the way users' plugins are: through its ``fzoo`` entry
point in ``importlib.metadata``. Broken and conflicting plugins are hand-written ``.dist-info``
folders next to their modules.
"""

from __future__ import annotations

import csv
import json
import math
import os
import re
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from fzoo.plugin_manager import DEFAULT_PLUGINS

PKG = Path(__file__).parent / "plugins" / "fzoo-example-plugin"
DIST = "fzoo-example-plugin"
BUILTINS = tuple(m.rsplit(".", 1)[-1] for m in DEFAULT_PLUGINS)
TIMEOUT = 300

EXPERIMENT = """\
name: third-party-plugin
seed: 3
data:
  dataset: {name: sample-photos, params: {crop: 64, crops_per_photo: 3}}
  derive:
    - label: processed
      from: pristine
      perturbations: [{name: jpeg, params: {quality: 60}}]
split: {test_size: 0.4}
conditions:
  - name: clean
  - name: gamma
    perturbations: [{name: gamma, params: {gamma: 1.5}}]
pipelines:
  - name: color-nc
    features:
      - {name: color-stats, params: {saturation_bins: 8}}
      - {name: fft-spectrum, params: {bins: 16}}
    classifier: {name: nearest-centroid, params: {temperature: 0.5}}
  - name: color-lr
    features:
      - color-stats-16
      - {name: fft-spectrum, params: {bins: 16}}
    classifier: logistic-regression
tasks:
  - {name: pristine-vs-processed, type: binary, positive: [processed]}
"""


def _fzoo_command() -> list[str]:
    script = Path(sys.executable).with_name("fzoo")
    return [str(script)] if script.exists() else [sys.executable, "-m", "fzoo.cli"]


def run_fzoo(
    *args: str, paths: Sequence[Path], env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``fzoo ARGS`` in a fresh process with ``paths`` first on ``PYTHONPATH``."""
    e = {
        k: v
        for k, v in os.environ.items()
        if k not in ("FZOO_BLOCK_PLUGINS", "FZOO_DISABLE_PLUGIN_AUTOLOAD", "FZOO_REGISTRY")
    }
    extra = [str(p) for p in paths]
    if e.get("PYTHONPATH"):
        extra.append(e["PYTHONPATH"])
    e.update(PYTHONPATH=os.pathsep.join(extra), HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    e.update(env or {})
    return subprocess.run(
        [*_fzoo_command(), *args], capture_output=True, text=True, env=e, timeout=TIMEOUT
    )


def ok(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 0, f"exit {proc.returncode}\nstdout:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def by_name(items: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {item["name"]: item for item in items}


def fake_distribution(
    folder: Path, dist: str, entry_points: dict[str, str], modules: dict[str, str]
) -> Path:
    """A hand-made installed distribution: modules plus ``NAME-0.0.1.dist-info``."""
    folder.mkdir(parents=True, exist_ok=True)
    for module, source in modules.items():
        (folder / f"{module}.py").write_text(textwrap.dedent(source), encoding="utf-8")
    info = folder / f"{dist.replace('-', '_')}-0.0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.0.1\n", encoding="utf-8"
    )
    lines = "".join(f"{name} = {value}\n" for name, value in entry_points.items())
    (info / "entry_points.txt").write_text(f"[fzoo]\n{lines}", encoding="utf-8")
    return folder


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("third-party")


@pytest.fixture(scope="module")
def site(root: Path) -> Path:
    """The example plugin, built from a copy of its source and pip-installed into a folder."""
    try:
        setuptools_version = version("setuptools")
    except PackageNotFoundError:
        setuptools_version = "0"
    major = setuptools_version.split(".")[0]
    if not major.isdigit() or int(major) < 68:
        pytest.fail(
            f"building the example plugin without network needs setuptools>=68 in this "
            f"environment (found {setuptools_version}); add it to the 'dev' extra"
        )
    # a copy, so the build leaves no build/ or *.egg-info in the source tree
    src = root / "src"
    shutil.copytree(
        PKG, src, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__", ".*cache")
    )
    target = root / "site"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "--no-cache-dir",
            "--disable-pip-version-check",
            "--quiet",
            "--target",
            str(target),
            str(src),
        ],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert proc.returncode == 0, f"pip install failed:\n{proc.stdout}\n{proc.stderr}"
    assert (target / "fzoo_example" / "__init__.py").exists()
    return target


@pytest.fixture(scope="module")
def experiment(root: Path) -> Path:
    path = root / "exp" / "experiment.yaml"
    path.parent.mkdir()
    path.write_text(EXPERIMENT, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def run_out(site: Path, experiment: Path, root: Path) -> Path:
    out = root / "out"
    args = ["run", str(experiment), "--out", str(out), "--cache-dir", str(root / "cache")]
    ok(run_fzoo(*args, "--quiet", paths=[site]))
    return out


# --------------------------------------------------------------------------- discovery


def test_plugins_json_lists_the_installed_plugin(site: Path) -> None:
    plugins = by_name(json.loads(ok(run_fzoo("plugins", "--json", paths=[site]))))
    example = plugins["example"]
    assert example["source"] == f"{DIST} 0.1.0"
    assert example["error"] is None
    assert example["components"] == {
        "feature_extractor": ["color-stats"],
        "classifier": ["nearest-centroid"],
        "perturbation": ["gamma"],
    }
    assert example["presets"] == ["color-stats-16"]
    assert set(example["hooks"]) == {
        "fzoo_register_feature_extractors",
        "fzoo_register_classifiers",
        "fzoo_register_perturbations",
        "fzoo_register_presets",
    }
    for name in BUILTINS:
        assert plugins[name]["source"] == "builtin"
        assert plugins[name]["error"] is None


def test_list_shows_the_plugin_parameters(site: Path) -> None:
    listing = json.loads(ok(run_fzoo("list", "feature_extractor", "--json", paths=[site])))
    assert list(listing) == ["feature_extractor"]
    extractors = by_name(listing["feature_extractor"])
    color = extractors["color-stats"]
    assert color["plugin"] == "example"
    assert "McCloskey" in color["description"]
    bins = color["params"]["saturation_bins"]
    assert bins["default"] == 8
    assert bins["type"] == "integer"
    assert bins["description"]
    assert set(color["params"]) == {"saturation_bins", "clip_tolerance"}
    assert extractors["fft-spectrum"]["plugin"] == "frequency"


# --------------------------------------------------------------------------- use in experiments


def test_experiment_mixing_plugin_and_builtins_runs(run_out: Path) -> None:
    with open(run_out / "results.csv", newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    got = {(r["pipeline"], r["condition"]) for r in rows}
    assert got == {(p, c) for p in ("color-nc", "color-lr") for c in ("clean", "gamma")}
    assert len(rows) == 4
    for row in rows:
        assert row["task"] == "pristine-vs-processed"
        assert int(row["n_train"]) > 0 and int(row["n_test"]) > 0
        auc = float(row["auc"])
        assert not math.isnan(auc) and 0.0 <= auc <= 1.0, row
        assert 0.0 <= float(row["balanced_accuracy"]) <= 1.0


def test_example_classifier_state_is_json_not_pickle(run_out: Path) -> None:
    saved = run_out / "pipelines" / "color-nc--pristine-vs-processed"
    meta = json.loads((saved / "pipeline.json").read_text(encoding="utf-8"))
    assert meta["classifier"] == {
        "name": "nearest-centroid",
        "params": {"temperature": 0.5, "standardize": True},
    }
    assert [f["name"] for f in meta["features"]] == ["color-stats", "fft-spectrum"]
    assert sorted(p.name for p in saved.iterdir()) == ["nearest_centroid.json", "pipeline.json"]
    state = json.loads((saved / "nearest_centroid.json").read_text(encoding="utf-8"))
    assert state["classes"] == meta["classes"]
    assert np.asarray(state["centroids"]).shape == (2, 16 + 8 + 16)
    # the built-in logistic regression beside it saves JSON + safetensors
    assert (
        run_out / "pipelines" / "color-lr--pristine-vs-processed" / "logistic_regression.json"
    ).exists()


def test_detect_reloads_the_example_classifier(run_out: Path, site: Path, root: Path) -> None:
    rng = np.random.default_rng(0)
    image = root / "random.png"
    Image.fromarray(rng.integers(0, 256, (64, 80, 3), dtype=np.uint8)).save(image)
    pipeline = run_out / "pipelines" / "color-nc--pristine-vs-processed"
    out = ok(run_fzoo("detect", "--pipeline", str(pipeline), str(image), paths=[site]))
    record = json.loads(out.strip().splitlines()[-1])
    assert record["path"] == str(image)
    probs = record["probabilities"]
    assert set(probs) == {"not-processed", "processed"}
    assert abs(sum(probs.values()) - 1.0) < 1e-5
    assert record["predicted"] in probs


def test_misspelled_component_gives_location_and_suggestion(site: Path, experiment: Path) -> None:
    bad = experiment.with_name("misspelled.yaml")
    text = EXPERIMENT.replace("{name: color-stats,", "{name: colour-stats,")
    bad.write_text(text, encoding="utf-8")
    proc = run_fzoo("validate", str(bad), paths=[site])
    assert proc.returncode == 2, proc.stdout + proc.stderr
    pattern = rf"^{re.escape(str(bad))}:(\d+):(\d+): .*'colour-stats'.*did you mean 'color-stats'"
    match = re.search(pattern, proc.stderr, re.MULTILINE)
    assert match, proc.stderr
    line_no, line = next((i, ln) for i, ln in enumerate(text.splitlines(), 1) if "colour" in ln)
    assert (int(match.group(1)), int(match.group(2))) == (line_no, line.index("colour") + 1)


# --------------------------------------------------------------------------- blocking, failures


def test_disable_autoload_hides_the_plugin(site: Path) -> None:
    proc = run_fzoo("plugins", "--json", paths=[site], env={"FZOO_DISABLE_PLUGIN_AUTOLOAD": "1"})
    plugins = by_name(json.loads(ok(proc)))
    assert set(plugins) == set(BUILTINS)


@pytest.fixture(scope="module")
def dupe(root: Path) -> Path:
    """A plugin that registers a second ``fft-spectrum``."""
    return fake_distribution(
        root / "dupe",
        "fzoo-dupe-plugin",
        {"dupe": "fzoo_dupe"},
        {
            "fzoo_dupe": """\
            import fzoo

            class OtherFFT(fzoo.FeatureExtractor):
                name = "fft-spectrum"

            @fzoo.hookimpl
            def fzoo_register_feature_extractors(register):
                register(OtherFFT)
            """
        },
    )


def test_duplicate_name_is_an_error_naming_both_plugins(site: Path, dupe: Path) -> None:
    proc = run_fzoo("plugins", "--json", paths=[site, dupe])
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "duplicate feature extractor name 'fft-spectrum'" in proc.stderr
    assert "plugin 'frequency'" in proc.stderr
    assert "plugin 'dupe'" in proc.stderr
    assert "FZOO_BLOCK_PLUGINS=dupe" in proc.stderr


def test_block_plugins_removes_them(site: Path, dupe: Path) -> None:
    # blocking 'dupe' resolves the conflict above; blocking 'example' removes its components
    env = {"FZOO_BLOCK_PLUGINS": "example, dupe"}
    listing = json.loads(ok(run_fzoo("list", "--json", paths=[site, dupe], env=env)))
    names = {kind: {e["name"] for e in entries} for kind, entries in listing.items()}
    assert "color-stats" not in names["feature_extractor"]
    assert "nearest-centroid" not in names["classifier"]
    assert "gamma" not in names["perturbation"]
    assert "color-stats-16" not in names["preset"]
    fft = by_name(listing["feature_extractor"])["fft-spectrum"]
    assert fft["plugin"] == "frequency"
    assert {"logistic-regression", "jpeg", "sample-photos"} <= set().union(*names.values())


def test_broken_plugins_are_isolated(site: Path, root: Path) -> None:
    broken = fake_distribution(
        root / "broken",
        "fzoo-broken-plugin",
        {"broken": "fzoo_broken", "badhook": "fzoo_badhook"},
        {
            "fzoo_broken": """\
            raise ImportError("fzoo_broken needs the package 'not-installed-anywhere'")
            """,
            "fzoo_badhook": """\
            import fzoo

            @fzoo.hookimpl
            def fzoo_register_perturbations(register):
                raise RuntimeError("badhook cannot register today")
            """,
        },
    )
    plugins = by_name(json.loads(ok(run_fzoo("plugins", "--json", paths=[site, broken]))))
    failed = plugins["broken"]
    assert failed["source"] == "fzoo-broken-plugin 0.0.1"
    assert failed["error"].startswith("ImportError: ")
    assert "not-installed-anywhere" in failed["error"]
    assert "fzoo_broken.py" in failed["error"]
    assert failed["components"] == {}
    hook = plugins["badhook"]
    assert hook["error"].startswith("RuntimeError: badhook cannot register today")
    assert plugins["example"]["error"] is None
    assert plugins["example"]["components"]["feature_extractor"] == ["color-stats"]
    for name in BUILTINS:
        assert plugins[name]["error"] is None
    assert "fft-spectrum" in plugins["frequency"]["components"]["feature_extractor"]
