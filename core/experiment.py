"""Running an experiment, top to bottom as a forensic study reads:

load -> derive -> split -> perturb (conditions) -> extract (cached) -> fit -> predict -> score
-> report. :func:`run_experiment` does it for every grid cell; cells share the feature cache.
"""

from __future__ import annotations

import copy
import os
import platform
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from fzoo.cache import ArrayCache, default_cache_dir
from fzoo.components import (
    Classifier,
    FeatureExtractor,
    Launderer,
    Perturbation,
    provenance_of,
    stable_hash,
)
from fzoo.config import Cell, Experiment, ExperimentSpec, PipelineSpec, TaskSpec, resolve_component
from fzoo.data import DataSet, Item, Materializer, Step, WorkUnit, load_items, split_items
from fzoo.engines import make_engine
from fzoo.engines.local import ExtractionError, Job, tensor_batches
from fzoo.engines.timeout import PluginExit, call_with_timeout
from fzoo.gallery import collect_gallery, psnr
from fzoo.metrics import binary_metrics, confusion, multiclass_metrics, roc_points
from fzoo.names import escape
from fzoo.pipeline import SavedPipeline, save_pipeline
from fzoo.results import CellResult, RunResult  # noqa: F401  (RunResult: re-exported)

Progress = Callable[[Iterable[Any], str, int | None], Iterable[Any]]
CLEAN = "clean"


def tqdm_progress(iterable: Iterable[Any], desc: str, total: int | None) -> Iterable[Any]:
    """Progress with ETA on stderr: a bar on a terminal, else a line every ~10 s
    (:mod:`fzoo.progress`)."""
    from fzoo.progress import track

    return track(iterable, desc, total)


@dataclass
class Condition:
    """A test-time condition: a name, the steps it applies (launderer first, then
    perturbations) and the tasks it is for (None: all)."""

    name: str
    steps: tuple[Step, ...]
    tasks: tuple[str, ...] | None = None

    def applies_to(self, task: str) -> bool:
        return self.tasks is None or task in self.tasks


@dataclass
class TestGroup:
    """The test images of one condition, their features, and their PSNR under it (or None)."""

    condition: Condition
    items: list[Item]
    features: dict[str, list[np.ndarray | None]]
    psnr: list[float | None] | None = None


def package_versions() -> dict[str, str]:
    """Versions of the packages that shape results."""
    import importlib.metadata as md

    out = {"python": platform.python_version()}
    for dist in (
        "forensic-zoo",
        "numpy",
        "scipy",
        "scikit-learn",
        "scikit-image",
        "torch",
        "pillow",
        "pydantic",
        "diffusers",
        "timm",
    ):
        try:
            out[dist] = md.version(dist)
        except md.PackageNotFoundError:
            continue
    return out


def _conditions(spec: ExperimentSpec) -> list[Condition]:
    out = []
    for cond in spec.conditions:
        steps = []
        if cond.launderer is not None:
            lau = resolve_component(cond.launderer, "launderer").build()
            assert isinstance(lau, Launderer)
            steps.append(Step(lau, lau.fingerprint(), 0))
        for p in cond.perturbations:
            comp = resolve_component(p, "perturbation").build()
            assert isinstance(comp, Perturbation)
            steps.append(Step(comp, comp.fingerprint(), 0))
        tasks = tuple(cond.tasks) if cond.tasks is not None else None
        out.append(Condition(cond.name, tuple(steps), tasks))
    return out


def _task_target(task: TaskSpec, item: Item) -> str | None:
    """The label an item has under a task, or None when the item is not part of the task."""
    value = item.camera if task.target == "camera" else item.label
    if value is None:
        return None
    if task.type == "binary":
        assert task.positive is not None
        return _positive_name(task) if value in task.positive else _negative_name(task)
    class_of = task.class_of()
    if class_of is not None:
        return class_of.get(value)
    return value


def _positive_name(task: TaskSpec) -> str:
    return "+".join(task.positive or [])


def _negative_name(task: TaskSpec) -> str:
    return "not-" + _positive_name(task)


class Runner:
    """Runs the cells of one experiment against one cache."""

    def __init__(
        self,
        experiment: Experiment,
        out_dir: Path,
        cache_dir: Path | None = None,
        progress: Progress | None = tqdm_progress,
        log: Callable[[str], None] = lambda msg: print(msg, file=sys.stderr),
        gallery: bool = True,
        timeout_s: float | None = None,
    ) -> None:
        self.experiment = experiment
        self.timeout_s = timeout_s  # for pipelines without their own 'timeout_s'
        self.out_dir = Path(out_dir)
        spec = experiment.spec
        root = cache_dir or (Path(spec.cache_dir) if spec.cache_dir else default_cache_dir())
        self.cache = ArrayCache(root)
        self.progress = progress
        self.log = log
        self.gallery = gallery
        self._data_memo: dict[str, tuple[DataSet, Materializer]] = {}
        self.fingerprints: dict[str, dict[str, str]] = {}
        self.splits: dict[str, dict[str, Any]] = {}  # per cell: fzoo.data.split_summary
        self.image_skips: list[dict[str, str]] = []
        self.fitted_states: dict[str, Path] = {}
        self.extractor_notes: dict[str, list[str]] = {}
        self._extractor_timeouts: dict[str, float | None] = {}
        self.engine = make_engine(spec.engine)

    def _pipeline_timeouts(self, spec: ExperimentSpec) -> dict[str, float | None]:
        """Each pipeline's time limit per component call: its own ``timeout_s``, else the run's."""
        return {
            pl.name: pl.timeout_s if pl.timeout_s is not None else self.timeout_s
            for pl in spec.pipelines
        }

    # ------------------------------------------------------------------ data
    def data(self, spec: ExperimentSpec) -> tuple[DataSet, Materializer]:
        key = stable_hash([spec.data.model_dump(mode="json", by_alias=True), spec.seed])
        if key not in self._data_memo:
            dataset = load_items(spec.data, spec.seed, self.progress)
            mat = Materializer(self.cache, spec.data.max_pixels)
            self._data_memo[key] = (dataset, mat)
            for s in dataset.skipped:
                self.log(f"skipped {escape(s.path)}: {escape(s.reason)}")
        return self._data_memo[key]

    # ------------------------------------------------------------------ features
    @staticmethod
    def _steps(it: Item, cond: Condition) -> tuple[tuple[Step, ...], tuple[str, ...]]:
        """The condition's steps for one item (each seeded by item and condition) and the
        item's full transform chain under it."""
        steps = tuple(
            Step(s.component, s.fingerprint, int(stable_hash([it.id, cond.name, k], 8), 16))
            for k, s in enumerate(cond.steps)
        )
        return steps, it.chain + tuple(f"{s.fingerprint}@{s.seed}" for s in steps)

    def _jobs(self, items: list[Item], cond: Condition, mat: Materializer) -> list[Job]:
        jobs = []
        for it in items:
            steps, chain = self._steps(it, cond)

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
            jobs.append(Job(it.base_hash, chain, load, it.id, unit))
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
            steps, chain = self._steps(it, cond)
            cached = self.cache.get("psnr", self._psnr_key(it, chain))
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

    @staticmethod
    def _psnr_key(it: Item, chain: tuple[str, ...]) -> str:
        return stable_hash(["psnr", it.base_hash, chain])

    def _store_psnr(
        self, it: Item, chain: tuple[str, ...], clean: np.ndarray, changed: np.ndarray
    ) -> float:
        value = psnr(clean, changed) if clean.shape == changed.shape else float("nan")
        self.cache.put("psnr", self._psnr_key(it, chain), np.asarray([value], dtype=np.float64))
        return value

    def _fit_extractors(
        self,
        extractors: dict[str, FeatureExtractor],
        train: list[Item],
        mat: Materializer,
        failed: dict[str, str],
        timeouts: dict[str, float | None] | None = None,
    ) -> dict[str, FeatureExtractor]:
        """Fit learned extractors on the training split; their cache identity includes it.

        A fitted state is kept in the cache (``fitted/<fingerprint>/``), so a re-run loads it
        instead of training again. ``timeouts`` bounds each ``fit`` call (by fingerprint).
        """
        out: dict[str, FeatureExtractor] = {}
        for fp, ext in extractors.items():
            if not ext.requires_fit:
                out[fp] = ext
                continue
            target = getattr(ext.params, "fit_target", "label")
            fit_on = getattr(ext.params, "fit_on", None)
            chosen = [
                it
                for it in train
                if (fit_on is None or it.label in fit_on)
                and (it.camera if target == "camera" else it.label) is not None
            ]
            train_id = stable_hash(
                [target, sorted(f"{it.id}:{it.base_hash}:{it.chain}" for it in chosen)]
            )
            fitted_fp = stable_hash([fp, train_id])
            state = self.cache.root / "fitted" / fitted_fp
            try:
                if (state / "COMPLETE").exists():
                    ext.load_state(state)
                else:
                    labels = [str(it.camera if target == "camera" else it.label) for it in chosen]
                    self.log(f"fitting {ext.name} on {len(chosen)} training images ({target})")
                    batches = tensor_batches(mat.image(it) for it in chosen)
                    limit = (timeouts or {}).get(fp)
                    call_with_timeout(partial(ext.fit, batches, labels), limit, f"{ext.name}.fit")
                    self._save_fitted(ext, state)
            except Exception as exc:  # a plugin that raises in fit fails its own pipelines
                failed[fp] = f"{ext.name}: fit failed: {_reason(exc)}"
                self.log(f"error: {failed[fp]}")
                continue
            self.fitted_states[fitted_fp] = state
            out[fitted_fp] = ext
        return out

    @staticmethod
    def _save_fitted(ext: FeatureExtractor, state: Path) -> None:
        """Write the state into a folder of this process's own, then rename it into place.

        Two runs fitting the same extractor at once each write their own ``.tmp-*`` folder;
        the first rename wins and the other run keeps the winner's (equal) state.
        """
        state.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=state.parent, prefix=f".tmp-{state.name}-"))
        try:
            ext.save_state(tmp)
            (tmp / "COMPLETE").write_text(ext.fingerprint())
            _rename_dir(tmp, state)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def features(
        self,
        items: list[Item],
        cond: Condition,
        extractors: dict[str, FeatureExtractor],
        mat: Materializer,
        batch_size: int,
        failed: dict[str, str],
    ) -> dict[str, list[np.ndarray | None]]:
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
    ) -> list[dict[str, list[np.ndarray | None]]]:
        """:meth:`features` of several (items, condition) groups in one engine call.

        A distributed engine pays a fixed cost per call (starting actors, rebuilding components),
        so a cell's training and test groups go together; failures are judged group by group, in
        order, as separate calls would.
        """
        jobs: list[Job] = []
        owner: list[Item] = []
        bounds: list[tuple[int, int]] = []
        timeouts = self._extractor_timeouts
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
            out: list[dict[str, list[np.ndarray | None]]] = []
            for (items, cond), (a, b) in zip(groups, bounds, strict=True):
                out.append({fp: feats[a:b] for fp, feats in got.features.items()})
                for fp, all_fails in got.failures.items():
                    if fp in failed:  # failed in an earlier group: not computed there
                        continue
                    fails = {i - a: r for i, r in all_fails.items() if a <= i < b}
                    if fails and len(fails) == b - a:
                        failed[fp] = f"failed on every image, e.g. {next(iter(fails.values()))}"
                        self.log(f"error: {failed[fp]}")
                    for i, reason in fails.items():
                        it = items[i]
                        entry = {
                            "path": _display(it),
                            "label": it.label,
                            "condition": cond.name,
                            "reason": reason,
                        }
                        if entry not in self.image_skips:  # grid cells meet the same images again
                            self.log(f"skipped {escape(it.id)} ({cond.name}): {escape(reason)}")
                            self.image_skips.append(entry)
            return out
        return [{} for _ in groups]

    # ------------------------------------------------------------------ one cell
    def run_cell(self, cell: Cell) -> CellResult:
        spec = cell.spec
        dataset, mat = self.data(spec)
        check_labels(spec, dataset.items)
        by_camera = any(t.target == "camera" for t in spec.tasks)
        side, self.splits[cell.id] = split_items(dataset.items, spec.split, spec.seed, by_camera)
        for warning in self.splits[cell.id]["warnings"]:
            self.log(f"warning: split: {warning}")
        train = [it for it in dataset.items if side[it.source] == "train"]
        test = [it for it in dataset.items if side[it.source] == "test"]
        conditions = _conditions(spec)
        result = CellResult()
        fps: dict[str, str] = dict(dataset.fingerprints)

        raw_extractors: dict[str, FeatureExtractor] = {}
        pipe_fps: dict[str, list[str]] = {}
        broken: dict[str, str] = {}  # pipeline -> why its extractors could not even be built
        for pl in spec.pipelines:
            pipe_fps[pl.name] = []
            try:
                for j, f in enumerate(pl.features):
                    comp = resolve_component(f, "feature_extractor").build()
                    assert isinstance(comp, FeatureExtractor)
                    fp = comp.fingerprint()
                    raw_extractors.setdefault(fp, comp)
                    pipe_fps[pl.name].append(fp)
                    fps[f"pipelines.{pl.name}.features[{j}]"] = fp
            except (Exception, SystemExit) as exc:  # missing weights, a broken plugin: fail
                broken[pl.name] = f"{f.name}: {_reason(exc)}"  # this pipeline only
                self.log(f"error: pipeline {pl.name!r}: {broken[pl.name]}")
        failed: dict[str, str] = {}
        fit_limits = _shared_limits(pipe_fps, self._pipeline_timeouts(spec))
        fitted = self._fit_extractors(raw_extractors, train, mat, failed, fit_limits)
        fit_map = {fp: new for new, ext in fitted.items() for fp in [ext.fingerprint()]}
        self._extractor_timeouts = {fit_map.get(fp, fp): limit for fp, limit in fit_limits.items()}
        for cond in conditions:
            for k, step in enumerate(cond.steps):
                fps[f"conditions.{cond.name}[{k}]"] = step.fingerprint

        batch = spec.engine.batch_size
        scopes = [self._scope(spec, c, test, pipe_fps, fit_map, fitted, broken) for c in conditions]
        groups = [(train, Condition(CLEAN, ()))] + [
            (items, c) for c, (items, _) in zip(conditions, scopes, strict=True)
        ]
        if self.engine.one_call:
            got = self.features_of(groups, fitted, mat, batch, failed)
        else:  # the local engine: one call per group, in order, with the extractors it needs
            extractors = [fitted] + [ext for _, ext in scopes]
            got = [
                self.features(items, c, ext, mat, batch, failed)
                for (items, c), ext in zip(groups, extractors, strict=True)
            ]
        train_feats = got[0]
        test_feats: dict[str, TestGroup] = {}
        for c, (items, _), feats in zip(conditions, scopes, got[1:], strict=True):
            quality = self.condition_psnr(items, c, mat) if c.steps else None
            test_feats[c.name] = TestGroup(c, items, feats, quality)

        for pl in spec.pipelines:
            fp_list = [fit_map.get(fp, fp) for fp in pipe_fps[pl.name]]
            bad = [failed[fp] for fp in fp_list if fp in failed]
            if pl.name in broken:
                bad = [broken[pl.name]]
            for task in spec.tasks:
                if pl.tasks is not None and task.name not in pl.tasks:
                    continue
                base_row = {"cell": cell.id, **cell.values, "pipeline": pl.name, "task": task.name}
                if bad:
                    result.errors.append(f"{pl.name}/{task.name}: {bad[0]}")
                    result.rows.append({**base_row, "condition": "*", "error": bad[0]})
                    continue
                try:
                    self._run_task(
                        cell, pl, task, train, train_feats, test_feats, fp_list, fps, result
                    )
                except (Exception, SystemExit) as exc:
                    reason = _reason(exc)
                    self.log(f"error: pipeline {pl.name!r}, task {task.name!r}: {reason}")
                    result.errors.append(f"{pl.name}/{task.name}: {reason}")
                    result.rows.append({**base_row, "condition": "*", "error": reason})
        self.fingerprints[cell.id] = fps
        return result

    @staticmethod
    def _scope(
        spec: ExperimentSpec,
        cond: Condition,
        test: list[Item],
        pipe_fps: dict[str, list[str]],
        fit_map: dict[str, str],
        fitted: dict[str, FeatureExtractor],
        broken: dict[str, str],
    ) -> tuple[list[Item], dict[str, FeatureExtractor]]:
        """The test images and extractors a condition needs: those of the tasks it applies to."""
        tasks = [t for t in spec.tasks if cond.applies_to(t.name)]
        labels: set[str] | None = set()
        for t in tasks:
            allowed = t.test_on
            class_of = t.class_of() if t.target == "label" else None
            if allowed is None and class_of is not None:
                allowed = list(class_of)
            if allowed is None:
                labels = None
                break
            assert labels is not None
            labels.update(allowed)
        items = [it for it in test if labels is None or it.label in labels]
        names = {t.name for t in tasks}
        needed = {
            fit_map.get(fp, fp)
            for pl in spec.pipelines
            if pl.name not in broken and (pl.tasks is None or names & set(pl.tasks))
            for fp in pipe_fps[pl.name]
        }
        return items, {fp: e for fp, e in fitted.items() if fp in needed}

    def _run_task(
        self,
        cell: Cell,
        pl: PipelineSpec,
        task: TaskSpec,
        train: list[Item],
        train_feats: dict[str, list[Any]],
        test_feats: dict[str, TestGroup],
        fp_list: list[str],
        fps: dict[str, str],
        result: CellResult,
    ) -> None:
        def select(
            items: list[Item], allowed: list[str] | None, feats: dict[str, list[Any]]
        ) -> tuple[list[int], list[str]]:
            idx, ys = [], []
            for i, it in enumerate(items):
                if allowed is not None and it.label not in allowed:
                    continue
                if any(feats[fp][i] is None for fp in fp_list):
                    continue
                y = _task_target(task, it)
                if y is not None:
                    idx.append(i)
                    ys.append(y)
            return idx, ys

        def matrix(feats: dict[str, list[Any]], idx: list[int]) -> np.ndarray:
            if not idx:
                return np.zeros((0, 0), dtype=np.float32)
            return np.concatenate([np.stack([feats[fp][i] for i in idx]) for fp in fp_list], 1)

        tr_idx, y_train = select(train, task.train_on, train_feats)
        if len(set(y_train)) < 2:
            raise ValueError(
                f"the training split has {len(set(y_train))} class(es) {sorted(set(y_train))} "
                "for this task; a classifier needs at least two"
            )
        X_train = matrix(train_feats, tr_idx)
        clf_rc = resolve_component(pl.classifier, "classifier")
        clf = clf_rc.build()
        assert isinstance(clf, Classifier)
        limit = self._pipeline_timeouts(cell.spec).get(pl.name)
        call_with_timeout(lambda: clf.fit(X_train, y_train), limit, f"{clf.name}.fit")
        classes = [str(c) for c in clf.classes_]
        fps[f"pipelines.{pl.name}.classifier"] = clf.fingerprint()
        positive = _positive_name(task) if task.type == "binary" else None
        self._save(cell, pl, task, clf, classes, positive, fp_list, fps, len(y_train))
        for cond_name, group in test_feats.items():
            if not group.condition.applies_to(task.name):
                continue
            test, feats = group.items, group.features
            te_idx, y_test = select(test, task.test_on, feats)
            X_test = matrix(feats, te_idx)
            proba = (
                call_with_timeout(
                    partial(clf.predict_proba, X_test), limit, f"{clf.name}.predict_proba"
                )
                if len(te_idx)
                else np.zeros((0, len(classes)))
            )
            pred = [classes[k] for k in np.argmax(proba, axis=1)] if len(te_idx) else []
            row: dict[str, Any] = {
                "cell": cell.id,
                **cell.values,
                "pipeline": pl.name,
                "task": task.name,
                "condition": cond_name,
                "n_train": len(y_train),
                "n_test": len(y_test),
            }
            if group.psnr is not None:
                values = [group.psnr[i] for i in te_idx]
                finite = [v for v in values if v is not None and np.isfinite(v)]
                row["psnr"] = round(float(np.mean(finite)), 3) if finite else None
            detail: dict[str, Any] = {k: row[k] for k in ("cell", "pipeline", "task", "condition")}
            if group.psnr is not None:
                detail["psnr"] = row["psnr"]
                detail["steps"] = [
                    {
                        "kind": "launderer"
                        if isinstance(st.component, Launderer)
                        else "perturbation",
                        "name": st.component.name,
                    }
                    for st in group.condition.steps
                ]
            if len(te_idx) == 0:
                row["error"] = "no test images for this task"
                result.rows.append(row)
                continue
            if positive is not None:
                score = proba[:, classes.index(positive)] if positive in classes else proba[:, 0]
                y_bin = [int(y == positive) for y in y_test]
                row.update(binary_metrics(y_bin, score, task.threshold))
                pred = [positive if s >= task.threshold else _negative_name(task) for s in score]
                labels = [_negative_name(task), positive]
                detail["roc"] = roc_points(y_bin, score)
            else:
                row.update(multiclass_metrics(y_test, proba, classes))
                labels = sorted(set(classes) | set(y_test))
            detail["labels"] = labels
            detail["confusion"] = confusion(y_test, pred, labels)
            # per original label: how each true label was classified (e.g. laundered-as-pristine)
            by_label: dict[str, dict[str, int]] = {}
            for k, i in enumerate(te_idx):
                by_label.setdefault(test[i].label, {}).setdefault(pred[k], 0)
                by_label[test[i].label][pred[k]] += 1
                result.predictions.append(
                    {
                        "cell": cell.id,
                        "pipeline": pl.name,
                        "task": task.name,
                        "condition": cond_name,
                        "item": test[i].id,
                        "label": test[i].label,
                        "source": test[i].source,
                        "camera": test[i].camera or "",
                        "target": y_test[k],
                        "predicted": pred[k],
                        **{
                            f"p_{c}": round(float(p), 6)
                            for c, p in zip(classes, proba[k], strict=True)
                        },
                    }
                )
            detail["by_label"] = by_label
            result.rows.append(row)
            result.details.append(detail)

    def _save(
        self,
        cell: Cell,
        pl: PipelineSpec,
        task: TaskSpec,
        clf: Classifier,
        classes: list[str],
        positive: str | None,
        fp_list: list[str],
        fps: dict[str, str],
        n_train: int,
    ) -> None:
        features = [resolve_component(f, "feature_extractor") for f in pl.features]
        saved = SavedPipeline(
            pipeline=pl.name,
            task=task.name,
            features=[{"name": rc.component, "params": rc.params} for rc in features],
            feature_fingerprints=[
                rc.build().fingerprint() if fp in self.fitted_states else fp
                for rc, fp in zip(features, fp_list, strict=True)
            ],
            classifier={
                "name": resolve_component(pl.classifier, "classifier").component,
                "params": clf.get_params(),
            },
            classes=classes,
            positive=positive,
            threshold=task.threshold,
            n_train=n_train,
            experiment=self.experiment.spec.name,
            cell=cell.id,
            weights={
                f"features[{j}]:{rc.component}": prov["weights"]
                for j, (rc, fp) in enumerate(zip(features, fp_list, strict=True))
                if (prov := provenance_of(fp)) and "weights" in prov
            },
        )
        slug = _slug(cell.id) + "/" if cell.id else ""
        states = [self.fitted_states.get(fp) for fp in fp_list]
        folder = self.out_dir / "pipelines" / f"{slug}{_slug(pl.name)}--{_slug(task.name)}"
        save_pipeline(_inside(self.out_dir, folder), saved, clf, states)

    # ------------------------------------------------------------------ whole run
    def run(self) -> RunResult:
        start = time.time()
        rows: list[dict[str, Any]] = []
        details: list[dict[str, Any]] = []
        predictions: list[dict[str, Any]] = []
        errors: list[str] = []
        cells = self.experiment.cells
        try:
            for n, cell in enumerate(cells):
                if len(cells) > 1 and self.progress is not None:
                    self.log(f"[{n + 1}/{len(cells)}] cell {cell.id}")
                res = self.run_cell(cell)
                rows += res.rows
                details += res.details
                predictions += res.predictions
                errors += res.errors
        finally:
            self.engine.close()
        datasets = list(self._data_memo.values())
        skipped = [s.__dict__ for ds, _ in datasets for s in ds.skipped] + self.image_skips
        notes: dict[str, list[str]] = dict(self.extractor_notes)
        for ds, mat in datasets:
            for k, v in ds.notes.items():
                notes.setdefault(k, []).extend(v)
            for k, v in mat.notes.items():
                if v:
                    notes.setdefault(k, []).extend(sorted(set(v)))
        spec = self.experiment.spec
        counts: dict[str, int] = {}
        for ds, _ in datasets[:1]:
            for it in ds.items:
                counts[it.label] = counts.get(it.label, 0) + 1
        meta = {
            "experiment": spec.name,
            "config_file": self.experiment.file,
            "seed": spec.seed,
            "split_seed": spec.split.seed if spec.split.seed is not None else spec.seed,
            "test_size": spec.split.test_size,
            "grid": spec.grid,
            "variant": spec.variant,
            "versions": package_versions(),
            "fingerprints": self.fingerprints,
            "split": self.splits,  # per cell: the sources on each side, per class and camera
            # per cell and role: the weights' sha256 (and e.g. taesd's resolved variant)
            "provenance": {
                cell: {role: prov for role, fp in fps.items() if (prov := provenance_of(fp))}
                for cell, fps in self.fingerprints.items()
            },
            "images_per_class": counts,
            "cache": {
                "dir": str(self.cache.root),
                "hits": self.cache.stats.hits,
                "misses": self.cache.stats.misses,
                "writes": self.cache.stats.writes,
                "by_namespace": copy.deepcopy(self.cache.stats.by_namespace),
            },
            "wall_time_s": round(time.time() - start, 2),
            "platform": platform.platform(),
        }
        gallery: dict[str, Any] = {}
        if self.gallery and datasets:
            ds, mat = datasets[0]
            gallery = collect_gallery(ds.items, mat)
        return RunResult(spec, rows, details, predictions, meta, skipped, notes, errors, gallery)


class LabelError(ValueError):
    """The experiment names a label (or camera) that no image has."""


def check_labels(spec: ExperimentSpec, items: list[Item]) -> None:
    """Every label a derived class or a task names must exist in the data; say which do."""
    labels = {it.label for it in items}
    cameras = {it.camera for it in items if it.camera is not None}
    problems = []
    for d in spec.data.derive:
        problems += [f"derived class {d.label!r}: 'from' {x!r}" for x in d.from_ if x not in labels]
    for t in spec.tasks:
        targets = cameras if t.target == "camera" else labels
        named = {"positive": t.positive or [], "classes": list(t.class_of() or {})}
        for key, values in named.items():
            problems += [f"task {t.name!r}: {key} {x!r}" for x in values if x not in targets]
        for key in ("train_on", "test_on"):
            problems += [
                f"task {t.name!r}: {key} {x!r}" for x in getattr(t, key) or [] if x not in labels
            ]
        if t.target == "camera" and not cameras:
            problems.append(f"task {t.name!r}: target camera, but no image has a camera")
    if problems:
        raise LabelError(
            f"{'; '.join(problems)} matches no image. Labels present: {sorted(labels)}"
            + (f"; cameras: {sorted(cameras)}" if cameras else "")
        )


def _display(item: Item) -> str:
    if item.record is not None and not item.steps:
        return item.record.display
    return item.id


def _slug(text: str) -> str:
    """``text`` as one safe path component: no separator, no leading '.', at most 120 chars."""
    slug = "".join(c if c.isalnum() or c in "-_." else "_" for c in text)[:120]
    return "_" + slug[1:] if slug.startswith(".") or not slug else slug


def _inside(root: Path, target: Path) -> Path:
    """``target``, after checking that it resolves (symlinks followed) to a path under ``root``."""
    base, resolved = root.resolve(), target.resolve()
    if resolved != base and base not in resolved.parents:
        raise ValueError(
            f"refusing to write {target}: it resolves outside the output folder {root}"
        )
    return target


def _reason(exc: BaseException) -> str:
    """One line on why a component failed (a timeout and a plugin exit say it plainly)."""
    from fzoo.config import short
    from fzoo.engines.timeout import ComponentTimeout

    if isinstance(exc, ComponentTimeout | PluginExit):
        return str(exc)
    if isinstance(exc, SystemExit):
        return f"plugin code called sys.exit({exc.code!r})"
    text = str(exc)
    return f"{type(exc).__name__}: {short(text, 500)[1:-1] if len(text) > 500 else text}"


def _shared_limits(
    pipe_fps: dict[str, list[str]], limits: dict[str, float | None]
) -> dict[str, float | None]:
    """Each extractor's time limit: the longest of its pipelines' (None if one has none)."""
    out: dict[str, float | None] = {}
    for name, fps in pipe_fps.items():
        for fp in fps:
            limit = limits.get(name)
            if fp not in out:
                out[fp] = limit
            else:
                prev = out[fp]
                out[fp] = None if prev is None or limit is None else max(prev, limit)
    return out


def _rename_dir(tmp: Path, dest: Path) -> None:
    """Rename folder ``tmp`` to ``dest``; when another process has put a complete ``dest`` in
    place first, keep that one (``tmp`` is left for the caller to remove)."""
    try:
        os.rename(tmp, dest)
        return
    except OSError:
        if (dest / "COMPLETE").exists():
            return
    shutil.rmtree(dest, ignore_errors=True)  # an incomplete leftover of an older fzoo
    try:
        os.rename(tmp, dest)
    except OSError:
        if not (dest / "COMPLETE").exists():
            raise


def run_experiment(
    experiment: Experiment,
    out_dir: str | Path,
    cache_dir: str | Path | None = None,
    progress: Progress | None = tqdm_progress,
    timeout_s: float | None = None,
) -> RunResult:
    """Run every cell of ``experiment`` and write the report files into ``out_dir``.

    ``timeout_s`` bounds each call into a component of a pipeline without its own ``timeout_s``.
    """
    from fzoo.report import write_report

    out = Path(out_dir)
    runner = Runner(
        experiment, out, Path(cache_dir) if cache_dir else None, progress, timeout_s=timeout_s
    )
    result = runner.run()
    if experiment.spec.headline:
        from fzoo.headline import compute_headline

        result.headline = compute_headline(result)
    write_report(result, out)
    if experiment.spec.headline:
        from fzoo.fsutil import atomic_write_text
        from fzoo.report import to_json

        atomic_write_text(out / "headline.json", to_json(result.headline) + "\n")
    return result
