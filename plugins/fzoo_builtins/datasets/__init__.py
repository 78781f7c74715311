"""Built-in datasets: a class-per-folder tree and a CSV/JSONL manifest."""

from __future__ import annotations

from typing import Any

from fzoo import hookimpl
from fzoo_builtins.datasets.folder import FolderDataset
from fzoo_builtins.datasets.manifest import ManifestDataset
from fzoo_builtins.datasets.sample_photos import SamplePhotos

DATASETS = (FolderDataset, ManifestDataset, SamplePhotos)


@hookimpl
def fzoo_register_datasets(register: Any) -> None:
    for cls in DATASETS:
        register(cls)


__all__ = ["DATASETS", "FolderDataset", "ManifestDataset", "SamplePhotos", "fzoo_register_datasets"]
