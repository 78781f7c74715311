"""Saving each trained (pipeline, task) as a folder ``fzoo detect`` can load.

``--out/pipelines/[<cell>/]<pipeline>--<task>/``: the classifier, the fitted states of learned
extractors, and a manifest naming the components (:mod:`fzoo.pipeline`).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from fzoo.components import provenance_of
from fzoo.pipeline import SavedPipeline, save_pipeline

if TYPE_CHECKING:
    from fzoo.evaluate import TaskRun, TrainedTask


def save_task(
    out_dir: Path,
    experiment: str,
    run: TaskRun,
    trained: TrainedTask,
    raw_fps: list[str],
    fitted_states: dict[str, Path],
) -> None:
    """Write the pipeline of ``run`` under ``out_dir``.

    ``raw_fps`` are the fingerprints of the pipeline's extractors as built (before fitting),
    ``run.fingerprints`` the ones features were computed with (fitted where fitted).
    """
    cell, pl, task, fp_list = run.cell, run.pipeline, run.task, run.fingerprints
    features = pl.features
    saved = SavedPipeline(
        pipeline=pl.name,
        task=task.name,
        features=[{"name": rc.component, "params": rc.params} for rc in features],
        feature_fingerprints=[
            raw if fp in fitted_states else fp for raw, fp in zip(raw_fps, fp_list, strict=True)
        ],
        classifier={"name": pl.classifier.component, "params": trained.classifier.get_params()},
        classes=trained.classes,
        positive=trained.positive,
        threshold=task.threshold,
        n_train=trained.n_train,
        experiment=experiment,
        cell=cell.id,
        weights={
            f"features[{j}]:{rc.component}": prov["weights"]
            for j, (rc, fp) in enumerate(zip(features, fp_list, strict=True))
            if (prov := provenance_of(fp)) and "weights" in prov
        },
    )
    slug = slug_of(cell.id) + "/" if cell.id else ""
    states = [fitted_states.get(fp) for fp in fp_list]
    folder = out_dir / "pipelines" / f"{slug}{slug_of(pl.name)}--{slug_of(task.name)}"
    save_pipeline(inside(out_dir, folder), saved, trained.classifier, states)


def slug_of(text: str) -> str:
    """``text`` as one safe path component: no separator, no leading '.', at most 120 chars."""
    slug = "".join(c if c.isalnum() or c in "-_." else "_" for c in text)[:120]
    return "_" + slug[1:] if slug.startswith(".") or not slug else slug


def inside(root: Path, target: Path) -> Path:
    """``target``, after checking that it resolves (symlinks followed) to a path under ``root``."""
    base, resolved = root.resolve(), target.resolve()
    if resolved != base and base not in resolved.parents:
        raise ValueError(
            f"refusing to write {target}: it resolves outside the output folder {root}"
        )
    return target
