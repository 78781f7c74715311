"""Hostile inputs through every command: a message per bad file, nothing else changes.

For ``fzoo extract``, ``detect``, ``launder`` and ``run``, one run sees the good files only and
one sees the good files plus every case of :mod:`tests.hostile`. The second must complete, name
each refused file with its reason, and give every good file exactly the result of the first
(feature rows, laundered PNG bytes, detect JSON lines, results.csv/predictions.csv).

``fzoo run`` trains on what it can decode, so hostile files that *decode* (CMYK, 16-bit,
palette, ...) legitimately change a model. The run comparison therefore uses the cases that are
refused (``outcome == "skip"``, and the images too small for the features): with those added,
results.csv and predictions.csv must be byte-identical. A third run with every case checks that
the decodable ones are used and the others reported.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fzoo.cli import main

from .conftest import make_class_folder, photo_crops
from .hostile import LOOPS, NON_UTF8, SYMLINKS, Case, write_hostile


@pytest.fixture(scope="module")
def hostile(tmp_path_factory) -> tuple[Path, dict[str, Case]]:
    folder = tmp_path_factory.mktemp("hostile")
    return folder, write_hostile(folder)


@pytest.fixture(scope="module")
def good(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("good")
    for name, arr in photo_crops(1, 64, photos=("astronaut", "chelsea", "rocket")).items():
        Image.fromarray(arr).save(folder / f"{name}.png")
    return folder


def _copy_case(src: Path, dst: Path, name: str) -> None:
    s, d = src / name, dst / name
    if s.is_symlink():
        os.symlink(os.readlink(s), d)
    else:
        shutil.copyfile(s, d)
        os.chmod(d, s.stat().st_mode & 0o777)


def _refused(cases: dict[str, Case], *, small: bool) -> dict[str, Case]:
    """Cases a command must refuse: undecodable ones, plus the small ones when ``small``."""
    return {n: c for n, c in cases.items() if c.outcome == "skip" or (small and c.small)}


def _skip_lines(err: str) -> dict[str, str]:
    """``skipped PATH: REASON`` lines of stderr: file name -> reason."""
    out = {}
    for line in err.splitlines():
        if line.startswith("skipped "):
            path, _, reason = line[len("skipped ") :].partition(": ")
            out[Path(path).name] = reason
    return out


def _assert_reported(reported: dict[str, str], cases: dict[str, Case], exclude=frozenset()):
    for name, case in cases.items():
        if name in exclude:
            continue
        assert name in reported, f"{name}: no per-file message (got {sorted(reported)})"
        assert case.reason in reported[name], (name, reported[name])
        assert "\n" not in reported[name]


# --------------------------------------------------------------------------- extract


def _extract(paths: list[Path], out: Path, capsys, extractor=("dct-spectrum", "size=8")):
    code = main(["extract", "--extractor", extractor[0], "--param", extractor[1],
                 "--out", str(out), *map(str, paths)])  # fmt: skip
    captured = capsys.readouterr()
    rows = {}
    if out.exists():
        with np.load(out) as data:
            rows = dict(zip(map(str, data["paths"]), data["features"], strict=True))
    return code, rows, captured.err


def test_extract(hostile, good, tmp_path, capsys):
    folder, cases = hostile
    code_a, rows_a, _ = _extract([good], tmp_path / "a.npz", capsys)
    code_b, rows_b, err = _extract([good, folder], tmp_path / "b.npz", capsys)
    assert code_a == 0 and code_b == 0
    refused = _refused(cases, small=False)  # dct-spectrum pads small images
    _assert_reported(_skip_lines(err), refused, exclude=SYMLINKS)
    for path, feats in rows_a.items():  # every good file: present and equal
        np.testing.assert_array_equal(rows_b[path], feats)
    got = {Path(p).name for p in rows_b}
    assert got == set(rows_a and {Path(p).name for p in rows_a}) | {
        n for n, c in cases.items() if c.outcome == "ok"
    }
    assert all(np.isfinite(f).all() for f in rows_b.values())


def test_extract_reports_symlink_loops_and_dangling_links(hostile, tmp_path, capsys):
    folder, cases = hostile
    _, _, err = _extract([folder], tmp_path / "b.npz", capsys)
    _assert_reported(_skip_lines(err), {n: cases[n] for n in SYMLINKS})


def test_extract_too_small_for_the_extractor_is_skipped(hostile, good, tmp_path, capsys):
    folder, cases = hostile
    smalls = [folder / n for n, c in cases.items() if c.small]
    code, rows, err = _extract([good, *smalls], tmp_path / "s.npz", capsys, ("fft-spectrum",
                               "bins=16"))  # fmt: skip
    assert code == 0 and len(rows) == len(list(good.iterdir()))
    assert {Path(p.name).name for p in smalls} <= set(_skip_lines(err))


# --------------------------------------------------------------------------- detect


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("train")
    root = make_class_folder(base / "imgs", n_per_photo=2)
    exp = base / "exp.yaml"
    exp.write_text(
        f"""\
name: hostile-detect
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
    assert main(["run", str(exp), "--out", str(base / "out"), "--quiet"]) == 0
    return base / "out" / "pipelines" / "dct--proc"


def _detect(pipe: Path, paths: list[Path], capsys) -> tuple[int, dict[str, dict]]:
    code = main(["detect", "--pipeline", str(pipe), *map(str, paths)])
    out = capsys.readouterr().out
    records = [json.loads(line) for line in out.splitlines()]
    return code, {r["path"]: r for r in records}


def test_detect(hostile, good, pipeline, capsys):
    folder, cases = hostile
    code_a, a = _detect(pipeline, [good], capsys)
    code_b, b = _detect(pipeline, [good, folder], capsys)
    assert code_a == 0
    assert code_b == 1  # documented: 1 when some file could not be read, every line printed
    for path, record in a.items():
        assert b[path] == record  # the good files: identical JSON
    by_name = {Path(p).name: r for p, r in b.items()}
    for name, case in cases.items():
        if name in SYMLINKS:
            continue
        assert name in by_name, name
        if case.outcome == "skip":
            assert case.reason in by_name[name]["error"], (name, by_name[name])
        else:
            assert abs(sum(by_name[name]["probabilities"].values()) - 1) < 1e-5
    assert "notes" in by_name["cmyk.jpg"] and "notes" in by_name["exif-rotated.jpg"]


def test_detect_reports_symlink_loops_and_dangling_links(hostile, pipeline, capsys):
    folder, _ = hostile
    _, b = _detect(pipeline, [folder], capsys)
    assert {Path(p).name for p in b} >= SYMLINKS


# --------------------------------------------------------------------------- launder


@pytest.fixture(scope="module")
def vae_weights(tmp_path_factory) -> Path:
    from .test_sd_vae import build_tiny_kl

    folder = tmp_path_factory.mktemp("vae")
    build_tiny_kl(4).save_pretrained(folder)
    return folder


def _launder(src: Path, dst: Path, weights: Path, capsys) -> tuple[int, dict, str]:
    code = main(["launder", "--quiet", "--json", "--launderer", "sd-vae",
                 "--param", f"weights={weights}", "--param", "batch_size=1",
                 str(src), str(dst)])  # fmt: skip
    captured = capsys.readouterr()
    out = captured.out
    return code, json.loads(out) if out.strip().startswith("{") else {}, captured.err


def test_launder(hostile, good, vae_weights, tmp_path, capsys):
    folder, cases = hostile
    in_a, in_b = tmp_path / "in-a", tmp_path / "in-b"
    shutil.copytree(good, in_a)
    shutil.copytree(good, in_b)
    cases = {n: c for n, c in cases.items() if n != NON_UTF8}  # covered by its own test below
    for name in cases:
        _copy_case(folder, in_b, name)
    before = {p: (p.lstat().st_mtime_ns, p.read_bytes() if p.is_file() else None)
              for p in in_b.iterdir()}  # fmt: skip
    code_a, sum_a, _ = _launder(in_a, tmp_path / "out-a", vae_weights, capsys)
    code_b, sum_b, err = _launder(in_b, tmp_path / "out-b", vae_weights, capsys)
    assert code_a == 0 and code_b == 0, err[-2000:]
    refused = _refused(cases, small=True)  # the VAE crops to multiples of 8 by default
    reported = _skip_lines(err)
    _assert_reported(reported, {n: c for n, c in refused.items() if not c.small}, SYMLINKS)
    for name, case in refused.items():
        if case.small:
            assert "smaller than the multiple" in reported[name], (name, reported.get(name))
    listed = {Path(u["path"]).name for u in sum_b["unreadable"] + sum_b["failed"]}
    assert set(refused) - SYMLINKS <= listed
    for p in good.iterdir():  # every good file: the same PNG bytes
        out = p.relative_to(good).with_suffix(".png")
        assert (tmp_path / "out-b" / out).read_bytes() == (tmp_path / "out-a" / out).read_bytes()
    with open(tmp_path / "out-b" / "manifest.csv", newline="", encoding="utf-8") as fh:
        outputs = [r["output"] for r in csv.DictReader(fh)]
    assert len(outputs) == len(set(outputs)) == sum_b["written"]
    expected_ok = {n for n, c in cases.items() if c.outcome == "ok" and not c.small}
    assert sum_b["written"] == len(list(good.iterdir())) + len(expected_ok)
    after = {p: (p.lstat().st_mtime_ns, p.read_bytes() if p.is_file() else None)
             for p in in_b.iterdir()}  # fmt: skip
    assert after == before  # inputs untouched


def test_launder_reports_symlink_loops_and_dangling_links(hostile, vae_weights, tmp_path, capsys):
    folder, cases = hostile
    src = tmp_path / "in"
    src.mkdir()
    for name in (*SYMLINKS, "png-named.jpg"):
        _copy_case(folder, src, name)
    _, _, err = _launder(src, tmp_path / "out", vae_weights, capsys)
    _assert_reported(_skip_lines(err), {n: cases[n] for n in SYMLINKS})


def test_launder_non_utf8_file_name(hostile, vae_weights, tmp_path, capsys):
    folder, _ = hostile
    src = tmp_path / "in"
    src.mkdir()
    _copy_case(folder, src, NON_UTF8)
    code, summary, _ = _launder(src, tmp_path / "out", vae_weights, capsys)
    assert code == 0 and summary["written"] == 1


# --------------------------------------------------------------------------- run


RUN_EXP = """\
name: hostile-run
seed: 1
data:
  dataset: {{name: folder, params: {{root: "{root}"}}}}
# the hostile set holds one picture in several encodings (palette/RGBA/misnamed): the same
# pixels under different names, which the split check would rightly refuse as a leak
split: {{test_size: 0.34, allow_duplicates: true}}
pipelines:
  - name: dct
    features: [{{name: dct-spectrum, params: {{size: 8}}}}]
    classifier: logistic-regression
  - name: fft
    features: [{{name: fft-spectrum, params: {{bins: 16}}}}]
    classifier: logistic-regression
tasks:
  - {{name: proc, type: binary, positive: [processed]}}
"""


def _run(root: Path, out: Path, capsys) -> tuple[int, dict]:
    exp = out.parent / f"{out.name}.yaml"
    exp.write_text(RUN_EXP.format(root=root))
    code = main(["run", str(exp), "--out", str(out), "--quiet", "--json"])
    return code, json.loads(capsys.readouterr().out)


@pytest.fixture(scope="module")
def class_root(tmp_path_factory) -> Path:
    return make_class_folder(tmp_path_factory.mktemp("classes") / "imgs", n_per_photo=2)


def test_run_refused_files_change_nothing(hostile, class_root, tmp_path, capsys):
    folder, cases = hostile
    root_b = tmp_path / "imgs-b"
    shutil.copytree(class_root, root_b)
    refused = {n: c for n, c in cases.items() if c.outcome == "skip" and n not in LOOPS}
    for name in refused:
        _copy_case(folder, root_b / "pristine", name)
    code_a, a = _run(class_root, tmp_path / "a", capsys)
    code_b, b = _run(root_b, tmp_path / "b", capsys)
    assert code_a == 0 and code_b == 0
    reported = {Path(s["path"]).name: s["reason"] for s in b["skipped"]}
    _assert_reported(reported, refused)  # symlinks included: the folder dataset reports them
    for name in ("results.csv", "predictions.csv"):
        assert (tmp_path / "a" / name).read_text() == (tmp_path / "b" / name).read_text(), name


def test_run_with_every_case(hostile, class_root, tmp_path, capsys):
    folder, cases = hostile
    root = tmp_path / "imgs"
    shutil.copytree(class_root, root)
    cases = {n: c for n, c in cases.items() if n not in LOOPS}  # covered by its own test below
    for name in cases:
        _copy_case(folder, root / "pristine", name)
    code, res = _run(root, tmp_path / "out", capsys)
    assert code == 0
    assert {(r["pipeline"], r["condition"]) for r in res["rows"] if "error" not in r} == {
        ("dct", "clean"),
        ("fft", "clean"),
    }
    reported: dict[str, list[str]] = {}
    for s in res["skipped"]:
        reported.setdefault(Path(s["path"]).name, []).append(s["reason"])
    for name, case in cases.items():
        if case.outcome == "skip":
            assert any(case.reason in r for r in reported.get(name, [])), (name, reported)
        elif case.small:  # too small for fft-spectrum: skipped for that pipeline, with why
            assert any("too small" in r for r in reported.get(name, [])), (name, reported)
        else:
            assert name not in reported, (name, reported[name])


def test_run_reports_symlink_loops(hostile, class_root, tmp_path, capsys):
    folder, cases = hostile
    root = tmp_path / "imgs"
    shutil.copytree(class_root, root)
    for name in LOOPS:
        _copy_case(folder, root / "pristine", name)
    code, res = _run(root, tmp_path / "out", capsys)
    assert code == 0
    assert {Path(s["path"]).name for s in res["skipped"]} >= LOOPS
