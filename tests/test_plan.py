"""The plan of a cell: every component, derived classes included, is resolved once at validation,
and the run never looks a name up again (issue #12, "resolve once")."""

from __future__ import annotations

import copy
import pickle
import textwrap

import pytest

import fzoo.config
import fzoo.plan
import fzoo.plugin_manager
from fzoo.config import load_experiment
from fzoo.data import ComponentRef, Step, load_items
from fzoo.experiment import run_experiment
from fzoo.plan import DataPlan, ResolvedComponent, resolve_component
from fzoo.schema import ComponentSpec

EXP = """\
name: plan-test
seed: 2
data:
  dataset:
    name: sample-photos
    params: {crop: 64, crops_per_photo: 2, photos: [astronaut, coffee, chelsea]}
  derive:
    - {label: laundered, from: pristine, launderer: fzoo-tiny-vae}
    - {label: jpeg, from: laundered, perturbations: [jpeg-75, {name: noise, params: {sigma: 2}}]}
    - {label: synthetic, generator: {name: tiny-ldm, params: {steps: 2}}, n: 4}
split: {test_size: 0.34}
conditions:
  - {name: clean}
  - {name: blur, perturbations: [{name: blur, params: {sigma: 1}}]}
pipelines:
  - name: dct-lr
    features: [{name: dct-spectrum, params: {size: 4}}]
    classifier: logistic-regression
tasks:
  - {name: four-way, type: multiclass}
"""


@pytest.fixture
def experiment(tmp_path):
    path = tmp_path / "exp.yaml"
    path.write_text(textwrap.dedent(EXP))
    return load_experiment(path)


def test_the_plan_carries_every_derived_class_resolved(experiment):
    (cell,) = experiment.cells
    plan = cell.plan
    assert plan is not None
    data = plan.data
    assert data.dataset.component == "sample-photos" and data.dataset.cls is not None
    laundered, jpeg, synthetic = data.derive
    # a preset resolves to its component, its params merged and validated
    assert [s.component for s in laundered.steps] == ["sd-vae"]
    assert laundered.steps[0].preset == "fzoo-tiny-vae"
    assert laundered.steps[0].params["weights"].endswith("fzoo-tiny-vae")
    assert laundered.roles == ("derive[0].launderer",)
    assert [(s.kind, s.component) for s in jpeg.steps] == [
        ("perturbation", "jpeg"),
        ("perturbation", "noise"),
    ]
    assert jpeg.steps[0].params["quality"] == 75 and jpeg.steps[1].params["sigma"] == 2.0
    assert jpeg.roles == ("derive[1].perturbations[0]", "derive[1].perturbations[1]")
    assert synthetic.steps == () and synthetic.generator is not None
    assert (synthetic.generator.component, synthetic.generator.params["steps"]) == ("tiny-ldm", 2)
    assert all(s.cls is not None for d in data.derive for s in d.steps)


def test_no_name_is_resolved_after_planning(experiment, tmp_path, monkeypatch):
    """Every entry point that turns a name into a class raises once the plan exists; a run
    with laundered, perturbed and generated classes still goes through to the report."""
    calls: list[str] = []

    def refuse(*args, **kwargs):
        calls.append(repr(args))
        raise AssertionError(f"a name was resolved after planning: {args!r}")

    monkeypatch.setattr(fzoo.plan, "resolve_component", refuse)
    monkeypatch.setattr(fzoo.config, "resolve_component", refuse)
    monkeypatch.setattr(fzoo.plugin_manager.Registry, "get", refuse)
    # the patch holds: resolution through each entry point fails now
    with pytest.raises(AssertionError):
        fzoo.config.create_component("perturbation", "jpeg-75")
    with pytest.raises(AssertionError):
        fzoo.plugin_manager.get_registry().get("perturbation", "jpeg")
    calls.clear()

    result = run_experiment(experiment, tmp_path / "out", tmp_path / "cache", progress=None)
    assert calls == []
    assert result.errors == []
    (row,) = [r for r in result.rows if r.condition == "clean"]
    assert row.n_train + row.n_test == 6 + 6 + 6 + 4
    fps = result.meta["fingerprints"][""]
    assert {"derive[0].launderer", "derive[1].perturbations[1]", "derive[2].generator"} <= set(fps)
    labels = {p.label for p in result.predictions}
    assert labels == {"pristine", "laundered", "jpeg", "synthetic"}


def test_load_items_from_a_bare_spec_plans_it_first(experiment):
    """A DataSpec (as scripts pass) is planned, then loaded like the cell's plan."""
    spec = experiment.spec.data.model_copy(update={"derive": experiment.spec.data.derive[:2]})
    planned = load_items(DataPlan.of(spec), seed=2)
    bare = load_items(spec, seed=2)
    assert [it.id for it in bare.items] == [it.id for it in planned.items]
    assert [it.chain for it in bare.items] == [it.chain for it in planned.items]
    assert len(bare.items) == 18 and bare.fingerprints == planned.fingerprints


def test_one_resolved_type_travels_pickled_and_rebuilds():
    rc = resolve_component(ComponentSpec(name="jpeg-75"), "perturbation")
    assert ComponentRef is ResolvedComponent
    assert rc.cls is not None and rc.where.endswith(":" + rc.cls.__qualname__)
    back = pickle.loads(pickle.dumps(rc))
    assert back == rc and back.cls is None and back.where == rc.where and back.key == rc.key
    comp = back.build()
    assert comp.fingerprint() == rc.build().fingerprint()
    step = Step(comp, comp.fingerprint(), 7)
    assert copy.deepcopy(step).component is comp and copy.deepcopy(rc).cls is rc.cls
    wire = pickle.loads(pickle.dumps(step))
    assert wire.component is None and (wire.fingerprint, wire.seed) == (step.fingerprint, 7)
    assert wire.ref == step.ref == ResolvedComponent.of(comp)
    # not installed here, and no class to import: the registry's error, with the names it has
    missing = ResolvedComponent("perturbation", "not-installed", {})
    with pytest.raises(fzoo.plugin_manager.UnknownComponentError, match="not-installed"):
        missing.build()
