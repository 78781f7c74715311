"""Content-addressed store for features and derived images; makes re-runs and resumption free.

A feature's key is the hash of (image content hash, chain of transform fingerprints, extractor
fingerprint). Values are ``.npy`` files written atomically (temporary file + ``os.replace``), so a
run killed at any point leaves only complete entries behind.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fzoo.components import stable_hash
from fzoo.fsutil import atomic_writer


def default_cache_dir() -> Path:
    """``$FZOO_CACHE_DIR``, else ``$XDG_CACHE_HOME/fzoo``, else ``~/.cache/fzoo``."""
    env = os.environ.get("FZOO_CACHE_DIR")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "fzoo"


def feature_key(image_hash: str, chain: tuple[str, ...], extractor_fp: str) -> str:
    """The cache key of one feature vector."""
    return stable_hash({"image": image_hash, "chain": list(chain), "extractor": extractor_fp}, 40)


def image_key(image_hash: str, chain: tuple[str, ...]) -> str:
    """The cache key of one derived image."""
    return stable_hash({"image": image_hash, "chain": list(chain)}, 40)


@dataclass
class CacheStats:
    hits: int = 0
    misses: int = 0
    writes: int = 0
    by_namespace: dict[str, list[int]] = field(default_factory=dict)

    def count(self, namespace: str, hit: bool) -> None:
        entry = self.by_namespace.setdefault(namespace, [0, 0])
        entry[0 if hit else 1] += 1
        if hit:
            self.hits += 1
        else:
            self.misses += 1


class ArrayCache:
    """A directory of ``.npy`` arrays addressed by key, split by namespace."""

    def __init__(self, root: str | os.PathLike[str], enabled: bool = True) -> None:
        self.root = Path(root)
        self.enabled = enabled
        self.stats = CacheStats()

    def _path(self, namespace: str, key: str) -> Path:
        return self.root / namespace / key[:2] / f"{key}.npy"

    def get(self, namespace: str, key: str) -> np.ndarray | None:
        if not self.enabled:
            self.stats.count(namespace, False)
            return None
        path = self._path(namespace, key)
        try:
            value = np.load(path, allow_pickle=False)
        except (FileNotFoundError, ValueError, OSError, EOFError):
            self.stats.count(namespace, False)
            return None
        self.stats.count(namespace, True)
        return value

    def put(self, namespace: str, key: str, value: np.ndarray) -> None:
        if not self.enabled:
            return
        with atomic_writer(self._path(namespace, key)) as fh:
            np.save(fh, np.asarray(value), allow_pickle=False)
        self.stats.writes += 1
