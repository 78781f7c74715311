"""``fzoo extract`` with a learned extractor (``camera-id-cnn``, tiny): refused at once without
the means to fit it; fitted on a labelled folder (``--fit-on``), its state saved and loaded back
(``--save-state``/``--state``) with identical features; ``--param`` errors worded as in YAML."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fzoo.cli import main

#: the smallest camera-id-cnn that trains: one epoch, one 64 px patch per image
TINY = [
    "--param=epochs=1",
    "--param=patches_per_image=1",
    "--param=batch_size=8",
    "--param=max_patches=1",
    "--param=fit_on=null",
]


@pytest.fixture(scope="module")
def labelled(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``real/`` (full-range noise) and ``fake/`` (half-range noise), three 64 px images each."""
    root = tmp_path_factory.mktemp("labelled")
    rng = np.random.default_rng(0)
    for label, scale in (("real", 255), ("fake", 128)):
        (root / label).mkdir()
        for i in range(3):
            pixels = (rng.uniform(0, 1, (64, 64, 3)) * scale).astype(np.uint8)
            Image.fromarray(pixels).save(root / label / f"{i}.png")
    return root


def extract(*args: str) -> int:
    return main(["extract", "--extractor", "camera-id-cnn", *TINY, *args])


def test_refused_before_any_image_is_read(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image")  # reading it would print a 'skipped' line
    out = tmp_path / "x.npz"
    assert extract("--out", str(out), str(broken)) == 2
    err = capsys.readouterr().err
    assert err.startswith(
        "fzoo extract: 'camera-id-cnn' is a learned extractor (requires_fit): it must be fitted "
        "before it extracts. Give --fit-on DIR"
    )
    assert "--state DIR" in err and "No image was read" in err
    assert "skipped" not in err and not out.exists()


def test_fit_on_a_folder_then_load_the_saved_state(
    labelled: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    fitted, state = tmp_path / "fitted.npz", tmp_path / "state"
    args = ["--fit-on", str(labelled), "--fit-target", "label", "--save-state", str(state)]
    assert extract(*args, "--out", str(fitted), str(labelled)) == 0
    a = np.load(fitted)
    assert a["features"].shape == (6, 2)  # logits over the two training labels
    assert list(a["fit_labels"]) == ["fake", "real"] and int(a["n_fit"]) == 6
    assert str(a["fit_target"]) == "label"
    assert (state / "COMPLETE").exists() and (state / "model.safetensors").exists()
    assert str(a["state_sha256"]) and str(a["state"]) == str(state)
    capsys.readouterr()

    loaded = tmp_path / "loaded.npz"
    args = ["--fit-target", "label", "--state", str(state), "--out", str(loaded)]
    assert extract(*args, str(labelled)) == 0
    b = np.load(loaded)
    np.testing.assert_array_equal(b["features"], a["features"])
    assert str(b["state_sha256"]) == str(a["state_sha256"])
    assert str(b["fingerprint"]) == str(a["fingerprint"])

    # the state was fitted for labels (fit_target: label); the default learns cameras
    assert extract("--state", str(state), "--out", str(tmp_path / "z.npz"), str(labelled)) == 2
    err = capsys.readouterr().err
    assert "saved by an extractor with other parameters" in err
    assert "give the --param values it was fitted with" in err


def test_fit_on_without_the_fit_on_labels_says_so(
    labelled: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    args = ["--param=fit_on=[pristine]", "--fit-on", str(labelled), "--fit-target", "label"]
    assert extract(*args, "--out", str(tmp_path / "x.npz"), str(labelled)) == 2
    err = capsys.readouterr().err
    assert "no training image for 'camera-id-cnn': found labels ['fake', 'real']" in err
    assert "fit_on ['pristine']" in err


def test_fit_flags_refused_for_other_extractors(
    labelled: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = str(tmp_path / "x.npz")
    assert (
        main(["extract", "--extractor", "fft-spectrum", "--state", "s", "--out", out, "x.png"]) == 2
    )
    err = capsys.readouterr().err
    assert err.strip() == (
        "fzoo extract: 'fft-spectrum' is not a learned extractor (it needs no fitting): "
        "--state does not apply"
    )
    assert extract("--save-state", "s", "--state", str(labelled), "--out", out, "x") == 2
    assert "--save-state needs --fit-on" in capsys.readouterr().err


def test_param_errors_are_worded_as_in_yaml(capsys: pytest.CaptureFixture) -> None:
    args = ["extract", "--extractor", "fft-spectrum", "--param", "bins=x", "--param", "bns=8"]
    assert main([*args, "--out", "x.npz", "x.png"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines == [
        "fzoo extract: --param bins: fft-spectrum: parameter 'bins': Input should be a valid "
        "integer, unable to parse string as an integer (got 'x')",
        "fzoo extract: --param bns: 'fft-spectrum': unknown parameter 'bns'; did you mean "
        "'bins'? Valid parameters: bins",
    ]


def test_list_marks_learned_extractors_and_shows_choices(capsys: pytest.CaptureFixture) -> None:
    assert main(["list", "feature_extractor"]) == 0
    lines = capsys.readouterr().out.splitlines()
    cnn = next(line for line in lines if line.startswith("  camera-id-cnn "))
    assert cnn.startswith("  camera-id-cnn [camera_id] (needs fitting)  ")
    fft = next(line for line in lines if line.startswith("  fft-spectrum "))
    assert "needs fitting" not in fft
    assert any(
        line.startswith('      fit_target: one of "label", "camera" = \'camera\'') for line in lines
    )
    assert any(line.startswith("      bins: integer = 64 [>=4 <=4096]") for line in lines)
    assert main(["list", "feature_extractor", "--json"]) == 0
    entries = {e["name"]: e for e in json.loads(capsys.readouterr().out)["feature_extractor"]}
    assert entries["camera-id-cnn"]["learned"] == "needs fitting"
    assert entries["camera-id-cnn"]["types"]["fit_on"] == "list of string | null"
    assert entries["mandelli2024-laundered"]["learned"] == "needs fitting with some parameters"
    assert entries["fft-spectrum"]["learned"] is None
    assert entries["fft-spectrum"]["bounds"] == {"bins": ">=4 <=4096"}
