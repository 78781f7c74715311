"""YAML read safely, with the line and column of every key and value, within limits.

Tags that would construct objects are rejected, and so are duplicate keys; the size of the file,
its nesting, its number of nodes and aliases are bounded (:class:`Limits`). Problems are
:class:`ConfigIssue` (``FILE:LINE:COL: message``) gathered in a :class:`ConfigError`.
"""

from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import yaml

Loc = tuple[int, int]  # 1-based line, column
Path_ = tuple[Any, ...]


@dataclass
class ConfigIssue:
    """One problem: where (file, line, column) and what."""

    file: str
    line: int
    col: int
    message: str
    #: the path of the value in the YAML data it is about, when known (grids relocate by it)
    path: Path_ | None = field(default=None, compare=False, repr=False)

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
        self.deepest = 0  # the deepest nesting seen

    def check(self, text: str, libyaml: bool = False) -> tuple[Any, str] | None:
        """(mark, message) of the first limit exceeded, or None (syntax errors are left to the
        composer, which reports them with their own location). ``libyaml``: parse with
        libyaml's C parser (``yaml.CBaseLoader``), for trusted text (see :func:`_parse_c`)."""
        parser_cls = yaml.SafeLoader
        if libyaml:
            parser_cls = getattr(yaml, "CBaseLoader", None) or yaml.SafeLoader
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
            self.deepest = max(self.deepest, len(self.stack))
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
            if not event.style and event.implicit[0] and _INT.fullmatch(value):  # plain: None or ""
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
        return ConfigIssue(self.file, line, col, message, tuple(path))


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


#: The deepest document libyaml composes (its composer recurses in C, below Python's recursion
#: limit); deeper ones (``$FZOO_MAX_YAML_DEPTH`` raised) go to the Python composer.
C_COMPOSE_MAX_DEPTH = 200


def _parse_c(text: str, file: str, limits: Limits) -> Located | None:
    """``text`` parsed by libyaml (``yaml.CSafeLoader``, about 10x faster), or None.

    The same limits on the event stream, the same :func:`_walk` building the data and the
    locations. None when PyYAML has no libyaml, when the text is over a limit or nested deeper
    than :data:`C_COMPOSE_MAX_DEPTH`, or on any problem at all: the pure-Python loader then
    parses it again and reports it, so every message stays the one it gives. Only for trusted
    text: libyaml accepts a few things PyYAML refuses (a tab or ``?`` inside a plain scalar,
    ``|#``) and places some empty values a column later; on the bundled ``registry.yaml`` both
    give the same data at the same locations (``tests/test_startup.py`` checks it).
    """
    c_loader = getattr(yaml, "CSafeLoader", None)
    if c_loader is None:
        return None
    budget = _Budget(limits)
    if budget.check(text, libyaml=True) is not None or budget.deepest > C_COMPOSE_MAX_DEPTH:
        return None
    loader = c_loader(text)
    try:
        node = loader.get_single_node()
        locs: dict[Path_, Loc] = {}
        data = None if node is None else _walk(loader, node, (), locs, [limits.max_values])
    except Exception:  # noqa: BLE001 - reported by the Python loader, as before
        return None
    finally:
        loader.dispose()
    return Located(file, data, locs)


def parse_yaml(
    text: str, file: str = "<string>", limits: Limits | None = None, *, trusted: bool = False
) -> Located:
    """Parse YAML safely, keeping locations; raises :class:`ConfigError` on any YAML problem.

    ``limits`` (default :meth:`Limits.from_env`) bound nesting, aliases, their expansion and
    integer length; they are checked on the event stream before anything is built. ``trusted``
    text (the bundled catalogue) is parsed by libyaml (:func:`_parse_c`); a problem is always
    reported by the pure-Python loader.
    """
    limits = limits or Limits.from_env()
    if trusted:
        fast = _parse_c(text, file, limits)
        if fast is not None:
            return fast
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


def load_yaml(
    path: str | Path, limits: Limits | None = None, *, trusted: bool = False
) -> tuple[Any, Located]:
    """Read a YAML file with locations: returns ``(data, located)`` (``trusted``: see
    :func:`parse_yaml`)."""
    p = Path(path)
    limits = limits or Limits.from_env()
    text = read_text_limited(p, limits.max_bytes)
    located = parse_yaml(text, str(p), limits, trusted=trusted)
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
