"""Saving fitted estimators without pickle: skops files loaded with an explicit trust list."""

from __future__ import annotations

from pathlib import Path
from typing import Any

TRUSTED_PREFIXES: tuple[str, ...] = ("sklearn.", "numpy.", "scipy.", "builtins.", "collections.")


class UntrustedStateError(Exception):
    """A saved model contains types outside the trusted list; it is refused, not loaded."""


def save_estimator(estimator: Any, path: Path) -> None:
    """Write ``estimator`` to ``path`` in skops format, atomically."""
    import skops.io as sio

    from fzoo.fsutil import atomic_write_bytes

    atomic_write_bytes(path, sio.dumps(estimator))


def load_estimator(path: Path, extra_trusted: tuple[str, ...] = ()) -> Any:
    """Load a skops file, trusting only sklearn/numpy/scipy types (plus ``extra_trusted``).

    Raises :class:`UntrustedStateError` naming the offending types instead of executing anything.
    """
    import zipfile

    import skops.io as sio

    try:
        untrusted = sio.get_untrusted_types(file=path)
    except (zipfile.BadZipFile, KeyError, ValueError) as exc:
        raise UntrustedStateError(
            f"{path}: not a valid skops file ({type(exc).__name__}: {exc}); refusing to load it"
        ) from None
    prefixes = TRUSTED_PREFIXES + tuple(extra_trusted)
    refused = [t for t in untrusted if not t.startswith(prefixes)]
    if refused:
        raise UntrustedStateError(
            f"{path}: refusing to load untrusted types {refused}; "
            "only scikit-learn/numpy/scipy types are trusted"
        )
    return sio.load(path, trusted=list(untrusted))
