"""What every engine is: the :class:`Engine` protocol the runner calls, and :class:`EngineError`.

Engines import this module, not the package, so the package may import them lazily.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from fzoo.plugin_manager import PluginError

if TYPE_CHECKING:
    from fzoo.cache import ArrayCache
    from fzoo.components import FeatureExtractor
    from fzoo.engines.local import Extracted, ExtractionJob

Progress = Callable[[Iterable[Any], str, int | None], Iterable[Any]]


class EngineError(PluginError):
    """An engine that cannot run here (not installed, or workers that cannot rebuild a component).

    A :class:`~fzoo.plugin_manager.PluginError`, so ``fzoo run`` reports it in one line.
    """


class Engine(Protocol):
    """What the runner needs from an engine."""

    name: str
    #: whether the runner should hand over all the jobs of a grid cell in one call (each call of
    #: a distributed engine has a fixed cost: starting actors, rebuilding components)
    one_call: bool

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
        """Features of every job (see :func:`fzoo.engines.local.extract_features`).

        ``states`` maps the fingerprint of a fitted learned extractor to its saved state;
        ``timeouts`` the fingerprint of an extractor to the longest one ``extract`` call may take.
        """
        ...

    def close(self) -> None:
        """Release what the engine started (a local Ray instance, say)."""
        ...
