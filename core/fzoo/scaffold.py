"""``fzoo new-plugin NAME``: a pip-installable plugin package that passes its own tests as written.

Like llm's plugin template, with nothing extra to install: the files are string templates here.
The package has a ``pyproject.toml`` with the ``fzoo`` entry point, one feature extractor (a
local-variance statistic in numpy, with a ``Params`` model and a docstring naming its method),
tests that run :mod:`fzoo.testing`'s contract checks on it and one tiny YAML experiment through
the ``fzoo`` command line, an example experiment and a README.
"""

from __future__ import annotations

import keyword
import re
from dataclasses import dataclass
from pathlib import Path

#: PEP 508 distribution names (case-insensitive)
_DIST_NAME = re.compile(r"^([A-Z0-9]|[A-Z0-9][A-Z0-9._-]*[A-Z0-9])$", re.IGNORECASE)
#: module and plugin names that are fzoo's own
_RESERVED_MODULES = ("fzoo", "fzoo_builtins")


class ScaffoldError(ValueError):
    """A plugin name that cannot be used, or a folder that would be overwritten."""


@dataclass(frozen=True)
class PluginNames:
    """The names one ``NAME`` gives a plugin package."""

    dist: str  #: the distribution (``pip install``), e.g. ``fzoo-local-var``
    module: str  #: the import name, e.g. ``fzoo_local_var``
    plugin: str  #: the entry-point name (``fzoo plugins``), e.g. ``local_var``
    extractor: str  #: the example extractor's component name, e.g. ``local-var-variance``
    cls: str  #: the example extractor's class name, e.g. ``LocalVarVariance``


def plugin_names(name: str) -> PluginNames:
    """The names of a plugin package called ``name``; :class:`ScaffoldError` says what is wrong.

    ``name`` must be a PEP 508 distribution name whose normalised form (``-``, ``_`` and ``.``
    as ``_``, lower case) is a Python identifier: ``fzoo-local-var`` gives the module
    ``fzoo_local_var`` and the plugin name ``local_var`` (a leading ``fzoo-`` is dropped).
    """
    from fzoo.plugin_manager import DEFAULT_PLUGINS

    shown = repr(name) if len(name) <= 80 else f"{name[:80]!r}... ({len(name)} chars)"
    if not _DIST_NAME.match(name):
        raise ScaffoldError(
            f"plugin name {shown} is not a valid package name (PEP 508): use letters, digits, "
            "'-', '_' and '.', starting and ending with a letter or digit, e.g. fzoo-local-var"
        )
    module = re.sub(r"[-_.]+", "_", name).lower()
    if keyword.iskeyword(module):
        raise ScaffoldError(
            f"plugin name {shown} gives the module name {module!r}, a Python keyword; choose "
            "another, e.g. fzoo-local-var"
        )
    if not module.isidentifier() or not module.isascii():
        raise ScaffoldError(
            f"plugin name {shown} gives the module name {module!r}, which is not a Python "
            "identifier; start with a letter, e.g. fzoo-local-var"
        )
    plugin = module.removeprefix("fzoo_") or module
    builtins = {m.rsplit(".", 1)[-1] for m in DEFAULT_PLUGINS}
    if module in _RESERVED_MODULES or plugin in builtins or module in builtins:
        raise ScaffoldError(
            f"plugin name {shown} is taken by fzoo itself (built-in plugins: "
            f"{', '.join(sorted(builtins))}); choose another, e.g. fzoo-my-{plugin}"
        )
    if len(name) > 100:
        raise ScaffoldError(f"plugin name {shown} is too long (at most 100 characters)")
    stem = plugin.replace("_", "-")
    words = [w for w in plugin.split("_") if w]
    return PluginNames(
        dist=name.lower(),
        module=module,
        plugin=plugin,
        extractor=f"{stem}-variance",
        cls="".join(w[:1].upper() + w[1:] for w in words) + "Variance",
    )


def plugin_files(names: PluginNames) -> dict[str, str]:
    """Relative path -> text of every file of the package."""
    values = {
        "dist": names.dist,
        "module": names.module,
        "plugin": names.plugin,
        "extractor": names.extractor,
        "cls": names.cls,
    }

    def fill(template: str) -> str:
        return (
            template.replace("{{", "\0")
            .replace("}}", "\1")
            .format(**values)
            .replace("\0", "{")
            .replace("\1", "}")
        )

    return {
        "pyproject.toml": fill(_PYPROJECT),
        "README.md": fill(_README),
        f"src/{names.module}/__init__.py": fill(_INIT),
        f"src/{names.module}/local_variance.py": fill(_EXTRACTOR),
        "tests/test_plugin.py": fill(_TESTS),
        "examples/tiny.yaml": fill(_EXPERIMENT),
    }


def write_plugin(name: str, out: str | Path = ".") -> Path:
    """Write the package for plugin ``name`` into ``out/<name>/`` and return that folder.

    Refuses (:class:`ScaffoldError`) an invalid name and an existing folder: nothing is
    overwritten. The files are written under a temporary name and renamed into place at the end.
    """
    import os
    import shutil
    import tempfile

    names = plugin_names(name)
    parent = Path(out)
    dest = parent / names.dist
    if dest.exists() or dest.is_symlink():
        raise ScaffoldError(f"{dest} exists; refusing to overwrite it (choose another --out)")
    try:
        parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=parent, prefix=f".{names.dist}-"))
    except OSError as exc:
        raise ScaffoldError(f"cannot write into {parent}: {exc.strerror or exc}") from None
    try:
        for rel, text in plugin_files(names).items():
            path = tmp / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
        os.chmod(tmp, 0o777 & ~_umask())
        try:
            os.rename(tmp, dest)  # on Linux, fails rather than replace a non-empty folder
        except OSError as exc:
            raise ScaffoldError(f"cannot create {dest}: {exc.strerror or exc}") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest


def _umask() -> int:
    from fzoo.fsutil import current_umask

    return current_umask()


# --------------------------------------------------------------------------- templates

_PYPROJECT = """\
[build-system]
requires = ["setuptools>=68"]
build-backend = "setuptools.build_meta"

[project]
name = "{dist}"
version = "0.1.0"
description = "fzoo plugin: {extractor} (local-variance statistics)"
readme = "README.md"
requires-python = ">=3.11"
dependencies = ["forensic-zoo>=0.1"]

[project.optional-dependencies]
test = ["pytest"]

# What makes it a plugin: the entry point group "fzoo". The name ({plugin}) is the plugin's name
# in `fzoo plugins` and FZOO_BLOCK_PLUGINS; the value is the module with the hook implementations.
[project.entry-points.fzoo]
{plugin} = "{module}"

[tool.setuptools.packages.find]
where = ["src"]
"""

_README = """\
# {dist}

A plugin for fzoo, the forensic detector zoo (`pip install forensic-zoo`), made by
`fzoo new-plugin {dist}`.

| kind              | name          | what                                                      |
|-------------------|---------------|-----------------------------------------------------------|
| feature extractor | `{extractor}` | local-variance statistics per RGB channel (numpy only)   |

## Install and check

```console
$ pip install -e .
$ fzoo plugins --strict        # lists plugin '{plugin}' and its components, exit 0
$ fzoo list feature_extractor  # shows '{extractor}' with its parameters
$ pytest tests                 # fzoo.testing's contract checks + one tiny experiment
$ fzoo run examples/tiny.yaml --out out
```

## Write your own component

Edit `src/{module}/local_variance.py` or add a class next to it, and register it in
`src/{module}/__init__.py`. Keep one class per method, a docstring that names the method, a
`Params` model with defaults, constraints and descriptions, and bump `version` whenever the
output for the same input and parameters changes (it is part of the cache identity). Add the
class to the list in `tests/test_plugin.py`: `fzoo.testing` runs the contract checks of its kind.
See fzoo's `docs/plugins.md` for every kind of component and the learned-extractor contract.
"""

_INIT = '''\
"""fzoo plugin {plugin}: the hook implementations that register its components."""

from __future__ import annotations

from typing import Any

import fzoo

from {module}.local_variance import {cls}

__all__ = ["{cls}"]


@fzoo.hookimpl
def fzoo_register_feature_extractors(register: Any) -> None:
    """Register the plugin's feature extractors."""
    register({cls})
'''

_EXTRACTOR = '''\
"""Local-variance statistics: how much pixels vary around each pixel, summarised per channel."""

from __future__ import annotations

from typing import Any

import fzoo
import numpy as np
from pydantic import Field


class {cls}(fzoo.FeatureExtractor):
    """Local-variance statistics, a classic noise-level cue (local variance in a sliding window).

    Camera images carry sensor noise in flat regions; generated, laundered or heavily smoothed
    images often do not. Per image and RGB channel, the standard deviation of the pixel values
    in every ``window`` x ``window`` window (all positions, no padding) is computed with integral
    images; the features are, per channel in the order R, G, B: the mean of the local standard
    deviations, their standard deviation, and the fraction of windows whose local standard
    deviation is below ``flat_threshold`` (flat areas). Output ``[B, 9]`` float32. Images smaller
    than the window raise ``ValueError`` (the runner skips them with that reason).
    """

    name = "{extractor}"
    description = "Local-variance statistics per RGB channel (mean, spread, flat fraction)"
    # Bump when the output for the same input and parameters changes: it is in the fingerprint.
    version = "1"

    class Params(fzoo.Params):
        window: int = Field(5, ge=2, le=64, description="side of the sliding window (px)")
        flat_threshold: float = Field(
            0.01, gt=0.0, lt=1.0, description="a window is flat below this local std"
        )

    params: Params

    def extract(self, batch: Any) -> np.ndarray:
        """``[B, 3, H, W]`` float32 in [0, 1] -> ``[B, 9]`` float32."""
        x = np.asarray(batch, dtype=np.float64)
        k = self.params.window
        b, c, h, w = x.shape
        if h < k or w < k:
            raise ValueError(f"image of {{h}}x{{w}} px is smaller than the window ({{k}} px)")
        mean = _box_mean(x, k)
        var = np.maximum(_box_mean(x * x, k) - mean * mean, 0.0)
        local_std = np.sqrt(var).reshape(b, c, -1)
        feats = np.stack(
            [
                local_std.mean(axis=2),
                local_std.std(axis=2),
                (local_std < self.params.flat_threshold).mean(axis=2),
            ],
            axis=2,
        )  # [B, C, 3]
        return feats.reshape(b, c * 3).astype(np.float32)


def _box_mean(x: np.ndarray, k: int) -> np.ndarray:
    """Mean over every k x k window of the last two axes (integral image, valid positions)."""
    s = np.pad(x, [(0, 0)] * (x.ndim - 2) + [(1, 0), (1, 0)]).cumsum(-1).cumsum(-2)
    total = s[..., k:, k:] - s[..., :-k, k:] - s[..., k:, :-k] + s[..., :-k, :-k]
    return total / (k * k)
'''

_TESTS = '''\
"""Tests of the {plugin} plugin: fzoo.testing's contract checks, values on known images, and one
tiny experiment through the fzoo command line (the plugin must be installed: pip install -e .)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from fzoo.testing import check_plugin, parametrize_with_checks
from {module} import {cls}

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "tiny.yaml"


@parametrize_with_checks([{cls}])
def test_contract(component, check):
    """Every check of the extractor's kind (shape, dtype, determinism, params, fingerprint)."""
    check(component)


def test_hooks_register_the_extractor():
    """The plugin's hooks, called as fzoo calls them (nothing is registered)."""
    plugin = sys.modules["{module}"]  # the module the entry point names
    assert check_plugin(plugin).components == {{"feature_extractor": [{cls}]}}


def test_flat_image_has_no_local_variance():
    feats = {cls}().extract(torch.full((2, 3, 16, 16), 0.5))
    assert feats.shape == (2, 9)
    np.testing.assert_allclose(feats[:, 0::3], 0.0, atol=1e-6)  # mean local std
    np.testing.assert_allclose(feats[:, 2::3], 1.0)  # every window is flat


def test_noise_has_the_local_std_of_its_distribution():
    rng = np.random.default_rng(0)
    noise = torch.from_numpy(rng.uniform(0, 1, (1, 3, 64, 64)).astype(np.float32))
    feats = {cls}(window=8).extract(noise)
    # a uniform variable on [0, 1] has std 1 / sqrt(12) ~ 0.289
    np.testing.assert_allclose(feats[0, 0::3], 12**-0.5, rtol=0.05)
    assert (feats[0, 2::3] == 0.0).all()


def test_too_small_image_is_refused():
    with pytest.raises(ValueError, match="smaller than the window"):
        {cls}(window=8).extract(torch.zeros(1, 3, 4, 4))


def test_tiny_experiment_runs(tmp_path):
    out = tmp_path / "out"
    command = [sys.executable, "-m", "fzoo.cli", "run", str(EXAMPLE), "--out", str(out)]
    command += ["--cache-dir", str(tmp_path / "cache"), "--quiet"]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads((out / "results.json").read_text(encoding="utf-8"))
    rows = [r for r in results["rows"] if r["pipeline"] == "{plugin}-lr"]
    assert rows, "the experiment has no row of the plugin's pipeline"
    assert rows[0]["n_test"] > 0 and 0.0 <= rows[0]["balanced_accuracy"] <= 1.0
'''

_EXPERIMENT = """\
# A tiny experiment with the plugin's extractor: a few seconds on a laptop.
# fzoo validate examples/tiny.yaml && fzoo run examples/tiny.yaml --out out
name: {plugin}-tiny
seed: 0
data:
  dataset: {{name: sample-photos, params: {{crop: 32, crops_per_photo: 2}}}}
  derive:
    - label: processed
      from: pristine
      perturbations: [{{name: jpeg, params: {{quality: 50}}}}]
split: {{test_size: 0.5}}
pipelines:
  - name: {plugin}-lr
    features:
      - {{name: {extractor}, params: {{window: 4}}}}
    classifier: logistic-regression
tasks:
  - {{name: pristine-vs-processed, type: binary, positive: [processed]}}
"""
