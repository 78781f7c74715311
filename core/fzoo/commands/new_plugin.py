"""``fzoo new-plugin NAME``: a plugin package that passes its own tests (:mod:`fzoo.scaffold`)."""

from __future__ import annotations

import argparse
import sys

from fzoo.commands._common import EXIT_OK, EXIT_USAGE


def cmd_new_plugin(args: argparse.Namespace) -> int:
    """Write the package into ``--out/NAME``; exit 2 for an invalid name or an existing folder."""
    from fzoo.scaffold import ScaffoldError, plugin_names, write_plugin

    try:
        folder = write_plugin(args.name, args.out)
    except ScaffoldError as exc:
        print(f"fzoo new-plugin: {exc}", file=sys.stderr)
        return EXIT_USAGE
    names = plugin_names(args.name)
    print(f"wrote {folder}: plugin {names.plugin!r}, feature extractor {names.extractor!r}")
    print(f"next: cd {folder} && pip install -e . && fzoo plugins --strict && pytest tests")
    return EXIT_OK
