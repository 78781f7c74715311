"""Experiment YAML: safe loading with line numbers, then two-phase validation.

Phase 1 checks the structure of the experiment (pydantic models below). Phase 2 resolves each
component by name or preset, and validates its parameters against the component's own schema.
Every problem is reported as ``FILE:LINE:COL: message``; unknown names get the installed names and
a did-you-mean. YAML tags that would construct objects are rejected, and so are duplicate keys.
"""

from __future__ import annotations

import copy
import itertools
import math
import os
import re
import stat
from collections.abc import Sequence
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

Loc = tuple[int, int]  # 1-based line, column
Path_ = tuple[Any, ...]


@dataclass
class ConfigIssue:
    """One problem: where (file, line, column) and what."""

    file: str
    line: int
    col: int
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}: {self.message}"


class ConfigError(Exception):
    """One or more :class:`ConfigIssue`; ``str()`` gives one ``FILE:LINE:COL: message`` per line."""

    def __init__(self, issues: list[ConfigIssue]) -> None:
        self.issues = issues
        super().__init__("\n".join(str(i) for i in issues))


# --------------------------------------------------------------------------- limits


@dataclass(frozen=True)
class Limits:
    """Bounds on an experiment file, all checked before any work starts.

    Each can be raised with an environment variable (:data:`LIMIT_ENV`); ``max_cells`` also with
    ``fzoo run/validate --max-cells N``. Values count every scalar, list and mapping once per
    place it appears after alias expansion.
    """

    max_bytes: int = 1_000_000
    max_values: int = 100_000
    max_aliases: int = 1_000
    max_alias_depth: int = 8
    max_depth: int = 64
    max_int_digits: int = 100
    max_cells: int = 1_000

    @classmethod
    def from_env(cls, max_cells: int | None = None) -> Limits:
        """The defaults, raised or lowered by ``FZOO_MAX_*`` variables, then ``max_cells``."""
        values: dict[str, int] = {}
        for f in fields(cls):
            raw = os.environ.get(LIMIT_ENV[f.name], "").strip()
            if raw:
                try:
                    values[f.name] = int(raw)
                except ValueError:
                    values[f.name] = -1
                if values[f.name] < 1:
                    issue = ConfigIssue(
                        f"${LIMIT_ENV[f.name]}",
                        1,
                        1,
                        f"must be a positive integer, got {short(raw)}",
                    )
                    raise ConfigError([issue])
        limits = replace(cls(), **values)
        return limits if max_cells is None else replace(limits, max_cells=max_cells)


LIMIT_ENV: dict[str, str] = {
    "max_bytes": "FZOO_MAX_YAML_BYTES",
    "max_values": "FZOO_MAX_YAML_VALUES",
    "max_aliases": "FZOO_MAX_YAML_ALIASES",
    "max_alias_depth": "FZOO_MAX_YAML_ALIAS_DEPTH",
    "max_depth": "FZOO_MAX_YAML_DEPTH",
    "max_int_digits": "FZOO_MAX_YAML_INT_DIGITS",
    "max_cells": "FZOO_MAX_CELLS",
}


def _over(what: str, found: int | str, limit: int, knob: str) -> str:
    return f"{what}: {found} (limit {limit}); raise the limit with {knob}"


def short(value: Any, limit: int = 200) -> str:
    """``repr(value)``, cut to ``limit`` characters with the full length (for messages)."""
    text = value if isinstance(value, str) and value.startswith("$") else repr(value)
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text)} chars)"


def _cut(text: str, limit: int = 200) -> str:
    """``text`` cut to ``limit`` characters, with its full length when cut."""
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} chars)"


_INT = re.compile(r"[-+]?[0-9][0-9_]*")


@dataclass
class _Frame:
    anchor: str | None
    size: int = 1
    alias_depth: int = 0


class _Budget:
    """The pre-pass over YAML events: depth, aliases, expanded size and integer length.

    The parser keeps its own stack (no recursion), so this runs before the recursive composer
    and the location-keeping walk ever see a hostile document.
    """

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.stack: list[_Frame] = []
        self.anchors: dict[str, tuple[int, int]] = {}
        self.aliases = 0

    def check(self, text: str) -> tuple[Any, str] | None:
        """(mark, message) of the first limit exceeded, or None (syntax errors are left to the
        composer, which reports them with their own location)."""
        parser_cls = getattr(yaml, "CParser", None) or yaml.SafeLoader
        parser = parser_cls(text)
        try:
            while parser.check_event():
                event = parser.get_event()
                problem = self._event(event)
                if problem is not None:
                    return event.start_mark, problem
        except yaml.YAMLError:
            return None
        finally:
            parser.dispose()
        return None

    def _add(self, size: int, alias_depth: int) -> str | None:
        if not self.stack:
            return None
        top = self.stack[-1]
        top.size += size
        top.alias_depth = max(top.alias_depth, alias_depth)
        total = sum(f.size for f in self.stack)
        if total > self.limits.max_values:
            return _over(
                "the document expands (aliases included) to more values than allowed",
                f"at least {total}",
                self.limits.max_values,
                LIMIT_ENV["max_values"],
            )
        return None

    def _event(self, event: Any) -> str | None:
        lim = self.limits
        if isinstance(event, yaml.CollectionStartEvent):
            self.stack.append(_Frame(event.anchor))
            if len(self.stack) > lim.max_depth:
                return _over(
                    "nesting too deep", len(self.stack), lim.max_depth, LIMIT_ENV["max_depth"]
                )
            return None
        if isinstance(event, yaml.CollectionEndEvent):
            frame = self.stack.pop()
            if frame.anchor is not None:
                self.anchors[frame.anchor] = (frame.size, frame.alias_depth)
            return self._add(frame.size, frame.alias_depth)
        if isinstance(event, yaml.ScalarEvent):
            value = event.value
            if event.style is None and event.implicit[0] and _INT.fullmatch(value):
                digits = sum(c.isdigit() for c in value)
                if digits > lim.max_int_digits:
                    return _over(
                        "integer too long", f"{digits} digits", lim.max_int_digits,
                        LIMIT_ENV["max_int_digits"],
                    )  # fmt: skip
            if event.anchor is not None:
                self.anchors[event.anchor] = (1, 0)
            return self._add(1, 0)
        if isinstance(event, yaml.AliasEvent):
            self.aliases += 1
            if self.aliases > lim.max_aliases:
                return _over(
                    "too many aliases", self.aliases, lim.max_aliases, LIMIT_ENV["max_aliases"]
                )
            size, depth = self.anchors.get(event.anchor or "", (1, 0))
            if depth + 1 > lim.max_alias_depth:
                return _over(
                    f"aliases nested too deep (*{short(event.anchor, 40)})", depth + 1,
                    lim.max_alias_depth, LIMIT_ENV["max_alias_depth"],
                )  # fmt: skip
            return self._add(size, depth + 1)
        return None


# --------------------------------------------------------------------------- YAML with locations


class Located:
    """Data loaded from YAML plus the (line, col) of every key and value, by path."""

    def __init__(self, file: str, data: Any, locs: dict[Path_, Loc]) -> None:
        self.file = file
        self.data = data
        self.locs = locs

    def loc(self, path: Path_) -> Loc:
        """The location of ``path``, or of its nearest located parent."""
        p = tuple(path)
        while p:
            if p in self.locs:
                return self.locs[p]
            p = p[:-1]
        return self.locs.get((), (1, 1))

    def issue(self, path: Path_, message: str) -> ConfigIssue:
        line, col = self.loc(path)
        return ConfigIssue(self.file, line, col, message)


_PLAIN_TAGS: dict[type, str] = {
    yaml.MappingNode: "tag:yaml.org,2002:map",
    yaml.SequenceNode: "tag:yaml.org,2002:seq",
}


def _walk(
    loader: yaml.SafeLoader, node: yaml.Node, path: Path_, locs: dict[Path_, Loc], budget: list[int]
) -> Any:
    budget[0] -= 1  # aliases are walked again where they are used: every use counts
    if budget[0] < 0:
        raise yaml.MarkedYAMLError(
            problem="the document expands (aliases included) to more values than allowed; raise "
            f"the limit with {LIMIT_ENV['max_values']}",
            problem_mark=node.start_mark,
        )
    locs[path] = (node.start_mark.line + 1, node.start_mark.column + 1)
    plain = _PLAIN_TAGS.get(type(node))
    if plain is not None and node.tag != plain:
        raise yaml.MarkedYAMLError(
            problem=f"tag {node.tag!r} is not allowed (tags that construct objects are rejected)",
            problem_mark=node.start_mark,
        )
    if isinstance(node, yaml.MappingNode):
        out: dict[Any, Any] = {}
        loader.flatten_mapping(node)
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node, deep=True)
            if not isinstance(key, str | int | float | bool) and key is not None:
                raise yaml.MarkedYAMLError(
                    problem="mapping keys must be scalars", problem_mark=key_node.start_mark
                )
            if key in out:
                first = locs.get((*path, key), (0, 0))
                raise yaml.MarkedYAMLError(
                    problem=f"duplicate key {key!r} (first defined at line {first[0]})",
                    problem_mark=key_node.start_mark,
                )
            locs[(*path, key)] = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
            out[key] = _walk(loader, value_node, (*path, key), locs, budget)
            # keep the key's own position: errors about a value point at the value, not the key
            locs[(*path, key)] = (value_node.start_mark.line + 1, value_node.start_mark.column + 1)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [
            _walk(loader, child, (*path, i), locs, budget) for i, child in enumerate(node.value)
        ]
    try:
        return loader.construct_object(node, deep=True)
    except ValueError as exc:  # e.g. an integer past Python's int/str conversion limit
        raise yaml.MarkedYAMLError(problem=short(str(exc)), problem_mark=node.start_mark) from None


def parse_yaml(text: str, file: str = "<string>", limits: Limits | None = None) -> Located:
    """Parse YAML safely, keeping locations; raises :class:`ConfigError` on any YAML problem.

    ``limits`` (default :meth:`Limits.from_env`) bound nesting, aliases, their expansion and
    integer length; they are checked on the event stream before anything is built.
    """
    limits = limits or Limits.from_env()
    try:
        loader = yaml.SafeLoader(text)
    except yaml.reader.ReaderError as exc:  # a control character: the reader checks up front
        before = text[: exc.position]
        line, col = before.count("\n") + 1, exc.position - (before.rfind("\n") + 1) + 1
        what = f"character {exc.character:#06x} is not allowed in YAML"
        raise ConfigError([ConfigIssue(file, line, col, what)]) from None
    found = _Budget(limits).check(text)
    if found is not None:
        loader.dispose()
        mark, what = found
        raise ConfigError([ConfigIssue(file, mark.line + 1, mark.column + 1, what)])
    try:
        node = loader.get_single_node()
        locs: dict[Path_, Loc] = {}
        data = None if node is None else _walk(loader, node, (), locs, [limits.max_values])
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark is not None else (1, 1)
        what = exc.problem or str(exc)
        if "could not determine a constructor" in what:
            what = f"{what} (tags that construct objects are not allowed)"
        raise ConfigError([ConfigIssue(file, line, col, what)]) from None
    except RecursionError:
        what = f"nesting too deep for this Python; lower {LIMIT_ENV['max_depth']}"
        raise ConfigError([ConfigIssue(file, 1, 1, what)]) from None
    except yaml.YAMLError as exc:
        what = short(" ".join(str(exc).split()), 300).strip("'")
        raise ConfigError([ConfigIssue(file, 1, 1, f"invalid YAML: {what}")]) from None
    finally:
        loader.dispose()
    return Located(file, data, locs)


def read_text_limited(path: Path, max_bytes: int) -> str:
    """The UTF-8 text of a regular file of at most ``max_bytes``; :class:`ConfigError` else.

    The size is checked before reading, and the read itself stops after ``max_bytes + 1``
    bytes, so a FIFO, a device or a file that grows cannot hang or fill memory.
    """

    def fail(message: str) -> ConfigError:
        return ConfigError([ConfigIssue(str(path), 1, 1, message)])

    try:
        info = path.stat()
        if not stat.S_ISREG(info.st_mode):
            raise fail("not a regular file (a FIFO, device or folder?); give a YAML file")
        if info.st_size > max_bytes:
            raise fail(_file_too_big(info.st_size, max_bytes))
        with open(path, "rb") as fh:
            data = fh.read(max_bytes + 1)
    except OSError as exc:
        raise fail(f"cannot read: {exc}") from None
    if len(data) > max_bytes:
        raise fail(_file_too_big(len(data), max_bytes))
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise fail(f"cannot read: {exc}") from None


def _file_too_big(size: int, limit: int) -> str:
    return _over("file too large", f"{size} bytes", limit, LIMIT_ENV["max_bytes"])


def load_yaml(path: str | Path, limits: Limits | None = None) -> tuple[Any, Located]:
    """Read a YAML file with locations: returns ``(data, located)``."""
    p = Path(path)
    limits = limits or Limits.from_env()
    text = read_text_limited(p, limits.max_bytes)
    located = parse_yaml(text, str(p), limits)
    return located.data, located


def parse_value(text: str, what: str) -> Any:
    """One YAML value given on the command line (``--set``, ``--param``), with the file limits.

    Raises ``ValueError`` with a one-line message naming ``what``.
    """
    try:
        return parse_yaml(text, what).data
    except ConfigError as exc:
        first = exc.issues[0]
        raise ValueError(f"{what}: not a valid YAML value: {first.message}") from None


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
        for pl in self.pipelines:
            for t in pl.tasks or []:
                if t not in tasks:
                    raise ValueError(f"pipeline {pl.name!r} names unknown task {t!r}")
        for cond in self.conditions:
            for t in cond.tasks or []:
                if t not in tasks:
                    raise ValueError(f"condition {cond.name!r} names unknown task {t!r}")
        pipelines = {p.name for p in self.pipelines}
        for key, h in self.headline.items():
            if h.task not in tasks or h.pipeline not in pipelines:
                raise ValueError(f"headline {key!r} names an unknown task or pipeline")
            if h.condition not in {c.name for c in self.conditions}:
                raise ValueError(f"headline {key!r} names unknown condition {h.condition!r}")
        return self


def _pydantic_issues(exc: ValidationError, located: Located, prefix: Path_) -> list[ConfigIssue]:
    issues = []
    for err in exc.errors():
        loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-")))
        path = (*prefix, *(("from" if p == "from_" else p) for p in loc))
        msg = err["msg"]
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


# --------------------------------------------------------------------------- phase 2: components


@dataclass
class ResolvedComponent:
    """A component spec after name/preset resolution and parameter validation."""

    kind: str
    component: str
    params: dict[str, Any]
    preset: str | None = None

    def build(self) -> Any:
        from fzoo.plugin_manager import get_registry

        return get_registry().get(self.kind, self.component)(**self.params)


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
    return ResolvedComponent(kind, name, validated.model_dump(mode="json"), preset_name)


def _component_paths(spec: ExperimentSpec) -> list[tuple[Path_, ComponentSpec, str]]:
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


def validate_components(
    spec: ExperimentSpec, located: Located, prefix: Path_ = ()
) -> list[ConfigIssue]:
    """Phase 2: every component name exists and its params fit its schema."""
    from fzoo.plugin_manager import UnknownComponentError

    issues: list[ConfigIssue] = []
    for path, comp, kind in _component_paths(spec):
        full = (*prefix, *path)
        try:
            resolve_component(comp, kind)
        except UnknownComponentError as exc:
            issues.append(located.issue((*full, "name"), str(exc)))
        except ValidationError as exc:
            for err in exc.errors():
                key = err["loc"][0] if err["loc"] else None
                if err["type"] == "extra_forbidden":
                    msg = f"{short(comp.name)}: unknown parameter {short(key)}"
                    from fzoo.plugin_manager import get_registry

                    reg = get_registry()
                    target = reg.presets[comp.name].component if comp.name in reg.presets else None
                    cls = reg.get(kind, target or comp.name)
                    import difflib

                    close = difflib.get_close_matches(str(key), list(cls.Params.model_fields), 1)
                    valid = ", ".join(cls.Params.model_fields) or "(none)"
                    msg += f"; did you mean {close[0]!r}?" if close else ""
                    msg += f" Valid parameters: {valid}"
                else:
                    got = err.get("input")
                    msg = f"{comp.name}: parameter {short(key)}: {err['msg']} (got {short(got)})"
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

    issues = validate_components(spec, located, prefix)
    cells: list[Cell] = []
    if spec.grid:
        keys = list(spec.grid)
        base = {k: v for k, v in raw.items() if k != "grid"}
        resolved: dict[str, Path_] = {}
        for key in keys:
            try:
                resolved[key], _ = _resolve_path(base, key)
            except KeyError as exc:
                issues.append(located.issue((*prefix, "grid", key), f"grid path {key!r}: {exc}"))
        if not issues:
            for combo in itertools.product(*(spec.grid[k] for k in keys)):
                values = dict(zip(keys, combo, strict=True))
                data = copy.deepcopy(base)
                for key, value in values.items():
                    _set_path(data, resolved[key], value)
                cell_id = ",".join(f"{k}={v}" for k, v in values.items())
                try:
                    cell_spec = ExperimentSpec.model_validate(data)
                except ValidationError as exc:
                    for issue in _pydantic_issues(exc, located, (*prefix, "grid")):
                        issue.message = f"grid cell [{cell_id}]: {issue.message}"
                        issues.append(issue)
                    continue
                for issue in validate_components(cell_spec, located, prefix):
                    issue.message = f"grid cell [{cell_id}]: {issue.message}"
                    issues.append(issue)
                cells.append(Cell(cell_id, values, cell_spec))
    else:
        cells = [Cell("", {}, spec)]
    if issues:
        raise ConfigError(_dedupe(issues))
    return Experiment(spec, cells, located)


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
        from fzoo.registry import experiments

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
