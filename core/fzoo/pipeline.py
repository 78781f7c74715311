"""A trained detection pipeline on disk: feature extractors by name and params, and the fitted
classifier's state (skops, no pickle). ``fzoo detect --pipeline DIR`` loads it back."""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

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
    #: ``{"features[j]:<name>": {file: sha256}}`` for the extractors that have weights (absent in
    #: files written before it existed)
    weights: dict[str, dict[str, str]] = field(default_factory=dict)


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


#: ``pipeline.json`` is a few kilobytes; anything far larger is not one of ours.
MAX_PIPELINE_JSON_BYTES = 1024 * 1024


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    name: str = Field(min_length=1, max_length=200)
    params: dict[str, Any]


class _PipelineFile(BaseModel):
    """The schema of ``pipeline.json``: exact keys and types, checked before anything is used."""

    model_config = ConfigDict(extra="forbid", strict=True)
    pipeline: str = Field(max_length=1000)
    task: str = Field(max_length=1000)
    features: list[_Spec] = Field(min_length=1, max_length=100)
    feature_fingerprints: list[str] = Field(max_length=100)
    classifier: _Spec
    classes: list[str] = Field(min_length=2, max_length=100_000)
    positive: str | None
    threshold: float = Field(allow_inf_nan=False)
    n_train: int = Field(ge=0)
    experiment: str = Field("", max_length=1000)
    cell: str = Field("", max_length=1000)
    format_version: Literal[1]
    fzoo_version: str = Field(max_length=100)
    weights: dict[str, dict[str, str]] = Field(default_factory=dict, max_length=100)


def _short(value: Any, limit: int = 120) -> str:
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} chars)"


def read_saved_pipeline(meta_path: Path) -> SavedPipeline:
    """Read and validate ``pipeline.json``; a file that does not match the schema (wrong type,
    unknown key, nesting, size) raises ValueError naming the file and the first problem."""
    try:
        size = meta_path.stat().st_size
    except OSError as exc:
        raise ValueError(f"{meta_path}: cannot read ({exc.strerror})") from None
    if not meta_path.is_file() or size > MAX_PIPELINE_JSON_BYTES:
        raise ValueError(
            f"{meta_path}: not a pipeline.json (a regular file of at most "
            f"{MAX_PIPELINE_JSON_BYTES} bytes; this one has {size})"
        )
    try:
        data = json.loads(meta_path.read_bytes())
    except (ValueError, RecursionError) as exc:
        raise ValueError(f"{meta_path}: not valid JSON ({type(exc).__name__})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{meta_path}: expected a JSON object, got {type(data).__name__}")
    if data.get("format_version") != FORMAT_VERSION:
        raise ValueError(
            f"{meta_path}: unsupported format_version {_short(data.get('format_version'))} "
            f"(this fzoo reads {FORMAT_VERSION})"
        )
    try:
        model = _PipelineFile.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(x) for x in err["loc"]) or "(top level)"
        raise ValueError(
            f"{meta_path}: {where}: {err['msg']} (got {_short(err.get('input'))})"
        ) from None
    if len(model.feature_fingerprints) != len(model.features):
        raise ValueError(f"{meta_path}: features and feature_fingerprints differ in length")
    if model.positive is not None and model.positive not in model.classes:
        raise ValueError(f"{meta_path}: positive {model.positive!r} is not one of the classes")
    return SavedPipeline(**model.model_dump())


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
    saved = read_saved_pipeline(meta_path)
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
        if fp not in (ext.fingerprint(), ext.fingerprint(with_paths=True)):  # older files: paths
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
