"""The light commands start light: ``fzoo list``, ``plugins``, ``validate`` and ``--help`` import
no torch, scikit-learn, scipy, diffusers, timm, ... (issue #12; ``benchmarks/bench_startup.py``
measures the time and memory this saves).

Each command runs in a fresh interpreter through :func:`fzoo.cli.main`; the child then writes
which of the heavy packages ended up in ``sys.modules``. Entry-point plugins are not loaded
(``FZOO_DISABLE_PLUGIN_AUTOLOAD=1``): what is under test is fzoo and its built-in plugins.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

HEAVY = (
    "torch",
    "torchvision",
    "sklearn",
    "diffusers",
    "timm",
    "scipy",
    "skimage",
    "cv2",
    "matplotlib",
    "transformers",
    "open_clip",
    "efficientnet_pytorch",
    "colour",
    "colour_demosaicing",
)

# Every component the built-in plugins registered when the imports were made lazy (more may be
# added; none may go missing because a plugin module failed to import).
BUILTIN_COMPONENTS = {
    "classifier": {
        "argmax-logits",
        "feature-score",
        "gradient-boosting",
        "logistic-regression",
        "mlp",
        "published-score",
        "random-forest",
        "svm",
        "two-stage",
    },
    "dataset": {"folder", "manifest", "sample-photos", "virtual-cameras"},
    "feature_extractor": {
        "camera-id-cnn",
        "cnndetection",
        "dct-spectrum",
        "dire",
        "fft-spectrum",
        "grag2021",
        "mandelli2024-laundered",
        "mandelli2024-synthetic",
        "npr",
        "recon-error",
        "residual-fingerprint",
        "timm-embedding",
        "timm-finetune",
        "univfd",
    },
    "generator": {"diffusers-pipeline", "tiny-ldm"},
    "launderer": {"sd-vae", "taesd"},
    "perturbation": {"blur", "crop", "jpeg", "noise", "resize"},
}

_CHILD = r"""
import contextlib, io, json, sys
from fzoo.cli import main
argv, heavy, out_path = json.loads(sys.argv[1])
buf = io.StringIO()
with contextlib.redirect_stdout(buf):
    try:
        code = main(argv)
    except SystemExit as exc:
        code = exc.code
loaded = sorted(m for m in sys.modules if m.split(".")[0] in heavy)
with open(out_path, "w", encoding="utf-8") as fh:
    json.dump({"code": code, "stdout": buf.getvalue(), "loaded": loaded}, fh)
"""


def run_fresh(argv: list[str], tmp_path: Path) -> dict:
    """``fzoo.cli.main(argv)`` in a fresh interpreter: exit code, stdout, heavy modules loaded."""
    out = tmp_path / "child.json"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "FZOO_DISABLE_PLUGIN_AUTOLOAD": "1"}
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD, json.dumps([argv, list(HEAVY), str(out)])],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(out.read_text(encoding="utf-8"))


COMMANDS = [
    ["list", "--json"],
    ["list"],
    ["list", "features"],
    ["plugins", "--json"],
    ["plugins"],
    ["validate", "docs/examples/quickstart.yaml"],
    ["--help"],
]


@pytest.mark.parametrize("argv", COMMANDS, ids=" ".join)
def test_light_commands_import_no_heavy_package(argv, tmp_path):
    result = run_fresh(argv, tmp_path)
    assert result["code"] in (0, None), result["stdout"][-2000:]
    roots = sorted({m.split(".")[0] for m in result["loaded"]})
    first = {r: next(m for m in result["loaded"] if m.split(".")[0] == r) for r in roots}
    assert not roots, f"`fzoo {' '.join(argv)}` imported heavy packages: {first}"


def test_list_json_still_lists_every_builtin_component(tmp_path):
    listing = json.loads(run_fresh(["list", "--json"], tmp_path)["stdout"])
    plugins = json.loads(run_fresh(["plugins", "--json"], tmp_path)["stdout"])
    listed = {kind: {c["name"] for c in listing.get(kind, [])} for kind in BUILTIN_COMPONENTS}
    missing = {k: sorted(v - listed[k]) for k, v in BUILTIN_COMPONENTS.items() if v - listed[k]}
    assert not missing, f"components missing from `fzoo list --json`: {missing}"
    from fzoo.plugin_manager import DEFAULT_PLUGINS

    by_name = {p["name"]: p for p in plugins}
    for module in DEFAULT_PLUGINS:
        name = module.rsplit(".", 1)[-1]
        assert name in by_name, f"built-in plugin {name} missing from `fzoo plugins --json`"
        assert by_name[name]["error"] is None, f"{name}: {by_name[name]['error']}"
        for kind, names in by_name[name]["components"].items():
            assert set(names) <= {c["name"] for c in listing[kind]}, (name, kind)


def test_validate_still_checks_params(tmp_path):
    """Validation stays complete while light: a parameter out of range is still an error."""
    bad = tmp_path / "bad.yaml"
    text = (ROOT / "docs/examples/quickstart.yaml").read_text(encoding="utf-8")
    bad.write_text(text.replace("{sigma: 0.5}", "{sigma: -1}", 1))
    out = tmp_path / "child"
    out.mkdir()
    result = run_fresh(["validate", str(bad)], out)
    assert result["code"] == 2
    assert not result["loaded"], result["loaded"]


def test_camera_id_constants_match_the_network():
    """``extractor.py`` keeps the two constants of ``bondi.py`` (which imports torch)."""
    from fzoo_builtins.camera_id import bondi, extractor

    assert (extractor.PATCH, extractor.EMBED_DIM) == (bondi.PATCH, bondi.EMBED_DIM)


def test_validate_timm_and_dire_params_light_once_names_are_known(tmp_path, monkeypatch):
    """timm architecture names and DDIMScheduler arguments are checked from names remembered
    per installed version (:mod:`fzoo.known_names`): validating them imports neither package."""
    from fzoo import known_names
    from fzoo_builtins.camera_id.timm_embed import _timm_architectures
    from fzoo_builtins.reconstruction.dire import _ddim_args

    monkeypatch.setattr(known_names, "_memo", {})
    known_names.known_names("timm", "architectures", _timm_architectures)
    known_names.known_names("diffusers", "ddim-scheduler-args", _ddim_args)
    text = (ROOT / "docs/examples/quickstart.yaml").read_text(encoding="utf-8")
    timm = "[{name: timm-embedding, params: {model: resnet18.a1_in1k, pretrained: false}}]"
    dire = "[{name: dire, params: {unet: unet, scheduler: {beta_schedule: linear}}}]"
    text = text.replace("[fft-64]", timm).replace("[dct-16]", dire)
    exp = tmp_path / "timm.yaml"
    exp.write_text(text, encoding="utf-8")
    out = tmp_path / "child"
    out.mkdir()
    result = run_fresh(["validate", str(exp)], out)
    assert result["code"] == 0, result["stdout"]
    assert not result["loaded"], result["loaded"]


def test_unknown_names_are_still_asked_of_the_package(monkeypatch):
    """Remembered names only accept: an unknown one is checked by timm/diffusers themselves."""
    from pydantic import ValidationError

    from fzoo import known_names
    from fzoo_builtins.camera_id.timm_embed import TimmEmbedding
    from fzoo_builtins.reconstruction.dire import DIRE

    monkeypatch.setattr(known_names, "_memo", {})
    with pytest.raises(ValidationError, match="unknown timm model 'resnet18x'"):
        TimmEmbedding.Params(model="resnet18x")
    with pytest.raises(ValidationError, match=r"unknown DDIMScheduler entries \['nonsense'\]"):
        DIRE.Params(unet="unet", scheduler={"nonsense": 1})
    assert DIRE.Params(unet="unet", scheduler={"beta_schedule": "linear"}).scheduler


_LIGHT_IMPORT = r"""
import json, sys
import fzoo
deferred = ("numpy", "PIL", "yaml", "fzoo.config", "fzoo.images")
before = sorted(m for m in deferred if m in sys.modules)
missing = [n for n in fzoo.__all__ if not hasattr(fzoo, n)]
from fzoo import create_component, load_image, to_uint8  # the lazy names still import
print(json.dumps({"before": before, "missing": missing, "images": load_image.__module__}))
"""


def test_import_fzoo_defers_numpy_pillow_and_the_experiment_schema():
    """``import fzoo`` (and so ``fzoo --help``) loads neither numpy, Pillow, PyYAML nor the
    experiment schema; every public name is still there, imported on first use."""
    proc = subprocess.run(
        [sys.executable, "-c", _LIGHT_IMPORT], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    got = json.loads(proc.stdout)
    assert got == {"before": [], "missing": [], "images": "fzoo.images"}


def test_plugins_and_list_do_not_load_the_experiment_schema(tmp_path):
    """``fzoo plugins`` needs no experiment schema, ``fzoo list`` only its parameter wording."""
    probe = "import sys; print(sorted(m for m in sys.modules if m in {}))".format(
        {"fzoo.config", "fzoo.grid", "fzoo.plan", "fzoo.schema"}
    )
    for argv, allowed in ((["plugins", "--json"], []), (["list", "--json"], ["fzoo.schema"])):
        code = f"from fzoo.cli import main; main({argv!r}); {probe}"
        env = {**os.environ, "FZOO_DISABLE_PLUGIN_AUTOLOAD": "1", "HF_HUB_OFFLINE": "1"}
        proc = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300
        )
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert proc.stdout.strip().splitlines()[-1] == repr(allowed), argv


def test_the_bundled_catalogue_is_parsed_by_libyaml_as_by_pyyaml():
    """``registry.yaml`` is read by libyaml (``trusted``): the same data at the same locations
    as the pure-Python loader of experiment files, and the fast path is really taken."""
    from fzoo import yaml_loader
    from fzoo.catalogue import bundled_registry

    text = bundled_registry().read_text(encoding="utf-8")
    fast = yaml_loader._parse_c(text, "registry.yaml", yaml_loader.Limits())
    assert fast is not None, "libyaml did not parse the bundled registry.yaml"
    slow = yaml_loader.parse_yaml(text, "registry.yaml")
    assert fast.data == slow.data
    assert fast.locs == slow.locs
    assert len(slow.locs) > 500 and "presets" in slow.data and "experiments" in slow.data


@pytest.mark.parametrize(
    "text",
    [
        "a: [1, 2\nb: 3\n",  # syntax error
        "a: 1\na: 2\n",  # duplicate key
        "a: !!python/object:os.system x\n",  # object tag
        "a: " + "[" * 70 + "]" * 70 + "\n",  # over the nesting limit
        "a: &x [1, 2]\nb: [*x, *x, *x, *x, *x, *x, *x, *x, *x, *x, *x, *x, *x]\n",
        "n: " + "9" * 150 + "\n",  # integer too long
        "a: b\x07\n",  # control character
        "a:\n\tb: 1\n",  # a tab PyYAML refuses
    ],
    ids=["syntax", "duplicate", "tag", "deep", "aliases", "integer", "control", "tab"],
)
def test_trusted_parsing_reports_problems_as_the_python_loader(text):
    """A problem in a trusted file is reported by the pure-Python loader: the same message at
    the same place as for any experiment file."""
    from fzoo.yaml_loader import ConfigError, Limits, parse_yaml

    limits = Limits(max_values=30)
    with pytest.raises(ConfigError) as slow:
        parse_yaml(text, "f.yaml", limits)
    with pytest.raises(ConfigError) as fast:
        parse_yaml(text, "f.yaml", limits, trusted=True)
    assert str(fast.value) == str(slow.value)
