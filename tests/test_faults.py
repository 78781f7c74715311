"""Faults: kill -9, a full disk, crafted pickles, unverified weights.

kill -9 during ``fzoo run`` is tested in tests/test_resume.py; a plugin that raises in
``extract`` or ``fit`` in tests/test_experiment.py (test_failing_extractor_fails_only_its_pipelines,
test_faults_in_fit_or_weights_fail_only_their_pipeline).
"""

from __future__ import annotations

import csv
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fzoo.cli import main

from .conftest import make_class_folder

REPO = Path(__file__).resolve().parents[1]


def fzoo(*args: str) -> list[str]:
    return [str(Path(sys.executable).parent / "fzoo"), *args]


ENV = {**os.environ, "HF_HUB_OFFLINE": "1"}


@pytest.fixture(scope="module")
def vae_weights(tmp_path_factory) -> Path:
    from .test_sd_vae import build_tiny_kl

    folder = tmp_path_factory.mktemp("vae")
    build_tiny_kl(4).save_pretrained(folder)
    return folder


def _noise_folder(folder: Path, n: int, size: int = 128, big: tuple[int, ...] = ()) -> None:
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True)
    for i in range(n):
        side = 256 if i in big else size
        arr = rng.integers(0, 256, (side, side, 3), dtype=np.uint8)
        Image.fromarray(arr).save(folder / f"img{i:03d}.png")


def _launder_cmd(weights: Path, src: Path, dst: Path) -> list[str]:
    return fzoo("launder", "--quiet", "--launderer", "sd-vae", "--param", f"weights={weights}",
                "--param", "batch_size=1", "--batch-size", "1", str(src), str(dst))  # fmt: skip


def _outputs(dst: Path) -> dict[str, bytes]:
    return {p.relative_to(dst).as_posix(): p.read_bytes() for p in sorted(dst.rglob("*.png"))}


def _manifest_outputs(dst: Path) -> list[str]:
    with open(dst / "manifest.csv", newline="") as fh:
        return [r["output"] for r in csv.DictReader(fh)]


def _assert_complete_and_equal(dst: Path, clean: Path) -> None:
    got, want = _outputs(dst), _outputs(clean)
    assert got == want  # every output present, byte-identical to an uninterrupted run
    listed = _manifest_outputs(dst)
    assert sorted(listed) == sorted(want) and len(listed) == len(set(listed))
    assert not list(dst.rglob(".tmp-*"))
    for name in got:
        Image.open(dst / name).load()  # decodes: no half-written PNG


def test_kill_9_during_launder_then_rerun_loses_nothing(vae_weights, tmp_path):
    src = tmp_path / "in"
    _noise_folder(src, 120)
    clean = tmp_path / "clean"
    done = subprocess.run(_launder_cmd(vae_weights, src, clean), env=ENV, capture_output=True,
                          timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    dst = tmp_path / "out"
    proc = subprocess.Popen(_launder_cmd(vae_weights, src, dst), env=ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    deadline = time.time() + 300
    while proc.poll() is None and time.time() < deadline:
        if dst.exists() and len(list(dst.glob("img*.png"))) >= 10:
            break
        time.sleep(0.01)
    assert proc.poll() is None, "launder finished before it could be killed; make it bigger"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    written = len(list(dst.glob("img*.png")))
    assert 10 <= written < 120
    for p in dst.glob("img*.png"):
        Image.open(p).load()  # what exists after the kill is complete
    again = subprocess.run(_launder_cmd(vae_weights, src, dst), env=ENV, capture_output=True,
                           text=True, timeout=600)  # fmt: skip
    assert again.returncode == 0, again.stderr[-2000:]
    _assert_complete_and_equal(dst, clean)


def _limit_file_size(limit: int):
    def apply() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes fail with EFBIG instead
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


def _one_line_error(stderr: str) -> None:
    assert "Traceback" not in stderr, stderr[-3000:]
    assert re.search(r"File too large|No space left", stderr), stderr[-3000:]


def test_full_disk_during_launder_is_a_clear_error_and_resumable(vae_weights, tmp_path):
    src = tmp_path / "in"
    _noise_folder(src, 12, big=(6,))  # img006 is 256x256: its PNG exceeds the limit
    clean = tmp_path / "clean"
    assert subprocess.run(_launder_cmd(vae_weights, src, clean), env=ENV,
                          capture_output=True, timeout=600).returncode == 0  # fmt: skip
    dst = tmp_path / "out"
    full = subprocess.run(_launder_cmd(vae_weights, src, dst), env=ENV, capture_output=True,
                          text=True, timeout=600, preexec_fn=_limit_file_size(100_000))  # fmt: skip
    assert full.returncode != 0
    for p in dst.glob("*.png"):
        Image.open(p).load()
    again = subprocess.run(_launder_cmd(vae_weights, src, dst), env=ENV, capture_output=True,
                           text=True, timeout=600)  # fmt: skip
    assert again.returncode == 0, again.stderr[-2000:]
    _assert_complete_and_equal(dst, clean)
    _one_line_error(full.stderr)


RUN_EXP = """\
name: full-disk
data:
  dataset: {{name: folder, params: {{root: "{root}"}}}}
pipelines:
  - name: dct
    features: [{{name: dct-spectrum, params: {{size: 8}}}}]
    classifier: logistic-regression
tasks:
  - {{name: proc, type: binary, positive: [processed]}}
"""


def test_full_disk_during_run_is_a_clear_error_and_resumable(tmp_path):
    root = make_class_folder(tmp_path / "imgs", n_per_photo=2)
    exp = tmp_path / "exp.yaml"
    exp.write_text(RUN_EXP.format(root=root))

    def run(out: str, cache: str, limit: int | None = None) -> subprocess.CompletedProcess:
        return subprocess.run(
            fzoo(
                "run",
                str(exp),
                "--out",
                str(tmp_path / out),
                "--cache-dir",
                str(tmp_path / cache),
                "--quiet",
            ),  # fmt: skip
            env=ENV,
            capture_output=True,
            text=True,
            timeout=600,
            preexec_fn=_limit_file_size(limit) if limit else None,
        )

    full = run("a", "cache", limit=4096)
    assert full.returncode != 0
    _one_line_error(full.stderr)
    lines = full.stderr.strip().splitlines()
    assert all(line.startswith(("fzoo run: ", "error: ")) for line in lines), lines
    assert not (tmp_path / "a" / "results.csv").exists()
    again = run("a", "cache")
    assert again.returncode == 0, again.stderr[-2000:]
    clean = run("b", "cache2")
    assert clean.returncode == 0
    for name in ("results.csv", "predictions.csv"):
        assert (tmp_path / "a" / name).read_text() == (tmp_path / "b" / name).read_text()


# --------------------------------------------------------------------------- safe loading


class Payload:
    """Would create ``marker`` when loaded, if loading ever ran its code."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __setstate__(self, state):
        Path(state["marker"]).write_text("executed")
        self.__dict__.update(state)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_crafted_pickle_in_a_pipeline_is_refused_not_executed(tmp_path, capsys):
    import pickle
    import zipfile

    import skops.io as sio

    root = make_class_folder(tmp_path / "imgs", n_per_photo=1)
    exp = tmp_path / "exp.yaml"
    # logistic regression is saved as JSON + safetensors; a random forest's state is skops
    exp.write_text(RUN_EXP.format(root=root).replace("logistic-regression", "random-forest"))
    assert main(["run", str(exp), "--out", str(tmp_path / "out"), "--quiet"]) == 0
    pipe = tmp_path / "out" / "pipelines" / "dct--proc"
    image = next((root / "pristine").glob("*.png"))
    capsys.readouterr()
    cases = {}
    marker = tmp_path / "marker-skops"
    cases["skops object"] = (sio.dumps({"x": Payload(str(marker))}), marker)
    marker3 = tmp_path / "marker-zip"
    buf = tmp_path / "z.zip"
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr(
            "schema.json",
            '{"__class__": "Payload", "__module__": "tests.test_faults",'
            ' "__loader__": "ObjectNode", "protocol": 2, "_skops_version": "0.10"}',
        )
        zf.writestr("payload.pkl", pickle.dumps(Payload(str(marker3))))  # fmt: skip
    cases["zip with a pickle"] = (buf.read_bytes(), marker3)
    original = (pipe / "estimator.skops").read_bytes()
    for what, (data, mark) in cases.items():
        (pipe / "estimator.skops").write_bytes(data)
        code = main(["detect", "--pipeline", str(pipe), str(image)])
        err = capsys.readouterr().err
        assert code == 2, (what, err)
        assert err.startswith("fzoo detect: ") and "Traceback" not in err, (what, err)
        assert not mark.exists(), f"{what}: the payload ran"
        if what == "skops object":
            assert "untrusted types" in err and "Payload" in err
    (pipe / "estimator.skops").write_bytes(original)
    assert main(["detect", "--pipeline", str(pipe), str(image)]) == 0


def test_every_torch_load_uses_weights_only():
    calls = []
    for base in ("core", "plugins"):
        for path in (REPO / base).rglob("*.py"):
            text = path.read_text(encoding="utf-8")
            for m in re.finditer(r"torch\.load\(", text):
                line_start = text.rfind("\n", 0, m.start()) + 1
                if (
                    text[line_start : m.start()].lstrip().startswith(("#", "``"))
                    or "``" in text[line_start : m.start()]
                ):
                    continue  # documentation
                depth, i = 1, m.end()
                while depth and i < len(text):
                    depth += {"(": 1, ")": -1}.get(text[i], 0)
                    i += 1
                calls.append((path, text[m.start() : i]))
    assert calls, "no torch.load call found: the scan is broken"
    bad = [(str(p), c) for p, c in calls if "weights_only=True" not in c]
    assert not bad, bad


def test_bundled_weights_are_verified(tmp_path):
    import fzoo

    bundled = sorted((REPO / "plugins").glob("*/weights/*/SHA256SUMS"))
    if bundled:
        folder = tmp_path / "w"
        shutil.copytree(bundled[0].parent, folder)
        fzoo.verify_sums(folder)
    else:  # no bundled weights yet: check the mechanism on a folder of our own
        folder = tmp_path / "w"
        folder.mkdir()
        (folder / "model.bin").write_bytes(bytes(range(256)) * 64)
        digest = fzoo.weights.sha256_file(folder / "model.bin")
        (folder / "SHA256SUMS").write_text(f"{digest}  model.bin\n")
        fzoo.verify_sums(folder)
    victim = next(p for p in sorted(folder.rglob("*")) if p.is_file() and p.name != "SHA256SUMS")
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0x01
    victim.write_bytes(bytes(data))
    with pytest.raises(fzoo.WeightsIntegrityError):
        fzoo.verify_sums(folder)


def test_raw_pickle_in_a_pipeline_is_refused_with_a_message(tmp_path, capsys):
    import pickle

    root = make_class_folder(tmp_path / "imgs", n_per_photo=1)
    exp = tmp_path / "exp.yaml"
    # logistic regression is saved as JSON + safetensors; a random forest's state is skops
    exp.write_text(RUN_EXP.format(root=root).replace("logistic-regression", "random-forest"))
    assert main(["run", str(exp), "--out", str(tmp_path / "out"), "--quiet"]) == 0
    pipe = tmp_path / "out" / "pipelines" / "dct--proc"
    marker = tmp_path / "marker"
    (pipe / "estimator.skops").write_bytes(pickle.dumps(Payload(str(marker))))
    capsys.readouterr()
    try:
        code = main(["detect", "--pipeline", str(pipe), str(next(root.rglob("*.png")))])
    finally:
        assert not marker.exists(), "the payload ran"
    assert code == 2 and capsys.readouterr().err.startswith("fzoo detect: ")
