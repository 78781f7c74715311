"""Argument types and arguments that several ``fzoo`` sub-parsers share (standard library only:
the parser is built for every command, ``fzoo list`` included)."""

from __future__ import annotations

import argparse


def add_set_argument(p: argparse.ArgumentParser) -> None:
    """``--set KEY=VALUE`` (repeatable): an override of the experiment."""
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a value of the experiment (dotted path as in 'grid', YAML value; "
        "KEY+=VALUE appends to a list), repeatable",
    )


def add_param_argument(p: argparse.ArgumentParser, help: str) -> None:
    """``--param KEY=VALUE`` (repeatable): a parameter of the component the command uses."""
    p.add_argument("--param", action="append", default=[], metavar="KEY=VALUE", help=help)


def positive_int(text: str) -> int:
    """An argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        what = f"expected a positive integer, got {text[:50]!r}"
        raise argparse.ArgumentTypeError(what) from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def positive_float(text: str) -> float:
    """An argparse type: a finite number of seconds > 0."""
    try:
        value = float(text)
    except ValueError:
        what = f"expected a number of seconds, got {text[:50]!r}"
        raise argparse.ArgumentTypeError(what) from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {value}")
    return value


def add_max_cells_argument(p: argparse.ArgumentParser) -> None:
    """``--max-cells N``: the largest grid an experiment may expand to."""
    p.add_argument(
        "--max-cells",
        type=positive_int,
        default=None,
        metavar="N",
        help="allow a grid of up to N cells (default 1000, or $FZOO_MAX_CELLS)",
    )
