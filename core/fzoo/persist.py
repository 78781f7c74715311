"""Saving fitted estimators without pickle, and loading only what fzoo itself writes.

A saved pipeline is something users share, so its files are untrusted input. skops does not
pickle, but its format can still name any importable callable (``builtins.exec`` behind a
reduce-style node, a function, a method); trusting types by module prefix therefore lets a
tampered ``estimator.skops`` run code. This module trusts nothing by prefix: before skops sees the
file, :func:`audit_skops` reads the archive's ``schema.json`` itself and checks every node against
an explicit allow-list of (node loader, exact type) pairs, namely the scikit-learn estimators,
arrays and containers that fzoo's classifiers write. Callables, functions, methods, reduce-style
constructors and any other type are refused with one line naming the file and the offending type;
skops then loads with ``trusted`` set to exactly the audited types.

Threat model and figures: ``docs/reliability.md`` ("Shared pipelines").
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

#: Node loaders of the skops format that build data, never call arbitrary code. Excluded on
#: purpose: ``FunctionNode``, ``PartialNode``, ``MethodNode``, ``OperatorFuncNode``,
#: ``ConstructorFromReduceNode`` (reduce-style ``type(*args)``), ``BytesNode``/``BytearrayNode``,
#: ``SparseMatrixNode`` and everything a newer skops may add.
SAFE_LOADERS: frozenset[str] = frozenset(
    {
        "DictNode",
        "ListNode",
        "TupleNode",
        "JsonNode",
        "NdArrayNode",
        "DTypeNode",
        "ObjectNode",
        "TypeNode",
        "TreeNode",
        "LossNode",
        "RandomStateNode",
        "RandomGeneratorNode",
        "CachedNode",
        "SliceNode",
    }
)

_CONTAINERS = ("builtins.dict", "builtins.list", "builtins.tuple", "builtins.str")
_PRIMITIVES = (
    "builtins.str",
    "builtins.int",
    "builtins.float",
    "builtins.bool",
    "builtins.NoneType",
)
_NUMPY_SCALARS = tuple(
    f"numpy.{t}"
    for t in (
        "float16",
        "float32",
        "float64",
        "int8",
        "int16",
        "int32",
        "int64",
        "uint8",
        "uint16",
        "uint32",
        "uint64",
        "bool_",
        "str_",
        "bytes_",
        "complex64",
        "complex128",
    )
)
_DTYPES = tuple(f"numpy.dtypes.{t}" for t in ("Float32DType", "Float64DType", "Int64DType")) + (
    "numpy.dtype",
)

#: The exact estimator classes fzoo's built-in classifiers write (logistic regression, SVM with
#: Platt scaling, random forest, histogram gradient boosting, MLP; each optionally behind a
#: StandardScaler in a Pipeline), with the helper objects scikit-learn stores inside them.
SKLEARN_TYPES: tuple[str, ...] = (
    "sklearn.pipeline.Pipeline",
    "sklearn.preprocessing._data.StandardScaler",
    "sklearn.preprocessing._label.LabelEncoder",
    "sklearn.preprocessing._label.LabelBinarizer",
    "sklearn.linear_model._logistic.LogisticRegression",
    "sklearn.svm._classes.SVC",
    "sklearn.calibration.CalibratedClassifierCV",
    "sklearn.calibration._CalibratedClassifier",
    "sklearn.calibration._SigmoidCalibration",
    "sklearn.model_selection._split.StratifiedKFold",
    "sklearn.ensemble._forest.RandomForestClassifier",
    "sklearn.tree._classes.DecisionTreeClassifier",
    "sklearn.tree._tree.Tree",
    "sklearn.ensemble._hist_gradient_boosting.gradient_boosting.HistGradientBoostingClassifier",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    "sklearn.ensemble._hist_gradient_boosting.binning._BinMapper",
    "sklearn._loss.loss.HalfBinomialLoss",
    "sklearn._loss.loss.HalfMultinomialLoss",
    "sklearn._loss._loss.CyHalfBinomialLoss",
    "sklearn._loss._loss.CyHalfMultinomialLoss",
    "sklearn._loss.link.Interval",
    "sklearn._loss.link.LogitLink",
    "sklearn._loss.link.MultinomialLogit",
    "sklearn.neural_network._multilayer_perceptron.MLPClassifier",
    "sklearn.neural_network._stochastic_optimizers.AdamOptimizer",
    "sklearn.neural_network._stochastic_optimizers.SGDOptimizer",
)

#: Which exact types each loader may name. A ``TypeNode`` names a type *object* stored as a value
#: (e.g. ``dtype=numpy.float64``), so it may name only primitive and numpy scalar types.
ALLOWED: dict[str, frozenset[str]] = {
    "DictNode": frozenset(_CONTAINERS),
    "ListNode": frozenset(_CONTAINERS),
    "TupleNode": frozenset(_CONTAINERS),
    "JsonNode": frozenset(_PRIMITIVES),
    "NdArrayNode": frozenset(("numpy.ndarray", *_NUMPY_SCALARS)),
    "DTypeNode": frozenset(_DTYPES),
    "TypeNode": frozenset((*_PRIMITIVES, *_NUMPY_SCALARS)),
    "ObjectNode": frozenset(SKLEARN_TYPES),
    "TreeNode": frozenset(("sklearn.tree._tree.Tree",)),
    "LossNode": frozenset(t for t in SKLEARN_TYPES if t.startswith("sklearn._loss._loss.")),
    "RandomStateNode": frozenset(("numpy.random.mtrand.RandomState",)),
    "RandomGeneratorNode": frozenset(("numpy.random._generator.Generator",)),
    "CachedNode": frozenset(),
    "SliceNode": frozenset(("builtins.slice",)),
}

#: Limits on the archive, checked before anything is decompressed or parsed.
MAX_ARCHIVE_MEMBERS = 100_000
MAX_UNCOMPRESSED_BYTES = 2 * 1024**3
MAX_SCHEMA_BYTES = 256 * 1024**2
MAX_SCHEMA_DEPTH = 200


class UntrustedStateError(Exception):
    """A saved model names a type or a construct outside the allow-list; it is refused, not
    loaded, and nothing in it runs."""


def save_estimator(estimator: Any, path: Path) -> None:
    """Write ``estimator`` to ``path`` in skops format, atomically."""
    import skops.io as sio

    from fzoo.fsutil import atomic_write_bytes

    atomic_write_bytes(path, sio.dumps(estimator))


def _read_schema(path: Path) -> Any:
    """The parsed ``schema.json`` of a skops archive, after size checks of the whole archive."""
    try:
        with zipfile.ZipFile(path) as archive:
            infos = archive.infolist()
            if len(infos) > MAX_ARCHIVE_MEMBERS:
                raise UntrustedStateError(f"{path}: {len(infos)} archive members; refusing it")
            total = sum(i.file_size for i in infos)
            if total > MAX_UNCOMPRESSED_BYTES:
                raise UntrustedStateError(
                    f"{path}: unpacks to {total} bytes (limit {MAX_UNCOMPRESSED_BYTES}); "
                    "refusing it"
                )
            info = archive.getinfo("schema.json")
            if info.file_size > MAX_SCHEMA_BYTES:
                raise UntrustedStateError(f"{path}: schema.json of {info.file_size} bytes")
            raw = archive.read(info)
    except (zipfile.BadZipFile, KeyError, OSError, ValueError) as exc:
        if isinstance(exc, UntrustedStateError):
            raise
        raise UntrustedStateError(
            f"{path}: not a valid skops file ({type(exc).__name__}: {exc}); refusing to load it"
        ) from None
    try:
        return json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise UntrustedStateError(
            f"{path}: schema.json is not valid JSON ({type(exc).__name__}); refusing to load it"
        ) from None


def _nodes(schema: Any, path: Path) -> Iterable[dict[str, Any]]:
    """Every dict of ``schema`` that is a skops node (has ``__loader__``), iteratively, with a
    depth limit (a deeply nested schema is refused rather than overflowing the stack)."""
    stack: list[tuple[Any, int]] = [(schema, 0)]
    while stack:
        item, depth = stack.pop()
        if depth > MAX_SCHEMA_DEPTH:
            raise UntrustedStateError(
                f"{path}: schema nested deeper than {MAX_SCHEMA_DEPTH} levels; refusing it"
            )
        if isinstance(item, dict):
            if "__loader__" in item:
                yield item
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item)


def audit_skops(path: Path, extra_trusted: Iterable[str] = ()) -> list[str]:
    """Check every node of the skops file ``path`` against :data:`ALLOWED` (plus
    ``extra_trusted``, exact ``module.Class`` names loadable as objects); return the exact types
    the file names. Raises :class:`UntrustedStateError` naming the first offending node."""
    extra = frozenset(extra_trusted)
    if any(not isinstance(t, str) or "." not in t for t in extra):
        raise ValueError("extra_trusted takes exact 'module.Class' names, not prefixes")
    schema = _read_schema(path)
    if not isinstance(schema, dict) or "__loader__" not in schema:
        raise UntrustedStateError(f"{path}: not a skops schema; refusing to load it")
    seen: set[str] = set()
    for node in _nodes(schema, path):
        loader = node.get("__loader__")
        if not isinstance(loader, str) or loader not in SAFE_LOADERS:
            raise UntrustedStateError(
                f"{path}: refusing node loader {str(loader)[:80]!r} (it can call code); "
                "fzoo's saved classifiers never contain one"
            )
        if loader == "CachedNode":
            continue
        module, cls = node.get("__module__"), node.get("__class__")
        if not isinstance(module, str) or not isinstance(cls, str):
            raise UntrustedStateError(f"{path}: a {loader} without a module and class")
        name = f"{module}.{cls}"
        allowed = ALLOWED[loader] | (extra if loader == "ObjectNode" else frozenset())
        if name not in allowed:
            raise UntrustedStateError(
                f"{path}: refusing to load untrusted types [{name[:120]!r}] ({loader}); only the "
                "scikit-learn estimators, arrays and containers that fzoo writes are loaded"
            )
        seen.add(name)
    return sorted(seen)


def load_estimator(path: Path, extra_trusted: tuple[str, ...] = ()) -> Any:
    """Load a skops file written by :func:`save_estimator`, after :func:`audit_skops`.

    ``extra_trusted`` adds exact ``module.Class`` names (a plugin's own estimator class); no
    prefixes. Raises :class:`UntrustedStateError` instead of executing anything.
    """
    import skops.io as sio

    types = audit_skops(Path(path), extra_trusted)
    try:
        return sio.load(path, trusted=types)
    except UntrustedStateError:
        raise
    except Exception as exc:  # a file that passed the audit but is not a consistent estimator
        raise UntrustedStateError(
            f"{path}: could not be loaded ({type(exc).__name__}: {str(exc)[:200]})"
        ) from None
