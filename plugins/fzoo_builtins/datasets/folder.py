"""The ``folder`` dataset: ``root/<class>/**/<image>``, the label is the first-level folder."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

from pydantic import Field

import fzoo
from fzoo.images import folder_error
from fzoo.tiles import GroupBy, TilingParams, group_of, tile_records


class FolderDataset(fzoo.Dataset):
    """Images under ``root/<class>/``, labelled by the class folder's name.

    ``source`` is the path relative to the class folder without its extension, so
    ``root/pristine/a.png`` and ``root/laundered/a.png`` share the source ``a`` and are never
    split between train and test. Classes come in sorted order (or the order of ``labels``) and
    files in sorted order of their relative path. Only image extensions are listed; a file with
    an image extension is yielded even if it is corrupt (the runner decodes and reports it).
    Names starting with ``.`` are skipped, as are files directly in ``root``. Symbolic links to
    files are listed; symbolic links to folders (class folders included) are entered only with
    ``follow_symlinks``, and then every real folder is entered at most once (no loops).

    With ``folders: camera`` the first-level folders are camera models instead (a camera dataset
    such as Dresden or VISION, one folder per model): every record gets the label ``label``
    (default ``pristine``), its folder as ``camera``, and ``<camera>/<relative path>`` as source,
    since two cameras' ``IMG_0001.jpg`` are different photos.

    A class folder or sub-folder that cannot be listed (no permission) is not an error: it comes
    as one record whose ``meta`` holds :data:`fzoo.data.UNREADABLE` (the reason), which the runner
    reports once by path and skips; the other folders are used.

    ``tile: SIZE`` cuts every image into SIZE x SIZE exact crops (``stride``, ``tiles_per_image``
    drawn with ``seed``); every tile keeps its photo's source, so tiles of one photo never sit on
    both sides of the split, and its item id ends in ``#x=..,y=..``. For images already cut into
    tiles, ``group_by`` names the photo: ``parent`` (the file's folder under the class folder) or
    ``{regex: '^(.*)_tile\\d+'}`` (the one group, searched in the relative path without extension).
    """

    name = "folder"
    description = "Images in root/<class>/**: label = class folder, source = relative path"
    version = "1"

    class Params(TilingParams):
        root: Path = Field(..., description="Folder holding one sub-folder per class.")
        labels: tuple[str, ...] | None = Field(
            None,
            min_length=1,
            description="Class folders to use, in this order; null: every class folder, sorted.",
        )
        recursive: bool = Field(True, description="Descend into sub-folders of each class folder.")
        follow_symlinks: bool = Field(
            False, description="Enter symbolically linked folders (each real folder once)."
        )
        folders: Literal["label", "camera"] = Field(
            "label",
            description="What the first-level folders are: class labels, or camera models "
            "(then every image gets the label 'label' and the folder as its camera).",
        )
        label: str = Field("pristine", description="The label of every image with folders: camera.")
        group_by: GroupBy | None = Field(
            None,
            description="For images already cut into tiles: the photo each belongs to, 'parent' "
            "(its folder) or {regex: PATTERN} with one group; null: each file is its own photo.",
        )

    params: Params

    def _root(self) -> Path:
        root = Path(self.params.root).expanduser()
        if not root.exists():
            raise FileNotFoundError(f"folder dataset: root {str(root)!r} does not exist")
        if not root.is_dir():
            raise ValueError(f"folder dataset: root {str(root)!r} is not a folder")
        return root

    def class_folders(self) -> list[tuple[str, Path]]:
        """``(label, folder)`` pairs, in the order the records come."""
        root = self._root()
        found: dict[str, Path] = {}
        skipped_links: list[str] = []
        with os.scandir(root) as it:
            for entry in it:
                if entry.name.startswith(".") or not _is_dir(entry):
                    continue
                if entry.is_symlink() and not self.params.follow_symlinks:
                    skipped_links.append(entry.name)
                    continue
                found[entry.name] = Path(entry.path)
        hint = (
            f"; symlinked folders {sorted(skipped_links)} are skipped unless follow_symlinks"
            if skipped_links
            else ""
        )
        if self.params.labels is not None:
            repeated = sorted({x for x in self.params.labels if self.params.labels.count(x) > 1})
            if repeated:
                raise ValueError(f"folder dataset: labels repeated in 'labels': {repeated}")
            missing = [label for label in self.params.labels if label not in found]
            if missing:
                raise ValueError(
                    f"folder dataset: no class folder for label(s) {missing} in {str(root)!r}; "
                    f"class folders: {sorted(found)}{hint}"
                )
            return [(label, found[label]) for label in self.params.labels]
        if not found:
            raise ValueError(
                f"folder dataset: no class folders in {str(root)!r} "
                f"(expected root/<class>/<image>){hint}"
            )
        return sorted(found.items())

    def _files(self, folder: Path) -> tuple[list[str], list[tuple[str, str]]]:
        """Relative POSIX paths of the image files under ``folder``, sorted, and the
        ``(relative folder, reason)`` of each folder that could not be listed."""
        out: list[str] = []
        unreadable: list[tuple[str, str]] = []
        visited: set[str] = {os.path.realpath(folder)}
        stack: list[tuple[Path, str]] = [(folder, "")]
        while stack:
            current, prefix = stack.pop()
            try:
                with os.scandir(current) as it:
                    entries = sorted(it, key=lambda e: e.name)
            except OSError as exc:
                unreadable.append((prefix.rstrip("/"), folder_error(current, exc)))
                continue
            for entry in entries:
                if entry.name.startswith("."):
                    continue
                rel = f"{prefix}{entry.name}"
                if _is_dir(entry):
                    if not self.params.recursive:
                        continue
                    if entry.is_symlink() and not self.params.follow_symlinks:
                        continue
                    real = os.path.realpath(entry.path)
                    if real in visited:  # a symlink loop, or a second way into one folder
                        continue
                    visited.add(real)
                    stack.append((Path(entry.path), f"{rel}/"))
                elif fzoo.is_image_path(Path(entry.name)):
                    out.append(rel)
        return sorted(out), sorted(unreadable)

    def records(self) -> Iterator[fzoo.Record]:
        from fzoo.data import UNREADABLE

        cameras = self.params.folders == "camera"
        for name, folder in self.class_folders():
            files, unreadable = self._files(folder)
            for rel, reason in unreadable:
                path = folder / rel if rel else folder
                label = self.params.label if cameras else name
                yield fzoo.Record(
                    label=label, source=f"{name}/{rel}", path=str(path), meta={UNREADABLE: reason}
                )
            for rel in files:
                yield from tile_records(self._record(name, folder, rel), self.params)

    def _record(self, name: str, folder: Path, rel: str) -> fzoo.Record:
        """The record of ``folder/rel`` (class or camera folder ``name``), source = its photo."""
        stem, _ = os.path.splitext(rel)
        photo = group_of(stem, self.params.group_by, str(folder / rel)) or stem
        if self.params.folders == "camera":
            return fzoo.Record(
                label=self.params.label,
                source=f"{name}/{photo}",
                path=str(folder / rel),
                camera=name,
            )
        return fzoo.Record(label=name, source=photo, path=str(folder / rel))


def _is_dir(entry: os.DirEntry[str]) -> bool:
    """``entry.is_dir()``, but False for a symlink loop (ELOOP) instead of raising; the file is
    then listed, and the runner reports it as unreadable."""
    try:
        return entry.is_dir()
    except OSError:
        return False
