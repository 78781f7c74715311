"""Grids, variants and overrides: dotted paths (``pipelines.svm.classifier.params.C``) into a
raw experiment mapping, set before validation, and the grid :class:`Cell`.
"""

from __future__ import annotations

import copy
import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from fzoo.schema import ExperimentSpec
from fzoo.yaml_loader import LIMIT_ENV, ConfigError, ConfigIssue, Located, Path_, _cut, short

if TYPE_CHECKING:
    from fzoo.plan import CellPlan

# --------------------------------------------------------------------------- grid


def _resolve_path(data: Any, dotted: str) -> tuple[Path_, Any]:
    """Walk ``a.b.name.c`` through dicts (keys), lists (index, item ``name`` or ``label``).

    Missing mapping keys are created (``classifier.params.C`` on a classifier without params), and
    a component given by name alone (``classifier: svm``) becomes ``{name: svm}``; the expanded
    cell is validated afterwards, so a misspelled key is still reported.
    """
    cur = data
    path: list[str | int] = []
    parts = dotted.split(".")
    for n, part in enumerate(parts):
        if isinstance(cur, str) and part in ("name", "params") and path:
            _set_path(data, tuple(path), {"name": cur})
            cur = _get_path(data, tuple(path))
        if isinstance(cur, dict):
            if part not in cur:
                if n == len(parts) - 1:
                    path.append(part)
                    return tuple(path), None
                cur[part] = {}
            path.append(part)
            cur = cur[part]
        elif isinstance(cur, list):
            if part.isdigit() and int(part) < len(cur):
                idx = int(part)
            else:
                # items are found by their name (pipelines, tasks) or label (derived classes)
                names = [i.get("name", i.get("label")) for i in cur if isinstance(i, dict)]
                if part not in names:
                    raise KeyError(_no_item(part, path, names))
                idx = names.index(part)
            path.append(idx)
            cur = cur[idx]
        else:
            raise KeyError(f"cannot descend into {type(cur).__name__} at {part!r}")
    return tuple(path), cur


def _no_item(part: str, path: list[str | int], names: list[Any]) -> str:
    """``no item 'c' in list pipelines; did you mean 'a'? Items: a, b`` (or their indexes)."""
    import difflib

    listed = [str(n) for n in names if n is not None]
    close = difflib.get_close_matches(part, listed, 1) if len(part) <= 200 else []
    hint = f"; did you mean {close[0]!r}?" if close else "."
    if listed:
        items = ", ".join(listed)
    else:
        items = f"(none named; indexes 0-{len(names) - 1})" if names else "(the list is empty)"
    return f"no item {short(part)} in list {'.'.join(map(str, path))}{hint} Items: {items}"


def _get_path(data: Any, path: Path_) -> Any:
    cur = data
    for p in path:
        cur = cur[p]
    return cur


def _set_path(data: Any, path: Path_, value: Any) -> None:
    cur = data
    for p in path[:-1]:
        cur = cur[p]
    cur[path[-1]] = value


@dataclass
class Cell:
    """One grid cell: an id, the values set on it, and its validated experiment."""

    id: str
    values: dict[str, Any]
    spec: ExperimentSpec
    #: the cell's components, resolved once at validation (None: resolve when run)
    plan: CellPlan | None = None


def set_override(data: dict[str, Any], key: str, value: Any) -> None:
    """Set ``key`` (a dotted path as in ``grid``) to ``value`` in ``data``, in place.

    A key ending in ``+`` appends ``value`` to the list at that path (``conditions+``).
    Raises ``KeyError`` when the path does not exist.
    """
    if key.endswith("+"):
        path, target = _resolve_path(data, key[:-1])
        if not isinstance(target, list):
            raise KeyError(f"{key[:-1]!r} is not a list; '+' appends to a list")
        target.append(copy.deepcopy(value))
        return
    path, _ = _resolve_path(data, key)
    _set_path(data, path, copy.deepcopy(value))


Overrides = dict[str, Any] | Sequence[tuple[str, Any]]


def apply_overrides(
    raw: dict[str, Any], overrides: Overrides, located: Located, where: Path_
) -> dict[str, Any]:
    """A copy of ``raw`` with every ``(dotted.path, value)`` of ``overrides`` set, in order."""
    data = copy.deepcopy(raw)
    issues = []
    pairs = list(overrides.items()) if isinstance(overrides, dict) else list(overrides)
    for key, value in pairs:
        try:
            set_override(data, str(key), value)
        except KeyError as exc:
            issues.append(located.issue((*where, key), f"override {key!r}: {exc.args[0]}"))
    if issues:
        raise ConfigError(issues)
    return data


def apply_variant(raw: dict[str, Any], variant: str, located: Located, prefix: Path_) -> Any:
    """``raw`` with the overrides of ``variants[variant]`` set (a copy; ``raw`` is unchanged)."""
    variants = raw.get("variants")
    if not isinstance(variants, dict) or variant not in variants:
        import difflib

        names = sorted(variants) if isinstance(variants, dict) else []
        close = difflib.get_close_matches(variant, names, 1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ConfigError(
            [
                located.issue(
                    prefix,
                    f"no variant {variant!r} in this experiment.{hint} "
                    f"Variants: {', '.join(names) or '(none)'}",
                )
            ]
        )
    overrides = variants[variant]
    where = (*prefix, "variants", variant)
    if not isinstance(overrides, dict):
        raise ConfigError([located.issue(where, "a variant is a mapping {dotted.path: value}")])
    data = apply_overrides(raw, overrides, located, where)
    data["variant"] = variant
    return data


def _check_cells(grid: dict[str, list[Any]], located: Located, prefix: Path_, limit: int) -> None:
    """Refuse a grid of more than ``limit`` cells, by arithmetic (nothing is expanded)."""
    sizes = [len(v) for v in grid.values()]
    cells = math.prod(sizes)
    if cells > limit:
        shape = " x ".join(str(n) for n in sizes)
        message = (
            f"grid: {cells} cells ({shape}) is more than the limit of {limit}; raise it with "
            f"--max-cells {cells} (fzoo run/validate) or {LIMIT_ENV['max_cells']}={cells}"
        )
        raise ConfigError([located.issue((*prefix, "grid"), message)])


# --------------------------------------------------------------------------- cells

#: validates one cell's spec (phase 2): its issues, and its plan when every component resolved
CellCheck = Callable[[ExperimentSpec], "tuple[list[ConfigIssue], CellPlan | None]"]


def expand_grid(
    raw: dict[str, Any],
    spec: ExperimentSpec,
    located: Located,
    prefix: Path_,
    check: CellCheck | None,
) -> tuple[list[Cell], list[ConfigIssue]]:
    """The cells of ``spec.grid`` (every combination of its values, in order), each validated.

    A problem caused by a grid value is reported once, at that value in the grid (or at the
    grid key when every value of the key has it), not at the component's line once per cell; a
    problem of a combination of values is reported once, with the first cell that has it.
    ``check`` None: only the grid's paths are checked (the experiment has other issues).
    """
    from pydantic import ValidationError

    from fzoo.schema import _pydantic_issues

    keys = list(spec.grid)
    base = {k: v for k, v in raw.items() if k != "grid"}
    resolved: dict[str, Path_] = {}
    issues: list[ConfigIssue] = []
    for key in keys:
        try:
            resolved[key], _ = _resolve_path(base, key)
        except KeyError as exc:
            message = f"grid path {short(key)}: {exc.args[0]}"
            issues.append(located.issue((*prefix, "grid", key), message))
    if issues or check is None:
        return [], issues
    found = _GridIssues(keys, spec.grid, resolved, located, prefix)
    cells: list[Cell] = []
    for combo in itertools.product(*(range(len(spec.grid[k])) for k in keys)):
        values = {k: spec.grid[k][i] for k, i in zip(keys, combo, strict=True)}
        data = copy.deepcopy(base)
        for key, value in values.items():
            _set_path(data, resolved[key], value)
        cell_id = ",".join(f"{k}={v}" for k, v in values.items())
        try:
            cell_spec = ExperimentSpec.model_validate(data)
        except ValidationError as exc:
            found.add(_pydantic_issues(exc, located, prefix), cell_id, combo)
            continue
        cell_issues, plan = check(cell_spec)
        found.add(cell_issues, cell_id, combo)
        cells.append(Cell(cell_id, values, cell_spec, plan))
    return cells, found.issues()


class _GridIssues:
    """The issues of every cell, put where they come from and counted once."""

    def __init__(
        self,
        keys: list[str],
        grid: dict[str, list[Any]],
        resolved: dict[str, Path_],
        located: Located,
        prefix: Path_,
    ) -> None:
        self.keys, self.grid, self.resolved = keys, grid, resolved
        self.located, self.prefix = located, prefix
        #: (grid key, message) -> indexes of the values that have it
        self.by_value: dict[tuple[str, str], set[int]] = {}
        #: issue text -> (the issue, the first cell with it)
        self.other: dict[str, tuple[ConfigIssue, str]] = {}

    def _key_of(self, path: Path_ | None) -> str | None:
        """The grid key whose value the problem at ``path`` is about (the deepest one)."""
        if path is None:
            return None
        rel = tuple(path[len(self.prefix) :])
        best: str | None = None
        for key in self.keys:
            target = self.resolved[key]
            inside = rel[: len(target)] == target or target[: len(rel)] == rel
            deeper = best is None or len(target) > len(self.resolved[best])
            if inside and len(rel) >= len(target) - 1 and deeper:
                best = key
        return best

    def add(self, issues: list[ConfigIssue], cell_id: str, combo: tuple[int, ...]) -> None:
        for issue in issues:
            key = self._key_of(issue.path)
            if key is not None:
                index = combo[self.keys.index(key)]
                self.by_value.setdefault((key, issue.message), set()).add(index)
            else:
                self.other.setdefault(str(issue), (issue, cell_id))

    def issues(self) -> list[ConfigIssue]:
        out = []
        for (key, message), indexes in self.by_value.items():
            values = self.grid[key]
            if len(indexes) == len(values) and len(values) > 1:
                where: Path_ = (*self.prefix, "grid", key)
                text = f"grid {short(key)} (every value): {message}"
                out.append(self.located.issue(where, text))
                continue
            for i in sorted(indexes):
                where = (*self.prefix, "grid", key, i)
                text = f"grid {short(key)} = {short(values[i])}: {message}"
                out.append(self.located.issue(where, text))
        for issue, cell_id in self.other.values():
            issue.message = f"grid cell [{_cut(cell_id)}]: {issue.message}"
            out.append(issue)
        return out
