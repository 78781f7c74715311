"""Hostile inputs and files (issue 13, cases 2, 3, 6, 8, 9 and part of 12), with real files.

Each test asserts the clear error or skip message, the exit code, a time bound (a FIFO would
block forever: :func:`deadline` turns that into a failure), a memory bound where memory is the
risk (a subprocess under ``RLIMIT_AS``), and that nothing was lost. ``pytest -s`` prints the
measured figures as ``FIGURE`` lines.
"""

from __future__ import annotations

import csv
import errno
import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import fzoo
from fzoo.cli import main
from fzoo.images import ImageError, load_image
from fzoo.launder import MANIFEST, read_manifest
from fzoo.names import escape, unescape
from fzoo.plugin_manager import register_plugin, unregister_plugin

from .conftest import make_class_folder, photo_crops
from .hostile_inputs import (
    FORGING,
    NON_UTF8,
    child_load,
    deadline,
    png16_rgba_header_only,
    png16_rgba_zeros,
    report,
    sparse_file,
)

FZOO = str(Path(sys.executable).parent / "fzoo")
ENV = {**os.environ, "HF_HUB_OFFLINE": "1"}


@pytest.fixture(scope="module")
def crops() -> dict[str, np.ndarray]:
    return photo_crops(1, 64, photos=("astronaut", "chelsea", "rocket", "coffee"))


def _save(folder: Path, crops: dict[str, np.ndarray], names: list[str] | None = None) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for (_key, arr), name in zip(crops.items(), names or list(crops), strict=False):
        path = folder / (name if name.endswith(".png") else f"{name}.png")
        Image.fromarray(arr).save(path)
        paths.append(path)
    return paths


def _skip_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("skipped ")]


# --------------------------------------------------------------------------- names


def test_escape_is_one_printable_line_and_reversible():
    for name in (NON_UTF8 + ".png", FORGING, "a\\xff.png", "tab\there\r\x85\u2028", "plain ✓.png"):
        text = escape(name)
        assert "\n" not in text and "\r" not in text and text.isprintable()
        text.encode("utf-8")  # never a UnicodeEncodeError
        assert unescape(text) == name
    assert escape(NON_UTF8 + ".png") == "\\xff.png"
    assert escape("a\\xff.png") == "a\\\\xff.png"  # a literal backslash is not a byte


# --------------------------------------------------------------------------- case 3: files


def test_fifo_device_socket_and_folder_are_refused_without_opening(tmp_path):
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    (tmp_path / "link.png").symlink_to(fifo)
    sock_path = tmp_path / "sock.png"
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(sock_path))
    (tmp_path / "dir.png").mkdir()
    cases = {
        fifo: "a FIFO (named pipe)",
        tmp_path / "link.png": "a FIFO (named pipe)",  # the target is checked
        Path("/dev/zero"): "a character device",
        sock_path: "a socket",
        tmp_path / "dir.png": "a folder",
    }
    try:
        for path, kind in cases.items():
            start = time.perf_counter()
            with deadline(10), pytest.raises(ImageError) as info:
                load_image(path)
            took = time.perf_counter() - start
            assert info.value.reason == f"not a regular file ({kind}); not opened"
            assert took < 1.0
            report(f"load_image {path.name}", seconds=f"{took:.4f}")
    finally:
        sock.close()


def test_huge_sparse_file_is_refused_from_its_size(tmp_path):
    path = sparse_file(tmp_path / "huge.png", 10**10)
    res = child_load(path, address_space=1 << 30)
    assert res.code == 0, res.stderr[-2000:]
    assert res.out["error"] == (
        "file is 10000000000 bytes, over the limit of 536870912 bytes (FZOO_MAX_IMAGE_BYTES); "
        "not read"
    )
    assert res.out["load_s"] < 1.0 and res.out["extra_rss_mb"] < 20
    report("sparse 10 GB .png", seconds=res.out["load_s"], extra_rss_mb=res.out["extra_rss_mb"],
           maxrss_mb=res.out["maxrss_mb"], rlimit_as="1 GiB")  # fmt: skip


@pytest.mark.parametrize("kind", ["complete", "header-only"])
def test_16bit_rgba_9999_png_is_refused_from_its_header(tmp_path, kind):
    data = png16_rgba_zeros() if kind == "complete" else png16_rgba_header_only()
    path = tmp_path / "big16.png"
    path.write_bytes(data)
    res = child_load(path, address_space=1 << 30)  # decoding would need > 4 GB
    assert res.code == 0, res.stderr[-2000:]
    assert res.out["error"] == (
        "9999x9999 16-bit RGBA decodes to 799840008 bytes, over the limit of 536870912 bytes "
        "(FZOO_MAX_DECODED_BYTES); not decoded"
    )
    assert res.out["load_s"] < 2.0 and res.out["extra_rss_mb"] < 50
    report(f"9999x9999 16-bit RGBA PNG ({kind}, {len(data)} bytes)", seconds=res.out["load_s"],
           extra_rss_mb=res.out["extra_rss_mb"], maxrss_mb=res.out["maxrss_mb"],
           rlimit_as="1 GiB")  # fmt: skip


def test_limits_are_configurable_through_the_environment(tmp_path, monkeypatch, crops):
    (path,) = _save(tmp_path, dict(list(crops.items())[:1]), ["one"])
    size = path.stat().st_size
    monkeypatch.setenv("FZOO_MAX_IMAGE_BYTES", str(size - 1))
    with pytest.raises(ImageError, match=f"file is {size} bytes, over the limit of {size - 1}"):
        load_image(path)
    monkeypatch.setenv("FZOO_MAX_IMAGE_BYTES", str(size))
    assert load_image(path).shape == (64, 64)
    monkeypatch.setenv("FZOO_MAX_DECODED_BYTES", str(64 * 64 * 3 - 1))
    with pytest.raises(ImageError, match="64x64 8-bit RGB decodes to 12288 bytes, over the"):
        load_image(path)
    monkeypatch.setenv("FZOO_MAX_DECODED_BYTES", "not-a-number")
    with pytest.warns(UserWarning, match="FZOO_MAX_DECODED_BYTES='not-a-number' is not a posi"):
        assert load_image(path).shape == (64, 64)
    # explicit arguments win over the environment
    assert load_image(path, max_bytes=size, max_decoded_bytes=12288).shape == (64, 64)


# --------------------------------------------------------------------------- extract


def _hostile_paths(tmp_path: Path, crops: dict[str, np.ndarray]) -> tuple[list[Path], dict]:
    """Good files, and FIFOs (direct, through a symlink, inside a folder), /dev/zero, a sparse
    10 GB .png; returns the paths to pass and name -> expected reason."""
    good = _save(tmp_path / "good", crops)
    folder = tmp_path / "folder"
    folder.mkdir()
    os.mkfifo(folder / "inner-pipe.png")
    shutil.copy(good[0], folder / "inner-good.png")
    os.mkfifo(tmp_path / "pipe.png")
    (tmp_path / "link.png").symlink_to(tmp_path / "pipe.png")
    sparse_file(tmp_path / "sparse.png")
    bad = {
        "pipe.png": "not a regular file (a FIFO (named pipe)); not opened",
        "link.png": "not a regular file (a FIFO (named pipe)); not opened",
        "inner-pipe.png": "not a regular file (a FIFO (named pipe)); not opened",
        "zero": "not a regular file (a character device); not opened",
        "sparse.png": "file is 10000000000 bytes, over the limit of 536870912 bytes",
    }
    paths = [*good, tmp_path / "pipe.png", tmp_path / "link.png", folder, Path("/dev/zero"),
             tmp_path / "sparse.png"]  # fmt: skip
    return paths, bad


def test_extract_skips_fifos_devices_and_huge_files_without_blocking(tmp_path, crops, capsys):
    paths, bad = _hostile_paths(tmp_path, crops)
    out = tmp_path / "f.npz"
    start = time.perf_counter()
    with deadline(60):
        code = main(["extract", "--extractor", "dct-spectrum", "--param", "size=8",
                     "--out", str(out), *map(str, paths)])  # fmt: skip
    took = time.perf_counter() - start
    err = capsys.readouterr().err
    assert code == 0
    reasons = {Path(line[8:].partition(": ")[0]).name: line.partition(": ")[2]
               for line in _skip_lines(err)}  # fmt: skip
    assert set(reasons) == set(bad)
    for name, reason in bad.items():
        assert reasons[name].startswith(reason), (name, reasons[name])
    with np.load(out) as data:
        names = sorted(Path(p).name for p in data["paths"])
    assert names == sorted([*(f"{k}.png" for k in crops), "inner-good.png"])  # nothing lost
    assert took < 30
    report("extract with 3 FIFOs, /dev/zero, sparse 10 GB", seconds=f"{took:.2f}",
           images=len(crops) + 1)  # fmt: skip


def test_extract_cli_with_a_fifo_returns_promptly(tmp_path, crops):
    """The real command in a subprocess: a FIFO given directly never blocks it."""
    paths, _ = _hostile_paths(tmp_path, crops)
    start = time.perf_counter()
    done = subprocess.run([FZOO, "extract", "--extractor", "dct-spectrum", "--out",
                           str(tmp_path / "f.npz"), str(tmp_path / "pipe.png"), str(paths[0])],
                          env=ENV, capture_output=True, text=True, timeout=120)  # fmt: skip
    took = time.perf_counter() - start
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"skipped {tmp_path}/pipe.png: not a regular file (a FIFO" in done.stderr
    report("fzoo extract FIFO (subprocess, start-up included)", seconds=f"{took:.2f}")


# --------------------------------------------------------------------------- case 12: extract


class BadShape(fzoo.FeatureExtractor):
    """Returns [N, 3, 1]: not a feature matrix."""

    name = "bad-shape"

    class Params(fzoo.Params):
        pass

    def extract(self, batch: torch.Tensor) -> np.ndarray:
        return np.zeros((batch.shape[0], 3, 1), np.float32)


class NanOnBright(fzoo.FeatureExtractor):
    """NaN features for images brighter than 0.45 on average; finite ones otherwise."""

    name = "nan-on-bright"

    class Params(fzoo.Params):
        pass

    def extract(self, batch: torch.Tensor) -> np.ndarray:
        mean = batch.mean(dim=(1, 2, 3)).numpy()[:, None]
        return np.where(mean > 0.45, np.nan, mean).astype(np.float32).repeat(2, axis=1)


class BadPlugin:
    @staticmethod
    @fzoo.hookimpl
    def fzoo_register_feature_extractors(register):
        register(BadShape)
        register(NanOnBright)


@pytest.fixture
def bad_extractors():
    register_plugin(BadPlugin, name="bad-extractors-test")
    yield
    unregister_plugin("bad-extractors-test")


def test_extract_refuses_features_that_are_not_a_finite_matrix(
    tmp_path, crops, capsys, bad_extractors
):
    good = _save(tmp_path / "in", crops)
    out = tmp_path / "o" / "f.npz"
    code = main(["extract", "--extractor", "bad-shape", "--out", str(out), *map(str, good)])
    err = capsys.readouterr().err
    assert code == 1 and not out.exists()
    lines = _skip_lines(err)
    assert len(lines) == len(good)
    assert all("bad-shape: returned features of shape [1, 3, 1] for one image; features must "
               "be 2-D [N, D]" in line for line in lines)  # fmt: skip
    assert "fzoo extract: nothing written: no image gave features (4 skipped)" in err
    assert not list((tmp_path / "o").glob(".tmp-*"))

    means = {p.name: float(np.asarray(Image.open(p)).mean() / 255) for p in good}
    code = main(["extract", "--extractor", "nan-on-bright", "--out", str(out), *map(str, good)])
    err = capsys.readouterr().err
    nan_names = {n for n, m in means.items() if m > 0.45}
    assert 0 < len(nan_names) < len(good)  # the photos give both cases
    assert code == 0
    skipped = {Path(line[8:].partition(": ")[0]).name for line in _skip_lines(err)}
    assert skipped == nan_names
    assert "nan-on-bright: returned non-finite features (NaN or inf)" in err
    with np.load(out) as data:
        assert np.isfinite(data["features"]).all()
        assert {Path(p).name for p in data["paths"]} == set(means) - nan_names


def test_extract_to_an_unwritable_place_is_one_line(tmp_path, crops, capsys, monkeypatch):
    good = _save(tmp_path / "in", crops)
    code = main(["extract", "--extractor", "dct-spectrum", "--out", "/sys/fzoo-test/f.npz",
                 str(good[0])])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 1
    assert err.startswith("fzoo extract: cannot write /sys/fzoo-test/f.npz: ")
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err

    def full(*args, **kwargs):  # the disk fills while the .npz is written
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(np, "savez", full)
    out = tmp_path / "o" / "f.npz"
    code = main(["extract", "--extractor", "dct-spectrum", "--out", str(out), str(good[0])])
    err = capsys.readouterr().err
    assert code == 1 and not out.exists()
    assert f"fzoo extract: cannot write {out}: No space left on device" in err
    assert not list((tmp_path / "o").iterdir())  # no .tmp-*.npz left


# --------------------------------------------------------------------------- case 8: detect


@pytest.fixture(scope="module")
def fft_pipeline(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("fft")
    root = make_class_folder(base / "imgs", n_per_photo=2)
    exp = base / "exp.yaml"
    exp.write_text(
        f"""\
name: fft-detect
data:
  dataset: {{name: folder, params: {{root: "{root}"}}}}
pipelines:
  - name: fft
    features: [{{name: fft-spectrum, params: {{bins: 16}}}}]
    classifier: logistic-regression
tasks:
  - {{name: proc, type: binary, positive: [processed]}}
"""
    )
    assert main(["run", str(exp), "--out", str(base / "out"), "--quiet"]) == 0
    return base / "out" / "pipelines" / "fft--proc"


def _detect(pipe: Path, paths: list[Path], capsys) -> tuple[int, list[dict], str]:
    with deadline(120):
        code = main(["detect", "--pipeline", str(pipe), *map(str, paths)])
    captured = capsys.readouterr()
    return code, [json.loads(line) for line in captured.out.splitlines()], captured.err


def test_one_bad_image_does_not_end_detect(tmp_path, crops, fft_pipeline, capsys):
    good = _save(tmp_path / "good", crops)
    Image.fromarray(np.zeros((1, 1, 3), np.uint8)).save(tmp_path / "one.png")
    os.mkfifo(tmp_path / "pipe.png")
    code_a, alone, _ = _detect(fft_pipeline, good, capsys)
    assert code_a == 0
    mixed = [good[0], tmp_path / "one.png", good[1], tmp_path / "pipe.png", *good[2:]]
    start = time.perf_counter()
    code, records, err = _detect(fft_pipeline, mixed, capsys)
    took = time.perf_counter() - start
    assert "Traceback" not in err
    assert [r["path"] for r in records] == list(map(str, mixed))  # every file, in order
    by_path = {r["path"]: r for r in records}
    assert by_path[str(tmp_path / "one.png")]["error"].startswith("cannot score: ")
    assert "FIFO" in by_path[str(tmp_path / "pipe.png")]["error"]
    for record in alone:  # later files are scored, exactly as alone
        assert by_path[record["path"]] == record
    assert code == 1  # documented: 1 when any input could not be scored
    report("detect 1x1 + FIFO among 4 good (fft pipeline)", seconds=f"{took:.2f}",
           scored=len(alone), errors=2)  # fmt: skip


# --------------------------------------------------------------------------- case 2: run


RUN_EXP = """\
name: names-run
seed: 1
data:
  dataset: {{name: folder, params: {{root: "{root}"}}}}
split: {{test_size: 0.5}}
pipelines:
  - name: dct
    features: [{{name: dct-spectrum, params: {{size: 8}}}}]
    classifier: logistic-regression
tasks:
  - {{name: proc, type: binary, positive: [processed]}}
"""


MANIFEST_EXP = RUN_EXP.replace(
    '{{name: folder, params: {{root: "{root}"}}}}', '{{name: manifest, params: {{path: "{root}"}}}}'
)


def _run(root: Path, out: Path, capsys, text: str = RUN_EXP) -> tuple[int, dict, str]:
    exp = out.parent / f"{out.name}.yaml"
    exp.write_text(text.format(root=root))
    with deadline(300):
        code = main(["run", str(exp), "--out", str(out), "--quiet", "--json"])
    captured = capsys.readouterr()
    return code, json.loads(captured.out) if captured.out.strip() else {}, captured.err


def test_run_with_non_utf8_and_newline_names_in_the_test_split(tmp_path, capsys):
    root = make_class_folder(tmp_path / "imgs", n_per_photo=2)
    renamed: set[str] = set()
    for label in ("pristine", "processed"):  # every image gets a name that is not UTF-8
        for p in sorted((root / label).iterdir()):
            new = p.with_name(f"{p.stem}-{NON_UTF8}.png")
            p.rename(new)
            renamed.add(new.stem)
    # a name with a newline that would forge a line, and a corrupt file with such a name
    first = sorted((root / "pristine").iterdir())[0]
    first.rename(root / "pristine" / f"nl\n{first.name}")
    (root / "processed" / FORGING).write_bytes(b"not an image")
    code, res, err = _run(root, tmp_path / "out", capsys)
    assert code == 0, err[-3000:]
    out = tmp_path / "out"
    texts = {}
    for name in ("report.md", "report.html", "results.csv", "results.json", "predictions.csv"):
        texts[name] = (out / name).read_bytes().decode("utf-8")  # strict UTF-8
        assert "\udcff" not in texts[name]
    with open(out / "predictions.csv", newline="", encoding="utf-8") as fh:
        preds = list(csv.DictReader(fh))
    in_test = {unescape(r["item"]) for r in preds}
    assert len(in_test) >= 4
    # every test item is one of the non-UTF-8 names, read back exactly from its escaped form
    for item in in_test:
        label, _, stem = item.partition("/")
        assert stem.replace("nl\n", "") in renamed, item
    assert any(NON_UTF8 in i for i in in_test)
    for text in (texts["report.md"], texts["predictions.csv"], texts["results.csv"], err):
        assert not any(line.startswith("skipped forged") for line in text.splitlines())
    md_rows = [line for line in texts["report.md"].splitlines() if "evil" in line]
    assert md_rows == [
        f"| {root}/processed/evil\\nskipped forged.png | processed | cannot decode: not a "
        "recognised image format |"
    ]
    report("run, all names non-UTF-8, one with a newline", test_items=len(in_test))


# --------------------------------------------------------------------------- case 3 and 9: run


def test_run_skips_fifos_in_folder_and_manifest_datasets(tmp_path, capsys):
    root = make_class_folder(tmp_path / "imgs", n_per_photo=2)
    os.mkfifo(root / "pristine" / "pipe.png")
    code, res, err = _run(root, tmp_path / "a", capsys)
    assert code == 0, err[-2000:]
    reasons = {Path(s["path"]).name: s["reason"] for s in res["skipped"]}
    assert reasons == {"pipe.png": "not a regular file (a FIFO (named pipe)); not opened"}

    manifest = tmp_path / "m.csv"
    rows = [(p, p.parent.name) for p in sorted(root.rglob("*.png")) if not stat.S_ISFIFO(
        p.stat().st_mode)]  # fmt: skip
    with open(manifest, "w", newline="") as fh:
        csv.writer(fh).writerows([("path", "label"), *rows, (root / "pristine" / "pipe.png",
                                                              "pristine")])  # fmt: skip
    start = time.perf_counter()
    code, res, err = _run(manifest, tmp_path / "b", capsys, MANIFEST_EXP)
    took = time.perf_counter() - start
    assert code == 0, err[-2000:]
    assert {Path(s["path"]).name for s in res["skipped"]} == {"pipe.png"}
    report("run with a FIFO listed in a manifest", seconds=f"{took:.2f}")


def _deny(monkeypatch, locked: Path) -> None:
    """``os.scandir`` of ``locked`` raises PermissionError, as for a user without permission."""
    real = os.scandir

    def scandir(path=".", *args, **kwargs):
        if os.fspath(path) == str(locked):
            raise PermissionError(errno.EACCES, "Permission denied", str(locked))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(os, "scandir", scandir)


def test_unreadable_subfolder_extract_launder_run(tmp_path, crops, capsys, monkeypatch, vae_dir):
    src = tmp_path / "in"
    _save(src / "a", crops)
    _save(src / "locked", crops)
    locked = src / "locked"
    _deny(monkeypatch, locked)
    reason = "cannot list folder: Permission denied; its images are skipped"

    code = main(["extract", "--extractor", "dct-spectrum", "--out", str(tmp_path / "f.npz"),
                 str(src)])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 0
    assert _skip_lines(err) == [f"skipped {locked}: {reason}"]  # once, by path
    with np.load(tmp_path / "f.npz") as data:
        assert len(data["paths"]) == len(crops)

    code = main(["launder", "--quiet", "--json", "--launderer", "sd-vae", "--param",
                 f"weights={vae_dir}", str(src), str(tmp_path / "out")])  # fmt: skip
    captured = capsys.readouterr()
    summary = json.loads(captured.out)
    assert code == 0
    assert _skip_lines(captured.err) == [f"skipped {locked}: {reason}"]
    assert summary["unreadable"] == [{"path": str(locked), "reason": reason}]
    assert summary["written"] == len(crops)

    root = make_class_folder(tmp_path / "imgs", n_per_photo=2)
    sub = root / "pristine" / "sub"
    _save(sub, crops)
    _deny(monkeypatch, sub)
    code, res, err = _run(root, tmp_path / "run", capsys)
    assert code == 0, err[-2000:]
    assert res["skipped"] == [{"path": str(sub), "label": "pristine", "reason": reason}]


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv"), reason="needs root")
def test_unreadable_subfolder_as_another_user(crops):
    """The real thing: ``nobody`` runs ``fzoo extract`` on a tree with a mode-000 folder."""
    base = Path(tempfile.mkdtemp(prefix="fzoo-nobody-"))
    try:
        base.chmod(0o777)
        src = base / "in"
        _save(src / "a", crops)
        _save(src / "locked", crops)
        for p in [src, *src.rglob("*")]:
            p.chmod(0o755 if p.is_dir() else 0o644)
        (src / "locked").chmod(0)
        cmd = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", FZOO, "extract",
               "--extractor", "dct-spectrum", "--out", str(base / "f.npz"), str(src)]  # fmt: skip
        env = {**ENV, "HOME": str(base), "FZOO_CACHE_DIR": str(base / "cache")}
        start = time.perf_counter()
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180)
        took = time.perf_counter() - start
        assert done.returncode == 0, done.stderr[-2000:]
        assert _skip_lines(done.stderr) == [
            f"skipped {src}/locked: cannot list folder: Permission denied; its images are skipped"
        ]
        with np.load(base / "f.npz") as data:
            assert len(data["paths"]) == len(crops)
        report("extract as nobody, one mode-000 folder", seconds=f"{took:.2f}")
    finally:
        (base / "in" / "locked").chmod(0o755)
        shutil.rmtree(base)


# --------------------------------------------------------------------------- launder


@pytest.fixture(scope="module")
def vae_dir(tmp_path_factory) -> Path:
    from .test_sd_vae import build_tiny_kl

    folder = tmp_path_factory.mktemp("vae")
    build_tiny_kl(4).save_pretrained(folder)
    return folder


def _launder(vae_dir: Path, src: Path, dst: Path, capsys, *extra: str) -> tuple[int, dict, str]:
    with deadline(300):
        code = main(["launder", "--quiet", "--json", "--launderer", "sd-vae", "--param",
                     f"weights={vae_dir}", *extra, str(src), str(dst)])  # fmt: skip
    captured = capsys.readouterr()
    out = captured.out
    return code, json.loads(out) if out.strip().startswith("{") else {}, captured.err


def test_launder_names_survive_resume_and_forge_no_line(tmp_path, crops, capsys, vae_dir):
    src = tmp_path / "in"
    names = [f"{NON_UTF8}-a.png", "b\nskipped forged-b.png", "c.png"]
    _save(src, crops, names)
    (src / FORGING).write_bytes(b"not an image")
    code, summary, err = _launder(vae_dir, src, tmp_path / "out", capsys)
    assert code == 0 and summary["written"] == 3
    lines = err.splitlines()
    assert not any(line.startswith("skipped forged") for line in lines)
    assert _skip_lines(err) == [
        f"skipped {src}/evil\\nskipped forged.png: cannot decode: not a recognised image format"
    ]
    raw = (tmp_path / "out" / MANIFEST).read_bytes()
    assert b"\xff-a.png" in raw  # the name's own bytes
    rows = read_manifest(tmp_path / "out" / MANIFEST)
    assert sorted(r["source"] for r in rows) == sorted(str(src / n) for n in names)
    code, summary, err = _launder(vae_dir, src, tmp_path / "out", capsys)  # resume
    assert code == 0, err
    assert summary["skipped_existing"] == 3 and summary["written"] == 0
    assert summary["unlisted_existing"] == [] and summary["rows_recovered"] == 0
    assert read_manifest(tmp_path / "out" / MANIFEST) == rows  # read back identically


class FailOnDark(fzoo.Launderer):
    """Identity, but raises RuntimeError for a batch holding a dark image (mean under 0.4)."""

    name = "fail-on-dark"

    class Params(fzoo.Params):
        pass

    def launder(self, batch: torch.Tensor) -> torch.Tensor:
        if (batch.mean(dim=(1, 2, 3)) < 0.4).any():
            raise RuntimeError("cannot handle\nthis image")
        return batch.clone()


class FailPlugin:
    @staticmethod
    @fzoo.hookimpl
    def fzoo_register_launderers(register):
        register(FailOnDark)


def test_one_bad_image_does_not_end_launder(tmp_path, crops, capsys):
    src = tmp_path / "in"
    paths = _save(src, crops)
    os.mkfifo(src / "pipe.png")
    means = {p: float(np.asarray(Image.open(p)).mean() / 255) for p in paths}
    dark = {p for p, m in means.items() if m < 0.4}
    assert 0 < len(dark) < len(paths)
    register_plugin(FailPlugin, name="fail-launderer-test")
    try:
        with deadline(120):
            code = main(["launder", "--quiet", "--json", "--launderer", "fail-on-dark",
                         str(src), str(tmp_path / "out")])  # fmt: skip
    finally:
        unregister_plugin("fail-launderer-test")
    captured = capsys.readouterr()
    summary = json.loads(captured.out)
    assert code == 0
    assert summary["written"] == len(paths) - len(dark)
    assert sorted(_skip_lines(captured.err)) == sorted(
        [f"skipped {src}/pipe.png: not a regular file (a FIFO (named pipe)); not opened"]
        + [f"skipped {p}: RuntimeError: cannot handle\\nthis image" for p in dark]
    )
    assert {f["path"] for f in summary["failed"]} == {str(p) for p in dark}


def _noise(folder: Path, n: int, size: int = 64) -> None:
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True)
    for i in range(n):
        arr = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
        Image.fromarray(arr).save(folder / f"img{i:03d}.png")


def _pixels(folder: Path) -> dict[str, np.ndarray]:
    return {p.name: np.asarray(Image.open(p)) for p in sorted(folder.glob("*.png"))}


def _assert_complete(dst: Path, clean: Path) -> None:
    got, want = _pixels(dst), _pixels(clean)
    assert sorted(got) == sorted(want)
    for name in want:  # batching may move a value by one level (other oneDNN kernels)
        assert np.abs(got[name].astype(int) - want[name].astype(int)).max() <= 1, name
    listed = [r["output"] for r in read_manifest(dst / MANIFEST)]
    assert sorted(listed) == sorted(want) and len(listed) == len(set(listed))
    assert not list(dst.rglob(".tmp-*"))


def test_full_disk_while_appending_a_row_then_resume_loses_nothing(
    tmp_path, capsys, monkeypatch, vae_dir
):
    """ENOSPC in the middle of a manifest row (default batch size): the PNG stays without a
    row, the half row is cut back; the next run verifies and lists it, and removes .tmp-*."""
    import fzoo.launder_manifest as launder_mod  # where the manifest's writes are

    src = tmp_path / "in"
    _noise(src, 40)
    code, _, err = _launder(vae_dir, src, tmp_path / "clean", capsys)
    assert code == 0, err
    real = launder_mod._write_all
    calls = {"n": 0}

    def write_all(fd: int, data: bytes) -> None:
        calls["n"] += 1
        if calls["n"] == 12:  # a manifest append, after its PNG is in place
            os.write(fd, data[: len(data) // 2])
            raise OSError(errno.ENOSPC, "No space left on device")
        real(fd, data)

    monkeypatch.setattr(launder_mod, "_write_all", write_all)
    dst = tmp_path / "out"
    code, _, err = _launder(vae_dir, src, dst, capsys)
    assert code == 1
    assert "fzoo launder: OSError: [Errno 28] No space left on device" in err
    assert "Traceback" not in err
    monkeypatch.setattr(launder_mod, "_write_all", real)
    pngs = len(list(dst.glob("*.png")))
    rows = len(read_manifest(dst / MANIFEST))
    assert (dst / MANIFEST).read_bytes().endswith(b"\n")  # the half row was cut back
    assert pngs == rows + 1  # exactly the PNG whose row failed
    (dst / ".tmp-leftover.png").write_bytes(b"half a png")  # what a kill -9 leaves
    code, summary, err = _launder(vae_dir, src, dst, capsys)
    assert code == 0, err
    assert summary["rows_recovered"] == 1 and summary["stale_temporaries_removed"] == 1
    assert "1 output(s) without a manifest row verified and listed" in err
    _assert_complete(dst, tmp_path / "clean")
    report("launder ENOSPC mid-row (batch 16)", pngs=pngs, rows_before_resume=rows,
           rows_recovered=1)  # fmt: skip


def test_an_unlisted_png_that_does_not_verify_is_kept_and_reported(tmp_path, capsys, vae_dir):
    src = tmp_path / "in"
    _noise(src, 3)
    dst = tmp_path / "out"
    code, _, _ = _launder(vae_dir, src, dst, capsys)
    assert code == 0
    rows = read_manifest(dst / MANIFEST)
    (dst / MANIFEST).write_bytes(b"")  # lose every row
    bad = dst / "img001.png"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(bad)  # a wrong size
    code, summary, err = _launder(vae_dir, src, dst, capsys)
    assert code == 0
    assert summary["rows_recovered"] == 2
    assert "kept img001.png: it has no manifest row and its size 8x8 does not fit its source " \
           "64x64; not listed" in err  # fmt: skip
    listed = {r["output"] for r in read_manifest(dst / MANIFEST)}
    assert listed == {r["output"] for r in rows} - {"img001.png"}
    assert summary["unlisted_existing"] == ["img001.png"]


def test_kill_9_with_the_default_batch_size_then_resume_loses_nothing(tmp_path, vae_dir):
    src = tmp_path / "in"
    _noise(src, 240)
    cmd = [FZOO, "launder", "--quiet", "--launderer", "sd-vae", "--param", f"weights={vae_dir}"]
    clean = tmp_path / "clean"
    done = subprocess.run([*cmd, str(src), str(clean)], env=ENV, capture_output=True, text=True,
                          timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    dst = tmp_path / "out"
    proc = subprocess.Popen([*cmd, str(src), str(dst)], env=ENV, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)  # fmt: skip
    deadline_at = time.time() + 300
    while proc.poll() is None and time.time() < deadline_at:
        if dst.exists() and len(list(dst.glob("img*.png"))) >= 40:
            break
        time.sleep(0.005)
    assert proc.poll() is None, "launder finished before it could be killed; make it bigger"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    pngs = len(list(dst.glob("img*.png")))
    rows = len(read_manifest(dst / MANIFEST))
    tmps = len(list(dst.glob(".tmp-*")))
    assert 40 <= pngs < 240 and pngs - rows <= 1  # one row is lost at most, the one in flight
    start = time.perf_counter()
    again = subprocess.run([*cmd, "--json", str(src), str(dst)], env=ENV, capture_output=True,
                           text=True, timeout=600)  # fmt: skip
    took = time.perf_counter() - start
    assert again.returncode == 0, again.stderr[-2000:]
    summary = json.loads(again.stdout)
    assert summary["rows_recovered"] == pngs - rows
    assert summary["stale_temporaries_removed"] == tmps
    _assert_complete(dst, clean)
    report("launder kill -9 (default batch 16)", pngs_at_kill=pngs, rows_at_kill=rows,
           tmp_files=tmps, resume_s=f"{took:.1f}")  # fmt: skip


def test_png_write_failure_leaves_no_temporary(tmp_path, capsys, monkeypatch, vae_dir):
    src = tmp_path / "in"
    _noise(src, 6)
    from PIL import Image as PILImage

    real_save = PILImage.Image.save
    calls = {"n": 0}

    def save(self, fp, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            fp.write(b"\x89PNG half")
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(self, fp, *args, **kwargs)

    monkeypatch.setattr(PILImage.Image, "save", save)
    dst = tmp_path / "out"
    code, _, err = _launder(vae_dir, src, dst, capsys)
    monkeypatch.setattr(PILImage.Image, "save", real_save)
    assert code == 1 and "No space left on device" in err and "Traceback" not in err
    assert not list(dst.glob(".tmp-*"))
    assert len(list(dst.glob("*.png"))) == len(read_manifest(dst / MANIFEST)) == 2
    code, summary, err = _launder(vae_dir, src, dst, capsys)
    assert code == 0 and summary["written"] == 4 and summary["skipped_existing"] == 2
    assert len(read_manifest(dst / MANIFEST)) == 6


def test_read_manifest_keeps_non_utf8_bytes(tmp_path):
    path = tmp_path / MANIFEST
    header = b"source,output,launderer,fingerprint,psnr_db,notes\n"
    path.write_bytes(header + b'/in/\xff.png,\xff.png,x,fp,30.0,\n"/in/a\nb.png",a.png,x,fp,1,\n')
    rows = read_manifest(path)
    assert [r["source"] for r in rows] == [os.fsdecode(b"/in/\xff.png"), "/in/a\nb.png"]
    assert os.fsencode(rows[0]["output"]) == b"\xff.png"
