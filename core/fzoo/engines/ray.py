"""The Ray engine: feature extraction (and the laundering it needs) on Ray Data actors.

The driver checks the feature cache first and sends only the missing (item, condition) pairs, as
picklable :class:`fzoo.data.WorkUnit` rows, through ``ray.data.from_items(...).map_batches(...)``
with a pool of stateful actors (:class:`Worker`). Each actor rebuilds the extractors and
transforms from their :class:`~fzoo.plan.ResolvedComponent` once (cached by its key), decodes
images from their paths with :mod:`fzoo.images`, makes derived pixels with the same
:class:`~fzoo.data.Materializer` code as the local engine, and extracts through the same
:func:`~fzoo.engines.local.extract_rows`. Feature rows come back to the driver, which writes
them into its :class:`~fzoo.cache.ArrayCache`: local and Ray runs share one cache and resume
from each other.

Ray is imported lazily: without it installed, ``fzoo validate`` works and ``fzoo run`` with
``engine: {name: ray}`` fails with one line saying ``pip install 'forensic-zoo[ray]'``.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import pickle
import tempfile
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from fzoo import contracts
from fzoo.cache import ArrayCache, feature_key
from fzoo.components import Component, FeatureExtractor
from fzoo.data import Materializer, WorkUnit
from fzoo.engines.base import EngineError, Progress
from fzoo.engines.local import (
    Extracted,
    ExtractionError,
    ExtractionJob,
    TransientFailure,
    cached_features,
    extract_rows,
)
from fzoo.plan import ResolvedComponent

if TYPE_CHECKING:
    from types import ModuleType

INSTALL_HINT = "pip install 'forensic-zoo[ray]'"


def ray_installed() -> bool:
    return importlib.util.find_spec("ray") is not None


def sent_extractor(extractor: FeatureExtractor) -> ResolvedComponent:
    """What a worker is sent of an extractor: its resolved form with the fingerprint that the
    component it rebuilds must have (pickled, the class goes as its module path)."""
    return ResolvedComponent.of(extractor).with_fingerprint(extractor.fingerprint())


def state_files(state: Path) -> dict[str, bytes]:
    """The files of a fitted state folder, by relative path (sent to workers with the extractor)."""
    return {
        str(p.relative_to(state)): p.read_bytes() for p in sorted(state.rglob("*")) if p.is_file()
    }


class _BestEffortCache(ArrayCache):
    """A worker's image cache: the driver's cache path when the worker can write there."""

    def put(self, namespace: str, key: str, value: np.ndarray) -> None:
        try:
            super().put(namespace, key, value)
        except OSError:
            self.enabled = False


def _worker_cache(root: str | None) -> ArrayCache:
    if root is None:
        return ArrayCache(".", enabled=False)
    try:
        Path(root).mkdir(parents=True, exist_ok=True)
    except OSError:
        return ArrayCache(root, enabled=False)
    return _BestEffortCache(root, enabled=os.access(root, os.W_OK))


class _SetupError(Exception):
    """A worker that cannot rebuild a component: an installation problem, not an image's."""


class Worker:
    """The stateful Ray Data actor: rebuilds components once, then makes pixels and features.

    Called with batches of rows ``{"payload": pickle((index, WorkUnit, [extractor keys]))}``;
    returns ``{"result": [pickle(dict)]}``, one result per unit: feature rows or failure reasons
    by extractor key, the notes left by transforms, and setup or contract errors.
    """

    def __init__(
        self,
        extractors: dict[str, ResolvedComponent],
        cache_root: str | None,
        batch_size: int,
        states: dict[str, dict[str, bytes]] | None = None,
    ) -> None:
        # by the key its features are cached under (a fitted fingerprint for learned extractors);
        # each carries the fingerprint its rebuilt component must have (:func:`sent_extractor`)
        self.refs = dict(extractors)
        self.states = dict(states or {})  # fitted states' files (:func:`state_files`), by key
        self.batch_size = batch_size
        self.cache = _worker_cache(cache_root)
        self.components: dict[str, Component] = {}
        self.checked: set[tuple[str, str]] = set()
        self.extractors: dict[str, FeatureExtractor] = {}
        self.mats: dict[int, Materializer] = {}
        self._states: list[tempfile.TemporaryDirectory[str]] = []

    def build(self, ref: ResolvedComponent, fingerprint: str) -> Component:
        """The component of ``ref`` (rebuilt once per actor), checked against ``fingerprint``."""
        comp = self.components.get(ref.key)
        if comp is None:
            try:
                comp = ref.build()
            except Exception as exc:
                raise _SetupError(
                    f"a Ray worker cannot rebuild {ref.kind.replace('_', ' ')} {ref.name!r}: "
                    f"{type(exc).__name__}: {exc}. Install the same fzoo and plugins as the "
                    "driver's on every worker"
                ) from exc
            self.components[ref.key] = comp
        if (ref.key, fingerprint) not in self.checked:
            got = comp.fingerprint()
            if got != fingerprint:
                raise _SetupError(
                    f"{ref.kind.replace('_', ' ')} {ref.name!r} has fingerprint {got} on a Ray "
                    f"worker but {fingerprint} on the driver: install the same versions of fzoo, "
                    "its plugins and weights on every worker"
                )
            self.checked.add((ref.key, fingerprint))
        return comp

    def extractor(self, key: str) -> FeatureExtractor:
        ext = self.extractors.get(key)
        if ext is None:
            ref, state = self.refs[key], self.states.get(key)
            if ref.fingerprint is None:
                raise _SetupError(f"extractor {key!r} was sent without its fingerprint")
            built = self.build(ref, ref.fingerprint)
            assert isinstance(built, FeatureExtractor)
            ext = type(built)(**ref.params) if state is not None else built
            if state is not None:  # a fitted copy, separate from the unfitted one
                tmp = tempfile.TemporaryDirectory(prefix="fzoo-state-")
                self._states.append(tmp)
                for rel, data in state.items():
                    target = Path(tmp.name) / rel
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_bytes(data)
                ext.load_state(Path(tmp.name))
            self.extractors[key] = ext
        return ext

    def materializer(self, max_pixels: int) -> Materializer:
        if max_pixels not in self.mats:
            self.mats[max_pixels] = Materializer(self.cache, max_pixels)
        return self.mats[max_pixels]

    def __call__(self, batch: dict[str, Any]) -> dict[str, list[bytes]]:
        payloads = [pickle.loads(p) for p in batch["payload"]]
        try:
            results = self.run(payloads)
        except _SetupError as exc:
            results = [{"index": i, "setup_error": str(exc)} for i, _, _ in payloads]
        return {"result": [pickle.dumps(r, protocol=pickle.HIGHEST_PROTOCOL) for r in results]}

    def run(self, payloads: list[tuple[int, WorkUnit, list[str]]]) -> list[dict[str, Any]]:
        results: list[dict[str, Any]] = [
            {"index": i, "rows": {}, "notes": None, "load_error": None} for i, _, _ in payloads
        ]
        buckets: dict[tuple[str, tuple[int, ...]], list[tuple[int, np.ndarray]]] = defaultdict(list)

        def flush(key: tuple[str, tuple[int, ...]]) -> None:
            entries = buckets.pop(key, [])
            if entries:
                try:
                    rows = extract_rows(self.extractor(key[0]), [px for _, px in entries])
                except ExtractionError as exc:  # named by its key (a fitted one may differ)
                    raise ExtractionError(str(exc), key[0]) from exc
                for (k, _), row in zip(entries, rows, strict=True):
                    results[k]["rows"][key[0]] = row

        try:
            for k, (_, unit, need) in enumerate(payloads):
                for key in need:
                    self.extractor(key)  # rebuild (and check) before any image is made
                item, extra = unit.to_item(self.build)
                mat = self.materializer(unit.max_pixels)
                try:
                    pixels = mat.load(item, extra)
                except Exception as exc:  # a transform that cannot handle this image
                    results[k]["load_error"] = contracts.load_failure(exc)
                    continue
                finally:  # None: no transform ran (the local engine keeps no entry either)
                    results[k]["notes"] = mat.notes.pop(item.id, None)
                for key in need:
                    bucket = (key, tuple(pixels.shape))
                    buckets[bucket].append((k, pixels))
                    if len(buckets[bucket]) >= self.batch_size:
                        flush(bucket)
            for bucket in list(buckets):
                flush(bucket)
        except ExtractionError as exc:
            return [{"index": i, "contract": (exc.fingerprint, str(exc))} for i, _, _ in payloads]
        ext_notes = {key: ext.pop_notes() for key, ext in self.extractors.items()}
        if results:
            results[0]["extractor_notes"] = {k: v for k, v in ext_notes.items() if v}
        return results


#: work units per cluster-side task when connected through Ray Client (``ray://``)
CLIENT_CHUNK = 2048


@dataclass(frozen=True)
class _Options:
    worker_kwargs: dict[str, Any]
    batch_size: int
    concurrency: int
    cpus_per_actor: float


def _dataset(ray: ModuleType, rows: list[dict[str, bytes]], options: _Options) -> Any:
    """``from_items(rows).map_batches(Worker)`` on a pool of ``concurrency`` actors."""
    return ray.data.from_items(rows).map_batches(
        Worker,
        fn_constructor_kwargs=options.worker_kwargs,
        batch_size=options.batch_size,
        batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(size=options.concurrency),
        num_cpus=options.cpus_per_actor,
    )


def _results(ds: Any) -> Any:
    for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
        yield from batch["result"]


def _run_chunk(rows: list[dict[str, bytes]], options: _Options) -> list[bytes]:
    """A cluster-side task (Ray Client mode): run the pipeline there, return every result."""
    import ray
    import ray.data

    ray.data.DataContext.get_current().enable_progress_bars = False
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    return [bytes(blob) for blob in _results(_dataset(ray, rows, options))]


def _client_mode(ray: ModuleType) -> bool:
    try:
        return bool(ray.util.client.ray.is_connected())
    except AttributeError:
        return False


class RayEngine:
    """Feature extraction on Ray Data actors; same contract and results as the local engine.

    ``address``: ``None`` starts a local Ray (``num_cpus`` CPUs) unless one is already running in
    this process; ``"auto"`` joins the cluster started on this machine with ``ray start``;
    ``"ray://host:10001"`` connects through Ray Client. ``concurrency`` actors run at a time,
    each with ``cpus_per_actor`` CPUs; ``batch_size`` units go to an actor per call.
    """

    name = "ray"
    one_call = True

    def __init__(
        self,
        address: str | None = None,
        num_cpus: int | None = None,
        concurrency: int = 1,
        batch_size: int = 16,
        cpus_per_actor: float = 1.0,
    ) -> None:
        if not ray_installed():
            raise EngineError(f"engine 'ray' needs Ray, which is not installed: {INSTALL_HINT}")
        self.address = address
        self.num_cpus = num_cpus
        self.concurrency = concurrency
        self.batch_size = batch_size
        self.cpus_per_actor = cpus_per_actor
        self.units_sent = 0  # work units sent to workers (0 on a fully cached re-run)
        self._started = False

    def _ray(self) -> ModuleType:
        import ray
        import ray.data

        if not ray.is_initialized():
            kwargs: dict[str, Any] = {}
            if self.address is None:  # a local Ray for this run
                kwargs.update(include_dashboard=False, log_to_driver=False)
                if self.num_cpus is not None:
                    kwargs["num_cpus"] = self.num_cpus
            if self.address is None or not self.address.startswith("ray://"):
                kwargs["logging_level"] = logging.WARNING
            # "local": a new Ray for this run, even if `ray start` left one on this machine
            ray.init(address=self.address or "local", **kwargs)
            self._started = True
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = False
        logging.getLogger("ray.data").setLevel(logging.WARNING)
        return ray

    def extract_features(
        self,
        jobs: Sequence[ExtractionJob],
        extractors: dict[str, FeatureExtractor],
        cache: ArrayCache,
        batch_size: int = 16,
        progress: Progress | None = None,
        states: dict[str, Path] | None = None,
        timeouts: dict[str, float | None] | None = None,
    ) -> Extracted:
        """As the local engine's; ``timeouts`` are not applied here (Ray tasks run elsewhere)."""
        results, failures, missing = cached_features(jobs, extractors, cache)
        out = Extracted(results, failures)
        if not missing:  # a warm cache sends no work
            return out
        rows, need_of = [], {}
        for i in missing:
            unit = jobs[i].unit
            if unit is None:
                raise ValueError(f"job {jobs[i].name!r} has no work unit; the Ray engine needs one")
            need = [fp for fp in extractors if results[fp][i] is None and i not in failures[fp]]
            need_of[i] = need
            rows.append({"payload": pickle.dumps((i, unit, need), protocol=5)})
        sent = {fp: sent_extractor(ext) for fp, ext in extractors.items()}
        files = {fp: state_files(Path(p)) for fp, p in (states or {}).items() if fp in extractors}
        ray = self._ray()
        self.units_sent += len(rows)
        options = _Options(
            worker_kwargs={
                "extractors": sent,
                "cache_root": str(Path(cache.root).resolve()) if cache.enabled else None,
                "batch_size": batch_size,
                "states": files,
            },
            batch_size=self.batch_size,
            concurrency=self.concurrency,
            cpus_per_actor=self.cpus_per_actor,
        )

        def stream() -> Any:
            if _client_mode(ray):
                # Ray Data cannot execute through Ray Client: run each chunk's pipeline in a
                # task on the cluster; results arrive (and are cached) chunk by chunk
                task = ray.remote(num_cpus=0)(_run_chunk)
                for start in range(0, len(rows), CLIENT_CHUNK):
                    chunk = rows[start : start + CLIENT_CHUNK]
                    for blob in ray.get(task.remote(chunk, options)):
                        yield pickle.loads(blob)
                return
            for blob in _results(_dataset(ray, rows, options)):
                yield pickle.loads(blob)

        received = stream()
        if progress is not None:
            received = progress(received, "features (ray)", len(rows))
        for res in received:
            i = int(res["index"])
            if "setup_error" in res:
                raise EngineError(res["setup_error"])
            if "contract" in res:
                fp, message = res["contract"]
                raise ExtractionError(message, fp)
            if res["notes"] is not None:
                out.item_notes.setdefault(i, []).extend(res["notes"])
            for fp, notes in res.get("extractor_notes", {}).items():
                out.extractor_notes.setdefault(fp, []).extend(notes)
            if res["load_error"] is not None:
                err = res["load_error"]  # a plain str after Ray's columns: the condition's fault
                if not isinstance(err, contracts.ImageNotMade):
                    err = contracts.ImageNotMade(err)
                for fp in need_of[i]:
                    failures[fp][i] = err
                continue
            for fp, row in res["rows"].items():
                key = feature_key(jobs[i].image_hash, jobs[i].chain, fp)
                if isinstance(row, str):
                    failures[fp][i] = row
                    if not isinstance(row, TransientFailure):  # may pass: tried again next run
                        cache.put("features", key, np.array(row))
                else:
                    cache.put("features", key, row)
                    results[fp][i] = row
        return out

    def close(self) -> None:
        if self._started:
            import ray

            ray.shutdown()
            self._started = False
