"""docs/plugins.md is true: its Python blocks run in order and their components pass
``fzoo.testing``; the extractor it shows is the one ``fzoo new-plugin`` writes; its TOML is the
example plugin's; its YAML experiments validate (the learned-extractor one runs, saves a
pipeline with the fitted state, and ``fzoo detect`` loads it); the console outputs it quotes are
what fzoo prints; the built-in plugin table and the registration errors match the code."""

from __future__ import annotations

import ast
import json
import re
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

import fzoo
from fzoo import plugin_manager
from fzoo.cli import main
from fzoo.config import load_experiment
from fzoo.scaffold import plugin_files, plugin_names
from fzoo.testing import check_component

ROOT = Path(__file__).resolve().parent.parent
DOC = (ROOT / "docs" / "plugins.md").read_text(encoding="utf-8")
EXAMPLE = ROOT / "tests" / "plugins" / "fzoo-example-plugin"
FENCE = re.compile(r"^```(\w*)[ \t]*\n(.*?)^```", flags=re.DOTALL | re.MULTILINE)


def blocks(lang: str) -> list[str]:
    return [body for kind, body in FENCE.findall(DOC) if kind == lang]


def console(command: str) -> list[str]:
    """The lines the doc shows after ``$ COMMAND`` (up to the next ``$`` line)."""
    for body in blocks("console"):
        lines = body.splitlines()
        for i, line in enumerate(lines):
            if line == f"$ {command}":
                out = []
                for later in lines[i + 1 :]:
                    if later.startswith("$ "):
                        break
                    out.append(later)
                return out
    raise AssertionError(f"docs/plugins.md shows no `$ {command}`")


@pytest.fixture(scope="module")
def ns() -> dict[str, Any]:
    """Every Python block of the page, run in order in one namespace."""
    src = str(EXAMPLE / "src")
    sys.path.insert(0, src)  # `import fzoo_example`, as if the example plugin were installed
    try:
        namespace: dict[str, Any] = {"__name__": "plugins_doc"}
        for i, code in enumerate(blocks("python")):
            where = f"docs/plugins.md python block {i + 1}"
            exec(compile(code, where, "exec", dont_inherit=True), namespace)
        yield namespace
    finally:
        sys.path.remove(src)


def doc_components(ns: dict[str, Any]) -> dict[str, type[fzoo.Component]]:
    return {
        name: obj
        for name, obj in ns.items()
        if isinstance(obj, type)
        and issubclass(obj, fzoo.Component)
        and obj.__module__ == "plugins_doc"
    }


@pytest.fixture(scope="module")
def registered(ns: dict[str, Any]) -> Iterator[dict[str, type[fzoo.Component]]]:
    """The example plugin and the page's own components, registered as plugins would be."""
    import fzoo_example

    comps = doc_components(ns)

    class DocPlugin:
        @fzoo.hookimpl
        def fzoo_register_feature_extractors(self, register: Any) -> None:
            register(comps["LocalVarVariance"])
            register(comps["ColourCentroids"])

        @fzoo.hookimpl
        def fzoo_register_classifiers(self, register: Any) -> None:
            register(comps["KNN"])

    plugin_manager.register_plugin(fzoo_example, "example")
    try:
        plugin_manager.register_plugin(DocPlugin(), "plugins-doc")
    except BaseException:
        plugin_manager.unregister_plugin("example")
        raise
    try:
        yield comps
    finally:
        plugin_manager.unregister_plugin("plugins-doc")
        plugin_manager.unregister_plugin("example")


# --------------------------------------------------------------------------- code blocks


def test_python_components_pass_the_contract_suite(ns: dict[str, Any]) -> None:
    comps = doc_components(ns)
    assert sorted(comps) == ["ColourCentroids", "KNN", "LocalVarVariance"]
    for cls in comps.values():
        check_component(cls)  # raises ComponentCheckError naming the failed check
    assert "test_fzoo_contract" in ns  # the parametrize_with_checks example was applied


def test_the_learned_extractor_keeps_its_contract(ns: dict[str, Any], tmp_path: Path) -> None:
    import torch

    cls = ns["ColourCentroids"]
    dark, light = torch.full((1, 3, 8, 8), 0.2), torch.full((1, 3, 8, 8), 0.8)
    ext = cls().fit(iter([light, dark, light]), ["real", "fake", "real"])  # one pass
    assert ext.classes_ == ["fake", "real"]  # sorted class order
    feats = ext.extract(torch.cat([dark, light]))
    np.testing.assert_allclose(feats, [[0.0, np.sqrt(3 * 0.36)], [np.sqrt(3 * 0.36), 0.0]], 1e-6)
    ext.save_state(tmp_path)
    again = cls()
    again.load_state(tmp_path)
    np.testing.assert_array_equal(again.extract(dark), ext.extract(dark))


def test_the_extractor_shown_is_the_one_new_plugin_writes() -> None:
    written = plugin_files(plugin_names("fzoo-local-var"))["src/fzoo_local_var/local_variance.py"]
    assert written in blocks("python")


def test_the_hooks_shown_are_the_example_plugins() -> None:
    def functions(code: str) -> dict[str, str]:
        return {
            node.name: ast.dump(node)
            for node in ast.parse(code).body
            if isinstance(node, ast.FunctionDef)
        }

    shown = functions(next(b for b in blocks("python") if "fzoo_register_presets" in b))
    real = functions((EXAMPLE / "src" / "fzoo_example" / "__init__.py").read_text("utf-8"))
    assert shown and shown == real


def test_the_toml_shown_is_the_example_plugins() -> None:
    (shown,) = blocks("toml")
    assert tomllib.loads(shown) == tomllib.loads((EXAMPLE / "pyproject.toml").read_text("utf-8"))


def test_yaml_experiments_validate(registered: Any, tmp_path: Path) -> None:
    experiments = [b for b in blocks("yaml") if "pipelines:" in b]
    assert len(experiments) == 2
    for i, text in enumerate(experiments):
        path = tmp_path / f"doc-{i}.yaml"
        path.write_text(text, encoding="utf-8")
        assert load_experiment(path).cells


def test_the_learned_experiment_runs_and_detect_loads_its_state(
    registered: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (text,) = [b for b in blocks("yaml") if "colour-centroids" in b]
    path = tmp_path / "centroids.yaml"
    path.write_text(text, encoding="utf-8")
    out = tmp_path / "out"
    args = ["run", str(path), "--out", str(out), "--cache-dir", str(tmp_path / "c"), "--quiet"]
    assert main(args) == 0
    saved = out / "pipelines" / "centroids-lr--pristine-vs-processed"
    state = saved / "extractors" / "0"
    assert (state / "COMPLETE").exists()
    centroids = json.loads((state / "colour_centroids.json").read_text(encoding="utf-8"))
    assert centroids["classes"] == ["pristine", "processed"]
    photo = tmp_path / "photo.png"
    Image.fromarray(np.full((32, 32, 3), 128, np.uint8)).save(photo)
    capsys.readouterr()
    assert main(["detect", "--pipeline", str(saved), str(photo)]) == 0
    row = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert set(row["probabilities"]) == {"not-processed", "processed"}


# --------------------------------------------------------------------------- console output


def test_new_plugin_output(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["new-plugin", "fzoo-local-var", "--out", "."]) == 0
    assert capsys.readouterr().out.splitlines() == console("fzoo new-plugin fzoo-local-var --out .")


def test_extract_refusal_output(registered: Any, capsys: pytest.CaptureFixture[str]) -> None:
    command = "fzoo extract --extractor colour-centroids --out feats.npz photos/"
    assert main(command.split()[1:]) == 2
    assert capsys.readouterr().err.splitlines() == console(command)


def test_list_output(registered: Any, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list", "feature_extractor"]) == 0
    printed = capsys.readouterr().out.splitlines()
    shown = [line for line in console("fzoo list feature_extractor") if line.strip() != "..."]
    assert shown and all(line in printed for line in shown), set(shown) - set(printed)


def test_plugins_output(registered: Any, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plugins", "--strict"]) == 0
    printed = capsys.readouterr().out.splitlines()
    shown = console("fzoo plugins --strict")
    start = printed.index("example (registered at runtime)")
    assert printed[start + 1 : start + 6] == shown[2:]  # installed, the source is the dist


def test_validate_output(registered: Any, tmp_path: Path, capsys: Any) -> None:
    (text,) = [b for b in blocks("yaml") if "third-party-plugin" in b]
    bad = tmp_path / "bad.yaml"
    bad.write_text(text.replace("name: color-stats,", "name: colour-stats,"), encoding="utf-8")
    assert main(["validate", str(bad)]) == 2
    (shown,) = console("fzoo validate bad.yaml")
    printed = capsys.readouterr().err.splitlines()[0]
    head = shown.removeprefix("bad.yaml").removesuffix(" ...")
    assert printed.startswith(f"{bad}{head}"), printed


# --------------------------------------------------------------------------- tables


def test_builtin_plugin_table_matches_the_registry() -> None:
    section = DOC[DOC.index("## 9.") : DOC.index("## 10.")]
    rows = re.findall(r"^\| `(\w+)` \| (.+) \|$", section, flags=re.MULTILINE)
    names = [name for name, _ in rows]
    assert names == [m.rsplit(".", 1)[-1] for m in plugin_manager.DEFAULT_PLUGINS]
    reg = plugin_manager.get_registry()
    for name, what in rows:
        listed = set(re.findall(r"`([^`]+)`", what))
        info = reg.plugins[name]
        real = {c for names in info.components.values() for c in names} | set(info.presets)
        assert listed == real, name


def test_registration_errors_in_the_table_are_the_real_ones() -> None:
    section = DOC[DOC.index("## 11.") : DOC.index("## Checklist")]

    class NoName(fzoo.Perturbation):
        """x"""

        class Params(fzoo.Params):
            pass

        def apply(self, batch: Any, rng: Any) -> Any:
            return batch

    class NoParams(fzoo.FeatureExtractor):
        """x"""

        name = "no-params"

        def extract(self, batch: Any) -> Any:
            return np.zeros((len(batch), 1), np.float32)

    class NoExtract(fzoo.FeatureExtractor):
        """x"""

        name = "no-extract"

        class Params(fzoo.Params):
            pass

    class Stateless(fzoo.FeatureExtractor):
        """x"""

        name = "stateless"
        requires_fit = True

        class Params(fzoo.Params):
            pass

        def extract(self, batch: Any) -> Any:
            return np.zeros((len(batch), 1), np.float32)

        def fit(self, batches: Any, labels: Any) -> Any:
            return self

    from fzoo.contracts import ComponentFailure, class_problems

    for cls, kind in [
        (NoName, "perturbation"),
        (NoParams, "feature_extractor"),
        (NoExtract, "feature_extractor"),
        (Stateless, "feature_extractor"),
    ]:
        message = ComponentFailure.of(cls, kind, class_problems(cls, kind)).message()
        after_line = message.split(": ", 1)[1]  # FILE:LINE: then the text the table shows
        problem = after_line.split("): ", 1)[-1] if "(" in after_line else after_line
        assert problem.split(": ", 1)[-1] in section, message

    class Broken:
        @fzoo.hookimpl
        def fzoo_register_feature_extractors(self, register: Any) -> None:
            register(NoExtract)

    plugin_manager.register_plugin(Broken(), "plugins-doc-broken")
    try:
        reg = plugin_manager.get_registry()
        with pytest.raises(LookupError) as info:
            reg.get("feature_extractor", "no-extract")
    finally:
        plugin_manager.unregister_plugin("plugins-doc-broken")
    text = str(info.value)
    assert text.startswith("feature extractor 'no-extract' is not usable: ")
    assert "feature extractor 'no-extract' is not usable: FILE:LINE: feature extractor" in section
    assert text.endswith("no extract() method (override fzoo.FeatureExtractor's)")


def test_links_within_the_page_have_their_heading() -> None:
    def slug(heading: str) -> str:  # GitHub's anchors: lower case, punctuation dropped
        text = heading.strip().lower().replace("`", "")
        return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")

    headings = {slug(h) for h in re.findall(r"^#+ (.+)$", DOC, flags=re.MULTILINE)}
    links = re.findall(r"\]\(#([^)]+)\)", DOC)
    assert links and set(links) <= headings, set(links) - headings
