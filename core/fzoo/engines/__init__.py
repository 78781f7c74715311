"""Execution engines: where features are computed (and derived images made).

``local`` extracts in this process (:mod:`fzoo.engines.local`); ``ray`` sends picklable work units
to stateful Ray Data actors (:mod:`fzoo.engines.ray`, ``pip install 'forensic-zoo[ray]'``). Both
read and write the same feature cache and give identical features.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from fzoo.engines.base import Engine, EngineError, Progress

__all__ = ["Engine", "EngineError", "LocalEngine", "Progress", "make_engine"]

if TYPE_CHECKING:
    from fzoo.cache import ArrayCache
    from fzoo.components import FeatureExtractor
    from fzoo.config import EngineSpec
    from fzoo.engines.local import Extracted, ExtractionJob


class LocalEngine:
    """Batched, streaming extraction in this process."""

    name = "local"
    one_call = False

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
        from fzoo.engines.local import extract_features

        return extract_features(jobs, extractors, cache, batch_size, progress, timeouts)

    def close(self) -> None:
        return None


def make_engine(spec: EngineSpec) -> Engine:
    """The engine an experiment's ``engine:`` asks for; raises :class:`EngineError` if missing."""
    if spec.name == "ray":
        from fzoo.engines.ray import RayEngine

        return RayEngine(
            address=spec.address,
            num_cpus=spec.num_cpus,
            concurrency=spec.concurrency,
            batch_size=spec.batch_size,
        )
    return LocalEngine()
