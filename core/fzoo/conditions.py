"""Test-time conditions at run time: the plan's launderers and perturbations built, and the
per-item steps (seeded by item and condition) that make each condition's images.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from fzoo.components import Launderer, Perturbation, stable_hash
from fzoo.data import Item, Step

if TYPE_CHECKING:
    from fzoo.plan import CellPlan

#: the name of the condition of the training images (no steps)
CLEAN = "clean"


@dataclass
class Condition:
    """A test-time condition: a name, the steps it applies (launderer first, then
    perturbations) and the tasks it is for (None: all)."""

    name: str
    steps: tuple[Step, ...]
    tasks: tuple[str, ...] | None = None

    def applies_to(self, task: str) -> bool:
        return self.tasks is None or task in self.tasks


def build_conditions(plan: CellPlan) -> list[Condition]:
    """The conditions of a cell with their components built (seeds are set per item later)."""
    out = []
    for cond in plan.conditions:
        steps = []
        for rc in cond.steps:
            comp = rc.build()
            assert isinstance(comp, Launderer | Perturbation)
            fp = comp.fingerprint()
            steps.append(Step(comp, fp, 0, rc.with_fingerprint(fp)))
        tasks = tuple(cond.spec.tasks) if cond.spec.tasks is not None else None
        out.append(Condition(cond.spec.name, tuple(steps), tasks))
    return out


def item_steps(it: Item, cond: Condition) -> tuple[tuple[Step, ...], tuple[str, ...]]:
    """The condition's steps for one item (each seeded by item and condition) and the item's
    full transform chain under it."""
    steps = tuple(
        Step(s.built, s.fingerprint, int(stable_hash([it.id, cond.name, k], 8), 16), s.ref)
        for k, s in enumerate(cond.steps)
    )
    return steps, it.chain + tuple(f"{s.fingerprint}@{s.seed}" for s in steps)
