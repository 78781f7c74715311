"""A metric against image quality: the rows of conditions whose PSNR was measured.

Every test condition that changes images (a launderer, perturbations) gets the mean PSNR of its
test images against the unmodified ones. Put side by side, benign operations (JPEG at several
qualities, down-up resizing) draw a curve of detector accuracy against PSNR, and a launderer at
the same PSNR shows whether it removes more than its distortion explains (Mandelli et al. 2024
ask exactly this of camera-model traces after SD laundering).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fzoo.results import RunResult


def quality_rows(result: RunResult) -> list[dict[str, Any]]:
    """One entry per (cell, pipeline, task, condition) of a task with PSNRs measured under at
    least two conditions.

    Keys: ``cell``, ``pipeline``, ``task``, ``condition``, ``transform`` (component names joined
    by ``+``; empty for the clean condition), ``kind`` (``clean``, ``benign`` or ``launderer``),
    ``psnr``, and the row's metrics.
    """
    conditions: dict[str, set[str]] = {}
    for d in result.details:
        if d.psnr is not None:
            conditions.setdefault(d.task, set()).add(d.condition)
    # a curve needs at least two measured conditions
    measured = {task for task, names in conditions.items() if len(names) >= 2}
    details = {
        (d.cell, d.pipeline, d.task, d.condition): d for d in result.details if d.task in measured
    }
    out = []
    for row in result.rows:
        found = details.get((row.cell, row.pipeline, row.task, row.condition))
        if found is None or not row.ok:
            continue
        steps = found.steps or ()
        kind = "clean" if not steps else "benign"
        if any(s.kind == "launderer" for s in steps):
            kind = "launderer"
        transform = "+".join(s.name for s in steps)
        out.append({**row.to_dict(), "transform": transform, "kind": kind, "psnr": found.psnr})
    return out
