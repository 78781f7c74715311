"""Features of (images, condition) groups through the experiment's engine, with the cache.

The engine computes what the cache lacks; images a condition changes get their PSNR against the
clean image recorded on the way (cache namespace ``psnr``). An extractor that fails on every
image, or breaks its contract, is recorded as failed and the others go on; an image one
extractor cannot handle is reported as skipped for the pipelines that use that extractor.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from fzoo.components import stable_hash
from fzoo.conditions import Condition, item_steps
from fzoo.contracts import ImageNotMade, Reported
from fzoo.data import WorkUnit
from fzoo.engines.local import ExtractionError, ExtractionJob
from fzoo.images import psnr
from fzoo.names import escape

if TYPE_CHECKING:
    from fzoo.cache import ArrayCache
    from fzoo.components import FeatureExtractor
    from fzoo.data import Item, Materializer, Step
    from fzoo.engines import Engine

Progress = Callable[[Iterable[Any], str, int | None], Iterable[Any]]
Features = dict[str, list[np.ndarray | None]]


class FeatureStage:
    """Extraction for one run: the engine, the cache, and what extraction reported."""

    def __init__(
        self,
        engine: Engine,
        cache: ArrayCache,
        progress: Progress | None,
        log: Callable[[str], None],
        fitted_states: dict[str, Path],
    ) -> None:
        self.engine = engine
        self.cache = cache
        self.progress = progress
        self.log = log
        self.fitted_states = fitted_states  # fitted fingerprint -> saved state
        self.timeouts: dict[str, float | None] = {}  # extractor fingerprint -> limit per call
        self.extractor_notes: dict[str, list[str]] = {}
        self.image_skips: list[dict[str, str]] = []

    def _jobs(self, items: list[Item], cond: Condition, mat: Materializer) -> list[ExtractionJob]:
        jobs = []
        for it in items:
            steps, chain = item_steps(it, cond)

            def load(
                it: Item = it, steps: tuple[Step, ...] = steps, chain: tuple[str, ...] = chain
            ) -> np.ndarray:
                clean = mat.image(it)
                if not steps:
                    return clean
                changed = mat.transform(clean, steps, it)
                self._store_psnr(it, chain, clean, changed)  # spares condition_psnr a pass
                return changed

            unit = WorkUnit.of(it, steps, mat.max_pixels) if self.engine.name != "local" else None
            jobs.append(ExtractionJob(it.base_hash, chain, load, it.id, unit))
        return jobs

    def condition_psnr(
        self, items: list[Item], cond: Condition, mat: Materializer
    ) -> list[float | None]:
        """PSNR (dB) of each item under ``cond`` against the item itself (None: not computable).

        Computed once per image and chain and kept in the cache (namespace ``psnr``); identical
        images give ``inf``. The local engine records it while it makes each image for
        extraction; what is still missing (features from the cache, another engine) is computed
        here.
        """
        out: list[float | None] = []
        for it in items:
            steps, chain = item_steps(it, cond)
            cached = self.cache.get("psnr", _psnr_key(it, chain))
            if cached is not None:
                out.append(float(cached[0]))
                continue
            try:
                clean = mat.image(it)
                changed = mat.transform(clean, steps, it)
            except (Exception, SystemExit):  # the extraction pass has reported this image
                out.append(None)
                continue
            out.append(self._store_psnr(it, chain, clean, changed))
        return out

    def _store_psnr(
        self, it: Item, chain: tuple[str, ...], clean: np.ndarray, changed: np.ndarray
    ) -> float:
        value = psnr(clean, changed) if clean.shape == changed.shape else float("nan")
        self.cache.put("psnr", _psnr_key(it, chain), np.asarray([value], dtype=np.float64))
        return value

    def features(
        self,
        items: list[Item],
        cond: Condition,
        extractors: dict[str, FeatureExtractor],
        mat: Materializer,
        batch_size: int,
        failed: dict[str, str],
    ) -> Features:
        """Features for ``items`` under ``cond`` (``None`` where an image failed).

        An extractor that fails on every image, or breaks its contract, is recorded in ``failed``
        (fingerprint -> reason) and the others go on; an image that one extractor cannot handle is
        reported as skipped for the pipelines that use that extractor.
        """
        return self.features_of([(items, cond)], extractors, mat, batch_size, failed)[0]

    def features_of(
        self,
        groups: list[tuple[list[Item], Condition]],
        extractors: dict[str, FeatureExtractor],
        mat: Materializer,
        batch_size: int,
        failed: dict[str, str],
    ) -> list[Features]:
        """:meth:`features` of several (items, condition) groups in one engine call.

        A distributed engine pays a fixed cost per call (starting actors, rebuilding components),
        so a cell's training and test groups go together; failures are judged group by group, in
        order, as separate calls would.
        """
        jobs: list[ExtractionJob] = []
        owner: list[Item] = []
        bounds: list[tuple[int, int]] = []
        timeouts = self.timeouts
        for items, cond in groups:
            start = len(jobs)
            jobs += self._jobs(items, cond, mat)
            owner += items
            bounds.append((start, len(jobs)))
        todo = {fp: e for fp, e in extractors.items() if fp not in failed}
        while todo:
            try:
                got = self.engine.extract_features(
                    jobs,
                    todo,
                    self.cache,
                    batch_size,
                    self.progress,
                    states=self.fitted_states,
                    timeouts={fp: timeouts.get(fp) for fp in todo},
                )
            except ExtractionError as exc:
                failed[exc.fingerprint] = str(exc)
                self.log(f"error: {exc}")
                todo.pop(exc.fingerprint)
                continue
            for i, notes in got.item_notes.items():
                mat.notes[owner[i].id].extend(notes)
            for fp, ext in todo.items():
                for note in ext.pop_notes() + got.extractor_notes.get(fp, []):
                    self.extractor_notes.setdefault(f"[{ext.name}]", [])
                    if note not in self.extractor_notes[f"[{ext.name}]"]:
                        self.extractor_notes[f"[{ext.name}]"].append(note)
            out: list[Features] = []
            for (items, cond), (a, b) in zip(groups, bounds, strict=True):
                out.append({fp: feats[a:b] for fp, feats in got.features.items()})
                for fp, all_fails in got.failures.items():
                    if fp in failed:  # failed in an earlier group: not computed there
                        continue
                    fails = {i - a: r for i, r in all_fails.items() if a <= i < b}
                    # images the condition could not make are its fault, not the extractor's
                    own = not all(isinstance(r, ImageNotMade) for r in fails.values())
                    if fails and len(fails) == b - a and own:
                        failed[fp] = f"failed on every image, e.g. {next(iter(fails.values()))}"
                        self.log(f"error: {failed[fp]}")
                    for i, reason in fails.items():
                        it = items[i]
                        entry = {
                            "path": display(it),
                            "label": it.label,
                            "condition": cond.name,
                            "reason": reason,
                        }
                        if entry not in self.image_skips:  # grid cells meet the same images again
                            if not isinstance(reason, Reported):  # a contract error: said once
                                self.log(f"skipped {escape(it.id)} ({cond.name}): {escape(reason)}")
                            self.image_skips.append(entry)
            return out
        return [{} for _ in groups]


def _psnr_key(it: Item, chain: tuple[str, ...]) -> str:
    return stable_hash(["psnr", it.base_hash, chain])


def display(item: Item) -> str:
    """How an item is named to the user: its file (and tile) when it is not derived."""
    if item.record is not None and not item.steps:
        return item.record.display
    return item.id
