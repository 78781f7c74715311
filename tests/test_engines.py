"""Engines without Ray: work units that travel and rebuild exactly, and the missing-Ray error."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
from PIL import Image

from fzoo.cache import ArrayCache
from fzoo.cli import main
from fzoo.config import DataSpec, EngineSpec, load_experiment
from fzoo.data import ComponentRef, Materializer, Step, WorkUnit, load_items
from fzoo.experiment import Runner

from .conftest import photo_crops

EXP = """\
name: engine-test
data:
  dataset: {{name: folder, params: {{root: "{root}"}}}}
pipelines:
  - {{name: p, features: [{{name: dct-spectrum, params: {{size: 4}}}}], classifier: logistic-regression}}
tasks:
  - {{name: t, type: binary, positive: [b]}}
engine: {{name: ray, address: "ray://head:10001", concurrency: 2}}
"""  # noqa: E501


def small_folder(root: Path) -> Path:
    for k, (name, arr) in enumerate(photo_crops(1, 32).items()):
        label = "a" if k % 2 else "b"
        (root / label).mkdir(parents=True, exist_ok=True)
        Image.fromarray(arr).save(root / label / f"{name}.png")
    return root


def test_missing_ray_fails_run_in_one_line_but_validates(tmp_path, monkeypatch, capsys):
    import fzoo.engines.ray as ray_engine

    monkeypatch.setattr(ray_engine, "ray_installed", lambda: False)
    exp = tmp_path / "exp.yaml"
    exp.write_text(EXP.format(root=small_folder(tmp_path / "imgs")))
    assert main(["validate", str(exp)]) == 0
    spec = load_experiment(exp).spec.engine
    assert spec == EngineSpec(name="ray", address="ray://head:10001", concurrency=2)
    capsys.readouterr()
    assert main(["run", str(exp), "--out", str(tmp_path / "out"), "--quiet"]) != 0
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "pip install 'forensic-zoo[ray]'" in err


def test_work_unit_pickles_and_rebuilds_the_same_pixels(tmp_path):
    spec = DataSpec.model_validate(
        {
            "dataset": {"name": "folder", "params": {"root": str(small_folder(tmp_path / "i"))}},
            "derive": [
                {"label": "j", "from": "a", "perturbations": ["jpeg-80", "blur"], "quantize": True}
            ],
        }
    )
    items = load_items(spec, seed=1).items
    derived = next(it for it in items if it.steps)
    noise = ComponentRef("perturbation", "noise", {"sigma": 3.0}).build()
    extra = (Step(noise, noise.fingerprint(), 42),)
    assert extra[0].ref == ComponentRef.of(noise)

    unit = pickle.loads(pickle.dumps(WorkUnit.of(derived, extra, spec.max_pixels)))
    assert unit.path is not None and unit.data is None  # a file travels as its path
    assert unit.chain == derived.chain + (f"{noise.fingerprint()}@42",)

    def build(ref: ComponentRef, fp: str):
        comp = ref.build()
        assert comp.fingerprint() == fp
        return comp

    item, rebuilt_extra = unit.to_item(build)
    assert item.chain == derived.chain
    here = Materializer(ArrayCache(tmp_path / "c1"), spec.max_pixels).load(derived, extra)
    there = Materializer(ArrayCache(tmp_path / "c2"), spec.max_pixels).load(item, rebuilt_extra)
    assert here.dtype == there.dtype == np.float32 and here.tobytes() == there.tobytes()


def test_local_runner_sends_no_work_units(tmp_path):
    exp = tmp_path / "exp.yaml"
    text = EXP.format(root=small_folder(tmp_path / "imgs")).replace(
        'engine: {name: ray, address: "ray://head:10001", concurrency: 2}', ""
    )
    exp.write_text(text)
    runner = Runner(load_experiment(exp), tmp_path / "out", tmp_path / "c", progress=None)
    assert runner.engine.name == "local" and not runner.engine.one_call


def _worker_unit(tmp_path: Path):
    from fzoo.engines.ray import sent_extractor

    spec = DataSpec.model_validate(
        {"dataset": {"name": "folder", "params": {"root": str(small_folder(tmp_path / "i"))}}}
    )
    item = load_items(spec, seed=0).items[0]
    dct = ComponentRef("feature_extractor", "dct-spectrum", {"size": 4}).build()
    return spec, item, {"k": sent_extractor(dct)}, dct


def test_worker_extracts_what_the_local_engine_does(tmp_path):
    from fzoo.engines.local import extract_rows
    from fzoo.engines.ray import Worker

    spec, item, ext_spec, dct = _worker_unit(tmp_path)
    unit = WorkUnit.of(item, (), spec.max_pixels)
    worker = Worker(ext_spec, str(tmp_path / "cache"), batch_size=4)
    out = worker({"payload": [pickle.dumps((7, unit, ["k"]))]})
    (res,) = [pickle.loads(b) for b in out["result"]]
    assert res["index"] == 7 and res["load_error"] is None
    pixels = Materializer(ArrayCache(tmp_path / "c"), spec.max_pixels).load(item)
    (expected,) = extract_rows(dct, [pixels])
    assert res["rows"]["k"].tobytes() == expected.tobytes()


def test_worker_that_cannot_rebuild_a_component_says_so(tmp_path):
    from fzoo.engines.ray import Worker

    spec, item, ext_spec, _ = _worker_unit(tmp_path)
    worker = Worker(ext_spec, None, batch_size=4)
    noise = ComponentRef("perturbation", "noise", {"sigma": 1.0})
    missing = ComponentRef("perturbation", "not-installed", {})
    for ref, fp, words in ((missing, "x", "cannot rebuild"), (noise, "other", "fingerprint")):
        unit = WorkUnit.of(item, (), spec.max_pixels)
        unit = WorkUnit(**{**unit.__dict__, "extra": (Step(None, fp, 0, ref),)})
        (res,) = [
            pickle.loads(b) for b in worker({"payload": [pickle.dumps((0, unit, ["k"]))]})["result"]
        ]
        assert words in res["setup_error"] and "on every worker" in res["setup_error"]
