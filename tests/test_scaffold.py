"""``fzoo new-plugin``: the package it writes installs with pip, passes its own tests as written
(fzoo.testing's checks and a tiny experiment through ``fzoo run``), and is listed by
``fzoo plugins --strict`` and ``fzoo list``; bad names and existing folders are refused."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from fzoo.cli import main
from fzoo.scaffold import ScaffoldError, plugin_files, plugin_names, write_plugin

NAME = "fzoo-tiny-var"
TIMEOUT = 300


def run(
    *args: str, site: Path, cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``python ARGS`` in a fresh process with ``site`` first on ``PYTHONPATH`` (and ``env``)."""
    extra_env = env or {}
    env = {k: v for k, v in os.environ.items() if not k.startswith("FZOO_")}
    env.update(extra_env)
    extra = [str(site), *([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])]
    env.update(PYTHONPATH=os.pathsep.join(extra), HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    return subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=TIMEOUT
    )


def ok(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr}"
    return proc.stdout


@pytest.fixture(scope="module")
def package(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("scaffold")
    assert main(["new-plugin", NAME, "--out", str(out)]) == 0
    return out / NAME


@pytest.fixture(scope="module")
def site(package: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = tmp_path_factory.mktemp("site")
    pip = ["-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-index"]
    pip += ["--no-cache-dir", "--disable-pip-version-check", "--quiet"]
    ok(run(*pip, "--target", str(target), str(package), site=target))
    assert (target / "fzoo_tiny_var" / "local_variance.py").exists()
    return target


def test_names_from_one_name() -> None:
    names = plugin_names(NAME)
    assert (names.dist, names.module, names.plugin) == (NAME, "fzoo_tiny_var", "tiny_var")
    assert (names.extractor, names.cls) == ("tiny-var-variance", "TinyVarVariance")
    files = plugin_files(names)
    assert sorted(files) == [
        "README.md",
        "examples/tiny.yaml",
        "pyproject.toml",
        "src/fzoo_tiny_var/__init__.py",
        "src/fzoo_tiny_var/local_variance.py",
        "tests/test_plugin.py",
    ]
    assert '[project.entry-points.fzoo]\ntiny_var = "fzoo_tiny_var"' in files["pyproject.toml"]
    assert "parametrize_with_checks([TinyVarVariance])" in files["tests/test_plugin.py"]


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("my plugin", "is not a valid package name (PEP 508)"),
        ("-dash", "is not a valid package name (PEP 508)"),
        ("9lives", "gives the module name '9lives', which is not a Python identifier"),
        ("class", "gives the module name 'class', a Python keyword"),
        ("fzoo-frequency", "is taken by fzoo itself"),
        ("fzoo", "is taken by fzoo itself"),
    ],
)
def test_bad_names_are_refused(name: str, why: str, tmp_path: Path) -> None:
    with pytest.raises(ScaffoldError, match=re.escape(why)):
        write_plugin(name, tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_an_existing_folder_is_not_overwritten(
    package: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = (package / "README.md").read_text(encoding="utf-8")
    capsys.readouterr()
    assert main(["new-plugin", NAME, "--out", str(package.parent)]) == 2
    err = capsys.readouterr().err
    assert err.strip() == (
        f"fzoo new-plugin: {package} exists; refusing to overwrite it (choose another --out)"
    )
    assert (package / "README.md").read_text(encoding="utf-8") == before
    assert main(["new-plugin", "my plugin", "--out", str(package.parent)]) == 2
    assert "is not a valid package name (PEP 508)" in capsys.readouterr().err


def test_generated_tests_pass_once_installed(package: Path, site: Path) -> None:
    proc = run("-m", "pytest", "-v", "-p", "no:cacheprovider", "tests", site=site, cwd=package)
    out = ok(proc)
    assert "test_contract[tiny-var-variance-output] PASSED" in out
    assert "test_contract[tiny-var-variance-determinism] PASSED" in out
    assert "test_noise_has_the_local_std_of_its_distribution PASSED" in out
    assert "test_tiny_experiment_runs PASSED" in out  # examples/tiny.yaml through `fzoo run`
    assert "test_hooks_register_the_extractor PASSED" in out
    # 5 contract checks of a feature extractor that needs no fitting, and 5 tests of its own
    assert out.strip().splitlines()[-1].startswith("=") and " 10 passed" in out.splitlines()[-1]


def test_fzoo_plugins_strict_and_list_show_it(site: Path) -> None:
    plugins = json.loads(ok(run("-m", "fzoo.cli", "plugins", "--strict", "--json", site=site)))
    mine = {p["name"]: p for p in plugins}["tiny_var"]
    assert mine["source"] == f"{NAME} 0.1.0" and mine["error"] is None
    assert mine["components"] == {"feature_extractor": ["tiny-var-variance"]}
    listed = json.loads(ok(run("-m", "fzoo.cli", "list", "features", "--json", site=site)))
    entry = {e["name"]: e for e in listed["feature_extractor"]}["tiny-var-variance"]
    assert entry["plugin"] == "tiny_var" and entry["learned"] is None
    assert entry["types"] == {"window": "integer", "flat_threshold": "number"}
    assert entry["params"]["window"]["default"] == 5


def test_the_example_experiment_validates_with_the_plugin(package: Path, site: Path) -> None:
    example = package / "examples" / "tiny.yaml"
    out = ok(run("-m", "fzoo.cli", "validate", str(example), site=site))
    assert "OK" in out


def test_blocking_the_installed_plugin_is_named_when_a_yaml_uses_it(
    package: Path, site: Path
) -> None:
    example = package / "examples" / "tiny.yaml"
    proc = run(
        "-m",
        "fzoo.cli",
        "validate",
        str(example),
        site=site,
        env={"FZOO_BLOCK_PLUGINS": "tiny_var"},
    )
    assert proc.returncode == 2, proc.stderr
    (line,) = proc.stderr.splitlines()
    assert line.startswith(
        f"{example}:15:16: unknown feature extractor 'tiny-var-variance' (blocked: plugin "
        "'tiny_var' is installed but blocked by FZOO_BLOCK_PLUGINS"
    ), line
