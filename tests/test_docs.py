"""The documentation's experiments are real: every YAML in docs/examples/ and the README's example
validate (both phases: structure, then component names and parameters). They are not run here."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from fzoo.config import load_experiment

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT / "docs" / "examples").glob("*.yaml"))


def test_there_are_examples() -> None:
    assert EXAMPLES, "docs/examples/ holds no YAML files"


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_validates(path: Path) -> None:
    experiment = load_experiment(path)
    assert experiment.cells


def readme_yaml() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    match = re.search(r"^```ya?ml[ \t]*\n(.*?)^```", text, flags=re.DOTALL | re.MULTILINE)
    assert match is not None, "README.md has no ```yaml fenced block"
    return match.group(1)


def test_readme_example_validates(tmp_path: Path) -> None:
    path = tmp_path / "readme-example.yaml"
    path.write_text(readme_yaml(), encoding="utf-8")
    experiment = load_experiment(path)
    assert experiment.cells
