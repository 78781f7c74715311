"""Component contracts: what a class must have when it is registered, and what its outputs must
be at run time.

At registration (:func:`class_problems`, called by the plugin manager for every class a plugin
registers) a class is checked without running it: a valid ``name``, a ``Params`` model, the
methods its kind requires (``KIND_TABLE`` in :mod:`fzoo.components`), ``fit``/``save_state``/
``load_state`` when it sets ``requires_fit``, and a docstring. A class that fails is kept out of
the registry and reported by ``fzoo plugins`` with its own file and line
(:class:`ComponentFailure`).

At run time the outputs are checked where fzoo calls a component: feature rows
(:func:`check_features`, :func:`check_width`) and images (:func:`transform`, :func:`generate`,
:func:`launder`). A violation raises :class:`ContractError`, naming the component, the method and
what was wrong. An image component that broke its contract once is not called again in this
process: every later call raises the same error at once, marked ``repeated`` (reported once, not
once per image).
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic import BaseModel

from fzoo.components import KIND_TABLE, Component, Generator, Launderer, Perturbation

if TYPE_CHECKING:
    import torch

#: a component name: letters, digits and ``. _ + -``, starting with a letter or digit
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,99}")
#: how far outside [0, 1] an image value may be (rounding in a decoder, say)
RANGE_TOLERANCE = 1e-3
_KINDS = {k.name: k for k in KIND_TABLE}
_F32_MAX = float(np.finfo(np.float32).max)


def kind_words(kind: str) -> str:
    """``feature_extractor`` -> ``feature extractor``."""
    return kind.replace("_", " ")


# --------------------------------------------------------------------------- registration


def source_of(cls: type) -> tuple[str | None, int | None]:
    """The file and line where ``cls`` is defined (None where Python cannot tell)."""
    try:
        path = inspect.getsourcefile(cls)
    except (TypeError, OSError):
        path = None
    try:
        line: int | None = inspect.getsourcelines(cls)[1]
    except (TypeError, OSError, IndexError):
        line = None
    return path, line


def _defined_by(cls: type, attr: str) -> type | None:
    for klass in cls.__mro__:
        if attr in klass.__dict__:
            return klass
    return None


def _overrides(cls: type, method: str, base: type) -> bool:
    owner = _defined_by(cls, method)
    return owner is not None and owner not in base.__mro__ and callable(getattr(cls, method))


def class_problems(cls: type, kind: str) -> list[str]:
    """What a class of ``kind`` lacks, in words (empty: it may be registered).

    Checked without running anything: ``name``, ``Params``, the methods of its kind, the learned
    methods when ``requires_fit`` is set (or is a property, which may be true), a docstring.
    """
    spec = _KINDS[kind]
    base = spec.base
    if not (isinstance(cls, type) and issubclass(cls, base)):
        return [f"is not a subclass of fzoo.{base.__name__}"]
    problems: list[str] = []
    name = getattr(cls, "name", "")
    if not isinstance(name, str) or not name:
        problems.append("no 'name' (set a class attribute, e.g. name = \"my-component\")")
    elif not NAME_PATTERN.fullmatch(name):
        problems.append(
            f"name {name[:100]!r} is not valid (letters, digits and . _ + -, at most 100)"
        )
    params = getattr(cls, "Params", None)
    if not (isinstance(params, type) and issubclass(params, BaseModel)):
        problems.append("'Params' is not a pydantic model (subclass fzoo.Params)")
    elif "Params" not in _attrs_below(cls, base):
        problems.append(
            "no 'Params' model (declare class Params(fzoo.Params) with its parameters, "
            "even when it has none)"
        )
    options = spec.methods
    if options and not any(all(_overrides(cls, m, base) for m in opt) for opt in options):
        wanted = " or ".join(" + ".join(f"{m}()" for m in opt) for opt in options)
        problems.append(f"no {wanted} method (override fzoo.{base.__name__}'s)")
    learned = getattr(cls, "requires_fit", False)  # a property may be true: checked too
    if spec.learned_methods and learned:
        missing = [m for m in spec.learned_methods if not _overrides(cls, m, base)]
        if missing:
            names = ", ".join(f"{m}()" for m in missing)
            problems.append(f"requires_fit is set but it has no {names}")
    doc = cls.__dict__.get("__doc__")
    if not (isinstance(doc, str) and doc.strip()):
        problems.append("no docstring (say in one line what it does and what it cites)")
    return problems


def _attrs_below(cls: type, base: type) -> set[str]:
    """Attribute names defined by the classes between ``cls`` and ``base`` (``base`` excluded)."""
    out: set[str] = set()
    for klass in cls.__mro__:
        if klass in base.__mro__:
            continue
        out.update(klass.__dict__)
    return out


@dataclass(frozen=True)
class ComponentFailure:
    """A registered class that broke the registration contract: kept out of the registry."""

    kind: str
    name: str
    qualname: str
    problems: tuple[str, ...]
    file: str | None
    line: int | None

    @classmethod
    def of(cls, component: type, kind: str, problems: list[str]) -> ComponentFailure:
        """The failure of ``component`` (a class of ``kind``) with its own file and line."""
        path, line = source_of(component)
        name = getattr(component, "name", "")
        label = name if isinstance(name, str) else ""
        qualname = getattr(component, "__qualname__", repr(component))
        return cls(kind, label, qualname, tuple(problems), path, line)

    @property
    def where(self) -> str:
        """``file:line`` (or what is known of it)."""
        if self.file is None:
            return "<unknown file>"
        return self.file if self.line is None else f"{self.file}:{self.line}"

    def message(self) -> str:
        """One line per failure: ``FILE:LINE: feature extractor Foo ('foo'): PROBLEMS``."""
        name = f" ({self.name!r})" if self.name else ""
        return f"{self.where}: {kind_words(self.kind)} {self.qualname}{name}: " + "; ".join(
            self.problems
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "name": self.name,
            "class": self.qualname,
            "problems": list(self.problems),
            "file": self.file,
            "line": self.line,
            "error": self.message(),
        }


# --------------------------------------------------------------------------- run time


class ContractError(Exception):
    """A component's output broke its contract: names the component, the method, the problem.

    ``repeated`` is True when the component had already broken it and was not called again.
    """

    def __init__(self, component: Component, method: str, problem: str) -> None:
        self.kind = component.kind
        self.component = component.name
        self.method = method
        self.problem = problem
        self.repeated = False
        super().__init__(
            f"{kind_words(self.kind)} {self.component!r}: {method}() {problem}; "
            "not used for the rest of the run"
        )


def _fail(component: Component, method: str, problem: str) -> ContractError:
    error = ContractError(component, method, problem)
    component.__dict__["_contract_error"] = error
    return error


def broken(component: Component) -> ContractError | None:
    """The contract error this component instance raised earlier (None: none)."""
    error = component.__dict__.get("_contract_error")
    return error if isinstance(error, ContractError) else None


def guard(component: Component) -> None:
    """Raise the component's earlier contract error again, marked ``repeated``, without
    calling it (a component that broke its contract is not used again)."""
    error = broken(component)
    if error is not None:
        again = ContractError.__new__(ContractError)
        again.__dict__.update(error.__dict__)
        again.args = error.args
        again.repeated = True
        raise again


class ImageNotMade(str):
    """Why an image of a condition could not be made (its photo could not be read, or a step of
    the condition raised): the condition's fault, not the feature extractor's. When every image
    of a condition fails so, that condition has no test images; the extractor still scores the
    others."""

    __slots__ = ()


class Reported(ImageNotMade):
    """Why an image failed: a transform of its condition had already broken its contract for an
    earlier image of this run and was not called again. Kept for the report, not logged again."""

    __slots__ = ()


def load_failure(exc: BaseException) -> ImageNotMade:
    """Why an image could not be made: ``cannot make image: ...``; :class:`Reported` when a
    component had already broken its contract (and was not called again)."""
    if isinstance(exc, ContractError):
        text = f"cannot make image: {exc}"
        return Reported(text) if exc.repeated else ImageNotMade(text)
    return ImageNotMade(f"cannot make image: {type(exc).__name__}: {exc}")


def feature_problem(out: Any, n: int) -> tuple[np.ndarray | None, str | None]:
    """``out`` as a float32 ``[n, D]`` matrix, or what is wrong with it."""
    try:
        arr = np.asarray(out)
    except Exception as exc:  # a ragged list, an object that refuses
        return None, f"returned {type(out).__name__}, not an array ({exc})"
    if arr.dtype.kind not in "biuf":
        return None, f"returned dtype {arr.dtype}; expected float32 (or convertible without loss)"
    if arr.ndim != 2 or arr.shape[0] != n:
        return None, f"returned shape {arr.shape} for a batch of {n}; expected [{n}, D]"
    finite = arr[np.isfinite(arr)] if arr.dtype.kind == "f" else arr
    if finite.size and arr.dtype.kind in "iuf":
        big = float(np.abs(finite).max())
        limit = _F32_MAX if arr.dtype.kind == "f" else float(2**24)
        if big > limit:
            return None, f"returned {big:g}, which float32 cannot hold without loss"
    return arr.astype(np.float32, copy=False), None


#: why an image whose feature row is not finite fails (that image only)
NONFINITE = "extract() returned non-finite features (NaN or inf)"


def check_features(component: Component, out: Any, n: int) -> np.ndarray:
    """The output of ``extract`` on a batch of ``n`` as float32 ``[n, D]``; raises
    :class:`ContractError` for another shape or a dtype that does not convert without loss
    (complex, object, float64 beyond float32's range). Rows that are not finite are left to
    the caller: they fail their image only (:func:`finite_rows`)."""
    arr, problem = feature_problem(out, n)
    if problem is not None or arr is None:
        raise ContractError(component, "extract", problem or "returned nothing")
    return arr


def finite_rows(component: Component, rows: np.ndarray) -> list[np.ndarray | str]:
    """Each row, or the reason its image fails when it holds NaN or inf."""
    ok = np.isfinite(rows).all(axis=1)
    reason = f"{component.name}: {NONFINITE}"
    return [row if good else reason for row, good in zip(rows, ok, strict=True)]


_WIDTHS: dict[str, int] = {}


def check_width(key: str, component: Component, rows: Iterable[Any]) -> None:
    """Feature width must be constant for one extractor identity ``key`` (its fingerprint, or the
    fitted one) in this process; raises :class:`ContractError` on the first change. ``rows``:
    feature rows, or the reasons images failed (skipped)."""
    for row in rows:
        if isinstance(row, str):
            continue
        width = int(np.shape(row)[0])
        first = _WIDTHS.setdefault(key, width)
        if first != width:
            raise ContractError(
                component,
                "extract",
                f"returned {width} features per image after {first} earlier; the width must "
                "be constant for one fingerprint",
            )


def image_problem(component: Component, out: Any, n: int, like: torch.Tensor | None) -> str | None:
    """What is wrong with an image batch a component returned (None: nothing).

    ``like`` is the input batch (None for ``generate``): the output keeps its batch size, its
    channel count, its dtype and (unless the class sets ``changes_size``, or crops to its
    ``multiple``) its size. Values are finite and within [0, 1] (± :data:`RANGE_TOLERANCE`).
    """
    import torch

    if not isinstance(out, torch.Tensor):
        return f"returned {type(out).__name__}; expected a torch.Tensor [B, C, H, W]"
    if out.dim() != 4:
        return f"returned shape {tuple(out.shape)}; expected [B, C, H, W]"
    b, c, h, w = out.shape
    channels = 3 if like is None else like.shape[1]
    if b != n:
        return f"returned {b} image(s) for {n}"
    if c != channels:
        return f"returned {c} channels; expected {channels}"
    dtype = torch.float32 if like is None else like.dtype
    if out.dtype != dtype:
        return f"returned dtype {out.dtype}; expected {dtype}"
    if like is not None and not getattr(component, "changes_size", False):
        ih, iw = like.shape[-2:]
        m = max(int(getattr(component, "multiple", 1)), 1)
        cropped = m > 1 and h <= ih and w <= iw and h % m == 0 and w % m == 0 and h and w
        if (h, w) != (ih, iw) and not cropped:
            return (
                f"returned {w}x{h} images for {iw}x{ih} input; set changes_size = True on the "
                "class if it changes the size"
            )
    if out.numel():
        flat = out.detach()
        if not bool(torch.isfinite(flat).all()):
            return "returned non-finite values (NaN or inf)"
        lo, hi = float(flat.min()), float(flat.max())
        if lo < -RANGE_TOLERANCE or hi > 1 + RANGE_TOLERANCE:
            return f"returned values in [{lo:.4g}, {hi:.4g}]; expected [0, 1]"
    return None


def _checked(
    component: Component, method: str, out: Any, n: int, like: torch.Tensor | None
) -> torch.Tensor:
    problem = image_problem(component, out, n, like)
    if problem is not None:
        raise _fail(component, method, problem)
    result: torch.Tensor = out
    return result


def transform(component: Component, batch: torch.Tensor, seed: int) -> torch.Tensor:
    """One transform step on ``batch``, checked: ``launder(batch)``, ``apply(batch, rng)`` with
    ``numpy.random.default_rng(seed)``, or a generator's ``img2img(batch, seed)``."""
    guard(component)
    if isinstance(component, Launderer):
        method, out = "launder", component.launder(batch)
    elif isinstance(component, Perturbation):
        method, out = "apply", component.apply(batch, np.random.default_rng(seed))
    elif isinstance(component, Generator):
        method, out = "img2img", component.img2img(batch, seed)
    else:  # pragma: no cover - config validation prevents this
        raise TypeError(f"{component!r} cannot transform images")
    return _checked(component, method, out, batch.shape[0], batch)


def generate(generator: Generator, n: int, seed: int) -> torch.Tensor:
    """``generator.generate(n, seed)``, checked (n float32 RGB images in [0, 1])."""
    guard(generator)
    return _checked(generator, "generate", generator.generate(n, seed), n, None)


def launder(launderer: Launderer, batch: torch.Tensor) -> torch.Tensor:
    """``launderer.launder(batch)``, checked."""
    guard(launderer)
    return _checked(launderer, "launder", launderer.launder(batch), batch.shape[0], batch)


def reset() -> None:
    """Forget the feature widths seen in this process (tests)."""
    _WIDTHS.clear()
