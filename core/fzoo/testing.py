"""``fzoo.testing``: the contract suite of a component, for a plugin's own tests.

Like scikit-learn's ``check_estimator``: :func:`check_component` runs every check of the class's
kind on small real photographs (64x64 crops of scikit-image's sample photos; smooth synthetic
images when scikit-image is not installed) and raises :class:`ComponentCheckError`, naming the
check, when one fails::

    from fzoo.testing import check_component

    check_component(ColorStats, saturation_bins=16)

:func:`parametrize_with_checks` makes one pytest test per (component, check), so a plugin's test
module is two lines::

    from fzoo.testing import parametrize_with_checks


    @parametrize_with_checks([ColorStats, (Gamma, {"gamma": 1.5})])
    def test_fzoo_contract(component, check):
        check(component)

The checks (:func:`checks_for` lists those of a class):

- ``registration``: what ``fzoo plugins`` checks without running the class (a valid ``name``, a
  ``Params`` model, the methods of its kind, ``fit``/``save_state``/``load_state`` when
  ``requires_fit``, a docstring);
- ``params``: the parameters round-trip (``cls(**c.get_params())`` has the same parameters and
  fingerprint), are JSON, and an unknown parameter is refused;
- ``output``: the run-time contract of the kind (feature rows ``[B, D]``, float32 or convertible
  without loss, finite; images keep batch size, channels, dtype, size unless ``changes_size``,
  values in [0, 1]; a classifier's probabilities; a dataset's records); learned components are
  fitted first, on labelled sample images;
- ``determinism``: two instances with the same parameters (and seed) give the same output;
- ``fingerprint``: the fingerprint is stable across instances and is not changed by running
  (or fitting) the component;
- ``state`` (learned extractors and classifiers): ``save_state`` into an empty folder writes no
  pickle, and a fresh instance after ``load_state`` gives the same output.

:func:`check_plugin` checks a plugin module's hooks without registering it (what they register
passes the registration contract; presets name a component and valid parameters)::

    found = check_plugin(my_plugin)
    assert found.components == {"feature_extractor": [ColorStats]}

pytest is imported only by :func:`parametrize_with_checks`; torch only when a check runs.
"""

from __future__ import annotations

import importlib.util
import json
import tempfile
import zipfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from fzoo.components import (
    Classifier,
    Component,
    Dataset,
    FeatureExtractor,
    Generator,
    Launderer,
    Perturbation,
    Record,
)
from fzoo.contracts import class_problems, feature_problem, image_problem

if TYPE_CHECKING:
    import torch

__all__ = [
    "CHECKS",
    "Candidate",
    "Check",
    "ComponentCheckError",
    "PluginContents",
    "check_component",
    "check_plugin",
    "checks_for",
    "parametrize_with_checks",
    "sample_images",
]

#: the photos :func:`sample_images` crops (files inside scikit-image), in order
PHOTOS: tuple[str, ...] = ("astronaut.png", "coffee.png", "chelsea.png", "rocket.jpg")
#: labels the learned components are fitted with, alternating over the sample images
LABELS: tuple[str, str] = ("fake", "real")
#: absolute difference two runs of a deterministic component may show (float noise)
TOLERANCE = 1e-5


class ComponentCheckError(AssertionError):
    """A check of :func:`check_component` failed: names the component, the check and why."""

    def __init__(self, component: str, check: str, problem: str) -> None:
        self.component = component
        self.check = check
        self.problem = problem
        super().__init__(f"{component}: check {check!r} failed: {problem}")


@dataclass(frozen=True)
class Candidate:
    """A component class with the parameters to check it with (what a check receives)."""

    cls: type[Component]
    params: dict[str, Any] = field(default_factory=dict)

    def make(self) -> Component:
        """A fresh instance."""
        return self.cls(**self.params)

    @property
    def label(self) -> str:
        """``name`` or ``name(p=1)``: how errors and test ids name it."""
        name = getattr(self.cls, "name", "") or self.cls.__qualname__
        if not self.params:
            return str(name)
        args = ",".join(f"{k}={v!r}" for k, v in sorted(self.params.items()))
        return f"{name}({args})"

    def __repr__(self) -> str:
        return self.label


@dataclass(frozen=True)
class Check:
    """One named check; call it with a :class:`Candidate` (or a class)."""

    name: str
    run: Callable[[Candidate], None]
    doc: str = ""

    def __call__(self, component: Candidate | type[Component]) -> None:
        cand = component if isinstance(component, Candidate) else Candidate(component)
        try:
            self.run(cand)
        except ComponentCheckError:
            raise
        except Exception as exc:  # the component raised: the check failed, naming the error
            text = str(exc) or type(exc).__name__
            raise ComponentCheckError(
                cand.label, self.name, f"{type(exc).__name__}: {text}"
            ) from exc

    def __repr__(self) -> str:
        return self.name


# --------------------------------------------------------------------------- sample images


def _photo_file(name: str) -> Path | None:
    spec = importlib.util.find_spec("skimage")
    if spec is None or not spec.submodule_search_locations:
        return None
    for root in spec.submodule_search_locations:
        path = Path(root) / "data" / name
        if path.exists():
            return path
    return None


def _synthetic(index: int, size: int) -> np.ndarray:
    """A smooth, textured, photo-like image (gradients, a disc, mild noise): HWC float32."""
    rng = np.random.default_rng(index)
    y, x = np.mgrid[:size, :size] / max(size - 1, 1)
    base = np.stack([x, y, 1 - (x + y) / 2], axis=2) * rng.uniform(0.4, 0.9, 3)
    disc = ((x - 0.5) ** 2 + (y - 0.5) ** 2) < rng.uniform(0.05, 0.15)
    base[disc] = rng.uniform(0, 1, 3)
    noisy = base + rng.normal(0, 0.02, base.shape)
    return np.clip(noisy, 0, 1).astype(np.float32)


def sample_images(n: int = 2, size: int = 64, offset: int = 0) -> torch.Tensor:
    """``n`` small real photographs as a float32 ``[n, 3, size, size]`` batch in [0, 1].

    Centre crops of scikit-image's sample photos (decoded exactly, never resampled), starting at
    photo ``offset`` and cycling; smooth synthetic images when scikit-image is not installed.
    """
    import torch

    from fzoo.images import load_image

    out = []
    for i in range(n):
        k = offset + i
        path = _photo_file(PHOTOS[k % len(PHOTOS)])
        if path is None:
            out.append(_synthetic(k, size))
            continue
        pixels = np.asarray(load_image(path).pixels, dtype=np.float32)
        h, w = pixels.shape[:2]
        shift = (k // len(PHOTOS)) * size  # later cycles: the next crop to the right
        top, left = (h - size) // 2, min((w - size) // 2 + shift, w - size)
        out.append(pixels[top : top + size, left : left + size, :3])
    arr = np.stack(out).transpose(0, 3, 1, 2)
    return torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32))


def _labels(n: int) -> list[str]:
    return [LABELS[i % 2] for i in range(n)]


# --------------------------------------------------------------------------- running a component


def _fail(cand: Candidate, check: str, problem: str) -> ComponentCheckError:
    return ComponentCheckError(cand.label, check, problem)


def _fitted_extractor(cand: Candidate, check: str) -> FeatureExtractor:
    ext = cand.make()
    assert isinstance(ext, FeatureExtractor)
    if ext.requires_fit:
        images = sample_images(8)
        labels = _labels(8)
        ext.fit((images[i : i + 1] for i in range(len(images))), labels)
    return ext


def _blobs() -> tuple[np.ndarray, list[str]]:
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(0, 1, (20, 5)), rng.normal(2, 1, (20, 5))])
    return x.astype(np.float32), [LABELS[0]] * 20 + [LABELS[1]] * 20


def _output(cand: Candidate, check: str, comp: Component | None = None) -> Any:
    """Run the component once on the sample inputs; the output, checked against the contract."""
    cls = cand.cls
    if issubclass(cls, FeatureExtractor):
        ext = comp if isinstance(comp, FeatureExtractor) else _fitted_extractor(cand, check)
        batch = sample_images(2)
        arr, problem = feature_problem(ext.extract(batch), 2)
        if problem is not None or arr is None:
            raise _fail(cand, check, f"extract() {problem}")
        single, problem = feature_problem(ext.extract(batch[:1]), 1)
        if problem is not None or single is None:
            raise _fail(cand, check, f"extract() on one image {problem}")
        if single.shape[1] != arr.shape[1]:
            raise _fail(
                cand,
                check,
                f"extract() gave {arr.shape[1]} features per image for a batch of 2 and "
                f"{single.shape[1]} for one image; the width must be constant",
            )
        return arr
    if issubclass(cls, Classifier):
        clf = comp if isinstance(comp, Classifier) else cand.make()
        assert isinstance(clf, Classifier)
        x, y = _blobs()
        if comp is None:
            clf.fit(x, y)
        proba = np.asarray(clf.predict_proba(x))
        if proba.shape != (len(x), 2):
            raise _fail(cand, check, f"predict_proba() shape {proba.shape}; expected ({len(x)}, 2)")
        if not np.isfinite(proba).all() or proba.min() < 0 or proba.max() > 1 + 1e-6:
            raise _fail(cand, check, "predict_proba() gave values outside [0, 1] or non-finite")
        if not np.allclose(proba.sum(axis=1), 1.0, atol=1e-5):
            raise _fail(cand, check, "predict_proba() rows do not sum to 1")
        classes = [str(c) for c in np.asarray(clf.classes_).tolist()]
        if classes != list(LABELS):
            raise _fail(cand, check, f"classes_ is {classes}; expected {list(LABELS)} (sorted)")
        return proba
    if issubclass(cls, Dataset):
        ds = cand.make()
        assert isinstance(ds, Dataset)
        records = []
        for rec in _first(ds.records(), 5):
            if not isinstance(rec, Record):
                raise _fail(cand, check, f"records() yielded {type(rec).__name__}, not fzoo.Record")
            if (rec.path is None) == (rec.data is None):
                raise _fail(cand, check, "a record must set exactly one of 'path' and 'data'")
            if not (isinstance(rec.label, str) and rec.label and isinstance(rec.source, str)):
                raise _fail(cand, check, f"record {rec.display}: label and source must be text")
            records.append((rec.label, rec.source, rec.path, rec.data, rec.tile))
        if not records:
            raise _fail(cand, check, "records() yielded no record (check it with real data)")
        return records
    comp = comp or cand.make()
    batch = sample_images(2)
    if isinstance(comp, Generator):
        out = comp.generate(2, 0)
        problem = image_problem(comp, out, 2, None)
        if problem is None and comp.supports_img2img:
            out2 = comp.img2img(batch.clone(), 0)
            problem = image_problem(comp, out2, 2, batch)
            method = "img2img"
        else:
            method = "generate"
    elif isinstance(comp, Launderer):
        out, method = comp.launder(batch.clone()), "launder"
        problem = image_problem(comp, out, 2, batch)
    elif isinstance(comp, Perturbation):
        out, method = comp.apply(batch.clone(), np.random.default_rng(0)), "apply"
        problem = image_problem(comp, out, 2, batch)
    else:
        raise _fail(cand, check, f"{cls.__qualname__} is not a subclass of an fzoo kind")
    if problem is not None:
        raise _fail(cand, check, f"{method}() {problem}")
    return out.detach().cpu().numpy()


def _first(items: Iterable[Any], n: int) -> Iterator[Any]:
    for i, item in enumerate(items):
        if i >= n:
            return
        yield item


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, np.ndarray):
        return (
            isinstance(b, np.ndarray) and a.shape == b.shape and np.allclose(a, b, atol=TOLERANCE)
        )
    return bool(a == b)


# --------------------------------------------------------------------------- the checks


def _check_registration(cand: Candidate) -> None:
    kind = _kind_of(cand.cls)
    if kind is None:
        raise _fail(cand, "registration", "not a subclass of an fzoo component kind")
    problems = class_problems(cand.cls, kind)
    if problems:
        raise _fail(cand, "registration", "; ".join(problems))


def _check_params(cand: Candidate) -> None:
    comp = cand.make()
    params = comp.get_params()
    try:
        json.dumps(params)
    except (TypeError, ValueError) as exc:
        raise _fail(cand, "params", f"get_params() is not JSON: {exc}") from None
    again = cand.cls(**params)
    if again.get_params() != params:
        raise _fail(cand, "params", f"cls(**get_params()) gave {again.get_params()}, not {params}")
    if again.fingerprint() != comp.fingerprint():
        raise _fail(cand, "params", "cls(**get_params()) has another fingerprint")
    from pydantic import ValidationError

    try:
        cand.cls(**params, fzoo_no_such_parameter=1)
    except ValidationError:
        pass
    else:
        raise _fail(cand, "params", "an unknown parameter was accepted (Params must forbid them)")
    cand.cls.params_schema()


def _check_output(cand: Candidate) -> None:
    _output(cand, "output")


def _check_determinism(cand: Candidate) -> None:
    first = _output(cand, "determinism")
    second = _output(cand, "determinism")
    if not _same(first, second):
        raise _fail(cand, "determinism", "two instances with the same parameters and seed differ")


def _check_fingerprint(cand: Candidate) -> None:
    a, b = cand.make(), cand.make()
    fp = a.fingerprint()
    if b.fingerprint() != fp:
        raise _fail(cand, "fingerprint", "two instances with the same parameters differ")
    if issubclass(cand.cls, Dataset):  # records() does not change a dataset
        return
    if issubclass(cand.cls, FeatureExtractor):
        a = _fitted_extractor(cand, "fingerprint")
        _output(cand, "fingerprint", a)
    elif issubclass(cand.cls, Classifier):
        x, y = _blobs()
        assert isinstance(a, Classifier)
        a.fit(x, y)
    else:
        _output(cand, "fingerprint", a)
    if a.fingerprint() != fp:
        raise _fail(cand, "fingerprint", "running the component changed its fingerprint")


def _pickled(head: bytes) -> bool:
    """A pickle stream (protocol 2 and later), or a ``.npy`` of objects (pickled after its
    header)."""
    if len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5:
        return True
    return head.startswith(b"\x93NUMPY") and b"'descr': '|O'" in head[:512]


def pickle_files(directory: Path) -> list[str]:
    """Files under ``directory`` that hold pickles: a pickle stream, a ``.npy`` of objects, a
    ``.pkl``/``.pickle``/``.joblib`` file, or a zip with one inside (``torch.save``, ``.npz``)."""
    found = []
    for path in sorted(Path(directory).rglob("*")):
        if not path.is_file():
            continue
        with open(path, "rb") as fh:
            head = fh.read(512)
        if path.suffix in (".pkl", ".pickle", ".joblib") or _pickled(head):
            found.append(str(path.relative_to(directory)))
        elif zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as zf:
                names = zf.namelist()
                inner = any(n.endswith((".pkl", ".pickle")) for n in names) or any(
                    _pickled(zf.open(n).read(512)) for n in names if n.endswith(".npy")
                )
            if inner:
                found.append(str(path.relative_to(directory)))
    return found


def _check_state(cand: Candidate) -> None:
    comp: FeatureExtractor | Classifier
    if issubclass(cand.cls, FeatureExtractor):
        comp = _fitted_extractor(cand, "state")
        if not comp.requires_fit:
            return
    elif issubclass(cand.cls, Classifier):
        clf = cand.make()
        assert isinstance(clf, Classifier)
        x, y = _blobs()
        comp = clf.fit(x, y)
    else:
        return
    before = _output(cand, "state", comp)
    with tempfile.TemporaryDirectory(prefix="fzoo-check-") as tmp:
        folder = Path(tmp) / "state"
        folder.mkdir()
        comp.save_state(folder)
        if not any(folder.rglob("*")):
            raise _fail(cand, "state", "save_state() wrote nothing")
        pickled = pickle_files(folder)
        if pickled:
            raise _fail(cand, "state", f"save_state() wrote pickles: {', '.join(pickled)}")
        fresh = cand.make()
        assert isinstance(fresh, FeatureExtractor | Classifier)
        fresh.load_state(folder)
        after = _output(cand, "state", fresh)
    if not _same(before, after):
        raise _fail(cand, "state", "the output after save_state()/load_state() differs")


CHECKS: tuple[Check, ...] = (
    Check("registration", _check_registration, "what fzoo plugins checks at registration"),
    Check("params", _check_params, "parameters round-trip, are JSON, unknown ones refused"),
    Check("output", _check_output, "the run-time contract of the kind on sample photos"),
    Check("determinism", _check_determinism, "same parameters and seed, same output"),
    Check("fingerprint", _check_fingerprint, "stable, and not changed by running"),
    Check("state", _check_state, "save/load round trip without pickle (learned components)"),
)


def _kind_of(cls: type) -> str | None:
    from fzoo.components import KIND_TABLE

    for kind in KIND_TABLE:
        if isinstance(cls, type) and issubclass(cls, kind.base):
            return kind.name
    return None


def checks_for(cls: type[Component]) -> list[Check]:
    """The checks that apply to ``cls`` (``state`` only for learned extractors and classifiers;
    only ``registration`` for a class that fails it)."""
    if _kind_of(cls) is None or class_problems(cls, _kind_of(cls) or ""):
        return [CHECKS[0]]
    learned = issubclass(cls, Classifier) or (
        issubclass(cls, FeatureExtractor) and bool(getattr(cls, "requires_fit", False))
    )
    return [c for c in CHECKS if c.name != "state" or learned]


def check_component(cls: type[Component], /, **params: Any) -> None:
    """Run every check of ``cls``'s kind with ``params``; raises :class:`ComponentCheckError`
    naming the first check that fails (see the module docstring for the checks)."""
    cand = Candidate(cls, dict(params))
    for check in checks_for(cls):
        check(cand)


def parametrize_with_checks(
    components: Sequence[type[Component] | tuple[type[Component], dict[str, Any]]],
) -> Any:
    """A ``pytest.mark.parametrize`` over (component, check) for every check of every
    component: items are classes or ``(class, params)``. Test ids read ``name-check`` (or
    ``name(p=1)-check``). The test receives a :class:`Candidate` and a :class:`Check`; its body
    is ``check(component)``."""
    import pytest

    cases = []
    for item in components:
        cls, params = item if isinstance(item, tuple) else (item, {})
        cand = Candidate(cls, dict(params))
        for check in checks_for(cls):
            cases.append(pytest.param(cand, check, id=f"{cand.label}-{check.name}"))
    return pytest.mark.parametrize(("component", "check"), cases)


@dataclass
class PluginContents:
    """What a plugin registers (:func:`check_plugin`): classes by kind, presets by name."""

    components: dict[str, list[type[Component]]] = field(default_factory=dict)
    presets: dict[str, dict[str, Any]] = field(default_factory=dict)


def check_plugin(plugin: object) -> PluginContents:
    """Call a plugin's ``fzoo_register_*`` hooks as fzoo does, registering nothing, and check
    what they register: every class passes the registration contract, names are unique, a hook
    name is not misspelt, and each preset names a component (of the plugin, or installed) of its
    kind whose ``Params`` accept the preset's parameters. Raises :class:`ComponentCheckError`;
    returns the classes by kind and the presets."""
    from difflib import get_close_matches

    from fzoo.components import KIND_TABLE

    label = getattr(plugin, "__name__", repr(plugin))
    hooks = {k.hook: k.name for k in KIND_TABLE}
    known = [*hooks, "fzoo_register_presets"]
    for attr in sorted(a for a in dir(plugin) if a.startswith("fzoo_") and a not in known):
        close = get_close_matches(attr, known, 1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ComponentCheckError(label, "hooks", f"{attr!r} is not an fzoo hook{hint}")
    out = PluginContents()
    for hook, kind in hooks.items():
        fn = getattr(plugin, hook, None)
        if fn is None:
            continue

        def register(cls: type[Component], _kind: str = kind) -> None:
            problems = class_problems(cls, _kind)
            name = getattr(cls, "name", "") or getattr(cls, "__qualname__", repr(cls))
            if problems:
                raise ComponentCheckError(str(name), "registration", "; ".join(problems))
            if any(c.name == cls.name for c in out.components.get(_kind, [])):
                raise ComponentCheckError(cls.name, "registration", "registered twice")
            out.components.setdefault(_kind, []).append(cls)

        fn(register)
    fn = getattr(plugin, "fzoo_register_presets", None)
    if fn is not None:

        def register_preset(
            name: str,
            component: str,
            params: dict[str, Any] | None = None,
            kind: str | None = None,
            description: str = "",
        ) -> None:
            cls = _preset_target(name, component, kind, out)
            cls.Params(**(params or {}))  # raises pydantic's ValidationError, naming the field
            out.presets[name] = {
                "component": component,
                "kind": cls.kind,
                "params": dict(params or {}),
                "description": description,
            }

        fn(register_preset)
    return out


def _preset_target(
    name: str, component: str, kind: str | None, out: PluginContents
) -> type[Component]:
    for k, classes in out.components.items():
        for cls in classes:
            if cls.name == component and kind in (None, k):
                return cls
    from fzoo.plugin_manager import get_registry

    reg = get_registry()
    for k in [kind] if kind else list(reg.components):
        if component in reg.components.get(k, {}):
            return reg.components[k][component]
    where = f"{kind.replace('_', ' ')} " if kind else ""
    raise ComponentCheckError(
        name, "preset", f"names {where}{component!r}, which is not registered"
    )
