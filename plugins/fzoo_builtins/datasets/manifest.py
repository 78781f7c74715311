"""The ``manifest`` dataset: one image per CSV row or JSONL line."""

from __future__ import annotations

import csv
import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

import fzoo
from fzoo.tiles import ColumnGroup, GroupBy, TilingParams, group_of, rel_stem, tile_records

REQUIRED = ("path", "label")
KNOWN = ("path", "label", "source", "camera", "split")
NULLS = ("", "null", "none")


class ManifestError(ValueError):
    """A malformed manifest; the message starts with ``<manifest>:<line>:``."""


class ManifestDataset(fzoo.Dataset):
    """Images listed in a CSV file (with a header row) or a JSONL file (one object per line).

    Columns (CSV) or keys (JSONL): ``path`` and ``label`` are required; ``source`` defaults to
    the file name without extension; ``camera`` is optional; ``split`` is ``train``, ``test`` or
    empty/null. Every other column goes into the record's ``meta`` (CSV values as strings).
    Relative paths are resolved against ``root``, by default the manifest's folder; paths are not
    checked here (the runner reports unreadable files). Errors name the file and line number.

    ``tile: SIZE`` cuts every image into exact SIZE x SIZE crops, as the ``folder`` dataset does;
    every tile keeps its row's source. ``group_by`` sets the source of rows that are tiles of one
    photo: ``parent`` (the path's folder), ``{regex: PATTERN}`` (its one group, searched in the
    path without extension) or ``{column: NAME}`` (a column or key naming the photo); it takes
    precedence over a ``source`` column.
    """

    name = "manifest"
    description = "Images listed in a CSV or JSONL manifest (path, label, source, camera, split)"
    version = "1"

    class Params(TilingParams):
        path: Path = Field(..., description="The manifest file (.csv, .jsonl or .ndjson).")
        root: Path | None = Field(
            None, description="Base folder of relative image paths; null: the manifest's folder."
        )
        format: Literal["auto", "csv", "jsonl"] = Field(
            "auto", description="File format; 'auto' decides by the file extension."
        )
        group_by: GroupBy | ColumnGroup | None = Field(
            None,
            description="For rows that are tiles of one photo: 'parent', {regex: PATTERN} with "
            "one group, or {column: NAME}; null: the 'source' column, else the file name.",
        )

    params: Params

    def _format(self, path: Path) -> str:
        if self.params.format != "auto":
            return self.params.format
        suffix = path.suffix.lower()
        if suffix in (".csv",):
            return "csv"
        if suffix in (".jsonl", ".ndjson"):
            return "jsonl"
        raise ValueError(
            f"{path}: cannot tell the manifest format from the extension {suffix!r}; "
            "use .csv/.jsonl or set format: csv|jsonl"
        )

    def records(self) -> Iterator[fzoo.Record]:
        path = Path(self.params.path).expanduser()
        if not path.is_file():
            what = "is not a file" if path.exists() else "does not exist"
            raise FileNotFoundError(f"manifest dataset: {str(path)!r} {what}")
        fmt = self._format(path)
        base = Path(self.params.root).expanduser() if self.params.root is not None else path.parent
        rows = _csv_rows(path) if fmt == "csv" else _jsonl_rows(path)
        for line, row in rows:
            record = _record(row, base, f"{path}:{line}")
            yield from tile_records(self._grouped(record, row, f"{path}:{line}"), self.params)

    def _grouped(self, record: fzoo.Record, row: dict[str, Any], where: str) -> fzoo.Record:
        """``record`` with its source set by ``group_by`` (unchanged without it)."""
        group_by = self.params.group_by
        if group_by is None:
            return record
        if isinstance(group_by, ColumnGroup):
            photo = _text(row, group_by.column, where, required=False)
            if photo is None:
                raise ManifestError(f"{where}: group_by column {group_by.column!r} is missing")
        else:
            photo = group_of(rel_stem(_required(row, "path", where)), group_by, where)
        assert photo is not None
        return dataclasses.replace(record, source=photo)


def _csv_rows(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    with path.open(newline="", encoding="utf-8-sig") as fh:
        reader = csv.reader(fh)
        header: list[str] | None = None
        for fields in reader:
            line = reader.line_num
            if header is None:
                if not any(f.strip() for f in fields):
                    continue
                header = [f.strip() for f in fields]
                duplicates = sorted({h for h in header if header.count(h) > 1})
                if duplicates:
                    raise ManifestError(f"{path}:{line}: duplicate column(s) {duplicates}")
                missing = [c for c in REQUIRED if c not in header]
                if missing:
                    raise ManifestError(
                        f"{path}:{line}: missing column(s) {missing} in the header {header}"
                    )
                continue
            if not any(f.strip() for f in fields):
                continue  # blank line
            if len(fields) != len(header):
                raise ManifestError(
                    f"{path}:{line}: {len(fields)} fields but the header has {len(header)}"
                )
            yield line, dict(zip(header, fields, strict=True))
        if header is None:
            raise ManifestError(f"{path}: empty manifest (no header row)")


def _jsonl_rows(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    with path.open(encoding="utf-8-sig") as fh:
        for line, text in enumerate(fh, start=1):
            if not text.strip():
                continue
            try:
                obj = json.loads(text)
            except json.JSONDecodeError as exc:
                raise ManifestError(f"{path}:{line}: invalid JSON: {exc.msg}") from None
            if not isinstance(obj, dict):
                raise ManifestError(
                    f"{path}:{line}: expected a JSON object, got {type(obj).__name__}"
                )
            yield line, obj


def _text(row: dict[str, Any], key: str, where: str, required: bool) -> str | None:
    value = row.get(key)
    if isinstance(value, bool) or (value is not None and not isinstance(value, str | int)):
        raise ManifestError(f"{where}: {key!r} must be a string, got {json.dumps(value)}")
    text = None if value is None else str(value).strip()
    if not text:
        if required:
            raise ManifestError(f"{where}: missing {key!r}")
        return None
    return text


def _required(row: dict[str, Any], key: str, where: str) -> str:
    text = _text(row, key, where, required=True)
    if text is None:  # _text raised already; this keeps the type checker informed
        raise ManifestError(f"{where}: missing {key!r}")
    return text


def _record(row: dict[str, Any], base: Path, where: str) -> fzoo.Record:
    path_text = _required(row, "path", where)
    label = _required(row, "label", where)
    image = Path(path_text).expanduser()
    if not image.is_absolute():
        image = base / image
    source = _text(row, "source", where, required=False) or Path(path_text).stem
    camera = _text(row, "camera", where, required=False)
    split = _text(row, "split", where, required=False)
    if split is not None:
        split = split.lower()
        if split in NULLS:
            split = None
        elif split not in ("train", "test"):
            raise ManifestError(f"{where}: split must be train, test or empty, got {split!r}")
    meta = {k: v for k, v in row.items() if k not in KNOWN}
    return fzoo.Record(
        label=label, source=source, path=str(image), camera=camera, split=split, meta=meta
    )
