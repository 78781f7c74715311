"""Shared pipelines are untrusted input: saved classifiers load only what fzoo writes.

The case that motivated this file (issue #13, case 1): a tampered ``estimator.skops`` whose
``Pipeline.memory`` is a reduce-style node calling ``builtins.exec``. The old loader trusted every
``builtins.*`` type, ran the payload, kept the real estimator and printed normal scores. Here each
payload would write a marker file if it ran; every test asserts it never exists.
"""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fzoo import cli
from fzoo.images import write_png as save_png
from fzoo.persist import UntrustedStateError, audit_skops, load_estimator, save_estimator
from fzoo.pipeline import SavedPipeline, load_pipeline, save_pipeline
from fzoo.plugin_manager import get_registry

from .conftest import photo_crops

CLASSIFIERS = ["logistic-regression", "svm", "random-forest", "gradient-boosting", "mlp"]


def _data(n_classes: int, n: int = 60, d: int = 4) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(n_classes)
    y = np.array((["pristine", "laundered", "synthetic"][:n_classes] * n)[:n])
    X = rng.normal(size=(n, d)).astype(np.float32) + (y == "laundered")[:, None]
    return X, y


@pytest.mark.parametrize(
    ("name", "n_classes"), [(c, k) for c in CLASSIFIERS for k in (2, 3)] + [("two-stage", 3)]
)
def test_every_builtin_classifier_round_trips_through_the_allow_list(
    name: str, n_classes: int, tmp_path: Path
) -> None:
    cls = get_registry().get("classifier", name)
    X, y = _data(n_classes)
    clf = cls().fit(X, y)
    clf.save_state(tmp_path)
    again = cls()
    again.load_state(tmp_path)
    np.testing.assert_array_equal(again.predict_proba(X), clf.predict_proba(X))
    assert list(again.classes_) == list(clf.classes_)
    for skops_file in tmp_path.rglob("*.skops"):  # what is still skops passes the audit
        assert audit_skops(skops_file)


def test_logistic_regression_state_is_json_and_safetensors(tmp_path: Path) -> None:
    X, y = _data(3)
    get_registry().get("classifier", "logistic-regression")().fit(X, y).save_state(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "logistic_regression.json",
        "logistic_regression.safetensors",
    ]
    assert json.loads((tmp_path / "logistic_regression.json").read_text())["classes"] == [
        "laundered",
        "pristine",
        "synthetic",
    ]


# --- hostile skops files -----------------------------------------------------------------------


def _genuine_skops(path: Path) -> None:
    """A real fitted estimator as fzoo's base Classifier saves it (scaler + SVC pipeline)."""
    X, y = _data(2)
    save_estimator(get_registry().get("classifier", "svm")().fit(X, y).estimator_, path)


def _tamper(path: Path, edit: Any) -> None:
    """Rewrite ``schema.json`` inside the skops archive at ``path`` with ``edit(schema)``."""
    src = zipfile.ZipFile(io.BytesIO(path.read_bytes()))
    schema = json.loads(src.read("schema.json"))
    edit(schema)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as dst:
        for info in src.infolist():
            data = json.dumps(schema) if info.filename == "schema.json" else src.read(info)
            dst.writestr(info.filename, data)
    path.write_bytes(out.getvalue())


def _json_str(text: str) -> dict[str, Any]:
    return {
        "__class__": "str",
        "__module__": "builtins",
        "__loader__": "JsonNode",
        "content": json.dumps(text),
        "is_json": True,
    }


def _payloads(marker: Path) -> dict[str, dict[str, Any]]:
    code = f"open({str(marker)!r}, 'w').write('ran')"
    args = {"__class__": "tuple", "__module__": "builtins", "__loader__": "TupleNode"}
    return {
        "reduce-exec": {  # the stealth payload of the issue: exec(code) returns None = memory
            "__class__": "exec",
            "__module__": "builtins",
            "__loader__": "ConstructorFromReduceNode",
            "content": {**args, "content": [_json_str(code)]},
        },
        "function": {"__class__": "system", "__module__": "os", "__loader__": "FunctionNode"},
        "type-exec": {"__class__": "exec", "__module__": "builtins", "__loader__": "TypeNode"},
        "object-outside-list": {
            "__class__": "Popen",
            "__module__": "subprocess",
            "__loader__": "ObjectNode",
            "content": None,
        },
        "json-with-callable-type": {**_json_str(code), "__class__": "exec"},
        "unknown-loader": {"__class__": "x", "__module__": "y", "__loader__": "EvilNode"},
        "method": {"__class__": "system", "__module__": "os", "__loader__": "MethodNode"},
        "operator": {
            "__class__": "attrgetter",
            "__module__": "operator",
            "__loader__": "OperatorFuncNode",
        },
    }


@pytest.mark.parametrize(
    "payload",
    [
        "reduce-exec",
        "function",
        "type-exec",
        "object-outside-list",
        "json-with-callable-type",
        "unknown-loader",
        "method",
        "operator",
    ],
)
def test_tampered_skops_is_refused_without_running_anything(payload: str, tmp_path: Path) -> None:
    marker = tmp_path / "MARKER"
    path = tmp_path / "estimator.skops"
    _genuine_skops(path)
    node = _payloads(marker)[payload]

    def edit(schema: dict[str, Any]) -> None:
        schema["content"]["content"]["memory"] = node

    _tamper(path, edit)
    with pytest.raises(UntrustedStateError) as info:
        load_estimator(path)
    message = str(info.value)
    assert message.startswith(str(path)) and "\n" not in message
    assert "refusing" in message
    assert not marker.exists()


def test_the_stealth_payload_is_refused_by_fzoo_detect(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """End to end: a shared pipeline whose classifier was tampered; detect exits 2, one line."""
    marker = tmp_path / "MARKER"
    pipe_dir = tmp_path / "pipe"
    reg = get_registry()
    ext = reg.get("feature_extractor", "dct-spectrum")(size=4)
    crops = photo_crops(n_per_photo=2, size=32)
    import torch

    batch = torch.from_numpy(np.stack(list(crops.values()))).permute(0, 3, 1, 2).float() / 255
    X = ext.extract(batch)
    y = np.array(["pristine", "synthetic"] * (len(X) // 2) + ["pristine"] * (len(X) % 2))
    clf = reg.get("classifier", "svm")().fit(X, y)
    saved = SavedPipeline(
        pipeline="dct-svm",
        task="t",
        features=[{"name": "dct-spectrum", "params": {"size": 4}}],
        feature_fingerprints=[ext.fingerprint()],
        classifier={"name": "svm", "params": {}},
        classes=["pristine", "synthetic"],
        positive="synthetic",
        threshold=0.5,
        n_train=len(X),
    )
    save_pipeline(pipe_dir, saved, clf)
    image = tmp_path / "img.png"
    save_png(image, next(iter(crops.values())))
    assert cli.main(["detect", "--pipeline", str(pipe_dir), str(image)]) == 0
    capsys.readouterr()

    def edit(schema: dict[str, Any]) -> None:
        schema["content"]["content"]["memory"] = _payloads(marker)["reduce-exec"]

    _tamper(pipe_dir / "estimator.skops", edit)
    assert cli.main(["detect", "--pipeline", str(pipe_dir), str(image)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.count("\n") == 1 and "estimator.skops" in err
    assert "ConstructorFromReduceNode" in err
    assert not marker.exists()


def test_archive_limits(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "estimator.skops"
    _genuine_skops(path)
    import fzoo.persist as persist

    monkeypatch.setattr(persist, "MAX_UNCOMPRESSED_BYTES", 100)
    with pytest.raises(UntrustedStateError, match=r"unpacks to \d+ bytes \(limit 100\)"):
        load_estimator(path)
    monkeypatch.undo()

    def deepen(schema: dict[str, Any]) -> None:
        node: dict[str, Any] = _json_str("x")
        for _ in range(300):
            node = {"__class__": "list", "__module__": "builtins", "__loader__": "ListNode",
                    "content": [node]}  # fmt: skip
        schema["content"]["content"]["memory"] = node

    _tamper(path, deepen)
    with pytest.raises(UntrustedStateError, match="nested deeper than"):
        load_estimator(path)

    for bad in (b"not a zip", b"PK\x03\x04garbage"):
        path.write_bytes(bad)
        with pytest.raises(UntrustedStateError, match="not a valid skops file"):
            load_estimator(path)


def test_extra_trusted_takes_exact_names_not_prefixes(tmp_path: Path) -> None:
    path = tmp_path / "estimator.skops"
    _genuine_skops(path)
    with pytest.raises(ValueError, match="exact"):
        load_estimator(path, extra_trusted=("builtins",))


# --- tampered pipeline.json --------------------------------------------------------------------


@pytest.fixture()
def saved_pipeline(tmp_path: Path) -> Path:
    X, y = _data(2)
    reg = get_registry()
    ext = reg.get("feature_extractor", "dct-spectrum")(size=2)
    saved = SavedPipeline(
        pipeline="p",
        task="t",
        features=[{"name": "dct-spectrum", "params": {"size": 2}}],
        feature_fingerprints=[ext.fingerprint()],
        classifier={"name": "logistic-regression", "params": {}},
        classes=["laundered", "pristine"],
        positive="laundered",
        threshold=0.5,
        n_train=len(X),
    )
    d = tmp_path / "pipe"
    save_pipeline(d, saved, reg.get("classifier", "logistic-regression")().fit(X, y))
    assert load_pipeline(d).saved.pipeline == "p"
    return d


def _rewrite(d: Path, edit: Any) -> None:
    meta = d / "pipeline.json"
    data = json.loads(meta.read_text())
    new = edit(data)
    meta.write_text(new if isinstance(new, str) else json.dumps(new))


@pytest.mark.parametrize(
    ("case", "edit", "expected"),
    [
        ("list", lambda d: [d], "expected a JSON object, got list"),
        ("null", lambda d: None, "expected a JSON object, got NoneType"),
        ("deep", lambda d: "[" * 100_000 + "]" * 100_000, "not valid JSON|expected a JSON object"),
        ("unknown key", lambda d: {**d, "exec": "x"}, "exec: Extra inputs are not permitted"),
        ("wrong type", lambda d: {**d, "threshold": "0.5"}, "threshold: Input should be a valid"),
        ("nan", lambda d: {**d, "threshold": float("nan")}, "threshold"),
        (
            "params not a dict",
            lambda d: {**d, "classifier": {"name": "x", "params": [1]}},
            "classifier.params",
        ),  # fmt: skip
        ("version", lambda d: {**d, "format_version": 99}, "unsupported format_version 99"),
        ("positive", lambda d: {**d, "positive": "zebra"}, "positive 'zebra' is not one"),
        ("huge", lambda d: {**d, "task": "x" * 2_000_000}, "at most 1048576 bytes"),
    ],
)
def test_tampered_pipeline_json_gives_one_line(
    saved_pipeline: Path,
    case: str,
    edit: Any,
    expected: str,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    _rewrite(saved_pipeline, edit)
    image = tmp_path / "img.png"
    save_png(image, next(iter(photo_crops(n_per_photo=1, size=32).values())))
    assert cli.main(["detect", "--pipeline", str(saved_pipeline), str(image)]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1, err
    assert "pipeline.json" in err
    import re

    assert re.search(expected, err), err
    assert len(err) < 400


def test_a_plugin_classifier_declares_its_extra_sklearn_types(tmp_path: Path) -> None:
    """A plugin's ``build_estimator`` may use any scikit-learn estimator: it names the exact
    classes in ``trusted_types``; without them its saved state is refused."""
    from sklearn.neighbors import KNeighborsClassifier

    import fzoo

    class Knn(fzoo.Classifier):
        """k nearest neighbours (Fix & Hodges 1951), brute force."""

        name = "knn-test"

        def build_estimator(self) -> Any:
            return KNeighborsClassifier(3, algorithm="brute")

    X, y = _data(2)
    Knn().fit(X, y).save_state(tmp_path)
    with pytest.raises(UntrustedStateError, match="KNeighborsClassifier"):
        Knn().load_state(tmp_path)

    class TrustingKnn(Knn):
        trusted_types = ("sklearn.neighbors._classification.KNeighborsClassifier",)

    again = TrustingKnn()
    again.load_state(tmp_path)
    np.testing.assert_array_equal(again.predict_proba(X), Knn().fit(X, y).predict_proba(X))
