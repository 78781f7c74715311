"""The records of ``fzoo launder`` in ``OUT_DIR``: ``manifest.csv`` (one row per output, columns
:data:`COLUMNS`) and ``launderers.json`` (each fingerprint's launderer name and parameters).

Rows are appended whole (one ``write`` loop + ``fsync``, cut back on failure) right after their
PNG is in place. When a run starts, rows whose output was deleted are dropped, a manifest of
another launderer fingerprint is refused, and outputs a killed run left without a row are verified
(they decode, their size fits their source) and listed (:func:`reconcile`). File names keep their
bytes (UTF-8 with ``surrogateescape``, CSV quoting for a newline).
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import os
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from fzoo.fsutil import current_umask as _umask
from fzoo.images import ImageError, load_image, psnr, to_uint8
from fzoo.launder_folders import FolderLock, LaunderJob, LaunderUsageError
from fzoo.names import escape

if TYPE_CHECKING:
    from fzoo.components import Launderer

MANIFEST = "manifest.csv"
LAUNDERERS_JSON = "launderers.json"
COLUMNS: tuple[str, ...] = ("source", "output", "launderer", "fingerprint", "psnr_db", "notes")


# --------------------------------------------------------------------------- the files


def csv_line(rows: Sequence[Sequence[str]]) -> bytes:
    """``rows`` as CSV lines, encoded as the manifest stores them."""
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


def append_rows(path: Path, data: bytes) -> None:
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


def replace_file(path: Path, data: bytes) -> None:
    """Replace ``path`` by ``data`` atomically (temporary file, ``fsync``, ``os.replace``)."""
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


def prepare_manifest(out_dir: Path, fingerprint: str) -> tuple[set[str], int]:
    """Drop rows of deleted outputs, check fingerprints; returns the outputs already listed and
    how many rows were dropped."""
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
        data = csv_line([COLUMNS]) + csv_line([[r[c] for c in COLUMNS] for r in live])
        replace_file(path, data)
    return {r["output"] for r in live}, len(rows) - len(live)


def record_launderer(out_dir: Path, name: str, launderer: Launderer, fingerprint: str) -> None:
    """Add ``fingerprint``'s launderer (name, class, version, parameters, provenance) to
    ``launderers.json`` unless it is there."""
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
    replace_file(path, (json.dumps(known, indent=2, sort_keys=True) + "\n").encode())


def tidy_unused(out_dir: Path, fingerprint: str, created_dir: bool, lock: FolderLock) -> None:
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
                replace_file(record, (json.dumps(known, indent=2, sort_keys=True) + "\n").encode())
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


def psnr_db(reference: np.ndarray, output_u8: np.ndarray) -> float:
    """PSNR (dB, peak 1) of the 8-bit output against the source pixels on their overlap."""
    h = min(reference.shape[0], output_u8.shape[0])
    w = min(reference.shape[1], output_u8.shape[1])
    return psnr(reference[:h, :w], output_u8[:h, :w].astype(np.float64) / 255.0)


def format_psnr(value: float) -> str:
    """The ``psnr_db`` column: 4 decimals, ``inf`` for an identical output."""
    return "inf" if math.isinf(value) else f"{value:.4f}"


# --------------------------------------------------------------------------- resuming


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
        format_psnr(value),
        "; ".join([*src.notes, note]),
    ]


def _only_this_configuration(out_dir: Path, fingerprint: str) -> bool:
    """True when ``launderers.json`` knows no other configuration than ``fingerprint``."""
    try:
        known = json.loads((out_dir / LAUNDERERS_JSON).read_text())
    except (OSError, ValueError):
        return False
    return isinstance(known, dict) and set(known) == {fingerprint}


def reconcile(
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
        append_rows(out_dir / MANIFEST, csv_line(rows))
    return len(rows)
