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

This module drives a run (:func:`launder_folder`); the folders (planning, the lock, writing PNGs)
are :mod:`fzoo.launder_folders`, the manifest and ``launderers.json`` :mod:`fzoo.launder_manifest`.
"""

from __future__ import annotations

import collections
import concurrent.futures as cf
import math
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from fzoo import contracts
from fzoo.images import DecodedImage, ImageError, folder_error, load_image, to_uint8
from fzoo.launder_folders import (
    FolderLock,
    Job,
    LaunderJob,
    LaunderUsageError,
    check_dirs,
    plan,
    remove_stale_temporaries,
    write_png_new,
)
from fzoo.launder_manifest import (
    COLUMNS,
    LAUNDERERS_JSON,
    MANIFEST,
    append_rows,
    csv_line,
    format_psnr,
    prepare_manifest,
    psnr_db,
    read_manifest,
    reconcile,
    record_launderer,
    tidy_unused,
)
from fzoo.names import escape

if TYPE_CHECKING:
    from fzoo.components import Launderer

__all__ = [  # what other modules and tests import from here (the parts live in launder_*.py)
    "COLUMNS",
    "LAUNDERERS_JSON",
    "MANIFEST",
    "Job",
    "LaunderJob",
    "LaunderSummary",
    "LaunderUsageError",
    "check_dirs",
    "launder_folder",
    "plan",
    "psnr_db",
    "read_manifest",
    "write_png_new",
]


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
        """The path of ``OUT_DIR/manifest.csv``."""
        return str(Path(self.out_dir) / MANIFEST)

    def as_dict(self) -> dict[str, Any]:
        """The summary as JSON-ready values (PSNR mean and minimum over finite values)."""
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


def _failure(exc: Exception) -> str:
    """One line saying why the launderer failed on an image."""
    text = str(exc).strip() or type(exc).__name__
    return text if isinstance(exc, ValueError) else f"{type(exc).__name__}: {text}"


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
    lock = FolderLock(dst)
    try:
        return _run(launderer, src, dst, jobs, label, fingerprint, summary, lock, emit, start,
                    batch_size=batch_size, progress=progress)  # fmt: skip
    finally:
        if summary.written == 0:
            tidy_unused(dst, fingerprint, created_dir, lock)
        lock.close()


def _run(
    launderer: Launderer,
    src: Path,
    dst: Path,
    jobs: list[LaunderJob],
    label: str,
    fingerprint: str,
    summary: LaunderSummary,
    lock: FolderLock,
    emit: Callable[[str], None],
    start: float,
    *,
    batch_size: int,
    progress: bool | None,
) -> LaunderSummary:
    alone = lock.try_exclusive()
    try:
        if alone:
            summary.stale_temporaries_removed = remove_stale_temporaries(dst)
        listed, summary.stale_rows_dropped = prepare_manifest(dst, fingerprint)
        record_launderer(dst, label, launderer, fingerprint)
        if alone:
            multiple = int(getattr(launderer, "multiple", 1) or 1)
            summary.rows_recovered = reconcile(
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
                row = [str(job.source), job.output, label, fingerprint, format_psnr(value), notes]
                append_rows(manifest, csv_line([row]))
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
        out = contracts.launder(launderer, batch.contiguous())  # output checked
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
        except (WeightsError, contracts.ContractError):  # no image can succeed: stop now
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
