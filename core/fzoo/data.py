"""Data for an experiment: dataset records, derived classes, and the split by source.

An :class:`Item` is one image the experiment will see. Pristine items come from a dataset record;
derived items remember their origin record and the chain of transforms (launderer, perturbations)
that made them, so a laundered twin always shares its photo's ``source`` and split side; generated
items carry their generator, seed and index. Images are materialised on demand and derived ones
are cached by content (origin hash + transform fingerprints).
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from fzoo import contracts
from fzoo.cache import ArrayCache, image_key
from fzoo.components import Component, Dataset, Generator, Launderer, Record
from fzoo.components import stable_hash as _hash
from fzoo.images import (
    DecodedImage,
    ImageError,
    decode_bytes,
    hash_pixels,
    load_image,
    quantize,
    to_array,
    to_tensor,
)
from fzoo.plan import DataPlan, ResolvedComponent
from fzoo.schema import DataSpec
from fzoo.split import (  # noqa: F401  (re-exported: the split used to live here)
    SplitLeakError,
    check_split,
    split_by_source,
    split_items,
    split_lines,
    split_summary,
)

#: ``Record.meta`` key of a record that stands for something a dataset could not read (a folder
#: without permission): its value is the reason; the runner reports the record and skips it
UNREADABLE = "fzoo:unreadable"


#: the old name of :class:`fzoo.plan.ResolvedComponent` (how a component travels to a worker)
ComponentRef = ResolvedComponent


@dataclass(frozen=True)
class Step:
    """One transform of a chain: a launderer, a perturbation or an img2img generator, with its
    fingerprint and seed.

    ``ref`` is the resolved component (how to build it again elsewhere); it is taken from the
    component when not given. A step travels to a remote worker without its component object
    (pickled, ``component`` is None there) and is rebuilt from ``ref``
    (:meth:`WorkUnit.to_item`).
    """

    component: Component | None
    fingerprint: str
    seed: int = 0
    ref: ResolvedComponent | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if self.ref is None:
            assert self.component is not None, "a step needs its component or its ref"
            object.__setattr__(self, "ref", ResolvedComponent.of(self.component))

    @property
    def built(self) -> Component:
        """The component (a step made in this process, or rebuilt by :meth:`WorkUnit.to_item`)."""
        assert self.component is not None, "a travelled step is rebuilt by WorkUnit.to_item"
        return self.component

    @property
    def spec(self) -> Step:
        """This step without its component object: what travels to a remote worker."""
        return Step(None, self.fingerprint, self.seed, self.ref)

    def __reduce__(self) -> tuple[Any, ...]:  # pickled: without the component object
        return (Step, (None, self.fingerprint, self.seed, self.ref))

    def __copy__(self) -> Step:
        return self  # immutable; a copy keeps its component (pickling does not)

    def __deepcopy__(self, memo: dict[int, Any]) -> Step:
        return self


@dataclass
class Item:
    """One image of the experiment (pristine, derived or generated)."""

    id: str
    label: str
    source: str
    base_hash: str
    camera: str | None = None
    forced_split: str | None = None
    record: Record | None = None
    steps: tuple[Step, ...] = ()
    quantize: bool = True
    generator: tuple[Generator, int] | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    #: every pixel has one colour (a saturated-sky tile): not a duplicate worth refusing
    uniform: bool = False

    @property
    def chain(self) -> tuple[str, ...]:
        return tuple(f"{s.fingerprint}@{s.seed}" for s in self.steps)


@dataclass(frozen=True)
class WorkUnit:
    """One (item, condition) as plain picklable data: what a remote worker needs to make pixels.

    The record travels as its path (decoded inside the worker by :mod:`fzoo.images`), as bytes only
    for in-memory datasets. Components travel as :class:`~fzoo.plan.ResolvedComponent` (rebuilt
    once per worker); no component object and no pixels travel. ``chain`` is the same as the local
    engine's, so both engines read and write the same cache entries.
    """

    item_id: str
    base_hash: str
    source: str
    path: str | None
    data: bytes | None
    steps: tuple[Step, ...]  # without their component objects (Step.spec)
    extra: tuple[Step, ...]
    generator: tuple[ResolvedComponent, str, int] | None
    quantize: bool
    max_pixels: int
    tile: tuple[int, int, int, int] | None = None

    @property
    def chain(self) -> tuple[str, ...]:
        return tuple(f"{s.fingerprint}@{s.seed}" for s in self.steps + self.extra)

    @classmethod
    def of(cls, item: Item, extra: Sequence[Step], max_pixels: int) -> WorkUnit:
        rec = item.record
        generator = None
        if item.generator is not None:
            gen, seed = item.generator
            generator = (ResolvedComponent.of(gen), gen.fingerprint(), seed)
        return cls(
            item_id=item.id,
            base_hash=item.base_hash,
            source=rec.source if rec is not None else item.source,
            path=rec.path if rec is not None else None,
            data=rec.data if rec is not None and rec.path is None else None,
            steps=tuple(s.spec for s in item.steps),
            extra=tuple(s.spec for s in extra),
            generator=generator,
            quantize=item.quantize,
            max_pixels=max_pixels,
            tile=rec.tile if rec is not None else None,
        )

    def to_item(
        self, build: Callable[[ResolvedComponent, str], Component]
    ) -> tuple[Item, tuple[Step, ...]]:
        """The item and the condition's steps again, components made by ``build(ref, fp)``."""
        record = None
        if self.path is not None or self.data is not None:
            record = Record(
                label="", source=self.source, path=self.path, data=self.data, tile=self.tile
            )
        generator = None
        if self.generator is not None:
            ref, fp, seed = self.generator
            gen = build(ref, fp)
            assert isinstance(gen, Generator)
            generator = (gen, seed)

        def steps(specs: tuple[Step, ...]) -> tuple[Step, ...]:
            out = []
            for s in specs:
                assert s.ref is not None
                out.append(Step(build(s.ref, s.fingerprint), s.fingerprint, s.seed, s.ref))
            return tuple(out)

        item = Item(
            id=self.item_id,
            label="",
            source=self.source,
            base_hash=self.base_hash,
            record=record,
            steps=steps(self.steps),
            quantize=self.quantize,
            generator=generator,
        )
        return item, steps(self.extra)


@dataclass
class Skipped:
    """A file the run could not use, and why."""

    path: str
    label: str
    reason: str


@dataclass
class LoadedData:
    """The items of an experiment plus everything skipped or changed on the way (what
    :func:`load_items` returns; not to be confused with a :class:`fzoo.Dataset` component)."""

    items: list[Item]
    skipped: list[Skipped]
    notes: dict[str, list[str]]
    fingerprints: dict[str, str]


DataSet = LoadedData  # the old name


def _item_seed(*parts: Any) -> int:
    return int(_hash(list(parts), 8), 16)


def _unique(item_id: str, seen: set[str]) -> str:
    candidate, n = item_id, 1
    while candidate in seen:
        n += 1
        candidate = f"{item_id}#{n}"
    seen.add(candidate)
    return candidate


def _decode_whole(record: Record, max_pixels: int) -> DecodedImage:
    if record.data is not None:
        return decode_bytes(record.data, name=record.display, max_pixels=max_pixels)
    if record.path is None:
        raise ImageError(record.display, "record has neither a path nor data")
    return load_image(record.path, max_pixels=max_pixels)


class _LastPhoto:
    """The last photo decoded for a tile, so the tiles of one photo (which come one after the
    other) decode it once; one photo at most is held (memory stays bounded)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.key: tuple[Any, ...] | None = None
        self.image: DecodedImage | None = None

    @staticmethod
    def key_of(record: Record, max_pixels: int) -> tuple[Any, ...]:
        if record.data is not None:
            return ("data", hashlib.sha256(record.data).hexdigest(), max_pixels)
        try:
            st = os.stat(record.path or "")
            stamp: tuple[int, ...] = (st.st_size, st.st_mtime_ns, st.st_ino)
        except OSError:
            stamp = ()
        return ("path", record.path, stamp, max_pixels)

    def get(self, record: Record, max_pixels: int) -> DecodedImage:
        key = self.key_of(record, max_pixels)
        with self.lock:
            if key == self.key and self.image is not None:
                return self.image
        image = _decode_whole(record, max_pixels)
        with self.lock:
            self.key, self.image = key, image
        return image


_LAST_PHOTO = _LastPhoto()


def decode_record(record: Record, max_pixels: int) -> DecodedImage:
    """Decode a record's bytes (path or in-memory data) exactly; a tile is an exact crop of its
    photo (decoded once for consecutive tiles of one photo) hashed by its own pixels."""
    if record.tile is None:
        return _decode_whole(record, max_pixels)
    photo = _LAST_PHOTO.get(record, max_pixels)
    x, y, w, h = record.tile
    height, width = photo.shape
    if x < 0 or y < 0 or x + w > width or y + h > height:
        raise ImageError(
            record.display,
            f"tile {w}x{h} at x={x},y={y} is outside the {width}x{height} image "
            "(did the file change since it was listed?)",
        )
    pixels = np.ascontiguousarray(photo.pixels[y : y + h, x : x + w])
    # hashed as its integer samples, as a decoded file is: a tile and the same pixels saved as a
    # file (a pre-cut tile) share cache entries, and the split check sees them as duplicates
    scale, dtype = (255.0, np.uint8) if photo.bit_depth == 8 else (65535.0, np.uint16)
    samples = np.round(pixels.astype(np.float64) * scale).astype(dtype)
    return DecodedImage(
        pixels=pixels,
        bit_depth=photo.bit_depth,
        mode=photo.mode,
        format=photo.format,
        content_hash=hash_pixels(samples),
        notes=list(photo.notes),
        exif_orientation=photo.exif_orientation,
    )


def load_items(
    plan: DataPlan | DataSpec,
    seed: int,
    progress: Callable[[Iterable[Any], str, int | None], Iterable[Any]] | None = None,
) -> LoadedData:
    """Read the dataset, check every image decodes, and add the derived and generated classes.

    ``plan`` is the cell's :class:`~fzoo.plan.DataPlan` (every component resolved at
    validation; nothing is looked up by name here); a bare :class:`DataSpec` is planned first.
    """
    if not isinstance(plan, DataPlan):
        plan = DataPlan.of(plan)
    spec = plan.spec
    dataset = plan.dataset.build()
    assert isinstance(dataset, Dataset)
    fingerprints = {"dataset": dataset.fingerprint()}
    items: list[Item] = []
    skipped: list[Skipped] = []
    notes: dict[str, list[str]] = {}
    per_class: dict[str, int] = defaultdict(int)
    seen_ids: set[str] = set()
    broken_photos: set[str] = set()  # a photo that failed to decode is reported once, not per tile
    records: Iterable[Record] = dataset.records()
    if progress is not None:
        records = progress(records, "decoding", None)
    for record in records:
        if UNREADABLE in record.meta:
            skipped.append(Skipped(record.display, record.label, str(record.meta[UNREADABLE])))
            continue
        if spec.limit_per_class is not None and per_class[record.label] >= spec.limit_per_class:
            continue
        photo = record.path if record.tile is not None and record.path else record.display
        if photo in broken_photos:
            continue
        try:
            decoded = decode_record(record, spec.max_pixels)
        except ImageError as exc:
            skipped.append(Skipped(photo, record.label, exc.reason))
            if record.tile is not None:
                broken_photos.add(photo)
            continue
        per_class[record.label] += 1
        key = (record.meta.get("name") or record.source) + record.tile_name
        item_id = _unique(f"{record.label}/{key}", seen_ids)
        if decoded.notes:  # a photo's notes once, not once per tile
            notes.setdefault(photo, list(decoded.notes))
        items.append(
            Item(
                id=item_id,
                label=record.label,
                source=record.source,
                base_hash=decoded.content_hash,
                camera=record.camera,
                forced_split=record.split,
                record=record,
                meta=dict(record.meta),
                uniform=_uniform(decoded.pixels),
            )
        )

    for i, dp in enumerate(plan.derive):
        derive = dp.spec
        if dp.generator is not None:  # generated from noise
            gen = dp.generator.build()
            assert isinstance(gen, Generator)
            fp = gen.fingerprint()
            fingerprints[f"derive[{i}].generator"] = fp
            assert derive.n is not None
            name = dp.generator.component
            for k in range(derive.n):
                s = _item_seed(seed, derive.label, k)
                items.append(
                    Item(
                        id=_unique(f"{derive.label}/{name}-{k:05d}", seen_ids),
                        label=derive.label,
                        source=f"{derive.label}:{name}:{k}",
                        base_hash=f"generated:{fp}:{s}",
                        quantize=derive.quantize,
                        generator=(gen, s),
                    )
                )
            continue
        transforms: list[tuple[Component, str, ResolvedComponent]] = []
        for rc, where in zip(dp.steps, dp.roles, strict=True):
            comp = rc.build()
            if isinstance(comp, Generator) and not comp.supports_img2img:
                raise ValueError(f"generator {rc.component!r} does not support img2img ('from')")
            fp = comp.fingerprint()
            fingerprints[where] = fp
            transforms.append((comp, fp, rc.with_fingerprint(fp)))
        origins = [it for it in items if it.label in derive.from_]
        for origin in origins:
            item_seed = _item_seed(seed, derive.label, origin.id)
            steps = origin.steps + tuple(Step(c, fp, item_seed, rc) for c, fp, rc in transforms)
            items.append(
                Item(
                    id=_unique(f"{derive.label}/{origin.id.split('/', 1)[1]}", seen_ids),
                    label=derive.label,
                    source=origin.source,
                    base_hash=origin.base_hash,
                    camera=origin.camera,
                    forced_split=origin.forced_split,
                    record=origin.record,
                    steps=steps,
                    quantize=derive.quantize,
                    generator=origin.generator,
                    meta={**origin.meta, "derived_from": origin.id},
                )
            )
    return LoadedData(items, skipped, notes, fingerprints)


def _uniform(pixels: np.ndarray) -> bool:
    """Whether every pixel has the colour of the first one."""
    arr = np.asarray(pixels)
    return bool(arr.size == 0 or (arr == arr[:1, :1]).all())


class Materializer:
    """Turns an :class:`Item` into pixels, caching derived and generated images by content."""

    def __init__(self, cache: ArrayCache, max_pixels: int) -> None:
        self.cache = cache
        self.max_pixels = max_pixels
        self.notes: dict[str, list[str]] = defaultdict(list)

    def base(self, item: Item) -> np.ndarray:
        if item.generator is not None:
            key = image_key(item.base_hash, ())
            cached = self.cache.get("images", key)
            if cached is not None:
                return _from_store(cached)
            gen, s = item.generator
            pixels = to_array(contracts.generate(gen, 1, s))  # checked
            if item.quantize:
                pixels = quantize(pixels)
            self.cache.put("images", key, _to_store(pixels, item.quantize))
            return pixels
        assert item.record is not None
        return np.asarray(decode_record(item.record, self.max_pixels).pixels)

    def image(self, item: Item) -> np.ndarray:
        """The item's pixels: HWC float32 in [0, 1]."""
        if not item.steps:
            return self.base(item)
        key = image_key(item.base_hash, item.chain)
        cached = self.cache.get("images", key)
        if cached is not None:
            return _from_store(cached)
        pixels = self.base(item)
        for step in item.steps:
            pixels = self.apply(step, pixels, item)
        if item.quantize:
            pixels = quantize(pixels)
        self.cache.put("images", key, _to_store(pixels, item.quantize))
        return pixels

    def load(self, item: Item, extra: Sequence[Step] = ()) -> np.ndarray:
        """The item's pixels under a test condition: :meth:`image`, then the condition's steps.

        Both engines make pixels through this method (the Ray engine inside its workers).
        """
        return self.transform(self.image(item), extra, item)

    def transform(self, pixels: np.ndarray, extra: Sequence[Step], item: Item) -> np.ndarray:
        """``extra`` applied to ``pixels`` of ``item``, as :meth:`load` applies a condition."""
        for step in extra:
            pixels = self.apply(step, pixels, item)
            if isinstance(step.built, Launderer):  # a laundered image is saved as 8 bits
                pixels = quantize(pixels)
        return pixels

    def apply(self, step: Step, pixels: np.ndarray, item: Item) -> np.ndarray:
        result, notes = apply_step(step, pixels)
        self.notes[item.id].extend(notes)
        return result


def apply_step(step: Step, pixels: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """One transform on HWC float32 pixels: the result and the notes it leaves for the report."""
    comp = step.built
    batch = to_tensor(pixels)
    out = contracts.transform(comp, batch, step.seed)  # launder/apply/img2img, checked
    result = to_array(out)
    notes = [f"{comp.name}: {n}" for n in comp.pop_notes()]
    if result.shape != pixels.shape:
        notes.append(
            f"{comp.name}: {pixels.shape[1]}x{pixels.shape[0]} -> "
            f"{result.shape[1]}x{result.shape[0]}"
        )
    return result, notes


def _to_store(pixels: np.ndarray, quantized: bool) -> np.ndarray:
    return np.clip(np.round(pixels * 255), 0, 255).astype(np.uint8) if quantized else pixels


def _from_store(stored: np.ndarray) -> np.ndarray:
    if stored.dtype == np.uint8:
        return stored.astype(np.float32) / np.float32(255.0)
    return stored.astype(np.float32)
