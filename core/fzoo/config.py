"""Experiment YAML: safe loading with line numbers, then two-phase validation.

The entry point (:func:`load_experiment`) and phase 2. The parts live in their own modules and are
re-exported here, so ``fzoo.config`` keeps its public names: the YAML loader with locations and
limits (:mod:`fzoo.yaml_loader`), the structure (:mod:`fzoo.schema`), grids, variants and
overrides (:mod:`fzoo.grid`).

Phase 1 checks the structure of the experiment (pydantic models of :mod:`fzoo.schema`). Phase 2
resolves each component by name or preset, and validates its parameters against the component's
own schema.
Every problem is reported as ``FILE:LINE:COL: message``; unknown names get the installed names and
a did-you-mean. YAML tags that would construct objects are rejected, and so are duplicate keys.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from fzoo.grid import (  # noqa: F401  (re-exported: fzoo.config is the public name)
    Cell,
    Overrides,
    _check_cells,
    _resolve_path,
    _set_path,
    apply_overrides,
    apply_variant,
    expand_grid,
    set_override,
)
from fzoo.plan import (  # noqa: F401  (re-exported: fzoo.config is the public name)
    CellPlan,
    ResolvedComponent,
    component_paths,
    resolve_component,
)
from fzoo.schema import (  # noqa: F401  (re-exported: fzoo.config is the public name)
    MAX_SEED,
    ComponentSpec,
    ConditionSpec,
    DataSpec,
    DeriveSpec,
    EngineSpec,
    ExperimentSpec,
    HeadlineSpec,
    PipelineSpec,
    SafeName,
    SplitSpec,
    TaskSpec,
    _pydantic_issues,
    param_messages,
    unknown_component_message,
)
from fzoo.yaml_loader import (  # noqa: F401  (re-exported: fzoo.config is the public name)
    LIMIT_ENV,
    ConfigError,
    ConfigIssue,
    Limits,
    Loc,
    Located,
    Path_,
    load_yaml,
    parse_value,
    parse_yaml,
    read_text_limited,
    short,
)

# --------------------------------------------------------------------------- phase 2: components


def validate_components(
    spec: ExperimentSpec,
    located: Located,
    prefix: Path_ = (),
    resolved: dict[Path_, ResolvedComponent] | None = None,
) -> list[ConfigIssue]:
    """Phase 2: every component name exists and its params fit its schema.

    Each component resolved is put in ``resolved`` (by its path in the experiment), from which
    the cell's :class:`~fzoo.plan.CellPlan` is made.
    """
    from fzoo.plugin_manager import UnknownComponentError

    issues: list[ConfigIssue] = []
    for path, comp, kind in component_paths(spec):
        full = (*prefix, *path)
        try:
            rc = resolve_component(comp, kind)
            if resolved is not None:
                resolved[path] = rc
        except UnknownComponentError as exc:
            issues.append(located.issue((*full, "name"), unknown_component_message(exc)))
        except ValidationError as exc:
            from fzoo.plugin_manager import get_registry

            reg = get_registry()
            target = reg.presets[comp.name].component if comp.name in reg.presets else None
            cls = reg.components[kind].get(target or comp.name)
            for key, msg in param_messages(exc, comp.name, cls):
                issues.append(located.issue((*full, "params", key) if key else full, msg))
    issues.extend(_check_labels(spec, located, prefix))
    return issues


def _check_labels(spec: ExperimentSpec, located: Located, prefix: Path_) -> list[ConfigIssue]:
    """Derived classes and tasks must name labels that can exist."""
    issues: list[ConfigIssue] = []
    derived = [d.label for d in spec.data.derive]
    for i, d in enumerate(spec.data.derive):
        for j, src in enumerate(d.from_):
            if src in derived[i:]:
                issues.append(
                    located.issue(
                        (*prefix, "data", "derive", i, "from", j),
                        f"derived class {d.label!r} is made from {src!r}, which is derived later "
                        "or from itself; list derived classes in order",
                    )
                )
    return issues


# --------------------------------------------------------------------------- entry points


@dataclass
class Experiment:
    """A validated experiment: the spec, its grid cells, and where it came from."""

    spec: ExperimentSpec
    cells: list[Cell]
    located: Located

    @property
    def file(self) -> str:
        return self.located.file


def validate_data(
    raw: Any,
    located: Located,
    prefix: Path_ = (),
    variant: str | None = None,
    overrides: Overrides | None = None,
    limits: Limits | None = None,
) -> Experiment:
    """Both phases on an already parsed mapping; raises :class:`ConfigError`.

    ``variant`` applies one of the experiment's named ``variants`` first, then ``overrides``
    (``{dotted.path: value}``, ``path+`` appends to a list; see :func:`set_override`). A grid of
    more than ``limits.max_cells`` cells is refused before any cell is made.
    """
    limits = limits or Limits.from_env()
    if not isinstance(raw, dict):
        raise ConfigError([located.issue(prefix, "an experiment must be a YAML mapping")])
    if "variant" in raw:
        raise ConfigError(
            [located.issue((*prefix, "variant"), "'variant' is set by `--variant`, not in YAML")]
        )
    if variant is not None:
        raw = apply_variant(raw, variant, located, prefix)
    if overrides:
        raw = apply_overrides(raw, overrides, located, prefix)
    try:
        spec = ExperimentSpec.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_pydantic_issues(exc, located, prefix)) from None
    if spec.grid:  # by arithmetic, before any plugin is loaded or cell made
        _check_cells(spec.grid, located, prefix, limits.max_cells)

    components: dict[Path_, ResolvedComponent] = {}
    issues = validate_components(spec, located, prefix, components)
    cells: list[Cell] = []
    if spec.grid:

        def check(cell_spec: ExperimentSpec) -> tuple[list[ConfigIssue], CellPlan | None]:
            cell_resolved: dict[Path_, ResolvedComponent] = {}
            found = validate_components(cell_spec, located, prefix, cell_resolved)
            return found, _plan(cell_spec, cell_resolved)

        cells, grid_issues = expand_grid(raw, spec, located, prefix, None if issues else check)
        issues.extend(grid_issues)
    else:
        cells = [Cell("", {}, spec, _plan(spec, components))]
    if issues:
        raise ConfigError(_dedupe(issues))
    return Experiment(spec, cells, located)


def _plan(spec: ExperimentSpec, resolved: dict[Path_, ResolvedComponent]) -> CellPlan | None:
    """The cell's plan, when every component resolved (else validation reports the issues)."""
    if len(resolved) < len(component_paths(spec)):
        return None
    return CellPlan.of(spec, resolved)


def _dedupe(issues: list[ConfigIssue]) -> list[ConfigIssue]:
    seen: set[str] = set()
    out = []
    for i in issues:
        if str(i) not in seen:
            seen.add(str(i))
            out.append(i)
    return out


def load_experiment(
    path_or_name: str | Path,
    variant: str | None = None,
    overrides: Overrides | None = None,
    limits: Limits | None = None,
) -> Experiment:
    """Load and validate an experiment from a YAML file, or by name from ``registry.yaml``.

    ``variant`` names one of the experiment's ``variants`` (override sets) to apply;
    ``overrides`` (``{dotted.path: value}``) are set after it, as ``fzoo run --set`` does.
    ``limits`` bound the file and its grid (default :meth:`Limits.from_env`).
    """
    limits = limits or Limits.from_env()
    p = Path(path_or_name)
    if not p.exists():
        from fzoo.catalogue import experiments

        named = experiments()
        if str(path_or_name) in named:
            reg_path, _ = named[str(path_or_name)]
            _, located = load_yaml(reg_path)
            prefix: Path_ = ("experiments", str(path_or_name))
            raw = located.data["experiments"][str(path_or_name)]
            if isinstance(raw, dict):
                raw = {"name": str(path_or_name), **raw}
            return validate_data(raw, located, prefix, variant, overrides, limits)
        import difflib

        close = difflib.get_close_matches(str(path_or_name), list(named), 1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ConfigError(
            [
                ConfigIssue(
                    str(path_or_name),
                    1,
                    1,
                    f"no such file, and no experiment of that name in registry.yaml.{hint} "
                    f"Named experiments: {', '.join(sorted(named)) or '(none)'}",
                )
            ]
        )
    _, located = load_yaml(p, limits)
    return validate_data(located.data, located, (), variant, overrides, limits)


def create_component(kind: str, name: str, **params: Any) -> Any:
    """Build a component by registered name or preset, like ``timm.create_model``.

    ``kind`` is one of ``launderer``, ``feature_extractor``, ``classifier``, ``perturbation``,
    ``generator``, ``dataset``. Preset parameters are merged with ``params``. Plugins use this to
    compose other components (e.g. a reconstruction feature built on any launderer).
    """
    return resolve_component(ComponentSpec(name=name, params=params), kind).build()
