"""A condition whose images cannot be made fails alone: the extractor keeps scoring the others.

Before, a launderer that raised on every image made the runner mark the feature extractor as
"failed on every image" for the whole run, so the pipeline lost its clean rows too.
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

import pytest

import fzoo
from fzoo.config import load_experiment
from fzoo.experiment import run_experiment
from fzoo.plugin_manager import get_registry, register_plugin, unregister_plugin

from .conftest import make_class_folder


class Exploding(fzoo.Launderer):
    """A launderer that raises on every image (a stand-in for a VAE that runs out of memory)."""

    name = "exploding-test"
    calls = 0

    class Params(fzoo.Params):
        pass

    def launder(self, images):  # type: ignore[no-untyped-def]
        type(self).calls += 1
        raise RuntimeError("out of memory (simulated)")


@fzoo.hookimpl
def fzoo_register_launderers(register):  # type: ignore[no-untyped-def]
    register(Exploding)


EXP = """\
name: failing-condition
seed: 1
engine: {{batch_size: 4}}
data:
  dataset: {{name: folder, params: {{root: "{root}"}}}}
split: {{test_size: 0.34}}
conditions:
  - name: clean
  - {{name: boom, launderer: exploding-test}}
pipelines:
  - name: dct
    features: [{{name: dct-spectrum, params: {{size: 8}}}}]
    classifier: logistic-regression
tasks:
  - {{name: processed, type: binary, positive: [processed]}}
"""


@pytest.fixture
def exploding():  # type: ignore[no-untyped-def]
    get_registry()
    plugin = ModuleType("fzoo_exploding_test")
    plugin.fzoo_register_launderers = fzoo_register_launderers  # type: ignore[attr-defined]
    register_plugin(plugin, name="exploding-test-plugin")
    Exploding.calls = 0
    try:
        yield
    finally:
        unregister_plugin("exploding-test-plugin")


def test_a_condition_failing_on_every_image_keeps_the_clean_rows(
    tmp_path: Path, exploding: None
) -> None:
    root = make_class_folder(tmp_path / "imgs", n_per_photo=2)
    exp = tmp_path / "exp.yaml"
    exp.write_text(EXP.format(root=root))
    result = run_experiment(load_experiment(exp), tmp_path / "out", progress=None)
    rows = {(r["pipeline"], r["condition"]): r for r in result.rows}
    clean = rows[("dct", "clean")]
    assert not clean.get("error"), clean
    assert clean["auc"] is not None and 0.0 <= clean["auc"] <= 1.0
    assert rows[("dct", "boom")]["error"] == "no test images for this task"
    assert ("dct", "*") not in rows  # the extractor itself did not fail
    reasons = {s["reason"] for s in result.skipped if s["condition"] == "boom"}
    assert reasons == {"cannot make image: RuntimeError: out of memory (simulated)"}
    assert Exploding.calls >= 1
