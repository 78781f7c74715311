"""The train/test split by source, its leak check, and what the report says about it.

A source is one photo and everything cut or derived from it (its tiles, its laundered and
perturbed twins); :func:`split_by_source` puts each source on one side, stratified by label set
(and camera for ``target: camera`` tasks). :func:`check_split` refuses a split that leaks:
a source forced onto both sides, or identical pixels on both sides under different sources.
:func:`split_summary` is what ``results.json`` records (``meta.split``), :func:`split_lines`
what the report prints.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import defaultdict
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from fzoo.names import escape

if TYPE_CHECKING:
    from fzoo.components import Record
    from fzoo.schema import SplitSpec


class Item(Protocol):
    """What the split reads of a :class:`fzoo.data.Item` (this module does not import it)."""

    @property
    def id(self) -> str: ...
    @property
    def label(self) -> str: ...
    @property
    def source(self) -> str: ...
    @property
    def base_hash(self) -> str: ...
    @property
    def camera(self) -> str | None: ...
    @property
    def forced_split(self) -> str | None: ...
    @property
    def record(self) -> Record | None: ...
    @property
    def steps(self) -> tuple[Any, ...]: ...
    @property
    def generator(self) -> Any: ...
    @property
    def uniform(self) -> bool: ...


class SplitLeakError(ValueError):
    """The split would put one photo (a source, or the same pixels) on both sides."""


#: how many names an error or a warning lists before "and N more"
_SHOW = 5
#: up to this many sources per side, results.json lists them by name (else a count and a hash)
LIST_SOURCES = 2000


def _few(names: Sequence[str]) -> str:
    shown = ", ".join(escape(n) for n in names[:_SHOW])
    return shown + (f" and {len(names) - _SHOW} more" if len(names) > _SHOW else "")


def _forced_sides(items: Sequence[Item]) -> dict[str, str]:
    """The side forced on each source by its records; a source forced onto both is refused."""
    forced: dict[str, str] = {}
    conflicts: dict[str, list[str]] = defaultdict(list)
    for it in items:
        if it.forced_split not in ("train", "test"):
            continue
        first = forced.setdefault(it.source, it.forced_split)
        if first != it.forced_split:
            conflicts[it.source].append(it.id)
    if conflicts:
        names = [f"{src!r} ({', '.join(ids[:2])})" for src, ids in sorted(conflicts.items())]
        raise SplitLeakError(
            f"split leak: {len(names)} source(s) are forced onto both train and test by their "
            f"'split' field: {_few(names)}. A source is one photo and everything cut or derived "
            "from it; give all its rows one split (or none)."
        )
    return forced


def split_by_source(
    items: Sequence[Item], spec: SplitSpec, seed: int, *, by_camera: bool = False
) -> dict[str, str]:
    """Assign each source to ``train`` or ``test``; a photo and its derived twins share a side.

    Sources are stratified by the set of labels they hold (and by camera with ``by_camera``, for
    ``target: camera`` tasks), so every class (camera) appears on both sides where it has at least
    two sources. Records may force a side through their ``split`` field; one source forced onto
    both sides raises :class:`SplitLeakError`.
    """
    rng = np.random.default_rng(spec.seed if spec.seed is not None else seed)
    side = _forced_sides(items)
    strata_of: dict[str, set[str]] = defaultdict(set)
    for it in items:
        strata_of[it.source].add(it.label)
        if by_camera:
            strata_of[it.source].add(f"camera:{it.camera}")
    strata: dict[tuple[str, ...], list[str]] = defaultdict(list)
    for source in sorted(strata_of):
        if source not in side:
            strata[tuple(sorted(strata_of[source]))].append(source)
    for _, sources in sorted(strata.items()):
        order = rng.permutation(len(sources))
        n_test = int(round(spec.test_size * len(sources)))
        if len(sources) >= 2:
            n_test = min(max(n_test, 1), len(sources) - 1)
        for rank, idx in enumerate(order):
            side[sources[idx]] = "test" if rank < n_test else "train"
    return side


def check_split(
    items: Sequence[Item], side: dict[str, str], allow_duplicates: bool = False
) -> None:
    """Refuse a split that leaks: a source on both sides, or identical pixels (a duplicated file
    under two names) in train and test. Derived images share their photo's source by design and
    are fine; generated images and one-colour images (a saturated tile) are not compared."""
    by_side: dict[str, set[str]] = {"train": set(), "test": set()}
    for it in items:
        by_side[side[it.source]].add(it.source)
    both = sorted(by_side["train"] & by_side["test"])
    if both:  # cannot happen with one side per source; kept as the invariant it guards
        raise SplitLeakError(f"split leak: source(s) on both sides: {_few(both)}")
    if allow_duplicates:
        return
    seen: dict[str, Item] = {}
    leaks: list[str] = []
    for it in items:
        if it.steps or it.generator is not None or it.record is None or it.uniform:
            continue
        first = seen.setdefault(it.base_hash, it)
        if first.source != it.source and side[first.source] != side[it.source]:
            leaks.append(
                f"{first.record.display if first.record else first.id} ({side[first.source]}) "
                f"= {it.record.display} ({side[it.source]})"
            )
    if leaks:
        raise SplitLeakError(
            f"split leak: {len(leaks)} image(s) have the same pixels as an image on the other "
            f"side under another source: {_few(leaks)}. Duplicated files let the test set into "
            "training. Remove the copies, or give each photo one source (the dataset's 'tile:' "
            "for whole photos, 'group_by:' for pre-cut tiles, a manifest 'source' column); "
            "split: {allow_duplicates: true} accepts them knowingly."
        )


def _side_listing(sources: set[str]) -> dict[str, Any]:
    names = sorted(escape(s) for s in sources)  # file names need not be UTF-8
    out: dict[str, Any] = {
        "sources": len(names),
        "sha256": hashlib.sha256("\n".join(names).encode()).hexdigest(),
    }
    if len(names) <= LIST_SOURCES:
        out["names"] = names
    return out


#: a file name that says it is a piece of a photo: ``IMG_1_tile3``, ``a-crop12``, ``b_x256_y0``
_PIECE = re.compile(r"(?:[_\-. ]?(?:tile|crop|patch)[_\-]?\d+(?:[_\-x]\d+)*|_x\d+_y\d+)$", re.I)


def _pre_cut_warnings(items: Sequence[Item], side: dict[str, str]) -> list[str]:
    """A warning when files that look like pieces of one photo (named ``..._tileN``, or in one
    sub-folder of a class or camera folder) sit on both sides: each was its own source, so the
    photo straddles the split; ``group_by`` says which photo each belongs to."""
    groups: dict[tuple[str, str], dict[str, set[str]]] = defaultdict(
        lambda: {"train": set(), "test": set()}
    )
    for it in items:
        if it.record is None or it.steps or it.generator is not None:
            continue
        rest = it.source
        if it.camera is not None and rest.startswith(f"{it.camera}/"):
            rest = rest[len(it.camera) + 1 :]
        stem = _PIECE.sub("", rest)
        if stem != rest and stem:
            groups[("name", stem)][side[it.source]].add(it.source)
        if "/" in rest:
            groups[("folder", rest.rsplit("/", 1)[0])][side[it.source]].add(it.source)
    both = sorted(
        (kind, key) for (kind, key), sides in groups.items() if sides["train"] and sides["test"]
    )
    for kind in ("folder", "name"):  # one warning: the folder reading first
        keys = [key for k, key in both if k == kind]
        if keys:
            hint = "group_by: {regex: ...}" if kind == "name" else "group_by: parent"
            what = "file names" if kind == "name" else "sub-folders"
            return [
                f"{len(keys)} photo(s) by their {what} have pieces on both sides "
                f"({_few(keys)}); if these are tiles of one photo, the split leaks: use {hint}, "
                "or the dataset's tile: on the whole photos"
            ]
    return []


def split_summary(items: Sequence[Item], side: dict[str, str], by_camera: bool) -> dict[str, Any]:
    """What results.json says about the split: the sources on each side (names, or a count and
    the sha256 of the sorted names when there are many), sources per class (and per camera) on
    each side, and a warning for every class or camera found on one side only."""
    sources: dict[str, set[str]] = {"train": set(), "test": set()}
    per: dict[str, dict[str, dict[str, set[str]]]] = {"class": {}, "camera": {}}
    for it in items:
        s = side[it.source]
        sources[s].add(it.source)
        per["class"].setdefault(it.label, {"train": set(), "test": set()})[s].add(it.source)
        if it.camera is not None:
            per["camera"].setdefault(it.camera, {"train": set(), "test": set()})[s].add(it.source)
    warnings: list[str] = []
    for what in ("class", "camera") if by_camera else ("class",):
        for name, sides in sorted(per[what].items()):
            empty = [k for k in ("train", "test") if not sides[k]]
            if len(empty) == 1:
                full = "test" if empty[0] == "train" else "train"
                n = len(sides[full])
                warnings.append(
                    f"{what} {name!r}: all its {n} photo(s) are in {full}, none in {empty[0]}"
                    + (" (it needs at least 2 photos to be on both sides)" if n < 2 else "")
                )

    warnings += _pre_cut_warnings(items, side)

    def counts(groups: dict[str, dict[str, set[str]]]) -> dict[str, dict[str, int]]:
        return {
            escape(k): {s: len(v[s]) for s in ("train", "test")} for k, v in sorted(groups.items())
        }

    out: dict[str, Any] = {
        "stratified_by": "label+camera" if by_camera else "label",
        "train": _side_listing(sources["train"]),
        "test": _side_listing(sources["test"]),
        "sources_per_class": counts(per["class"]),
        "warnings": [escape(w) for w in warnings],
    }
    if per["camera"]:
        out["sources_per_camera"] = counts(per["camera"])
    return out


def split_lines(splits: dict[str, dict[str, Any]]) -> list[str]:
    """Report lines for the ``split`` of results.json (per cell): sources per side, per class
    and camera, and the warnings; one set of lines when every cell has the same split."""

    def pairs(counts: dict[str, dict[str, int]]) -> str:
        return ", ".join(f"{k} {v['train']}/{v['test']}" for k, v in counts.items())

    distinct = {json.dumps(v, sort_keys=True): (cell, v) for cell, v in splits.items()}
    lines: list[str] = []
    for cell, s in distinct.values():
        where = f" (cell {cell})" if len(distinct) > 1 else ""
        line = (
            f"split{where}: {s['train']['sources']} sources in train, {s['test']['sources']} in "
            f"test, stratified by {s['stratified_by']}; sources per class (train/test): "
            f"{pairs(s['sources_per_class'])}"
        )
        if s.get("sources_per_camera"):
            line += f"; per camera: {pairs(s['sources_per_camera'])}"
        lines.append(line)
        lines += [f"split warning{where}: {w}" for w in s["warnings"]]
    return lines


def split_items(
    items: Sequence[Item], spec: SplitSpec, seed: int, by_camera: bool
) -> tuple[dict[str, str], dict[str, Any]]:
    """:func:`split_by_source`, :func:`check_split` and :func:`split_summary` in one call."""
    side = split_by_source(items, spec, seed, by_camera=by_camera)
    check_split(items, side, allow_duplicates=spec.allow_duplicates)
    return side, split_summary(items, side, by_camera)
