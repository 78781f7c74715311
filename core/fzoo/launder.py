"""``fzoo launder``: pass a folder of images through a launderer into lossless PNGs.

Every image under ``IN_DIR`` (``fzoo.images.is_image_path``) is decoded exactly
(:func:`fzoo.images.load_image`), laundered in batches of same-size images, and written as an 8-bit
PNG to ``OUT_DIR`` at the same relative path with a ``.png`` suffix (``a/b.jpg`` ->
``a/b.png``; when two inputs would share an output name, the ones whose name differs get their
full name plus ``.png``: ``a/b.jpg.png``). Unreadable files are reported and skipped.

Safety and resumption:

* an existing output is never overwritten, not even by a concurrent run (the PNG is written to a
  temporary file and hard-linked into place, which fails if the name exists); existing outputs
  are skipped, which is what makes an interrupted run resumable: run the same command again;
* ``OUT_DIR`` may be neither ``IN_DIR`` nor inside it, nor contain it, so inputs are never
  touched;
* ``OUT_DIR/manifest.csv`` gets one row per output (columns :data:`COLUMNS`), appended (one
  ``write`` + ``fsync``, cut back on failure) right after that PNG is in place, for every batch
  size; a kill or a full disk between the two leaves a PNG without a row, which the next run
  verifies (it decodes, its size fits its source) and lists, or reports; the next run also
  removes stale ``.tmp-*`` files. Both happen only when no other run uses ``OUT_DIR`` (a shared
  ``flock`` on the folder while a run lasts). Rows whose output was deleted are dropped when a
  run starts, and a run refuses an ``OUT_DIR`` whose manifest lists outputs of a different
  launderer fingerprint;
* file names are bytes: the manifest keeps them exactly (UTF-8 with ``surrogateescape``, CSV
  quoting for a newline), and every stderr line writes them escaped (:func:`fzoo.names.escape`);
* a folder under ``IN_DIR`` that cannot be listed is reported once and skipped;
* ``OUT_DIR/launderers.json`` maps each fingerprint to the launderer name and parameters.

Decoding (one thread, a bounded look-ahead) and PNG writing (one thread) overlap with the
launderer's computation.
"""

from __future__ import annotations

import collections
import concurrent.futures as cf
import contextlib
import csv
import fcntl
import io
import json
import math
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from fzoo.fsutil import current_umask as _umask
from fzoo.images import (
    DecodedImage,
    ImageError,
    folder_error,
    list_images,
    load_image,
    psnr,
    to_uint8,
)
from fzoo.names import escape

if TYPE_CHECKING:
    from fzoo.components import Launderer

MANIFEST = "manifest.csv"
LAUNDERERS_JSON = "launderers.json"
COLUMNS: tuple[str, ...] = ("source", "output", "launderer", "fingerprint", "psnr_db", "notes")


class LaunderUsageError(ValueError):
    """The folders or the manifest do not allow this run (the CLI exits with status 2)."""


@dataclass(frozen=True)
class LaunderJob:
    """One input image and its output path relative to ``OUT_DIR`` (POSIX separators)."""

    source: Path
    output: str


Job = LaunderJob  # the old name


@dataclass
class LaunderSummary:
    """What a run did; ``as_dict()`` is the CLI's ``--json`` output."""

    in_dir: str
    out_dir: str
    launderer: str
    fingerprint: str
    found: int = 0
    written: int = 0
    skipped_existing: int = 0
    unlisted_existing: list[str] = field(default_factory=list)
    unreadable: list[dict[str, str]] = field(default_factory=list)
    failed: list[dict[str, str]] = field(default_factory=list)
    psnr: list[float] = field(default_factory=list)
    stale_rows_dropped: int = 0
    rows_recovered: int = 0
    stale_temporaries_removed: int = 0
    wall_s: float = 0.0

    @property
    def manifest(self) -> str:
        return str(Path(self.out_dir) / MANIFEST)

    def as_dict(self) -> dict[str, Any]:
        finite = [p for p in self.psnr if math.isfinite(p)]
        return {
            "in_dir": self.in_dir,
            "out_dir": self.out_dir,
            "launderer": self.launderer,
            "fingerprint": self.fingerprint,
            "found": self.found,
            "written": self.written,
            "skipped_existing": self.skipped_existing,
            "unlisted_existing": self.unlisted_existing,
            "unreadable": self.unreadable,
            "failed": self.failed,
            "psnr_db_mean": round(float(np.mean(finite)), 4) if finite else None,
            "psnr_db_min": round(float(np.min(finite)), 4) if finite else None,
            "identical": len(self.psnr) - len(finite),
            "stale_rows_dropped": self.stale_rows_dropped,
            "rows_recovered": self.rows_recovered,
            "stale_temporaries_removed": self.stale_temporaries_removed,
            "manifest": self.manifest,
            "wall_s": round(self.wall_s, 3),
            "images_per_s": round(self.written / self.wall_s, 4) if self.wall_s > 0 else None,
        }


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


# --------------------------------------------------------------------------- manifest


def _csv_line(rows: Sequence[Sequence[str]]) -> bytes:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerows(rows)
    # file names that are not valid UTF-8 keep their original bytes
    return buf.getvalue().encode("utf-8", "surrogateescape")


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def _append(path: Path, data: bytes) -> None:
    """Append ``data`` with one ``write`` loop and ``fsync``: whole rows, or none.

    A failed write (a full disk) is cut back to the previous end, so no partial row stays in
    the middle of the file for a later append to follow.
    """
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
    try:
        end = os.fstat(fd).st_size
        try:
            _write_all(fd, data)
            os.fsync(fd)
        except OSError:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, end)
            raise
    finally:
        os.close(fd)


def _replace_text(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=path.suffix)
    try:
        _write_all(fd, data)
        os.fsync(fd)
        os.close(fd)
        fd = -1
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    finally:
        if fd >= 0:
            os.close(fd)
        Path(tmp).unlink(missing_ok=True)


def read_manifest(path: Path) -> list[dict[str, str]]:
    """Rows of a manifest; a partial last line (a run killed mid-write) is dropped from disk."""
    if not path.exists():
        return []
    raw = path.read_bytes()
    if raw and not raw.endswith(b"\n"):
        cut = raw.rfind(b"\n") + 1
        with open(path, "r+b") as fh:
            fh.truncate(cut)
        raw = raw[:cut]
    if not raw.strip():
        return []
    # names that are not UTF-8 were written with surrogateescape: read them back identically
    reader = csv.DictReader(io.StringIO(raw.decode("utf-8", "surrogateescape"), newline=""))
    if tuple(reader.fieldnames or ()) != COLUMNS:
        raise LaunderUsageError(
            f"{path} is not a fzoo launder manifest (columns {reader.fieldnames}); "
            "choose another OUT_DIR"
        )
    return [dict(r) for r in reader]


def _prepare_manifest(out_dir: Path, fingerprint: str, summary: LaunderSummary) -> set[str]:
    """Drop rows of deleted outputs, check fingerprints; returns the outputs already listed."""
    path = out_dir / MANIFEST
    rows = read_manifest(path)
    live = [r for r in rows if (out_dir / r["output"]).is_file()]
    others = sorted({r["fingerprint"] for r in live} - {fingerprint})
    if others:
        raise LaunderUsageError(
            f"{path} lists outputs of another launderer configuration (fingerprint "
            f"{', '.join(others)}; this run: {fingerprint}). Use another OUT_DIR, or delete those "
            "outputs to replace them."
        )
    if len(live) != len(rows) or not live:  # stale rows, or no header yet (a missing/empty file)
        summary.stale_rows_dropped = len(rows) - len(live)
        data = _csv_line([COLUMNS]) + _csv_line([[r[c] for c in COLUMNS] for r in live])
        _replace_text(path, data)
    return {r["output"] for r in live}


def _record_launderer(out_dir: Path, name: str, launderer: Launderer, fingerprint: str) -> None:
    path = out_dir / LAUNDERERS_JSON
    known: dict[str, Any] = {}
    if path.exists():
        try:
            known = json.loads(path.read_text())
        except (OSError, ValueError):
            known = {}
    if fingerprint in known:
        return
    cls = type(launderer)
    known[fingerprint] = {
        "launderer": name,
        "component": cls.name,
        "class": f"{cls.__module__}.{cls.__qualname__}",
        "version": cls.version,
        "params": launderer.get_params(),
        # the weights' sha256 and what was resolved (taesd: the variant), not only the path
        **({"provenance": prov} if (prov := launderer.provenance()) else {}),
    }
    _replace_text(path, (json.dumps(known, indent=2, sort_keys=True) + "\n").encode())


def _tidy_unused(out_dir: Path, fingerprint: str, created_dir: bool, lock: _FolderLock) -> None:
    """After a run that wrote nothing: remove what its start wrote and nothing uses, so that no
    ``launderers.json`` entry describes a setting that produced no output and no header-only
    manifest stays (nor the folder, when this run created it and it is empty). Done only when
    no other run uses ``OUT_DIR`` and the manifest lists no output."""
    if not lock.try_exclusive():
        return
    try:
        manifest = out_dir / MANIFEST
        if read_manifest(manifest):
            return
        record = out_dir / LAUNDERERS_JSON
        try:
            known = json.loads(record.read_text())
        except (OSError, ValueError):
            known = None
        if isinstance(known, dict) and fingerprint in known:
            del known[fingerprint]
            if known:
                _replace_text(record, (json.dumps(known, indent=2, sort_keys=True) + "\n").encode())
            else:
                record.unlink(missing_ok=True)
        manifest.unlink(missing_ok=True)
        if created_dir:
            with contextlib.suppress(OSError):  # not empty: an output or a foreign file stays
                out_dir.rmdir()
    except (OSError, LaunderUsageError):
        pass
    finally:
        lock.share()


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


def psnr_db(reference: np.ndarray, output_u8: np.ndarray) -> float:
    """PSNR (dB, peak 1) of the 8-bit output against the source pixels on their overlap."""
    h = min(reference.shape[0], output_u8.shape[0])
    w = min(reference.shape[1], output_u8.shape[1])
    return psnr(reference[:h, :w], output_u8[:h, :w].astype(np.float64) / 255.0)


def _failure(exc: Exception) -> str:
    """One line saying why the launderer failed on an image."""
    text = str(exc).strip() or type(exc).__name__
    return text if isinstance(exc, ValueError) else f"{type(exc).__name__}: {text}"


def _format_psnr(value: float) -> str:
    return "inf" if math.isinf(value) else f"{value:.4f}"


# --------------------------------------------------------------------------- resuming


class _FolderLock:
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
        with contextlib.suppress(OSError):
            fcntl.flock(self.fd, fcntl.LOCK_SH)

    def close(self) -> None:
        os.close(self.fd)


def _remove_stale_temporaries(out_dir: Path) -> int:
    """Delete the ``.tmp-*`` files a killed run left in ``out_dir``; returns how many."""
    removed = 0
    for folder, _, files in os.walk(out_dir):
        for name in files:
            if name.startswith(".tmp-") and name.endswith((".png", ".csv", ".json")):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(os.path.join(folder, name))
                    removed += 1
    return removed


def _sides(side: int, multiple: int) -> set[int]:
    """The output sides a launderer may give for a source side (kept, cropped or padded)."""
    m = max(1, multiple)
    return {side, (side // m) * m, -(-side // m) * m}


def _verified_row(
    job: LaunderJob, out_dir: Path, multiple: int, label: str, fingerprint: str
) -> list[str]:
    """The manifest row of an output PNG that has none; ``ValueError`` says why it cannot be
    listed (it does not decode, or its size does not fit its source)."""
    try:
        out = load_image(out_dir / job.output)
        src = load_image(job.source)
    except ImageError as exc:
        raise ValueError(exc.reason) from None
    if out.format != "PNG" or out.mode != "RGB" or out.bit_depth != 8:
        raise ValueError(f"it is a {out.format} {out.mode} image, not an 8-bit RGB PNG")
    (sh, sw), (oh, ow) = src.shape, out.shape
    if oh not in _sides(sh, multiple) or ow not in _sides(sw, multiple):
        raise ValueError(f"its size {ow}x{oh} does not fit its source {sw}x{sh}")
    value = psnr_db(src.pixels, to_uint8(out.pixels))
    note = f"row added on resume: the PNG was verified (decodes, {ow}x{oh})"
    return [
        str(job.source),
        job.output,
        label,
        fingerprint,
        _format_psnr(value),
        "; ".join([*src.notes, note]),
    ]


def _only_this_configuration(out_dir: Path, fingerprint: str) -> bool:
    """True when ``launderers.json`` knows no other configuration than ``fingerprint``."""
    try:
        known = json.loads((out_dir / LAUNDERERS_JSON).read_text())
    except (OSError, ValueError):
        return False
    return isinstance(known, dict) and set(known) == {fingerprint}


def _reconcile(
    jobs: Sequence[LaunderJob],
    out_dir: Path,
    listed: set[str],
    multiple: int,
    label: str,
    fingerprint: str,
    emit: Callable[[str], None],
) -> int:
    """Add the rows of outputs that a killed run wrote without one; returns how many.

    Only outputs of this run's inputs are considered, and only when ``launderers.json`` names
    this configuration alone (otherwise which one wrote a PNG cannot be told). Outputs that do
    not verify are kept and reported; they are never overwritten.
    """
    candidates = [j for j in jobs if j.output not in listed and (out_dir / j.output).is_file()]
    if not candidates:
        return 0
    if not _only_this_configuration(out_dir, fingerprint):
        emit(
            f"{len(candidates)} output(s) in {escape(str(out_dir))} have no manifest row and "
            f"{LAUNDERERS_JSON} names other configurations: kept, not listed"
        )
        return 0
    rows = []
    for job in candidates:
        try:
            rows.append(_verified_row(job, out_dir, multiple, label, fingerprint))
        except ValueError as exc:
            emit(
                f"kept {escape(job.output)}: it has no manifest row and "
                f"{escape(str(exc))}; not listed"
            )
            continue
        listed.add(job.output)
    if rows:
        _append(out_dir / MANIFEST, _csv_line(rows))
    return len(rows)


# --------------------------------------------------------------------------- the run


Decoded = tuple[LaunderJob, DecodedImage | ImageError]


def _prefetch(jobs: Sequence[LaunderJob], pool: cf.Executor, ahead: int) -> Iterator[Decoded]:
    """Decode ``jobs`` in ``pool`` with at most ``ahead`` images in flight, in order."""

    def load(job: LaunderJob) -> Decoded:
        try:
            return job, load_image(job.source)
        except ImageError as exc:
            return job, exc

    queue: collections.deque[cf.Future[Decoded]] = collections.deque()
    it = iter(jobs)
    for job in it:
        queue.append(pool.submit(load, job))
        if len(queue) >= ahead:
            break
    while queue:
        yield queue.popleft().result()
        nxt = next(it, None)
        if nxt is not None:
            queue.append(pool.submit(load, nxt))


def launder_folder(
    launderer: Launderer,
    in_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    name: str | None = None,
    batch_size: int = 16,
    progress: bool | None = None,
    log: Callable[[str], None] | None = None,
) -> LaunderSummary:
    """Launder every image of ``in_dir`` into ``out_dir`` (see the module docstring).

    ``progress``: a bar on a terminal, else a line every ~10 s (:mod:`fzoo.progress`); False:
    none. ``log`` receives
    one line per skipped file (default: stderr). Raises :class:`LaunderUsageError` for
    overlapping folders or a foreign manifest, ``fzoo.WeightsError`` when the launderer's weights
    cannot be found. An exception of the launderer for a batch makes it retry the images one by
    one; an image that still fails (too small to crop, say) is reported with the reason and
    skipped, and the others are laundered. A write error (a full disk) stops the run: outputs
    written so far stay, with their manifest rows.
    """
    src, dst = check_dirs(in_dir, out_dir)
    emit = log or (lambda line: print(line, file=sys.stderr))
    label = name or launderer.name
    start = time.perf_counter()
    fingerprint = launderer.fingerprint()  # resolves weights: fails fast when they are missing
    summary = LaunderSummary(str(src), str(dst), label, fingerprint)

    def folder_skipped(folder: Path, exc: OSError) -> None:
        reason = folder_error(folder, exc)
        summary.unreadable.append({"path": str(folder), "reason": reason})
        emit(f"skipped {escape(str(folder))}: {escape(reason)}")

    jobs = plan(src, folder_skipped)
    summary.found = len(jobs)
    created_dir = not dst.exists()
    dst.mkdir(parents=True, exist_ok=True)
    lock = _FolderLock(dst)
    try:
        return _run(launderer, src, dst, jobs, label, fingerprint, summary, lock, emit, start,
                    batch_size=batch_size, progress=progress)  # fmt: skip
    finally:
        if summary.written == 0:
            _tidy_unused(dst, fingerprint, created_dir, lock)
        lock.close()


def _run(
    launderer: Launderer,
    src: Path,
    dst: Path,
    jobs: list[LaunderJob],
    label: str,
    fingerprint: str,
    summary: LaunderSummary,
    lock: _FolderLock,
    emit: Callable[[str], None],
    start: float,
    *,
    batch_size: int,
    progress: bool | None,
) -> LaunderSummary:
    alone = lock.try_exclusive()
    try:
        if alone:
            summary.stale_temporaries_removed = _remove_stale_temporaries(dst)
        listed = _prepare_manifest(dst, fingerprint, summary)
        _record_launderer(dst, label, launderer, fingerprint)
        if alone:
            multiple = int(getattr(launderer, "multiple", 1) or 1)
            summary.rows_recovered = _reconcile(
                jobs, dst, listed, multiple, label, fingerprint, emit
            )
    finally:
        lock.share()
    if summary.rows_recovered:
        emit(f"{summary.rows_recovered} output(s) without a manifest row verified and listed")
    pending: list[LaunderJob] = []
    for job in jobs:
        if (dst / job.output).exists():
            summary.skipped_existing += 1
            if job.output not in listed:
                summary.unlisted_existing.append(job.output)
        else:
            pending.append(job)
    if summary.skipped_existing:
        emit(
            f"{summary.skipped_existing} output(s) already exist in {escape(str(dst))}: kept "
            "as they are "
            "(resuming)"
            + (
                f"; {len(summary.unlisted_existing)} of them are not in the manifest"
                if summary.unlisted_existing
                else ""
            )
        )

    from fzoo.progress import Progress

    # a bar on a terminal, else a line every ~10 s (counts, rate, ETA); progress=False: none
    bar = Progress(
        "launder",
        len(jobs),
        "img",
        initial=summary.skipped_existing,
        enabled=None if progress is None else progress,
    )
    manifest = dst / MANIFEST
    batch_size = max(1, int(batch_size))

    write_errors: list[OSError] = []

    def write_batch(items: list[tuple[LaunderJob, np.ndarray, np.ndarray, str]]) -> None:
        for job, source_px, out_u8, notes in items:
            if write_errors:  # the disk is full (say): the next run does the rest
                return
            target = dst / job.output
            if target.parent.resolve().is_relative_to(src):  # a symlink in OUT_DIR into IN_DIR
                reason = f"{target.parent} leads into IN_DIR"
                summary.failed.append({"path": str(job.source), "reason": reason})
                emit(f"skipped {escape(str(job.source))}: {escape(reason)}; not written")
                continue
            try:
                write_png_new(target, out_u8)
                value = psnr_db(source_px, out_u8)
                # the row right after its PNG: a kill between the two is reconciled on resume
                row = [str(job.source), job.output, label, fingerprint, _format_psnr(value), notes]
                _append(manifest, _csv_line([row]))
            except FileExistsError:
                summary.skipped_existing += 1
                summary.unlisted_existing.append(job.output)
                emit(f"skipped {escape(job.output)}: appeared in OUT_DIR during the run; kept")
                continue
            except OSError as exc:
                write_errors.append(exc)
                raise
            summary.psnr.append(value)
            summary.written += 1

    def run_batch(
        group: list[tuple[LaunderJob, DecodedImage]],
    ) -> list[tuple[LaunderJob, np.ndarray, str]]:
        import torch

        batch = torch.from_numpy(np.stack([img.pixels for _, img in group]).transpose(0, 3, 1, 2))
        out = launderer.launder(batch.contiguous())
        notes = launderer.pop_notes()
        arr = out.detach().float().cpu().numpy().transpose(0, 2, 3, 1)
        return [
            (job, np.ascontiguousarray(arr[i]), "; ".join([*img.notes, *notes]))
            for i, (job, img) in enumerate(group)
        ]

    def process(group: list[tuple[LaunderJob, DecodedImage]]) -> None:
        from fzoo.weights import WeightsError

        try:
            results = run_batch(group)
        except WeightsError:  # loading the model failed: no image can succeed, stop now
            raise
        except Exception:  # find the image(s) at fault: one by one
            launderer.pop_notes()
            results = []
            for one in group:
                try:
                    results += run_batch([one])
                except Exception as exc:  # this image only: reported and skipped
                    launderer.pop_notes()
                    reason = _failure(exc)
                    summary.failed.append({"path": str(one[0].source), "reason": reason})
                    emit(f"skipped {escape(str(one[0].source))}: {escape(reason)}")
                    bar.update(1)
        sources = {id(job): img.pixels for job, img in group}
        items = [(job, sources[id(job)], to_uint8(px), notes) for job, px, notes in results]
        writes.append(writer.submit(write_batch, items))
        while writes and writes[0].done():
            writes.popleft().result()
        bar.update(len(results))

    writes: collections.deque[cf.Future[None]] = collections.deque()
    buckets: dict[tuple[int, int], list[tuple[LaunderJob, DecodedImage]]] = {}
    buffered = 0
    with (
        cf.ThreadPoolExecutor(1, thread_name_prefix="fzoo-decode") as reader,
        cf.ThreadPoolExecutor(1, thread_name_prefix="fzoo-write") as writer,
    ):
        try:
            for job, img in _prefetch(pending, reader, ahead=2 * batch_size):
                if isinstance(img, ImageError):
                    summary.unreadable.append({"path": str(job.source), "reason": img.reason})
                    emit(f"skipped {escape(str(job.source))}: {escape(img.reason)}")
                    bar.update(1)
                    continue
                bucket = buckets.setdefault(img.shape, [])
                bucket.append((job, img))
                buffered += 1
                if len(bucket) >= batch_size:
                    buffered -= len(bucket)
                    process(buckets.pop(img.shape))
                elif buffered > 4 * batch_size:  # many sizes: flush the fullest bucket
                    key = max(buckets, key=lambda k: len(buckets[k]))
                    buffered -= len(buckets[key])
                    process(buckets.pop(key))
            for key in list(buckets):
                process(buckets.pop(key))
        finally:
            cf.wait(writes)  # rows of written PNGs reach the manifest even when interrupted
            bar.close()
    for fut in writes:
        fut.result()  # a write error (disk full...) surfaces here
    summary.wall_s = time.perf_counter() - start
    return summary
