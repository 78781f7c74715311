"""The structure of an experiment (phase 1 of validation): the pydantic models of its YAML.

Component parameters are checked later, against each component's own schema (:mod:`fzoo.config`).
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Sequence
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from fzoo.yaml_loader import ConfigIssue, Located, Path_, _cut, short

# --------------------------------------------------------------------------- phase 1: structure


def _safe_name(value: str) -> str:
    """A pipeline, task or condition name: it becomes part of paths under ``--out``."""
    if not value.strip():
        raise ValueError("a name cannot be empty")
    if len(value) > 120:
        raise ValueError(f"a name has at most 120 characters (got {len(value)})")
    bad = sorted({c for c in value if c in "/\\" or ord(c) < 32 or ord(c) == 127})
    if bad:
        raise ValueError(
            f"a name cannot contain path separators or control characters (found {bad!r}); "
            "names become folder names under --out"
        )
    if value in (".", "..") or value.startswith("."):
        raise ValueError("a name cannot start with '.'; names become folder names under --out")
    return value


#: names that become paths (pipelines, tasks, conditions): no separators, no leading '.'
SafeName = Annotated[str, AfterValidator(_safe_name)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


#: seeds reach numpy, torch and scikit-learn; the last takes 0 .. 2**32 - 1
MAX_SEED = 2**32 - 1


class ComponentSpec(_Strict):
    """A component by registered name or preset name, with parameter overrides."""

    name: str
    params: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        if isinstance(value, str):
            return {"name": value}
        return value


class DeriveSpec(_Strict):
    """A derived class: images made from others (laundered, processed) or generated."""

    label: str
    from_: list[str] = Field(default_factory=list, alias="from")
    launderer: ComponentSpec | None = None
    perturbations: list[ComponentSpec] = Field(default_factory=list)
    generator: ComponentSpec | None = None
    n: int | None = Field(None, ge=1, le=1_000_000, description="number of generated images")
    quantize: bool = Field(True, description="round derived images to 8 bits, as a saved PNG")

    @field_validator("from_", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @model_validator(mode="after")
    def _one_source(self) -> DeriveSpec:
        if self.generator is not None:
            if self.launderer is not None:
                raise ValueError("a derived class takes a 'generator' or a 'launderer', not both")
            if self.from_ and self.n is not None:
                raise ValueError(
                    "'from' with a generator means img2img from those images; 'n' is for "
                    "generating from noise: give one of them"
                )
            if not self.from_ and self.n is None:
                raise ValueError(
                    "a generated class needs 'n' (how many images) or 'from' (img2img)"
                )
            if not self.from_ and self.perturbations:
                raise ValueError(
                    "perturbations of generated images are not supported here; derive another "
                    "class 'from' the generated one"
                )
        elif self.n is not None:
            raise ValueError("'n' only applies to a class made by a 'generator'")
        else:
            if not self.from_:
                raise ValueError("a derived class needs 'from' (the labels it is made from)")
            if self.launderer is None and not self.perturbations:
                raise ValueError("a derived class needs a 'launderer' or 'perturbations'")
        return self


class DataSpec(_Strict):
    dataset: ComponentSpec
    derive: list[DeriveSpec] = Field(default_factory=list)
    limit_per_class: int | None = Field(None, ge=1, le=10**9)
    max_pixels: int = Field(100_000_000, ge=1, le=10**10)


class SplitSpec(_Strict):
    test_size: float = Field(0.3, gt=0.0, lt=1.0)
    seed: int | None = Field(None, ge=0, le=MAX_SEED)
    allow_duplicates: bool = Field(
        False,
        description="accept identical pixels under different sources on both sides (else the "
        "run stops and names them)",
    )


class ConditionSpec(_Strict):
    """A test-time condition: an optional launderer, then perturbations, applied to test images.

    A launderer's output is rounded to 8 bits, as a saved PNG would be. ``tasks`` restricts the
    condition to some tasks (and its images to the labels those tasks test on), so a sweep of
    conditions for one task costs nothing for the others.
    """

    name: SafeName
    launderer: ComponentSpec | None = None
    perturbations: list[ComponentSpec] = Field(default_factory=list)
    tasks: list[str] | None = Field(None, description="only for these tasks (default: all)")


class PipelineSpec(_Strict):
    name: SafeName
    features: list[ComponentSpec] = Field(min_length=1)
    classifier: ComponentSpec
    tasks: list[str] | None = Field(None, description="run only these tasks (default: all)")
    timeout_s: float | None = Field(
        None,
        gt=0,
        le=7 * 24 * 3600,
        allow_inf_nan=False,
        description="longest one call into a component of this pipeline (an extract batch, a "
        "fit) may take, in seconds; after it the pipeline fails and the others go on "
        "(default: `fzoo run --timeout`, else no limit)",
    )


class TaskSpec(_Strict):
    """What to predict: ``binary`` (positive labels vs the rest) or ``multiclass``."""

    name: SafeName
    type: Literal["binary", "multiclass"] = "multiclass"
    target: Literal["label", "camera"] = "label"
    classes: list[str | dict[str, list[str]]] | None = Field(
        None,
        description="multiclass: the labels to use (default all); a one-key mapping groups "
        "labels into one class, e.g. {synthetic: [from-noise, img2img]}",
    )
    positive: list[str] | None = None
    train_on: list[str] | None = Field(None, description="labels used for training (default all)")
    test_on: list[str] | None = Field(None, description="labels used for testing (default all)")
    threshold: float = Field(0.5, gt=0.0, lt=1.0)

    @model_validator(mode="after")
    def _binary_needs_positive(self) -> TaskSpec:
        if self.type == "binary" and not self.positive:
            raise ValueError("a binary task needs 'positive' (the labels of the positive class)")
        if self.type == "binary" and self.classes is not None:
            raise ValueError(
                "'classes' is for multiclass tasks; a binary task is 'positive' vs the rest "
                "(restrict the images with 'train_on'/'test_on')"
            )
        seen: set[str] = set()
        for entry in self.classes or []:
            if isinstance(entry, dict) and (len(entry) != 1 or not next(iter(entry.values()))):
                raise ValueError(
                    "a class group is a mapping with one key, the class name, and a non-empty "
                    f"list of labels (got {entry!r})"
                )
            members = [entry] if isinstance(entry, str) else next(iter(entry.values()))
            for label in members:
                if label in seen:
                    raise ValueError(f"label {label!r} appears twice in 'classes'")
                seen.add(label)
        return self

    def class_of(self) -> dict[str, str] | None:
        """Multiclass: label (or camera) -> class name; None when every value is its own class."""
        if self.classes is None:
            return None
        out: dict[str, str] = {}
        for entry in self.classes:
            if isinstance(entry, str):
                out[entry] = entry
            else:
                for name, members in entry.items():
                    out.update({m: name for m in members})
        return out


class HeadlineSpec(_Strict):
    """One named number of ``headline.json`` (see :mod:`fzoo.headline`)."""

    task: str
    pipeline: str
    condition: str = "clean"
    cell: str = ""
    metric: str | None = None
    rate: str | None = Field(None, pattern=r"^[^>]+->[^>]+$")
    chance: bool = False
    description: str = Field("", description="what the number is, for people (printed with it)")

    @model_validator(mode="after")
    def _one_kind(self) -> HeadlineSpec:
        if sum([self.metric is not None, self.rate is not None, self.chance]) != 1:
            raise ValueError("a headline entry takes exactly one of 'metric', 'rate', 'chance'")
        from fzoo.metrics import METRIC_NAMES

        if self.metric is not None and self.metric not in METRIC_NAMES:
            raise ValueError(f"unknown metric {self.metric!r}; one of {', '.join(METRIC_NAMES)}")
        return self


class EngineSpec(_Strict):
    """Where features are computed: ``local`` (this process) or ``ray`` (Ray Data actors)."""

    name: Literal["local", "ray"] = "local"
    batch_size: int = Field(16, ge=1, le=100_000)
    address: str | None = Field(
        None,
        description="ray: cluster to join ('auto', 'ray://head:10001'); none starts a local Ray",
    )
    num_cpus: int | None = Field(
        None,
        ge=1,
        le=100_000,
        description="ray: CPUs of the local Ray it starts (ignored with 'address')",
    )
    concurrency: int = Field(1, ge=1, le=10_000, description="ray: number of extraction actors")


class ExperimentSpec(_Strict):
    """A whole experiment: data, split, conditions, pipelines, tasks, and an optional grid."""

    name: str = "experiment"
    description: str = ""
    seed: int = Field(0, ge=0, le=MAX_SEED)
    data: DataSpec
    split: SplitSpec = Field(default_factory=lambda: SplitSpec())
    conditions: list[ConditionSpec] = Field(default_factory=lambda: [ConditionSpec(name="clean")])
    pipelines: list[PipelineSpec] = Field(min_length=1)
    tasks: list[TaskSpec] = Field(min_length=1)
    grid: dict[str, list[Any]] = Field(default_factory=dict)
    headline: dict[str, HeadlineSpec] = Field(default_factory=dict)
    variants: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="named sets of overrides ({dotted.path: value}, paths as in 'grid'), chosen "
        "with `fzoo run NAME --variant V`, e.g. a quick version of a long study",
    )
    variant: str | None = Field(None, description="the variant applied (set by the loader)")
    cache_dir: str | None = None
    engine: EngineSpec = Field(default_factory=lambda: EngineSpec())

    @model_validator(mode="after")
    def _unique_names(self) -> ExperimentSpec:
        for what, items in (
            ("pipeline", self.pipelines),
            ("task", self.tasks),
            ("condition", self.conditions),
        ):
            seen: set[str] = set()
            for item in items:
                if item.name in seen:
                    raise ValueError(f"duplicate {what} name {item.name!r}")
                seen.add(item.name)
        tasks = {t.name for t in self.tasks}
        owners: list[tuple[str, Sequence[PipelineSpec | ConditionSpec]]] = [
            ("pipelines", self.pipelines),
            ("conditions", self.conditions),
        ]
        for key, named in owners:
            for i, owner in enumerate(named):
                for j, t in enumerate(owner.tasks or []):
                    if t not in tasks:
                        raise LocatedValueError(
                            (key, i, "tasks", j),
                            f"{key[:-1]} {owner.name!r} names unknown task {t!r}"
                            f"{_did_you_mean(t, tasks)}; tasks: {sorted(tasks)}",
                        )
        pipelines = {p.name for p in self.pipelines}
        for key, h in self.headline.items():
            if h.task not in tasks or h.pipeline not in pipelines:
                raise ValueError(f"headline {key!r} names an unknown task or pipeline")
            if h.condition not in {c.name for c in self.conditions}:
                raise ValueError(f"headline {key!r} names unknown condition {h.condition!r}")
        return self


class LocatedValueError(ValueError):
    """An error of a model validator about one value inside the model: ``path`` (relative to the
    model) locates it, so the message carries that value's line and column, not the model's."""

    def __init__(self, path: tuple[str | int, ...], message: str) -> None:
        super().__init__(message)
        self.path = path


def _did_you_mean(name: str, names: set[str]) -> str:
    close = difflib.get_close_matches(name, sorted(names), 1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _pydantic_issues(exc: ValidationError, located: Located, prefix: Path_) -> list[ConfigIssue]:
    issues = []
    for err in exc.errors():
        loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-")))
        path = (*prefix, *(("from" if p == "from_" else p) for p in loc))
        msg = err["msg"]
        located_error = (err.get("ctx") or {}).get("error")
        if isinstance(located_error, LocatedValueError):
            path, msg = (*path, *located_error.path), str(located_error)
        if err["type"] == "extra_forbidden":
            msg = f"unknown key {short(loc[-1])}"
        elif err["type"] == "missing":
            msg = f"missing required key {short(loc[-1])}"
        where = _cut(".".join(str(p) for p in path)) or "(top level)"
        got = err.get("input")
        tail = ""
        if err["type"] not in ("extra_forbidden", "missing") and not isinstance(got, dict | list):
            tail = f" (got {short(got)})"
        issues.append(located.issue(path, f"{where}: {msg}{tail}"))
    return issues


# --------------------------------------------------------------------------- component parameters

#: a float PyYAML reads as a string (YAML 1.1 wants a dot: ``1.0e-3``); taken as the number
_EXPONENT_FLOAT = re.compile(r"[-+]?[0-9]+(\.[0-9]*)?[eE][-+]?[0-9]+")


def refuse_quoted_values(given: dict[str, Any], validated: BaseModel) -> None:
    """Refuse a parameter written as a string that validation turned into a number or a
    boolean (``bins: "3"``, ``standardize: "yes"``): pydantic's lax mode would take it, but a
    quoted number is more often a mistake than a choice. Raises ``ValidationError`` with
    the parameter's name, as any other parameter error. ``1e-3`` (read as a string by YAML 1.1)
    is accepted as the number it is."""
    from pydantic_core import InitErrorDetails, PydanticCustomError

    dumped = validated.model_dump(by_alias=True)
    errors: list[InitErrorDetails] = []
    for key, value in given.items():
        got = dumped.get(key)
        if not isinstance(value, str) or not isinstance(got, int | float):  # bool is an int
            continue
        if (
            isinstance(got, float)
            and not isinstance(got, bool)
            and _EXPONENT_FLOAT.fullmatch(value)
        ):
            continue
        what = "a boolean" if isinstance(got, bool) else "a number"
        error = PydanticCustomError(
            "quoted_value",
            "{what} written as a string; write {plain} without quotes",
            {"what": what, "plain": json.dumps(got)},
        )
        errors.append(InitErrorDetails(type=error, loc=(key,), input=value))
    if errors:
        raise ValidationError.from_exception_data(type(validated).__name__, errors)


def param_messages(
    exc: ValidationError, component: str, cls: type[Any] | None
) -> list[tuple[str | None, str]]:
    """``(parameter, message)`` for every error of a component's ``Params`` validation, the way
    experiment files report them: an unknown parameter with a did-you-mean and the valid ones,
    else the parameter, pydantic's message and the value given (no raw pydantic dump)."""
    out: list[tuple[str | None, str]] = []
    fields = list(cls.Params.model_fields) if cls is not None else []
    for err in exc.errors():
        key = str(err["loc"][0]) if err["loc"] else None
        if err["type"] == "extra_forbidden":
            msg = f"{short(component)}: unknown parameter {short(key)}"
            close = difflib.get_close_matches(str(key), fields, 1)
            msg += f"; did you mean {close[0]!r}?" if close else "."
            msg += f" Valid parameters: {', '.join(fields) or '(none)'}"
        elif err["type"] == "missing":
            msg = f"{component}: missing required parameter {short(key)}"
        else:
            got = err.get("input")
            msg = f"{component}: parameter {short(key)}: {err['msg']} (got {short(got)})"
        out.append((key, msg))
    return out


def unknown_component_message(exc: LookupError) -> str:
    """The message of an unknown component name, naming the installed plugins blocked by
    ``FZOO_BLOCK_PLUGINS``: a blocked plugin's components are not loaded, so the name may be
    one of theirs."""
    import importlib.metadata

    from fzoo.plugin_manager import DEFAULT_PLUGINS, ENTRY_POINT_GROUP, blocked_names

    text = str(exc)
    blocked = blocked_names()
    if not blocked or getattr(exc, "failure", None) is not None:  # registered, but failed
        return text
    installed = {m.rsplit(".", 1)[-1] for m in DEFAULT_PLUGINS}
    installed |= {ep.name for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)}
    found = sorted(blocked & installed)
    if not found:
        return text
    shown = ", ".join(repr(b) for b in found)
    head, sep, listing = text.partition(" Installed: ")
    note = (
        f" (blocked: plugin {shown} is installed but blocked by FZOO_BLOCK_PLUGINS, so its "
        "components are not loaded; unblock it if it provides this name)"
    )
    return f"{head}{note}{sep}{listing}"


def param_type(
    prop: dict[str, Any], defs: dict[str, Any] | None = None, bounds: bool = True
) -> str:
    """A parameter's type as ``fzoo list`` prints it, from its JSON schema: the choices of a
    ``Literal``/enum (``one of "mean_logit", "majority"``), bounds (``integer >=4 <=256``;
    ``bounds=False``: not those of the top level), list items and alternatives (``list of
    integer | null``)."""
    defs = defs or {}
    if "$ref" in prop:
        target = defs.get(str(prop["$ref"]).rsplit("/", 1)[-1])
        return param_type(target, defs) if isinstance(target, dict) else "object"
    if "enum" in prop:
        return "one of " + ", ".join(json.dumps(v) for v in prop["enum"])
    if "const" in prop:
        return json.dumps(prop["const"])
    for key in ("anyOf", "oneOf"):
        if key in prop:
            return " | ".join(param_type(p, defs) for p in prop[key])
    kind = prop.get("type")
    if kind == "array":
        if "prefixItems" in prop:
            return "[" + ", ".join(param_type(p, defs) for p in prop["prefixItems"]) + "]"
        items = prop.get("items")
        return f"list of {param_type(items, defs)}" if isinstance(items, dict) else "list"
    if kind == "object":
        return "mapping"
    text = " | ".join(kind) if isinstance(kind, list) else str(kind or "any")
    return " ".join([text, *param_bounds(prop)]) if bounds else text


def param_bounds(prop: dict[str, Any]) -> list[str]:
    """The bounds of a number parameter from its JSON schema: ``[">=1", "<=100"]``."""
    marks = (("minimum", ">="), ("exclusiveMinimum", ">"), ("maximum", "<="))
    return [f"{op}{prop[k]}" for k, op in (*marks, ("exclusiveMaximum", "<")) if k in prop]


def learned_note(cls: type[Any]) -> str | None:
    """``needs fitting`` for a learned extractor (``requires_fit``), ``needs fitting with some
    parameters`` when that depends on them, else None (what ``fzoo list`` marks)."""
    flag = getattr(cls, "requires_fit", False)
    if isinstance(flag, property):
        return "needs fitting with some parameters"
    return "needs fitting" if flag is True else None
