"""The fzoo command line, on real images."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fzoo.cli import main

from .conftest import make_class_folder, write_odd_images

BUILTINS = {"frequency", "sklearn", "perturbations", "datasets"}


def run_json(capsys, argv: list[str]):
    code = main(argv)
    out = capsys.readouterr().out
    return code, json.loads(out)


def test_plugins_json_lists_builtins(capsys):
    code, plugins = run_json(capsys, ["plugins", "--json"])
    assert code == 0
    by_name = {p["name"]: p for p in plugins}
    assert set(by_name) >= BUILTINS
    freq = by_name["frequency"]
    assert freq["source"] == "builtin" and freq["error"] is None
    assert set(freq["components"]["feature_extractor"]) == {
        "fft-spectrum",
        "dct-spectrum",
        "residual-fingerprint",
    }
    assert "fzoo_register_feature_extractors" in freq["hooks"]


def test_list_shows_params_and_presets(capsys):
    code, listing = run_json(capsys, ["list", "--json"])
    assert code == 0
    fft = next(c for c in listing["feature_extractor"] if c["name"] == "fft-spectrum")
    assert fft["plugin"] == "frequency" and fft["params"]["bins"]["default"] == 64
    assert "Durall" in fft["description"]
    assert any(p["name"] == "jpeg-75" for p in listing["preset"])
    assert any(e["name"] == "skimage-demo" for e in listing["experiment"])
    code, only = run_json(capsys, ["list", "classifiers", "--json"])
    assert list(only) == ["classifier"]
    assert main(["list", "nonsense"]) == 2


def test_list_text(capsys):
    assert main(["list", "perturbation"]) == 0
    out = capsys.readouterr().out
    assert "jpeg [perturbations]" in out and "quality: integer = 75" in out


@pytest.mark.parametrize("cmd", ["plugins", "list", "validate", "run", "extract", "detect"])
def test_every_command_has_help(cmd, capsys):
    with pytest.raises(SystemExit) as info:
        main([cmd, "--help"])
    assert info.value.code == 0
    assert "usage: fzoo" in capsys.readouterr().out


def test_extract_writes_features_and_skips_bad_files(tmp_path, capsys):
    folder = tmp_path / "imgs"
    write_odd_images(folder)
    out = tmp_path / "f.npz"
    code = main(["extract", "--extractor", "dct-spectrum", "--param", "size=4", "--out", str(out),
                 "--json", str(folder)])  # fmt: skip
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    with np.load(out) as data:
        feats, paths = data["features"], data["paths"]
    assert feats.shape == (summary["n"], 16) and len(paths) == summary["n"]
    skipped = {Path(s["path"]).name for s in summary["skipped"]}
    assert skipped == {"zero.png", "truncated.jpg", "notes.png"}
    assert np.isfinite(feats).all()
    # never overwrites without being asked
    assert main(["extract", "--extractor", "fft-spectrum", "--out", str(out), str(folder)]) == 2
    assert "refusing to overwrite" in capsys.readouterr().err


def test_extract_unknown_extractor_suggests(tmp_path, capsys):
    code = main(["extract", "--extractor", "fft-spectra", "--out", str(tmp_path / "x.npz"), "."])
    assert code == 2
    assert "did you mean 'fft-spectrum'" in capsys.readouterr().err


def test_run_then_detect(tmp_path, capsys):
    root = make_class_folder(tmp_path / "imgs")
    exp = tmp_path / "exp.yaml"
    exp.write_text(
        f"""\
name: cli
data:
  dataset: {{name: folder, params: {{root: "{root}"}}}}
pipelines:
  - name: dct
    features: [{{name: dct-spectrum, params: {{size: 8}}}}]
    classifier: logistic-regression
tasks:
  - {{name: proc, type: binary, positive: [processed]}}
"""
    )
    out = tmp_path / "out"
    assert main(["run", str(exp), "--out", str(out), "--quiet"]) == 0
    text = capsys.readouterr().out
    assert "wrote" in text and "dct" in text
    pipe = out / "pipelines" / "dct--proc"
    assert (pipe / "pipeline.json").exists()
    assert (pipe / "logistic_regression.json").exists()  # no skops object graph for LR

    images = (
        sorted((root / "processed").glob("*.png"))[:3]
        + sorted((root / "pristine").glob("*.png"))[:3]
    )
    assert main(["detect", "--pipeline", str(pipe), *map(str, images)]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [Path(r["path"]) for r in lines] == images
    for r in lines:
        assert set(r["probabilities"]) == {"processed", "not-processed"}
        assert abs(sum(r["probabilities"].values()) - 1) < 1e-6
        assert r["predicted"] in r["probabilities"]

    assert main(["detect", "--pipeline", str(tmp_path), str(images[0])]) == 2
    assert "not a saved pipeline" in capsys.readouterr().err


def test_console_script_runs():
    exe = Path(sys.executable).parent / "fzoo"
    proc = subprocess.run([str(exe), "plugins"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "frequency (builtin)" in proc.stdout


def test_closed_stdout_exits_quietly():
    """`fzoo list | head`: when the reader has gone, fzoo stops with 141 (128 + SIGPIPE), as
    shell tools do, and no BrokenPipeError traceback on stderr."""
    import os

    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before the first line: every write fails (EPIPE)
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "fzoo.cli", "list"],
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=120,
        )
    finally:
        os.close(write_end)
    assert proc.stderr == ""
    assert proc.returncode == 141


def test_list_through_head_prints_no_traceback():
    exe = Path(sys.executable).parent / "fzoo"
    proc = subprocess.run(
        f"'{exe}' list | head -1", shell=True, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0
    assert proc.stderr == ""
    assert proc.stdout.endswith(":\n") and proc.stdout.count("\n") == 1  # "launderers:", say


def test_a_broken_pipe_that_is_not_stdout_is_an_error(monkeypatch, capsys):
    """Only a closed stdout is quiet: a plugin's own broken pipe still surfaces."""
    from fzoo.commands import listing

    def broken(args):
        raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr(listing, "cmd_plugins", broken)
    with pytest.raises(BrokenPipeError):
        main(["plugins"])


def test_omp_wait_policy_passive_only_under_load_and_never_over_the_user():
    """PASSIVE when other work holds a core (benchmarks/omp_wait_policy.py: 1.63x faster
    fine-tuning beside a busy process, 0.78x on an idle machine), else nothing."""
    from fzoo.cli import omp_wait_policy

    assert omp_wait_policy({}, torch_loaded=False, load=2.5) == "PASSIVE"
    assert omp_wait_policy({}, torch_loaded=False, load=1.0) == "PASSIVE"
    assert omp_wait_policy({}, torch_loaded=False, load=0.4) is None  # idle: spinning is faster
    assert omp_wait_policy({"OMP_WAIT_POLICY": "ACTIVE"}, torch_loaded=False, load=5) is None
    assert omp_wait_policy({}, torch_loaded=True, load=5) is None  # read once: too late
    assert omp_wait_policy({}, torch_loaded=False, load=None) is None


def test_console_script_sets_omp_passive_under_load_before_torch():
    """The console script's first step, in a fresh interpreter (torch not loaded) with a load
    average of 3, sets OMP_WAIT_POLICY=PASSIVE; a user's value is kept."""
    code = (
        "import os, sys\n"
        "os.getloadavg = lambda: (3.0, 3.0, 3.0)\n"
        "from fzoo.cli import _set_omp_wait_policy\n"
        "_set_omp_wait_policy()\n"
        "print(os.environ.get('OMP_WAIT_POLICY'))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.stdout.strip() == "PASSIVE", out.stderr
    env["OMP_WAIT_POLICY"] = "ACTIVE"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.stdout.strip() == "ACTIVE", out.stderr
