"""The local engine: batched, streaming feature extraction in this process.

Images are materialised one at a time and grouped into batches of equal size per extractor, so
memory holds at most ``batch_size`` images per (extractor, image shape) and does not grow with the
dataset. Features already in the cache are never recomputed.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from fzoo import contracts
from fzoo.cache import ArrayCache, feature_key
from fzoo.components import FeatureExtractor
from fzoo.engines.timeout import ComponentTimeout, PluginExit, call_with_timeout
from fzoo.images import to_tensor

if TYPE_CHECKING:
    from fzoo.data import WorkUnit


@dataclass(frozen=True)
class ExtractionJob:
    """One image to featurise: a key for the cache, and how to get its pixels.

    ``load`` makes the pixels in this process; ``unit`` says the same as picklable data, for
    engines that make the pixels elsewhere (see :class:`fzoo.data.WorkUnit`).
    """

    image_hash: str
    chain: tuple[str, ...]
    load: Callable[[], np.ndarray]
    name: str
    unit: WorkUnit | None = None


Job = ExtractionJob  # the old name


class ExtractionError(Exception):
    """An extractor failed on a batch; names the extractor and the images."""

    def __init__(self, message: str, fingerprint: str) -> None:
        super().__init__(message)
        self.fingerprint = fingerprint


def _key(job: ExtractionJob, fp: str) -> str:
    return feature_key(job.image_hash, job.chain, fp)


@dataclass
class Extracted:
    """Features by extractor fingerprint (``None`` where an image failed) and why each failed.

    Engines that work in other processes also hand back the notes left there: by job index (what
    transforms noted about an image) and by extractor fingerprint.
    """

    features: dict[str, list[np.ndarray | None]]
    failures: dict[str, dict[int, str]]
    item_notes: dict[int, list[str]] = field(default_factory=dict)
    extractor_notes: dict[str, list[str]] = field(default_factory=dict)


class TransientFailure(str):
    """Why an image failed, when the cause may pass (out of memory, an I/O error): reported for
    this run but not cached, so the next run tries the image again."""

    __slots__ = ()


#: exceptions that say nothing permanent about the image
TRANSIENT: tuple[type[BaseException], ...] = (MemoryError, OSError)


def _run_extractor(
    extractor: FeatureExtractor, pixels: list[np.ndarray], timeout_s: float | None = None
) -> np.ndarray:
    import torch

    batch = np.stack(pixels).transpose(0, 3, 1, 2)
    tensor = torch.from_numpy(np.ascontiguousarray(batch)).float()
    try:
        out = call_with_timeout(
            lambda: extractor.extract(tensor), timeout_s, f"{extractor.name}.extract"
        )
    except (ComponentTimeout, PluginExit) as exc:  # the extractor is unusable: no retries
        raise ExtractionError(str(exc), extractor.fingerprint()) from None
    try:  # shape and dtype (fzoo.contracts); a row that is not finite fails its image only
        return contracts.check_features(extractor, out, len(pixels))
    except contracts.ContractError as exc:
        raise ExtractionError(str(exc), extractor.fingerprint()) from None


def extract_rows(
    extractor: FeatureExtractor, pixels: list[np.ndarray], timeout_s: float | None = None
) -> list[np.ndarray | str]:
    """One batch of same-shape images: a feature row per image, or why the image failed.

    A batch that raises is retried image by image, so an image the extractor cannot handle (too
    small, say) fails alone; a failure that may pass (:data:`TRANSIENT`) is a
    :class:`TransientFailure`, which engines do not cache. A contract violation, a call longer
    than ``timeout_s`` or a ``sys.exit`` in the extractor raises :class:`ExtractionError`. Every
    engine extracts through this function.
    """
    try:
        return contracts.finite_rows(extractor, _run_extractor(extractor, pixels, timeout_s))
    except ExtractionError:
        raise
    except Exception:
        pass
    out: list[np.ndarray | str] = []
    for px in pixels:  # retry one by one to isolate the images it cannot handle
        try:
            out += contracts.finite_rows(extractor, _run_extractor(extractor, [px], timeout_s))
        except ExtractionError:
            raise
        except Exception as exc:
            text = str(exc) or type(exc).__name__
            if isinstance(exc, TRANSIENT):
                text = f"{type(exc).__name__}: {text} (not cached: tried again next run)"
            prefix = "" if text.startswith(extractor.name) else f"{extractor.name}: "
            reason = prefix + text
            out.append(TransientFailure(reason) if isinstance(exc, TRANSIENT) else reason)
    return out


def cached_features(
    jobs: Sequence[ExtractionJob], fps: Iterable[str], cache: ArrayCache
) -> tuple[dict[str, list[np.ndarray | None]], dict[str, dict[int, str]], list[int]]:
    """What the cache already holds: features, failures recorded earlier, and the jobs missing."""
    fps = list(fps)
    results: dict[str, list[np.ndarray | None]] = {fp: [None] * len(jobs) for fp in fps}
    failures: dict[str, dict[int, str]] = {fp: {} for fp in fps}
    missing: list[int] = []
    for i, job in enumerate(jobs):
        need = False
        for fp in fps:
            value = cache.get("features", feature_key(job.image_hash, job.chain, fp))
            if value is None:
                need = True
            elif value.dtype.kind == "U":  # a failure recorded by an earlier run
                failures[fp][i] = str(value.reshape(-1)[0])
            else:
                results[fp][i] = value
        if need:
            missing.append(i)
    return results, failures, missing


def extract_features(
    jobs: Sequence[ExtractionJob],
    extractors: dict[str, FeatureExtractor],
    cache: ArrayCache,
    batch_size: int = 16,
    progress: Callable[[Iterable[Any], str, int | None], Iterable[Any]] | None = None,
    timeouts: dict[str, float | None] | None = None,
) -> Extracted:
    """Features of every job for every extractor (by extractor fingerprint), in job order.

    A batch that raises is retried image by image: an image the extractor cannot handle (too
    small, say) is recorded in ``failures`` with the reason, and the others keep their features.
    A contract violation (wrong output shape), an ``extract`` call longer than
    ``timeouts[fingerprint]`` seconds, or a ``sys.exit`` in it raises :class:`ExtractionError`.
    """
    limits = timeouts or {}
    results, failures, missing = cached_features(jobs, extractors, cache)

    buckets: dict[tuple[str, tuple[int, ...]], list[tuple[int, np.ndarray]]] = defaultdict(list)

    def store(fp: str, i: int, row: np.ndarray) -> None:
        cache.put("features", _key(jobs[i], fp), row)
        results[fp][i] = row

    def flush(fp: str, shape: tuple[int, ...]) -> None:
        entries = buckets.pop((fp, shape), [])
        if not entries:
            return
        try:
            rows = extract_rows(extractors[fp], [px for _, px in entries], limits.get(fp))
            contracts.check_width(fp, extractors[fp], rows)  # constant for one key
        except (ExtractionError, contracts.ContractError) as exc:  # named by its key (a
            raise ExtractionError(str(exc), fp) from exc  # fitted extractor's differs)
        for (i, _), row in zip(entries, rows, strict=True):
            if isinstance(row, str):
                failures[fp][i] = row
                # remembered, so a re-run does not try again (the image and extractor are the
                # same by construction of the key); not a failure that may pass
                if not isinstance(row, TransientFailure):
                    cache.put("features", _key(jobs[i], fp), np.array(row))
            else:
                store(fp, i, row)

    iterator: Iterable[int] = missing
    if progress is not None and missing:
        iterator = progress(missing, "features", len(missing))
    for i in iterator:
        try:
            pixels = jobs[i].load()
        except (Exception, SystemExit) as exc:  # a launderer or perturbation that cannot
            # handle this image (or calls sys.exit: the image fails, not the run)
            for fp in extractors:
                if results[fp][i] is None:
                    failures[fp][i] = contracts.load_failure(exc)
            continue
        for fp in extractors:
            if results[fp][i] is not None or i in failures[fp]:
                continue
            key = (fp, tuple(pixels.shape))
            buckets[key].append((i, pixels))
            if len(buckets[key]) >= batch_size:
                flush(*key)
    for key in list(buckets):
        flush(*key)
    return Extracted(results, failures)


def tensor_batches(images: Iterable[np.ndarray]) -> Iterable[Any]:
    """Yield 1-image tensors (for learned extractors' ``fit``)."""
    for px in images:
        yield to_tensor(px)
