"""The plan of one grid cell, made once when the experiment is validated.

Validation resolves every component name (or preset) to its registered class and validated
parameters; :class:`CellPlan` keeps them, per condition and pipeline, so the runner builds
components from the plan and never looks a name up again. What depends on the data (which test
images a condition needs) and on built components (fingerprints of weight-bearing components,
computed when they are built at the start of a cell) is derived here too, by pure functions.

The plan holds the data too (:class:`DataPlan`: the dataset and the steps of every derived class),
which :func:`fzoo.data.load_items` builds from. At run time the plan's conditions become
:class:`fzoo.conditions.Condition` (components built) and its tasks are scoped by
:mod:`fzoo.tasks`.

Two types stand for "a component with parameters": the YAML side,
:class:`fzoo.schema.ComponentSpec` (a name or preset and parameter overrides, located in the
file), and the resolved side, :class:`ResolvedComponent` (the class, its validated parameters,
the fingerprint once built). ``fzoo.data.ComponentRef`` is the old name of the latter.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from fzoo.components import stable_hash

if TYPE_CHECKING:
    from fzoo.components import Component
    from fzoo.schema import (
        ComponentSpec,
        ConditionSpec,
        DataSpec,
        DeriveSpec,
        ExperimentSpec,
        PipelineSpec,
    )
    from fzoo.yaml_loader import Path_


# --------------------------------------------------------------------------- resolution


@dataclass(frozen=True)
class ResolvedComponent:
    """A component after name/preset resolution and parameter validation: its registered class,
    its name, its validated parameters (JSON values) and, once built, its fingerprint.

    It is what travels to a remote worker too (the old name ``fzoo.data.ComponentRef``): pickled,
    the class becomes its ``module:qualname`` (``where``), and :meth:`build` in the other process
    takes the component from that process's registry by name, else imports it from ``where`` (a
    plugin registered at runtime, as tests do). In the process that resolved it, :meth:`build`
    uses the class itself and looks nothing up.
    """

    kind: str
    component: str
    params: dict[str, Any] = field(default_factory=dict, hash=False)
    preset: str | None = None
    #: the registered class, as resolved (None: looked up by name when built)
    cls: type[Component] | None = field(default=None, repr=False, compare=False)
    #: the built component's fingerprint, when known (None: not built yet)
    fingerprint: str | None = field(default=None, compare=False)
    #: ``module:qualname`` of the class (taken from ``cls``; what a pickled copy keeps of it)
    where: str = field(default="", repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.cls and not self.where:
            cls = self.cls
            object.__setattr__(self, "where", f"{cls.__module__}:{cls.__qualname__}")

    def __copy__(self) -> ResolvedComponent:
        return self  # immutable; a copy keeps its class (pickling does not)

    def __deepcopy__(self, memo: dict[int, Any]) -> ResolvedComponent:
        return self

    def __reduce__(self) -> tuple[Any, ...]:
        # the class travels as its name: the other process builds from its own registry first
        args = (self.kind, self.component, self.params, self.preset, None, self.fingerprint)
        return (_unpickle, (*args, self.where))

    @property
    def name(self) -> str:
        """The registered component name (never a preset)."""
        return self.component

    @property
    def key(self) -> str:
        """A stable identity (to cache built components by)."""
        return stable_hash([self.kind, self.component, self.params, self.where], 40)

    @classmethod
    def of(cls, component: Component) -> ResolvedComponent:
        """The resolved form of a built component (how to build it again, e.g. elsewhere)."""
        t = type(component)
        return cls(component.kind, t.name, component.get_params(), None, t)

    def with_fingerprint(self, fingerprint: str) -> ResolvedComponent:
        """This resolved component with the fingerprint of its built component."""
        return replace(self, fingerprint=fingerprint)

    def build(self) -> Any:
        """The component: its class with these parameters (see the class docstring)."""
        if self.cls:
            return self.cls(**self.params)
        from fzoo.plugin_manager import UnknownComponentError, get_registry

        try:
            cls = get_registry().get(self.kind, self.component)
        except UnknownComponentError as exc:
            if not self.where:
                raise
            import importlib

            module, _, qualname = self.where.partition(":")
            try:
                obj: Any = importlib.import_module(module)
                for part in qualname.split("."):
                    obj = getattr(obj, part)
            except (ImportError, AttributeError):
                raise exc from None
            cls = obj
        return cls(**self.params)


def _unpickle(
    kind: str,
    component: str,
    params: dict[str, Any],
    preset: str | None,
    cls: None,
    fingerprint: str | None,
    where: str,
) -> ResolvedComponent:
    return ResolvedComponent(kind, component, params, preset, cls, fingerprint, where)


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
class DerivePlan:
    """A derived class: its spec and its resolved components.

    ``generator`` is set for a class generated from noise (``n`` images); otherwise ``steps`` are
    the transforms applied to the images of ``from``, in order: the img2img generator, the
    launderer, then the perturbations. ``roles`` names each step as the fingerprints of
    results.json do (``derive[0].launderer``).
    """

    spec: DeriveSpec
    generator: ResolvedComponent | None
    steps: tuple[ResolvedComponent, ...]
    roles: tuple[str, ...]


@dataclass(frozen=True)
class DataPlan:
    """The data of a cell: its spec, the dataset and every derived class, resolved."""

    spec: DataSpec
    dataset: ResolvedComponent
    derive: tuple[DerivePlan, ...]

    @classmethod
    def of(cls, spec: DataSpec, resolved: dict[Path_, ResolvedComponent] | None = None) -> DataPlan:
        """The plan of ``spec`` from resolved components by YAML path (``("data", ...)``);
        anything missing there is resolved now."""
        got = dict(resolved or {})

        def at(path: Path_, comp: ComponentSpec, kind: str) -> ResolvedComponent:
            if path not in got:
                got[path] = resolve_component(comp, kind)
            return got[path]

        dataset = at(("data", "dataset"), spec.dataset, "dataset")
        derive = []
        for i, d in enumerate(spec.derive):
            where: Path_ = ("data", "derive", i)
            steps: list[ResolvedComponent] = []
            roles: list[str] = []
            generator = None
            if d.generator is not None:
                gen = at((*where, "generator"), d.generator, "generator")
                if d.from_:  # img2img from the images of 'from'
                    steps.append(gen)
                    roles.append(f"derive[{i}].generator")
                else:
                    generator = gen
            if d.launderer is not None:
                steps.append(at((*where, "launderer"), d.launderer, "launderer"))
                roles.append(f"derive[{i}].launderer")
            for j, p in enumerate(d.perturbations):
                steps.append(at((*where, "perturbations", j), p, "perturbation"))
                roles.append(f"derive[{i}].perturbations[{j}]")
            derive.append(DerivePlan(d, generator, tuple(steps), tuple(roles)))
        return cls(spec, dataset, tuple(derive))


@dataclass(frozen=True)
class CellPlan:
    """What one grid cell runs: its data, conditions and pipelines with every component
    resolved."""

    spec: ExperimentSpec  # the spec it was made from (a cell whose spec is replaced is re-planned)
    data: DataPlan
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
        return cls(spec, DataPlan.of(spec.data, got), tuple(conditions), tuple(pipelines))
