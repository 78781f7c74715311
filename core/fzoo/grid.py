"""Grids, variants and overrides: dotted paths (``pipelines.svm.classifier.params.C``) into a
raw experiment mapping, set before validation, and the grid :class:`Cell`.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from fzoo.schema import ExperimentSpec
from fzoo.yaml_loader import LIMIT_ENV, ConfigError, Located, Path_

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
                    raise KeyError(f"no item {part!r} in list {'.'.join(map(str, path))}")
                idx = names.index(part)
            path.append(idx)
            cur = cur[idx]
        else:
            raise KeyError(f"cannot descend into {type(cur).__name__} at {part!r}")
    return tuple(path), cur


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
