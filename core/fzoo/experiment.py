"""Running an experiment, top to bottom as a forensic study reads:

load -> derive -> split -> perturb (conditions) -> extract (cached) -> fit -> predict -> score
-> report. :func:`run_experiment` does it for every grid cell; cells share the feature cache.
"""

from __future__ import annotations

import copy
import platform
import sys
import time
from collections.abc import Callable, Iterable
from functools import partial
from pathlib import Path
from typing import Any

from fzoo.cache import ArrayCache, default_cache_dir
from fzoo.components import FeatureExtractor, provenance_of, stable_hash
from fzoo.conditions import CLEAN, Condition, build_conditions
from fzoo.config import Cell, Experiment, ExperimentSpec
from fzoo.data import Item, LoadedData, Materializer, load_items, split_items
from fzoo.derived_quality import derived_quality
from fzoo.engines import make_engine
from fzoo.engines.timeout import failure_reason
from fzoo.evaluate import TaskRun, TestGroup, score_task, train_task
from fzoo.features import FeatureStage
from fzoo.fitting import fit_extractors
from fzoo.gallery import collect_gallery
from fzoo.names import escape
from fzoo.plan import CellPlan
from fzoo.results import (  # noqa: F401  (RunResult: re-exported)
    CellResult,
    Detail,
    MetricRow,
    Prediction,
    RunResult,
)
from fzoo.saving import save_task
from fzoo.tasks import (  # noqa: F401  (LabelError: re-exported)
    LabelError,
    check_labels,
    condition_scope,
    shared_limits,
)

Progress = Callable[[Iterable[Any], str, int | None], Iterable[Any]]


def tqdm_progress(iterable: Iterable[Any], desc: str, total: int | None) -> Iterable[Any]:
    """Progress with ETA on stderr: a bar on a terminal, else a line every ~10 s
    (:mod:`fzoo.progress`)."""
    from fzoo.progress import track

    return track(iterable, desc, total)


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
        self._data_memo: dict[str, tuple[LoadedData, Materializer]] = {}
        self._data_of_cell: dict[str, str] = {}  # cell id -> key of its data in _data_memo
        self.fingerprints: dict[str, dict[str, str]] = {}
        self.splits: dict[str, dict[str, Any]] = {}  # per cell: fzoo.data.split_summary
        self.fitted_states: dict[str, Path] = {}
        self.engine = make_engine(spec.engine)
        self.stage = FeatureStage(self.engine, self.cache, progress, log, self.fitted_states)

    def _pipeline_timeouts(self, spec: ExperimentSpec) -> dict[str, float | None]:
        """Each pipeline's time limit per component call: its own ``timeout_s``, else the run's."""
        return {
            pl.name: pl.timeout_s if pl.timeout_s is not None else self.timeout_s
            for pl in spec.pipelines
        }

    # ------------------------------------------------------------------ data
    @staticmethod
    def _data_key(spec: ExperimentSpec) -> str:
        return stable_hash([spec.data.model_dump(mode="json", by_alias=True), spec.seed])

    def data(self, plan: CellPlan) -> tuple[LoadedData, Materializer]:
        """The cell's items (loaded once per data spec and seed) from its resolved data plan."""
        spec = plan.spec
        key = self._data_key(spec)
        if key not in self._data_memo:
            dataset = load_items(plan.data, spec.seed, self.progress)
            mat = Materializer(self.cache, spec.data.max_pixels)
            self._data_memo[key] = (dataset, mat)
            for s in dataset.skipped:
                self.log(f"skipped {escape(s.path)}: {escape(s.reason)}")
        return self._data_memo[key]

    # ------------------------------------------------------------------ one cell
    def run_cell(self, cell: Cell) -> CellResult:
        spec = cell.spec
        plan = cell.plan  # resolved at validation, for this spec
        if plan is None or not plan.is_for(spec):
            plan = CellPlan.of(spec)
        dataset, mat = self.data(plan)
        self._data_of_cell[cell.id] = self._data_key(spec)
        check_labels(spec, dataset.items)
        by_camera = any(t.target == "camera" for t in spec.tasks)
        side, self.splits[cell.id] = split_items(dataset.items, spec.split, spec.seed, by_camera)
        for warning in self.splits[cell.id]["warnings"]:
            self.log(f"warning: split: {warning}")
        train = [it for it in dataset.items if side[it.source] == "train"]
        test = [it for it in dataset.items if side[it.source] == "test"]
        conditions = build_conditions(plan)
        result = CellResult()
        fps: dict[str, str] = dict(dataset.fingerprints)

        raw_extractors: dict[str, FeatureExtractor] = {}
        pipe_fps: dict[str, list[str]] = {}
        broken: dict[str, str] = {}  # pipeline -> why its extractors could not even be built
        for pp in plan.pipelines:
            pl = pp.spec
            pipe_fps[pl.name] = []
            try:
                for j, f in enumerate(pp.features):
                    comp = f.build()
                    assert isinstance(comp, FeatureExtractor)
                    fp = comp.fingerprint()
                    raw_extractors.setdefault(fp, comp)
                    pipe_fps[pl.name].append(fp)
                    fps[f"pipelines.{pl.name}.features[{j}]"] = fp
            except (Exception, SystemExit) as exc:  # missing weights, a broken plugin: fail
                broken[pl.name] = f"{f.preset or f.component}: {failure_reason(exc)}"
                self.log(f"error: pipeline {pl.name!r}: {broken[pl.name]}")
        failed: dict[str, str] = {}
        limits = self._pipeline_timeouts(spec)
        fit_limits = shared_limits(pipe_fps, limits)
        fitted = fit_extractors(
            raw_extractors,
            train,
            mat,
            failed,
            cache=self.cache,
            states=self.fitted_states,
            log=self.log,
            timeouts=fit_limits,
        )
        fit_map = {fp: new for new, ext in fitted.items() for fp in [ext.fingerprint()]}
        self.stage.timeouts = {fit_map.get(fp, fp): limit for fp, limit in fit_limits.items()}
        for cond in conditions:
            for k, step in enumerate(cond.steps):
                fps[f"conditions.{cond.name}[{k}]"] = step.fingerprint

        batch = spec.engine.batch_size
        scopes = [
            condition_scope(spec, c, test, pipe_fps, fit_map, fitted, broken) for c in conditions
        ]
        groups = [(train, Condition(CLEAN, ()))] + [
            (items, c) for c, (items, _) in zip(conditions, scopes, strict=True)
        ]
        if self.engine.one_call:
            got = self.stage.features_of(groups, fitted, mat, batch, failed)
        else:  # the local engine: one call per group, in order, with the extractors it needs
            extractors = [fitted] + [ext for _, ext in scopes]
            got = [
                self.stage.features(items, c, ext, mat, batch, failed)
                for (items, c), ext in zip(groups, extractors, strict=True)
            ]
        train_feats = got[0]
        test_feats: dict[str, TestGroup] = {}
        for c, (items, _), feats in zip(conditions, scopes, got[1:], strict=True):
            quality = self.stage.condition_psnr(items, c, mat) if c.steps else None
            test_feats[c.name] = TestGroup(c, items, feats, quality)

        for pp in plan.pipelines:
            pl = pp.spec
            fp_list = [fit_map.get(fp, fp) for fp in pipe_fps[pl.name]]
            bad = [failed[fp] for fp in fp_list if fp in failed]
            if pl.name in broken:
                bad = [broken[pl.name]]
            for task in spec.tasks:
                if pl.tasks is not None and task.name not in pl.tasks:
                    continue
                failed_row = partial(MetricRow, cell.id, pl.name, task.name, "*", dict(cell.values))
                if bad:
                    result.errors.append(f"{pl.name}/{task.name}: {bad[0]}")
                    result.rows.append(failed_row(error=bad[0]))
                    continue
                try:
                    run = TaskRun(cell, pp, task, fp_list, limits.get(pl.name))
                    self._run_task(
                        run, pipe_fps[pl.name], train, train_feats, test_feats, fps, result
                    )
                except (Exception, SystemExit) as exc:
                    reason = failure_reason(exc)
                    self.log(f"error: pipeline {pl.name!r}, task {task.name!r}: {reason}")
                    result.errors.append(f"{pl.name}/{task.name}: {reason}")
                    result.rows.append(failed_row(error=reason))
        self.fingerprints[cell.id] = fps
        return result

    def _run_task(
        self,
        run: TaskRun,
        raw_fps: list[str],
        train: list[Item],
        train_feats: dict[str, list[Any]],
        test_feats: dict[str, TestGroup],
        fps: dict[str, str],
        result: CellResult,
    ) -> None:
        """Train the classifier of one (pipeline, task), save the pipeline, score it."""
        trained = train_task(run, train, train_feats)
        fps[f"pipelines.{run.pipeline.name}.classifier"] = trained.classifier.fingerprint()
        name = self.experiment.spec.name
        save_task(self.out_dir, name, run, trained, raw_fps, self.fitted_states)
        score_task(run, trained, test_feats, result)

    # ------------------------------------------------------------------ whole run
    def run(self) -> RunResult:
        start = time.time()
        rows: list[MetricRow] = []
        details: list[Detail] = []
        predictions: list[Prediction] = []
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
        memo = dict(self._data_memo)
        datasets = list(memo.values())
        skipped = [s.__dict__ for ds, _ in datasets for s in ds.skipped] + self.stage.image_skips
        notes: dict[str, list[str]] = dict(self.stage.extractor_notes)
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
        # how strongly each derived class changed its sources (PSNR, SSIM), per data set and cell
        quality = {k: derived_quality(ds.items, mat, self.cache) for k, (ds, mat) in memo.items()}
        meta = {
            "derived_quality": {cell: quality[k] for cell, k in self._data_of_cell.items()},
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
