"""Atomic file writes: a temporary file in the target folder, then ``os.replace``.

A run killed at any moment leaves either the old file or the complete new one, never half of one.
Files get the usual permissions (0666 minus the umask), not ``mkstemp``'s private 0600.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO


def current_umask() -> int:
    """The process's umask (read by setting it and back), for files made with ``mkstemp``."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


_umask = current_umask


@contextlib.contextmanager
def atomic_writer(path: str | os.PathLike[str], overwrite: bool = True) -> Iterator[IO[bytes]]:
    """Open a binary handle whose content replaces ``path`` only when the block succeeds."""
    target = Path(path)
    if not overwrite and target.exists():
        raise FileExistsError(f"{target} exists; refusing to overwrite")
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-", suffix=target.suffix)
    try:
        with os.fdopen(fd, "wb") as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        if not overwrite and target.exists():  # appeared while we wrote
            raise FileExistsError(f"{target} exists; refusing to overwrite")
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes, overwrite: bool = True) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_writer(path, overwrite) as fh:
        fh.write(data)


def atomic_write_text(path: str | os.PathLike[str], text: str, overwrite: bool = True) -> None:
    """Write UTF-8 ``text`` to ``path`` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"), overwrite)
