"""The built-in scikit-learn classifiers: accuracy, probabilities, persistence, the cascade."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import skops.io as sio
from pydantic import ValidationError
from sklearn.base import clone
from sklearn.datasets import make_classification
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

import fzoo
from fzoo.persist import UntrustedStateError, load_estimator, save_estimator
from fzoo_builtins.sklearn import (
    CLASSIFIERS,
    GradientBoostingClassifier,
    LogisticRegressionClassifier,
    MLPClassifier,
    RandomForestClassifier,
    SVMClassifier,
    TwoStageClassifier,
    fzoo_register_classifiers,
)
from fzoo_builtins.sklearn.cascade import TwoStageEstimator

LABELS = np.array(["laundered", "pristine", "synthetic"])
NAMES = [cls.name for cls in CLASSIFIERS]


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    # OpenMP spin-waiting makes HistGradientBoosting ~10x slower on a busy 2-core machine.
    with threadpool_limits(1):
        yield


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A separable 3-class problem whose features live on scales from 1e-3 to 1e3."""
    X, y = make_classification(
        n_samples=360,
        n_features=8,
        n_informative=4,
        n_redundant=0,
        n_classes=3,
        n_clusters_per_class=1,
        class_sep=2.5,
        random_state=0,
    )
    X = X * np.logspace(-3, 3, X.shape[1])
    labels = LABELS[y]
    return X[:240], labels[:240], X[240:], labels[240:]


@pytest.fixture(scope="module")
def fitted(data: Any) -> dict[str, fzoo.Classifier]:
    X, y, _, _ = data
    with threadpool_limits(1):
        return {cls.name: cls().fit(X, y) for cls in CLASSIFIERS}


@pytest.mark.parametrize("name", NAMES)
def test_classifier_accuracy_and_probabilities(
    name: str, data: Any, fitted: dict[str, fzoo.Classifier]
) -> None:
    _, _, X_test, y_test = data
    clf = fitted[name]
    assert clf.classes_.tolist() == LABELS.tolist()
    proba = clf.predict_proba(X_test)
    assert proba.shape == (len(X_test), 3)
    assert proba.dtype == np.float64
    assert np.all(proba >= 0) and np.all(proba <= 1)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-9)
    predicted = clf.predict(X_test)
    assert np.array_equal(predicted, LABELS[np.argmax(proba, axis=1)])
    accuracy = float(np.mean(predicted == y_test))
    assert accuracy >= 0.9, f"{name}: accuracy {accuracy:.3f}"


@pytest.mark.parametrize("name", NAMES)
def test_save_load_round_trip(
    name: str, data: Any, fitted: dict[str, fzoo.Classifier], tmp_path: Path
) -> None:
    _, _, X_test, _ = data
    clf = fitted[name]
    clf.save_state(tmp_path)
    fresh = type(clf)()
    fresh.load_state(tmp_path)
    assert fresh.classes_.tolist() == clf.classes_.tolist()
    assert np.array_equal(fresh.predict_proba(X_test), clf.predict_proba(X_test))
    assert np.array_equal(fresh.predict(X_test), clf.predict(X_test))
    assert not list(tmp_path.rglob("*.pkl")) and not list(tmp_path.rglob(".tmp-*"))


def test_default_params_and_pipelines() -> None:
    expected = {
        "logistic-regression": {
            "C": 1.0,
            "max_iter": 1000,
            "class_weight": "balanced",
            "standardize": True,
        },
        "svm": {
            "kernel": "rbf",
            "C": 1.0,
            "gamma": "scale",
            "random_state": 0,
            "standardize": True,
        },
        "random-forest": {
            "n_estimators": 200,
            "max_depth": None,
            "random_state": 0,
            "standardize": True,
        },
        "gradient-boosting": {
            "max_iter": 200,
            "learning_rate": 0.1,
            "random_state": 0,
            "standardize": True,
        },
        "mlp": {
            "hidden_layer_sizes": [128],
            "alpha": 1e-4,
            "max_iter": 500,
            "random_state": 0,
            "standardize": True,
        },
        "two-stage": {"base": "logistic-regression", "stage1_negative": ["pristine"]},
    }
    for cls in CLASSIFIERS:
        assert cls().get_params() == expected[cls.name]
        assert cls.description and cls.version
        schema = cls.params_schema()["properties"]
        assert all(schema[key].get("description") for key in schema), cls.name
    for cls in CLASSIFIERS[:5]:
        pipe = cls().build_estimator()
        assert isinstance(pipe, Pipeline)
        assert isinstance(pipe.steps[0][1], StandardScaler)
        assert [n for n, _ in cls(standardize=False).build_estimator().steps] == ["model"]

    model = LogisticRegressionClassifier(C=0.5, class_weight=None).build_estimator()[-1]
    assert (model.C, model.class_weight, model.max_iter) == (0.5, None, 1000)
    svm = SVMClassifier(kernel="linear", C=2.0, gamma=0.1).build_estimator()[-1]
    assert (svm.estimator.kernel, svm.estimator.C, svm.estimator.gamma) == ("linear", 2.0, 0.1)
    assert svm.cv.random_state == 0 and svm.ensemble is False
    forest = RandomForestClassifier(n_estimators=5, max_depth=3).build_estimator()[-1]
    assert (forest.n_estimators, forest.max_depth, forest.random_state) == (5, 3, 0)
    boost = GradientBoostingClassifier(learning_rate=0.2).build_estimator()[-1]
    assert (boost.max_iter, boost.learning_rate, boost.random_state) == (200, 0.2, 0)
    mlp = MLPClassifier(hidden_layer_sizes=[256, 64], random_state=3).build_estimator()[-1]
    assert (mlp.hidden_layer_sizes, mlp.random_state) == ((256, 64), 3)
    assert MLPClassifier(hidden_layer_sizes=[256, 64]).get_params()["hidden_layer_sizes"] == [
        256,
        64,
    ]

    with pytest.raises(ValidationError):
        SVMClassifier(kernel="poly")
    with pytest.raises(ValidationError):
        LogisticRegressionClassifier(C=0)
    with pytest.raises(ValidationError):
        RandomForestClassifier(n_trees=10)
    with pytest.raises(ValidationError):
        TwoStageClassifier(base="knn")
    assert (
        LogisticRegressionClassifier(C=2).fingerprint()
        != LogisticRegressionClassifier().fingerprint()
    )


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_standardization_matters_for_badly_scaled_features(data: Any) -> None:
    X, y, X_test, y_test = data
    scaled = LogisticRegressionClassifier().fit(X, y)
    raw = LogisticRegressionClassifier(standardize=False, max_iter=50).fit(X, y)
    assert np.mean(scaled.predict(X_test) == y_test) > np.mean(raw.predict(X_test) == y_test)


def test_seeded_classifiers_are_deterministic(data: Any) -> None:
    X, y, X_test, _ = data
    a = RandomForestClassifier(n_estimators=20).fit(X, y).predict_proba(X_test)
    b = RandomForestClassifier(n_estimators=20).fit(X, y).predict_proba(X_test)
    c = RandomForestClassifier(n_estimators=20, random_state=1).fit(X, y).predict_proba(X_test)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


# --- the two-stage cascade --------------------------------------------------------------------


def test_cascade_combines_stage_probabilities(data: Any, fitted: dict[str, Any]) -> None:
    _, _, X_test, y_test = data
    est = fitted["two-stage"].estimator_
    assert isinstance(est, TwoStageEstimator)
    assert est.negative_ == "pristine"
    assert est.positive_classes_.tolist() == ["laundered", "synthetic"]
    assert est.stage1_.classes_.tolist() == [0, 1]
    assert est.stage2_.classes_.tolist() == ["laundered", "synthetic"]

    p1 = est.stage1_.predict_proba(X_test)[:, 1]
    p2 = est.stage2_.predict_proba(X_test)
    proba = est.predict_proba(X_test)
    np.testing.assert_allclose(proba[:, 1], 1.0 - p1)
    np.testing.assert_allclose(proba[:, 0], p1 * p2[:, 0])
    np.testing.assert_allclose(proba[:, 2], p1 * p2[:, 1])

    accuracy = np.mean(est.predict(X_test) == y_test)
    assert accuracy > 0.9 > 1 / 3
    # stage 1 alone: pristine vs. anything else
    stage1_acc = np.mean((p1 > 0.5) == (y_test != "pristine"))
    assert stage1_acc > 0.9


def test_cascade_is_a_scikit_learn_estimator(data: Any) -> None:
    X, y, X_test, y_test = data
    est = TwoStageEstimator(negative=("real", "pristine"))
    assert est.get_params()["negative"] == ("real", "pristine")
    fitted = clone(est).fit(X, y)
    assert fitted.classes_.tolist() == LABELS.tolist()
    assert fitted.score(X_test, y_test) > 0.9
    assert not hasattr(est, "stage1_")


@pytest.mark.parametrize(
    ("base", "model"), [("mlp", "MLPClassifier"), ("svm", "CalibratedClassifierCV")]
)
def test_cascade_with_other_bases(base: str, model: str, data: Any, tmp_path: Path) -> None:
    X, y, X_test, y_test = data
    clf = TwoStageClassifier(base=base).fit(X, y)
    assert type(clf.estimator_.stage1_[-1]).__name__ == model
    assert type(clf.estimator_.stage2_[-1]).__name__ == model
    assert np.mean(clf.predict(X_test) == y_test) > 0.85
    clf.save_state(tmp_path)
    info = json.loads((tmp_path / "cascade.json").read_text())
    assert info["base"] == base and info["negative"] == "pristine"
    again = TwoStageClassifier(base=base)
    again.load_state(tmp_path)
    assert np.array_equal(again.predict_proba(X_test), clf.predict_proba(X_test))


def test_cascade_binary_and_custom_negative(data: Any, tmp_path: Path) -> None:
    X, y, X_test, y_test = data
    y_real = np.where(y == "pristine", "real", y)
    keep = y_real != "synthetic"
    clf = TwoStageClassifier(stage1_negative=["real"]).fit(X[keep], y_real[keep])
    assert clf.classes_.tolist() == ["laundered", "real"]
    assert clf.estimator_.stage2_ is None
    proba = clf.predict_proba(X_test)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    test_keep = y_test != "synthetic"
    y_test_real = np.where(y_test == "pristine", "real", y_test)
    assert np.mean(clf.predict(X_test[test_keep]) == y_test_real[test_keep]) > 0.9

    clf.save_state(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cascade.json", "stage1"]
    again = TwoStageClassifier(stage1_negative=["real"])
    again.load_state(tmp_path)
    assert np.array_equal(again.predict_proba(X_test), proba)


def test_cascade_label_errors(data: Any) -> None:
    X, y, _, _ = data
    with pytest.raises(ValueError, match=r"negative labels \['real'\].*found none"):
        TwoStageClassifier(stage1_negative=["real"]).fit(X, y)
    with pytest.raises(ValueError, match="exactly one"):
        TwoStageClassifier(stage1_negative=["pristine", "laundered"]).fit(X, y)
    only = y == "pristine"
    with pytest.raises(ValueError, match="only the negative class"):
        TwoStageClassifier().fit(X[only], y[only])


def test_cascade_estimator_itself_is_refused_by_the_core_loader(
    fitted: dict[str, Any], tmp_path: Path
) -> None:
    """Why the cascade saves its stages separately: the core does not trust plugin classes."""
    path = tmp_path / "cascade.skops"
    save_estimator(fitted["two-stage"].estimator_, path)
    with pytest.raises(UntrustedStateError, match="TwoStageEstimator"):
        load_estimator(path)


# --- the core's skops loader refuses untrusted types without running them ----------------------

TRAP_CALLS: list[str] = []


class Trap:
    """A type outside the trust list that records any attempt to rebuild it."""

    def __init__(self) -> None:
        self.payload = [1, 2, 3]

    def __setstate__(self, state: dict[str, Any]) -> None:
        TRAP_CALLS.append("setstate")
        self.__dict__.update(state)


def test_untrusted_type_is_refused_without_executing_code(tmp_path: Path) -> None:
    path = tmp_path / "trap.skops"
    sio.dump({"model": Trap()}, path)
    assert any(t.endswith("Trap") for t in sio.get_untrusted_types(file=path))
    TRAP_CALLS.clear()
    with pytest.raises(UntrustedStateError, match=r"Trap"):
        load_estimator(path)
    assert TRAP_CALLS == []
    # the same file loads (and runs __setstate__) only when the type is explicitly trusted
    obj = load_estimator(path, extra_trusted=(f"{__name__}.Trap",))
    assert TRAP_CALLS == ["setstate"] and obj["model"].payload == [1, 2, 3]


# --- registration -------------------------------------------------------------------------------


def test_hook_registers_every_classifier() -> None:
    seen: list[type[fzoo.Classifier]] = []
    fzoo_register_classifiers(register=seen.append)
    assert [c.name for c in seen] == NAMES
    assert len(set(NAMES)) == len(NAMES)
    assert all(issubclass(c, fzoo.Classifier) for c in seen)


def test_registry_sees_the_classifiers() -> None:
    from fzoo.plugin_manager import get_registry

    reg = get_registry(refresh=True)
    assert set(NAMES) <= set(reg.names("classifier"))
    assert reg.get("classifier", "svm") is SVMClassifier
    assert reg.owner("classifier", "two-stage") == "sklearn"
