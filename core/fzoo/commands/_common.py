"""What several ``fzoo`` commands share: exit codes, JSON output, ``--param``/``--set`` values,
loading an experiment, and the image paths of a command line."""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

EXIT_OK, EXIT_ERROR, EXIT_USAGE = 0, 1, 2


def print_json(data: Any) -> None:
    """``data`` on stdout as the report's JSON (NaN as null, paths as strings)."""
    from fzoo.report import to_json

    print(to_json(data))


def registry() -> Any:
    """The component registry, plugins loaded."""
    from fzoo.plugin_manager import get_registry

    return get_registry()


def parse_params(pairs: Sequence[str]) -> dict[str, Any]:
    """``--param KEY=VALUE`` pairs as a dict of YAML values; ``ValueError`` names the bad one."""
    params: dict[str, Any] = {}
    for pair in pairs:
        if "=" not in pair:
            raise ValueError(f"--param {pair!r}: expected KEY=VALUE")
        key, value = pair.split("=", 1)
        from fzoo.config import parse_value

        params[key.strip()] = parse_value(value, f"--param {key.strip()}") if value != "" else ""
    return params


def parse_sets(pairs: Sequence[str]) -> list[tuple[str, Any]] | None:
    """``--set KEY=VALUE`` (``KEY+=VALUE`` appends to a list) with YAML values; None on error."""
    out = []
    for pair in pairs:
        key, eq, text = pair.partition("=")
        if not eq or not key.strip():
            print(f"fzoo: --set expects KEY=VALUE or KEY+=VALUE, got {pair!r}", file=sys.stderr)
            return None
        from fzoo.config import parse_value

        try:
            value = parse_value(text, f"--set {key.strip()}")
        except ValueError as exc:
            print(f"fzoo: {exc}", file=sys.stderr)
            return None
        out.append((key.strip(), value))
    return out


def load(
    path: str, variant: str | None = None, sets: Sequence[str] = (), max_cells: int | None = None
) -> Any:
    """The validated experiment, or None after printing each issue (FILE:LINE:COL) on stderr."""
    from fzoo.config import ConfigError, Limits, load_experiment

    try:
        overrides = parse_sets(sets)
        if overrides is None:
            return None
        return load_experiment(path, variant, overrides, Limits.from_env(max_cells))
    except ConfigError as exc:
        for issue in exc.issues:
            print(str(issue), file=sys.stderr)
        return None


def expand_paths(
    paths: Sequence[str], on_folder_error: Callable[[Path, str], None] | None = None
) -> list[Path]:
    """Files given, and the images under folders given; an unlistable folder goes to
    ``on_folder_error(folder, reason)`` once (default: a ``skipped`` line on stderr)."""
    from fzoo.images import folder_error, list_images

    def report(folder: Path, exc: OSError) -> None:
        reason = folder_error(folder, exc)
        if on_folder_error is not None:
            on_folder_error(folder, reason)
        else:
            skip_line(folder, reason)

    out: list[Path] = []
    for p in paths:
        path = Path(p)
        if path.is_dir():
            out.extend(list_images(path, report))
        else:
            out.append(path)
    return out


def skip_line(path: str | Path, reason: str) -> None:
    """One ``skipped PATH: REASON`` line on stderr; the path escaped so no name forges a line."""
    from fzoo.names import escape

    print(f"skipped {escape(str(path))}: {escape(reason)}", file=sys.stderr)


def component_error_lines(exc: Exception, kind: str, name: str) -> list[str]:
    """What a command prints when it cannot make component ``name`` from its ``--param`` values:
    one line per problem, worded as in experiment files (``--param bins: fft-spectrum: parameter
    'bins': Input should be a valid integer (got 'x')``), never pydantic's raw dump."""
    from pydantic import ValidationError

    from fzoo.schema import param_messages, unknown_component_message

    if isinstance(exc, ValidationError):
        reg = registry()
        preset = reg.presets.get(name)
        cls = reg.components.get(kind, {}).get(preset.component if preset else name)
        pairs = param_messages(exc, name, cls)
        return [f"--param {key}: {msg}" if key else msg for key, msg in pairs]
    if isinstance(exc, LookupError):
        return [unknown_component_message(exc)]
    return [str(exc)]
