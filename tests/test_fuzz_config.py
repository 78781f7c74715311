"""Mutated experiment YAML through ``fzoo validate`` and ``fzoo run``: never a traceback.

Every mutation of a valid file (a key deleted or duplicated, a scalar of another type, random
unicode, the text cut anywhere, indentation swapped, an object-constructing tag, a misspelt
component) must end with exit status 0 (the mutation happened to keep it valid) or 2, and every
line on stderr must be ``FILE:LINE:COL: message`` or a single ``fzoo ...`` line.
"""

from __future__ import annotations

import contextlib
import io
import re
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fzoo.cli import main

from .conftest import make_class_folder

LOCATED = re.compile(r"^\S.*:\d+:\d+: \S")

BASE = """\
name: fuzz
seed: 3
data:
  dataset: {{name: folder, params: {{root: "{root}"}}}}
split: {{test_size: 0.34}}
conditions:
  - name: clean
  - name: jpeg
    perturbations: [jpeg-90]
pipelines:
  - name: dct
    features: [{{name: dct-spectrum, params: {{size: 8}}}}]
    classifier: logistic-regression
tasks:
  - {{name: proc, type: binary, positive: [processed]}}
"""

_ROOT = Path(tempfile.mkdtemp(prefix="fzoo-fuzz-"))
make_class_folder(_ROOT / "imgs", n_per_photo=1, size=48)
VALID = BASE.format(root=_ROOT / "imgs")
LINES = VALID.splitlines()
SCALARS = ["3", "-1", "0.5", "true", "null", "[]", "{}", "''", "[1, [2]]", "~", ".nan", "1e999"]
TAGS = [
    "!!python/object:os.system",
    "!!python/object/apply:os.system ['touch /tmp/fzoo-pwned']",
    "!!python/name:os.system",
    "!!binary aGVsbG8=",
    "!!set {a}",
    "!custom",
]


def _replace_value(line: str, value: str) -> str:
    key, sep, _ = line.partition(": ")
    return f"{key}{sep}{value}" if sep else f"{line} {value}"


@st.composite
def mutated(draw) -> str:
    lines = list(LINES)
    i = draw(st.integers(0, len(lines) - 1))
    kind = draw(
        st.sampled_from(
            ["delete", "duplicate", "scalar", "unicode", "truncate", "indent", "tag", "misspell"]
        )
    )
    if kind == "delete":
        del lines[i]
    elif kind == "duplicate":
        lines.insert(i, lines[i])
    elif kind == "scalar":
        lines[i] = _replace_value(lines[i], draw(st.sampled_from(SCALARS)))
    elif kind == "unicode":
        text = draw(st.text(min_size=1, max_size=8))
        pos = draw(st.integers(0, len(lines[i])))
        lines[i] = lines[i][:pos] + text + lines[i][pos:]
    elif kind == "truncate":
        text = "\n".join(lines)
        return text[: draw(st.integers(0, len(text)))]
    elif kind == "indent":
        lines[i] = draw(st.sampled_from(["", " ", "    ", "\t"])) + lines[i].lstrip()
    elif kind == "tag":
        lines[i] = _replace_value(lines[i], draw(st.sampled_from(TAGS)))
    else:
        for a, b in [("dct-spectrum", "dct-spectrun"), ("logistic-regression", "logistic"),
                     ("jpeg-90", "jpeg-9O"), ("folder", "folders")]:  # fmt: skip
            lines = [line.replace(a, b) for line in lines]
            if draw(st.booleans()):
                break
    return "\n".join(lines) + "\n"


def _call(argv: list[str]) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            code = main(argv)
        except SystemExit as exc:  # argparse
            code = int(exc.code or 0)
    return code, err.getvalue()


def _check_stderr(err: str, code: int) -> None:
    lines = [line for line in err.splitlines() if line.strip()]
    if code == 0:
        return
    assert lines, "exit status 2 without a message"
    assert "Traceback" not in err, err
    for line in lines:
        ok = LOCATED.match(line) or (len(lines) == 1 and line.startswith("fzoo"))
        assert ok, f"not FILE:LINE:COL: and not a one-line 'fzoo' reason: {line!r}"


def _write(text: str) -> Path:
    fd, name = tempfile.mkstemp(suffix=".yaml", dir=_ROOT)
    with open(fd, "w", encoding="utf-8", errors="surrogatepass") as fh:
        fh.write(text)
    return Path(name)


def test_the_base_file_is_valid():
    code, err = _call(["validate", str(_write(VALID))])
    assert code == 0, err


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated())
def test_validate_never_crashes(text):
    path = _write(text)
    code, err = _call(["validate", str(path)])
    assert code in (0, 2), (code, err)
    _check_stderr(err, code)
    if code == 2:
        assert all(str(path) in line for line in err.splitlines() if LOCATED.match(line))


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated())
def test_run_never_crashes(text):
    path = _write(text)
    out = Path(tempfile.mkdtemp(dir=_ROOT))
    code, err = _call(["run", str(path), "--out", str(out / "o"), "--quiet"])
    assert code in (0, 2), (code, err)
    _check_stderr(err, code)


def test_object_tags_are_rejected_with_a_location():
    marker = _ROOT / "pwned"
    for tag in TAGS[:3]:
        text = VALID.replace("seed: 3", f"seed: {tag.replace('/tmp/fzoo-pwned', str(marker))}")
        code, err = _call(["validate", str(_write(text))])
        assert code == 2 and LOCATED.match(err.splitlines()[0]), err
        assert ":2:" in err.splitlines()[0]
    assert not marker.exists()
