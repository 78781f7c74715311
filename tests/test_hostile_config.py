"""Hostile experiment files: every limit is checked before work starts, with a clear message.

Each case runs the real ``fzoo`` command in a subprocess with a time bound and, where memory is
the attack, reports the child's peak memory (``VmHWM``). A message must be
``FILE:LINE:COL: ...`` (or one ``fzoo ...`` line) naming the number found, the limit and how to
raise it; never a traceback. Names that would become paths outside ``--out`` are refused by the
schema, and the runner itself keeps every saved pipeline under ``--out`` even for a spec that
never went through validation.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fzoo.cli import main
from fzoo.config import load_experiment
from fzoo.experiment import run_experiment

from .conftest import make_class_folder

LOCATED = re.compile(r"^\S.*:\d+:\d+: \S")
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "FZOO_DISABLE_PLUGIN_AUTOLOAD": "1"}

# the fzoo CLI, reporting its own peak memory (kB) on the last stderr line
RUNNER = (  # VmHWM: ru_maxrss would carry over the forking pytest process's size
    "import sys\n"
    "from fzoo.cli import main\n"
    "try:\n"
    "    code = main(sys.argv[1:])\n"
    "finally:\n"
    "    status = open('/proc/self/status').read().split('VmHWM:')[1]\n"
    "    print(f'PEAK_KB {status.split()[0]}', file=sys.stderr)\n"
    "sys.exit(code)\n"
)


def fzoo(*args: str, timeout: float = 60, env: dict[str, str] | None = None):
    """Run ``fzoo ARGS``; returns (exit code, stderr without the peak line, seconds, peak MB)."""
    start = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-c", RUNNER, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**ENV, **(env or {})},
    )
    seconds = time.monotonic() - start
    lines = done.stderr.splitlines()
    peak = [int(line.split()[1]) for line in lines if line.startswith("PEAK_KB ")]
    err = "\n".join(line for line in lines if not line.startswith("PEAK_KB "))
    return done.returncode, err, seconds, (peak[0] / 1024 if peak else float("nan"))


def one_clear_error(err: str, *needles: str, max_lines: int = 1) -> str:
    """The located error line with every needle in it (the only line, unless ``max_lines``:
    a value that fits no member of a union gets one line per member)."""
    assert "Traceback" not in err, err[-3000:]
    lines = [line for line in err.splitlines() if line.strip()]
    assert 1 <= len(lines) <= max_lines, lines
    for line in lines:
        assert LOCATED.match(line) or (len(lines) == 1 and line.startswith("fzoo")), line
        assert len(line) < 600, "a message must not echo the input"
    hits = [line for line in lines if all(needle in line for needle in needles)]
    assert hits, (needles, lines)
    return hits[0]


BASE = """\
name: hostile
seed: 0
data:
  dataset: {{name: folder, params: {{root: "{root}"}}}}
pipelines:
  - name: dct
    features: [{{name: dct-spectrum, params: {{size: 8}}}}]
    classifier: logistic-regression
tasks:
  - {{name: proc, type: binary, positive: [processed]}}
"""


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    return make_class_folder(tmp_path_factory.mktemp("imgs") / "imgs", n_per_photo=1)


def write(folder: Path, text: str, name: str = "exp.yaml") -> Path:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


# --------------------------------------------------------------------------- YAML bombs


def billion_laughs() -> str:
    """The classic: nine levels of ten aliases, 10**9 strings once expanded (< 1 KB)."""
    lines = ['lol0: &lol0 "lol"']
    for k in range(1, 10):
        lines.append(f"lol{k}: &lol{k} [" + ",".join([f"*lol{k - 1}"] * 10) + "]")
    return "\n".join(lines) + "\n"


def test_billion_laughs_is_refused_at_once(tmp_path):
    path = write(tmp_path, billion_laughs())
    assert path.stat().st_size < 1000
    code, err, seconds, peak = fzoo("validate", str(path), timeout=30)
    assert code == 2
    line = one_clear_error(err, str(path), "limit 100000", "FZOO_MAX_YAML_VALUES")
    assert re.search(r"at least \d+", line)
    assert seconds < 10 and peak < 400, (seconds, peak)
    print(f"billion laughs: {seconds:.2f} s, {peak:.0f} MB peak: {line}")


def test_aliases_are_counted_and_their_depth_bounded(tmp_path):
    many = "a: &a 1\nb: [" + ", ".join(["*a"] * 1001) + "]\n"
    code, err, _, _ = fzoo("validate", str(write(tmp_path, many, "many.yaml")))
    assert code == 2
    one_clear_error(err, "too many aliases: 1001 (limit 1000)", "FZOO_MAX_YAML_ALIASES")
    deep = "l0: &l0 1\n" + "".join(f"l{k}: &l{k} [*l{k - 1}]\n" for k in range(1, 10))
    code, err, _, _ = fzoo("validate", str(write(tmp_path, deep, "deep.yaml")))
    assert code == 2
    one_clear_error(err, "aliases nested too deep", "9 (limit 8)", "FZOO_MAX_YAML_ALIAS_DEPTH")


def test_a_50_mb_file_is_refused_before_reading(tmp_path):
    path = tmp_path / "big.yaml"
    with open(path, "w") as fh:
        fh.write("name: big\ndescription: '")
        chunk = "x" * 1_000_000
        for _ in range(50):
            fh.write(chunk)
        fh.write("'\n")
    code, err, seconds, peak = fzoo("validate", str(path))
    assert code == 2
    line = one_clear_error(err, f"{path}:1:1:", "file too large", "limit 1000000")
    assert "FZOO_MAX_YAML_BYTES" in line
    assert seconds < 10 and peak < 400, (seconds, peak)
    print(f"50 MB YAML: {seconds:.2f} s, {peak:.0f} MB peak")


def test_the_size_limit_can_be_changed(tmp_path, images):
    path = write(tmp_path, BASE.format(root=images))
    code, err, _, _ = fzoo("validate", str(path), env={"FZOO_MAX_YAML_BYTES": "100"})
    assert code == 2
    one_clear_error(err, "limit 100)", "FZOO_MAX_YAML_BYTES")
    code, err, _, _ = fzoo("validate", str(path), env={"FZOO_MAX_YAML_BYTES": "lots"})
    assert code == 2
    one_clear_error(err, "$FZOO_MAX_YAML_BYTES", "positive integer")


def test_a_fifo_is_refused_without_hanging(tmp_path):
    fifo = tmp_path / "exp.yaml"
    os.mkfifo(fifo)
    code, err, seconds, _ = fzoo("validate", str(fifo), timeout=30)
    assert code == 2
    one_clear_error(err, "not a regular file")
    assert seconds < 10


def test_nesting_500_deep_is_a_clear_error(tmp_path):
    for name, text in {
        "flow": "a: " + "[" * 500 + "]" * 500 + "\n",
        "block": "".join("  " * k + f"k{k}:\n" for k in range(500)) + "  " * 500 + "v: 1\n",
    }.items():
        path = write(tmp_path, text, f"{name}.yaml")
        code, err, seconds, _ = fzoo("validate", str(path))
        assert code == 2, (name, err[-2000:])
        one_clear_error(err, "nesting too deep: 65 (limit 64)", "FZOO_MAX_YAML_DEPTH")
        assert seconds < 10


def test_a_5000_digit_integer_is_a_clear_error(tmp_path, images):
    path = write(tmp_path, BASE.format(root=images).replace("seed: 0", "seed: " + "7" * 5000))
    code, err, _, _ = fzoo("validate", str(path))
    assert code == 2
    one_clear_error(err, f"{path}:2:7:", "integer too long: 5000 digits (limit 100)")


# --------------------------------------------------------------------------- grids


def grid_text(root: Path, sizes: list[int]) -> str:
    keys = ["seed", "split.test_size", "pipelines.dct.classifier.params.C"]
    values = {
        "seed": lambda n: list(range(n)),
        "split.test_size": lambda n: [round(0.1 + 0.8 * i / n, 6) for i in range(n)],
        "pipelines.dct.classifier.params.C": lambda n: [round(1 + i, 3) for i in range(n)],
    }
    lines = [f"  {k}: {values[k](n)}" for k, n in zip(keys, sizes, strict=False)]
    return BASE.format(root=root) + "grid:\n" + "\n".join(lines) + "\n"


def test_a_million_cells_are_refused_instantly(tmp_path, images):
    path = write(tmp_path, grid_text(images, [100, 100, 100]))
    code, err, seconds, peak = fzoo("validate", str(path))
    assert code == 2
    one_clear_error(err, "grid: 1000000 cells (100 x 100 x 100)", "limit of 1000", "--max-cells")
    assert seconds < 15 and peak < 600, (seconds, peak)
    print(f"10^6 cells: {seconds:.2f} s, {peak:.0f} MB peak")


def test_ten_thousand_cells_need_max_cells(tmp_path, images):
    path = write(tmp_path, grid_text(images, [100, 100]))
    code, err, _, _ = fzoo("validate", str(path))
    assert code == 2
    one_clear_error(err, "grid: 10000 cells (100 x 100)", "--max-cells 10000")
    small = write(tmp_path, grid_text(images, [2, 2]), "small.yaml")
    code, err, _, _ = fzoo("validate", str(small), env={"FZOO_MAX_CELLS": "3"})
    assert code == 2
    one_clear_error(err, "grid: 4 cells (2 x 2)", "limit of 3")
    code, err, _, _ = fzoo("validate", str(small), "--max-cells", "4", env={"FZOO_MAX_CELLS": "3"})
    assert code == 0, err
    code, err, _, _ = fzoo("validate", str(small), "--max-cells", "0")
    assert code == 2 and "positive integer" in err


# --------------------------------------------------------------------------- value ranges


@pytest.mark.parametrize(
    ("old", "new", "needle"),
    [
        ("seed: 0", "seed: -5", "greater than or equal to 0"),
        ("seed: 0", "seed: 99999999999", "less than or equal to 4294967295"),
        ("{size: 8}", "{size: .inf}", "finite number"),
        ("{size: 8}", "{size: 100000}", "less than or equal to 1024"),
        (
            "classifier: logistic-regression",
            "classifier: {name: svm, params: {gamma: -1}}",
            "gamma",
        ),
        (
            "classifier: logistic-regression",
            "classifier: {name: mlp, params: {hidden_layer_sizes: [0]}}",
            "greater than or equal to 1",
        ),  # fmt: skip
    ],
)
def test_values_that_would_fail_at_run_time_are_refused(tmp_path, images, old, new, needle):
    text = BASE.format(root=images)
    assert old in text
    path = write(tmp_path, text.replace(old, new))
    code, err = _call(["validate", str(path)])
    assert code == 2
    line = one_clear_error(err, needle, max_lines=3)
    assert LOCATED.match(line) and line.startswith(str(path))


@pytest.mark.parametrize(
    ("perturbation", "needle"),
    [
        ("{name: blur, params: {sigma: .inf}}", "finite number"),
        ("{name: blur, params: {sigma: .nan}}", "finite number"),
        ("{name: resize, params: {scale: 1e6}}", "less than or equal to 16"),
        ("{name: noise, params: {sigma: 1e9}}", "less than or equal to 255"),
    ],
)
def test_perturbation_ranges(tmp_path, images, perturbation, needle):
    text = (
        BASE.format(root=images)
        + f"conditions:\n  - name: c\n    perturbations: [{perturbation}]\n"
    )
    path = write(tmp_path, text)
    code, err = _call(["validate", str(path)])
    assert code == 2
    one_clear_error(err, needle, f"{path}:13:")


def _call(argv: list[str]) -> tuple[int, str]:
    import contextlib
    import io

    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = main(argv)
    return code, err.getvalue()


def test_huge_values_are_not_echoed(tmp_path, images):
    text = BASE.format(root=images).replace("{size: 8}", "{size: '" + "9" * 3_000_000 + "'}")
    path = write(tmp_path, text)
    code, err, _, _ = fzoo("validate", str(path), env={"FZOO_MAX_YAML_BYTES": "10000000"})
    assert code == 2
    line = one_clear_error(err, "(3000002 chars)")
    assert len(err) < 600, len(err)
    assert line.startswith(str(path))


def test_invalid_yaml_in_set_and_param_is_one_line(tmp_path, images):
    path = write(tmp_path, BASE.format(root=images))
    code, err, _, _ = fzoo("validate", str(path), "--set", "seed=[1")
    assert code == 2
    one_clear_error(err, "fzoo: --set seed: not a valid YAML value")
    code, err, _, _ = fzoo("validate", str(path), "--set", "seed=" + "9" * 5000)
    assert code == 2
    one_clear_error(err, "integer too long")
    image = next(images.rglob("*.png"))
    out = tmp_path / "f.npz"
    for bad in ("size=[1", "size={a: *b}", "size=" + "1" * 5000):
        code, err, _, _ = fzoo(
            "extract", "--extractor", "dct-spectrum", "--param", bad, "--out", str(out), str(image)
        )
        assert code == 2, err
        one_clear_error(err, "--param size: not a valid YAML value")
    assert not out.exists()


# --------------------------------------------------------------------------- names and paths


@pytest.mark.parametrize("name", ["../../../X", "/tmp/evil", "a/b", "..", ".hidden", "a\\b"])
def test_names_that_would_be_paths_are_refused(tmp_path, images, name):
    text = BASE.format(root=images)
    for field in ("  - name: dct", "  - {name: proc"):
        path = write(tmp_path, text.replace(field, field.replace("dct", f'"{name}"').replace(
            "proc", f'"{name}"')))  # fmt: skip
        code, err = _call(["validate", str(path)])
        assert code == 2, err
        line = one_clear_error(err)
        assert "path separators" in line or "cannot start with '.'" in line, line


def _files(root: Path) -> set[Path]:
    return {p for p in root.rglob("*")}


def test_a_pipeline_named_like_a_path_stays_under_out(tmp_path, images):
    """Defence in depth: a spec that skipped validation still writes only under --out."""
    exp = load_experiment(write(tmp_path, BASE.format(root=images)))
    evil = ["../../../evil", str(tmp_path / "abs-evil")]
    cell = exp.cells[0]
    spec = cell.spec
    pipes = [spec.pipelines[0].model_copy(update={"name": n}) for n in evil]
    tasks = [spec.tasks[0].model_copy(update={"name": "../../task-evil"})]
    cell.spec = spec.model_copy(update={"pipelines": pipes, "tasks": tasks})
    exp.spec = cell.spec
    out = tmp_path / "a" / "b" / "out"
    before = _files(tmp_path)
    result = run_experiment(exp, out, cache_dir=tmp_path / "cache", progress=None)
    assert len([r for r in result.rows if "error" not in r]) == 2, result.errors
    new = _files(tmp_path) - before
    outside = [p for p in new if out not in p.parents and p != out and "cache" not in p.parts]
    assert not [p for p in outside if p not in (out.parent, out.parent.parent)], outside
    saved = [p.parent for p in tmp_path.rglob("pipeline.json")]
    assert len(saved) == 2 and all(p.parent == out / "pipelines" for p in saved), saved
    assert all("evil" in p.name and not p.name.startswith(".") for p in saved)


def test_a_symlinked_pipelines_folder_is_not_followed_outside(tmp_path, images):
    exp = load_experiment(write(tmp_path, BASE.format(root=images)))
    out = tmp_path / "out"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    out.mkdir()
    (out / "pipelines").symlink_to(elsewhere)
    result = run_experiment(exp, out, cache_dir=tmp_path / "cache", progress=None)
    assert list(elsewhere.iterdir()) == []
    (row,) = result.rows
    assert "resolves outside the output folder" in row["error"]


def test_run_refuses_before_any_work(tmp_path, images):
    """A refused file writes nothing: no --out folder, no cache."""
    path = write(tmp_path, grid_text(images, [100, 100]))
    out, cache = tmp_path / "out", tmp_path / "cache"
    code, err, seconds, _ = fzoo(
        "run", str(path), "--out", str(out), "--cache-dir", str(cache), "--quiet"
    )
    assert code == 2
    one_clear_error(err, "--max-cells 10000")
    assert not out.exists() and not cache.exists()
    assert seconds < 15


def test_documented_limits_match_the_code():
    from fzoo.config import LIMIT_ENV, Limits

    docs = (Path(__file__).resolve().parents[1] / "docs" / "yaml-reference.md").read_text()
    for name, env in LIMIT_ENV.items():
        assert env in docs, env
        assert (
            f"{getattr(Limits(), name):_}".replace("_", ",") in docs
            or str(getattr(Limits(), name)) in docs
        ), name
    assert "--max-cells" in docs and "timeout_s" in docs


def test_limits_do_not_reject_the_shipped_examples():
    root = Path(__file__).resolve().parents[1]
    for path in sorted((root / "docs" / "examples").glob("*.yaml")):
        text = path.read_text()
        assert len(text.encode()) < 1_000_000
    from fzoo.registry import experiments

    for name in experiments():
        load_experiment(name)
