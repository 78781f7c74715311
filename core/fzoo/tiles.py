"""Tiles and photo groups for datasets: one photo, one ``source``, however it is cut.

Camera photos are large (12-24 MP) and detectors see tiles. Every tile of a photo keeps the
photo's ``source``, so the split never puts tiles of one photo on both sides. Datasets with
:class:`TilingParams` cut each image themselves (``tile``, ``stride``, ``tiles_per_image``); the
tile is an exact crop of the decoded pixels (never resampled), recorded as ``Record.tile``.
Datasets that arrive already cut into tiles name the photo with ``group_by`` (the parent folder,
a regular expression with one group on the file name, or a manifest column).
"""

from __future__ import annotations

import dataclasses
import io
import re
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Literal

import numpy as np
from PIL import Image
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from fzoo.components import Params, Record, stable_hash

#: ``Record.meta`` key of a record a dataset could not use (mirrors :data:`fzoo.data.UNREADABLE`)
UNREADABLE = "fzoo:unreadable"


class RegexGroup(BaseModel):
    """``group_by: {regex: '^(.*)_tile\\d+'}``: the photo is the regex's one group, searched in
    the file's path relative to its class folder (or the manifest path), without extension."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    regex: str = Field(..., description="A regular expression with exactly one group.")

    @field_validator("regex")
    @classmethod
    def _one_group(cls, value: str) -> str:
        try:
            compiled = re.compile(value)
        except re.error as exc:
            raise ValueError(f"invalid regular expression {value!r}: {exc}") from None
        if compiled.groups != 1:
            raise ValueError(
                f"the regex needs exactly one group (the photo), {value!r} has {compiled.groups}"
            )
        return value


class ColumnGroup(BaseModel):
    """``group_by: {column: photo}``: the photo is a manifest column (CSV) or key (JSONL)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    column: str = Field(..., min_length=1, description="The manifest column naming the photo.")


class TilingParams(Params):
    """Parameters shared by datasets that can cut their images into tiles."""

    tile: int | None = Field(
        None,
        ge=8,
        le=65536,
        description="Cut every image into SIZE x SIZE tiles (exact crops); null: whole images.",
    )
    stride: int | None = Field(
        None, ge=1, le=65536, description="Step between tiles in pixels; null: the tile size."
    )
    tiles_per_image: int | None = Field(
        None,
        ge=1,
        le=1_000_000,
        description="Keep this many tiles per image, drawn with 'seed'; null: every tile.",
    )
    seed: int = Field(0, ge=0, le=2**32 - 1, description="Seed of the tiles_per_image draw.")

    @model_validator(mode="after")
    def _needs_tile(self) -> TilingParams:
        if self.tile is None and (self.stride is not None or self.tiles_per_image is not None):
            raise ValueError("'stride' and 'tiles_per_image' need 'tile' (the tile size)")
        return self


def image_size(record: Record) -> tuple[int, int] | None:
    """``(width, height)`` from the image header (nothing decoded); None if unreadable (the runner
    then decodes the whole file and reports why it fails)."""
    try:
        if record.data is not None:
            with Image.open(io.BytesIO(record.data)) as img:
                return int(img.size[0]), int(img.size[1])
        if record.path is None:
            return None
        with Image.open(record.path) as img:
            return int(img.size[0]), int(img.size[1])
    except Exception:  # broken, missing, not an image: reported when decoded
        return None


def tile_positions(width: int, height: int, size: int, stride: int) -> list[tuple[int, int]]:
    """Top-left ``(x, y)`` of every whole tile, row by row; tiles never leave the image."""
    xs = range(0, width - size + 1, stride)
    ys = range(0, height - size + 1, stride)
    return [(x, y) for y in ys for x in xs]


def pick(
    positions: list[tuple[int, int]], n: int | None, seed: int, source: str
) -> list[tuple[int, int]]:
    """``n`` of ``positions`` drawn with a generator seeded by ``seed`` and the photo (the same
    photo gets the same tiles whatever else the dataset holds), kept in row order."""
    if n is None or n >= len(positions):
        return positions
    rng = np.random.default_rng(int(stable_hash([seed, source], 16), 16))
    chosen = sorted(int(i) for i in rng.choice(len(positions), size=n, replace=False))
    return [positions[i] for i in chosen]


def tile_records(record: Record, params: TilingParams) -> Iterator[Record]:
    """The record's tiles (or the record itself without ``tile``); an image smaller than one tile
    comes back as an unreadable record with the reason, which the runner reports and skips."""
    if params.tile is None or UNREADABLE in record.meta:
        yield record
        return
    size = image_size(record)
    if size is None:
        yield record
        return
    width, height = size
    tile = params.tile
    if width < tile or height < tile:
        reason = f"{width}x{height} is smaller than tile: {tile}"
        yield dataclasses.replace(record, meta={**record.meta, UNREADABLE: reason})
        return
    positions = tile_positions(width, height, tile, params.stride or tile)
    for x, y in pick(positions, params.tiles_per_image, params.seed, record.source):
        yield dataclasses.replace(record, tile=(x, y, tile, tile), meta=dict(record.meta))


GroupBy = Literal["parent"] | RegexGroup


def group_of(rel_stem: str, group_by: GroupBy | ColumnGroup | None, where: str) -> str | None:
    """The photo a pre-cut file belongs to, from its relative path without extension; None
    without ``group_by``. Raises ValueError naming the file when the regex does not match."""
    if group_by is None or isinstance(group_by, ColumnGroup):
        return None
    if group_by == "parent":
        parent = PurePosixPath(rel_stem).parent.as_posix()
        return rel_stem if parent in ("", ".") else parent
    assert isinstance(group_by, RegexGroup)
    found = re.search(group_by.regex, rel_stem)
    if found is None or not found.group(1):
        raise ValueError(
            f"{where}: group_by regex {group_by.regex!r} does not match {rel_stem!r} (or its group "
            "is empty); every file must name its photo"
        )
    return found.group(1)


def rel_stem(path: str | Path) -> str:
    """A POSIX relative path without its extension."""
    p = PurePosixPath(Path(path).as_posix())
    return p.with_suffix("").as_posix() if p.suffix else p.as_posix()
