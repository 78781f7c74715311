"""The folders of ``fzoo launder``: which inputs go to which outputs, the lock on ``OUT_DIR``,
and PNGs written without ever replacing a file.

* ``OUT_DIR`` may be neither ``IN_DIR`` nor inside it, nor contain it (:func:`check_dirs`);
* every image under ``IN_DIR`` gets a unique output name (:func:`plan`);
* an output is complete before it gets its name and never overwrites one (:func:`write_png_new`);
* a shared ``flock`` on ``OUT_DIR`` while a run lasts, exclusive while one tidies
  (:class:`FolderLock`), so stale ``.tmp-*`` files are removed only when no other run is writing.
"""

from __future__ import annotations

import collections
import contextlib
import fcntl
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fzoo.fsutil import current_umask as _umask
from fzoo.images import list_images


class LaunderUsageError(ValueError):
    """The folders or the manifest do not allow this run (the CLI exits with status 2)."""


@dataclass(frozen=True)
class LaunderJob:
    """One input image and its output path relative to ``OUT_DIR`` (POSIX separators)."""

    source: Path
    output: str


Job = LaunderJob  # the old name


# --------------------------------------------------------------------------- planning


def check_dirs(
    in_dir: str | os.PathLike[str], out_dir: str | os.PathLike[str]
) -> tuple[Path, Path]:
    """Resolved ``(IN_DIR, OUT_DIR)``; raises :class:`LaunderUsageError` when they overlap."""
    src = Path(in_dir).expanduser()
    if not src.is_dir():
        raise LaunderUsageError(f"{in_dir}: not a folder")
    src = src.resolve()
    dst = Path(out_dir).expanduser().resolve()
    if dst.exists() and not dst.is_dir():
        raise LaunderUsageError(f"{out_dir}: exists and is not a folder")
    if dst == src:
        raise LaunderUsageError("OUT_DIR is IN_DIR; choose another output folder")
    if dst.is_relative_to(src):
        raise LaunderUsageError(f"OUT_DIR {dst} lies inside IN_DIR {src}; choose a folder outside")
    if src.is_relative_to(dst):
        raise LaunderUsageError(f"IN_DIR {src} lies inside OUT_DIR {dst}; choose a folder outside")
    return src, dst


def plan(
    in_dir: Path, on_folder_error: Callable[[Path, OSError], None] | None = None
) -> list[LaunderJob]:
    """Every image under ``in_dir`` (sorted) with its output name; output names are unique.

    A folder that cannot be listed goes to ``on_folder_error`` (default: ignored).
    """
    # symlinks and FIFOs too: a dangling link, a loop or a pipe is then reported, not dropped
    sources = list_images(in_dir, on_folder_error or (lambda folder, exc: None))
    by_target: dict[str, list[Path]] = collections.defaultdict(list)
    for p in sources:
        by_target[p.relative_to(in_dir).with_suffix(".png").as_posix()].append(p)
    jobs: list[LaunderJob] = []
    for target, group in by_target.items():
        for p in group:
            rel = p.relative_to(in_dir).as_posix()
            keep = len(group) == 1 or rel == target
            jobs.append(LaunderJob(p, target if keep else f"{rel}.png"))
    outputs = [j.output for j in jobs]
    if len(set(outputs)) != len(outputs):  # e.g. a.jpg and a.jpg.png side by side
        seen: set[str] = set()
        unique: list[LaunderJob] = []
        for j in jobs:
            out = j.output
            while out in seen:
                out = f"{out[:-4]}_.png"
            seen.add(out)
            unique.append(LaunderJob(j.source, out))
        jobs = unique
    return sorted(jobs, key=lambda j: j.output)


# --------------------------------------------------------------------------- writing


def write_png_new(path: Path, pixels_u8: np.ndarray) -> None:
    """Write an 8-bit PNG that must not exist yet; raises ``FileExistsError`` if it does.

    The file is complete before it gets its name (temporary file, ``fsync``, ``os.link``), so a
    kill never leaves a truncated PNG, and ``os.link`` never replaces an existing file.
    """
    from PIL import Image

    if path.exists():
        raise FileExistsError(f"{path} exists; refusing to overwrite")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".png")
    try:
        with os.fdopen(fd, "wb") as fh:
            Image.fromarray(pixels_u8).save(fh, format="PNG")
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        try:
            os.link(tmp, path)
        except FileExistsError:
            raise
        except OSError:  # a filesystem without hard links: check, then rename
            if path.exists():
                raise FileExistsError(f"{path} exists; refusing to overwrite") from None
            os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


# --------------------------------------------------------------------------- the lock


class FolderLock:
    """A ``flock`` on ``OUT_DIR`` itself: shared while a run lasts, exclusive while it tidies.

    The kernel drops it when the process dies (kill -9 included), so it never goes stale.
    """

    def __init__(self, folder: Path) -> None:
        self.fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | os.O_CLOEXEC)

    def try_exclusive(self) -> bool:
        """True when no other run holds ``OUT_DIR``; the lock is then exclusive until shared."""
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:  # another run (EWOULDBLOCK), or no locks on this filesystem
            return False
        return True

    def share(self) -> None:
        """Back to a shared lock (what a run holds while it lasts)."""
        with contextlib.suppress(OSError):
            fcntl.flock(self.fd, fcntl.LOCK_SH)

    def close(self) -> None:
        """Release the lock."""
        os.close(self.fd)


def remove_stale_temporaries(out_dir: Path) -> int:
    """Delete the ``.tmp-*`` files a killed run left in ``out_dir``; returns how many."""
    removed = 0
    for folder, _, files in os.walk(out_dir):
        for name in files:
            if name.startswith(".tmp-") and name.endswith((".png", ".csv", ".json")):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(os.path.join(folder, name))
                    removed += 1
    return removed
