"""A trained detection pipeline on disk: feature extractors by name and params, and the fitted
classifier's state (skops, no pickle). ``fzoo detect --pipeline DIR`` loads it back."""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fzoo.components import Classifier, FeatureExtractor
from fzoo.fsutil import atomic_write_text

FORMAT_VERSION = 1


@dataclass
class SavedPipeline:
    """What ``pipeline.json`` holds."""

    pipeline: str
    task: str
    features: list[dict[str, Any]]
    feature_fingerprints: list[str]
    classifier: dict[str, Any]
    classes: list[str]
    positive: str | None
    threshold: float
    n_train: int
    experiment: str = ""
    cell: str = ""
    format_version: int = FORMAT_VERSION
    fzoo_version: str = field(default_factory=lambda: __import__("fzoo").__version__)


def _write_json(path: Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2))


def save_pipeline(
    directory: Path,
    saved: SavedPipeline,
    classifier: Classifier,
    extractor_states: Sequence[Path | None] = (),
) -> None:
    """Write ``pipeline.json``, the classifier's state and any fitted extractor states
    (``extractors/<index>/``) into ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    classifier.save_state(directory)
    for j, state in enumerate(extractor_states):
        if state is not None:
            target = directory / "extractors" / str(j)
            shutil.rmtree(target, ignore_errors=True)
            shutil.copytree(state, target)
    _write_json(directory / "pipeline.json", asdict(saved))


@dataclass
class LoadedPipeline:
    """A pipeline ready to score images."""

    saved: SavedPipeline
    extractors: list[FeatureExtractor]
    classifier: Classifier

    def predict_proba(self, batch: Any) -> np.ndarray:
        feats = [np.asarray(e.extract(batch), dtype=np.float32) for e in self.extractors]
        return self.classifier.predict_proba(np.concatenate(feats, axis=1))


def load_pipeline(directory: str | Path) -> LoadedPipeline:
    """Load a pipeline saved by a run; raises FileNotFoundError or ValueError with the cause."""
    from fzoo.plugin_manager import get_registry

    d = Path(directory)
    meta_path = d / "pipeline.json"
    if not meta_path.exists():
        raise FileNotFoundError(
            f"{d} is not a saved pipeline (no pipeline.json); runs save them under "
            "OUT/pipelines/<pipeline>--<task>/"
        )
    data = json.loads(meta_path.read_text(encoding="utf-8"))
    if data.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{meta_path}: unsupported format_version {data.get('format_version')}")
    saved = SavedPipeline(**data)
    reg = get_registry()
    extractors = []
    for j, (spec, fp) in enumerate(zip(saved.features, saved.feature_fingerprints, strict=True)):
        ext = reg.get("feature_extractor", spec["name"])(**spec["params"])
        assert isinstance(ext, FeatureExtractor)
        if ext.requires_fit:
            state = d / "extractors" / str(j)
            if not (state / "COMPLETE").exists():
                raise ValueError(f"{meta_path}: the fitted state of {spec['name']!r} is missing")
            ext.load_state(state)
        if ext.fingerprint() != fp:
            raise ValueError(
                f"{meta_path}: feature extractor {spec['name']!r} now has fingerprint "
                f"{ext.fingerprint()} but the pipeline was trained with {fp} (plugin version or "
                "weights changed); retrain the pipeline"
            )
        extractors.append(ext)
    clf = reg.get("classifier", saved.classifier["name"])(**saved.classifier["params"])
    assert isinstance(clf, Classifier)
    clf.load_state(d)
    return LoadedPipeline(saved, extractors, clf)
