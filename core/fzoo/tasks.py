"""Tasks at run time: the target of each image under a task, which test images and extractors
each condition needs, time limits shared by pipelines, and the labels a task names checked
against the data.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fzoo.components import FeatureExtractor
    from fzoo.conditions import Condition
    from fzoo.data import Item
    from fzoo.schema import ExperimentSpec, TaskSpec


def task_target(task: TaskSpec, item: Item) -> str | None:
    """The label an item has under a task, or None when the item is not part of the task."""
    value = item.camera if task.target == "camera" else item.label
    if value is None:
        return None
    if task.type == "binary":
        assert task.positive is not None
        return positive_name(task) if value in task.positive else negative_name(task)
    class_of = task.class_of()
    if class_of is not None:
        return class_of.get(value)
    return value


def positive_name(task: TaskSpec) -> str:
    return "+".join(task.positive or [])


def negative_name(task: TaskSpec) -> str:
    return "not-" + positive_name(task)


def condition_scope(
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


def shared_limits(
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
