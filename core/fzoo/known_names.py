"""Names a heavy package defines, remembered per installed version, for light validation.

A few parameter checks ask a heavy package whether a name exists (timm: is ``resnet18`` an
architecture? diffusers: is ``beta_schedule`` a ``DDIMScheduler`` argument?). Importing timm or
diffusers takes seconds and imports torch, which ``fzoo validate`` should not need (issue #12).
:func:`known_names` runs such a lookup once per installed version of the package and keeps the
answer as JSON under ``<cache dir>/known-names/``; later processes read the file instead of
importing the package.

The remembered names are only used to *accept* a value quickly: a name not among them is
checked by the package itself, with its own message, exactly as without the file. So a missing,
unreadable or stale file costs time, never a wrong rejection; a file is never trusted across a
version change of the package (the version is part of its name).
"""

from __future__ import annotations

import importlib.metadata
import json
import sys
from collections.abc import Callable, Iterable

_memo: dict[tuple[str, str], frozenset[str]] = {}


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except (importlib.metadata.PackageNotFoundError, ValueError):
        return None


def known_names(package: str, what: str, compute: Callable[[], Iterable[str]]) -> frozenset[str]:
    """The names ``compute()`` gives for the installed ``package`` (a distribution name).

    ``compute`` may import the package; it runs when the package is already imported (then it
    costs little, and its answer is written for later processes), when the version is unknown,
    or when no remembered answer exists yet. ``what`` names the question (a word).
    """
    key = (package, what)
    if key in _memo:
        return _memo[key]
    version = _version(package)
    path = None
    if version is not None:
        from fzoo.cache import default_cache_dir

        safe = "".join(
            c if c.isalnum() or c in "._-" else "_" for c in f"{package}-{version}-{what}"
        )
        path = default_cache_dir() / "known-names" / f"{safe}.json"
    if path is not None and package.replace("-", "_") not in sys.modules:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            if isinstance(data, list) and all(isinstance(n, str) for n in data):
                _memo[key] = frozenset(data)
                return _memo[key]
        except (OSError, ValueError):
            pass
    names = frozenset(compute())
    if path is not None and not path.exists():
        try:
            from fzoo.fsutil import atomic_write_text

            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(path, json.dumps(sorted(names)))
        except OSError:
            pass  # a read-only cache: the next process asks the package again
    _memo[key] = names
    return names
