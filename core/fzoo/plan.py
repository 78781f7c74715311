"""The plan of one grid cell, made once when the experiment is validated.

Validation resolves every component name (or preset) to its registered class and validated
parameters; :class:`CellPlan` keeps them, per condition and pipeline, so the runner builds
components from the plan and never looks a name up again. What depends on the data (which test
images a condition needs) and on built components (fingerprints of weight-bearing components,
computed when they are built at the start of a cell) is derived here too, by pure functions.

The steps of derived classes (``data.derive``) are still resolved by :mod:`fzoo.data` when it
loads the data (issue #12: to move into the plan). At run time the plan's conditions become
:class:`fzoo.conditions.Condition` (components built) and its tasks are scoped by
:mod:`fzoo.tasks`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fzoo.components import Component
    from fzoo.schema import ComponentSpec, ConditionSpec, ExperimentSpec, PipelineSpec
    from fzoo.yaml_loader import Path_


# --------------------------------------------------------------------------- resolution


@dataclass
class ResolvedComponent:
    """A component spec after name/preset resolution and parameter validation."""

    kind: str
    component: str
    params: dict[str, Any]
    preset: str | None = None
    #: the registered class, as resolved (None: looked up again by name when built)
    cls: type[Component] | None = field(default=None, repr=False, compare=False)

    def build(self) -> Any:
        cls = self.cls
        if cls is None:
            from fzoo.plugin_manager import get_registry

            cls = get_registry().get(self.kind, self.component)
        return cls(**self.params)


def resolve_component(spec: ComponentSpec, kind: str) -> ResolvedComponent:
    """Name or preset -> component class name and merged, validated params (raises on error)."""
    from fzoo.plugin_manager import UnknownComponentError, get_registry

    reg = get_registry()
    preset = reg.presets.get(spec.name)
    if preset is not None:
        if preset.kind != kind:
            raise UnknownComponentError(kind, spec.name, reg.names(kind))
        name, params, preset_name = preset.component, {**preset.params, **spec.params}, preset.name
    else:
        name, params, preset_name = spec.name, dict(spec.params), None
    cls = reg.get(kind, name)
    validated = cls.Params(**params)
    from fzoo.schema import refuse_quoted_values

    refuse_quoted_values(params, validated)  # bins: "3" is refused, not read as 3
    return ResolvedComponent(kind, name, validated.model_dump(mode="json"), preset_name, cls)


def component_paths(spec: ExperimentSpec) -> list[tuple[Path_, ComponentSpec, str]]:
    """Every component of an experiment: (path in the YAML, spec, kind)."""
    out: list[tuple[Path_, ComponentSpec, str]] = [
        (("data", "dataset"), spec.data.dataset, "dataset")
    ]
    for i, d in enumerate(spec.data.derive):
        if d.launderer is not None:
            out.append((("data", "derive", i, "launderer"), d.launderer, "launderer"))
        if d.generator is not None:
            out.append((("data", "derive", i, "generator"), d.generator, "generator"))
        for j, p in enumerate(d.perturbations):
            out.append((("data", "derive", i, "perturbations", j), p, "perturbation"))
    for i, c in enumerate(spec.conditions):
        if c.launderer is not None:
            out.append((("conditions", i, "launderer"), c.launderer, "launderer"))
        for j, p in enumerate(c.perturbations):
            out.append((("conditions", i, "perturbations", j), p, "perturbation"))
    for i, pl in enumerate(spec.pipelines):
        for j, f in enumerate(pl.features):
            out.append((("pipelines", i, "features", j), f, "feature_extractor"))
        out.append((("pipelines", i, "classifier"), pl.classifier, "classifier"))
    return out


# --------------------------------------------------------------------------- the plan


@dataclass(frozen=True)
class ConditionPlan:
    """A test-time condition: its spec and its steps, resolved (launderer first)."""

    spec: ConditionSpec
    steps: tuple[ResolvedComponent, ...]


@dataclass(frozen=True)
class PipelinePlan:
    """A pipeline: its spec, its feature extractors and its classifier, resolved."""

    spec: PipelineSpec
    features: tuple[ResolvedComponent, ...]
    classifier: ResolvedComponent

    @property
    def name(self) -> str:
        return self.spec.name


@dataclass(frozen=True)
class CellPlan:
    """What one grid cell runs: its conditions and pipelines with every component resolved."""

    spec: ExperimentSpec  # the spec it was made from (a cell whose spec is replaced is re-planned)
    conditions: tuple[ConditionPlan, ...]
    pipelines: tuple[PipelinePlan, ...]

    def is_for(self, spec: ExperimentSpec) -> bool:
        return self.spec is spec

    @classmethod
    def of(
        cls, spec: ExperimentSpec, resolved: dict[Path_, ResolvedComponent] | None = None
    ) -> CellPlan:
        """The plan of ``spec`` from the components validation resolved (by YAML path);
        anything missing there is resolved now."""
        got = dict(resolved or {})
        for path, comp, kind in component_paths(spec):
            if path not in got:
                got[path] = resolve_component(comp, kind)
        conditions = []
        for i, c in enumerate(spec.conditions):
            steps = [got[("conditions", i, "launderer")]] if c.launderer is not None else []
            steps += [
                got[("conditions", i, "perturbations", j)] for j in range(len(c.perturbations))
            ]
            conditions.append(ConditionPlan(c, tuple(steps)))
        pipelines = [
            PipelinePlan(
                pl,
                tuple(got[("pipelines", i, "features", j)] for j in range(len(pl.features))),
                got[("pipelines", i, "classifier")],
            )
            for i, pl in enumerate(spec.pipelines)
        ]
        return cls(spec, tuple(conditions), tuple(pipelines))
