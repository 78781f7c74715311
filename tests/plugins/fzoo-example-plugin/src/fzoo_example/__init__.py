"""fzoo-example-plugin: a third-party fzoo plugin, the worked example of docs/plugins.md.

fzoo finds this module through the entry point ``example = "fzoo_example"`` (group ``fzoo``) and
calls the ``@fzoo.hookimpl`` functions below, each with a ``register`` callback.
"""

from __future__ import annotations

from typing import Any

import fzoo
from fzoo_example.color_stats import ColorStats
from fzoo_example.gamma import Gamma
from fzoo_example.nearest_centroid import NearestCentroid

__version__ = "0.1.0"

__all__ = [
    "ColorStats",
    "Gamma",
    "NearestCentroid",
    "fzoo_register_classifiers",
    "fzoo_register_feature_extractors",
    "fzoo_register_perturbations",
    "fzoo_register_presets",
]


@fzoo.hookimpl
def fzoo_register_feature_extractors(register: Any) -> None:
    register(ColorStats)


@fzoo.hookimpl
def fzoo_register_classifiers(register: Any) -> None:
    register(NearestCentroid)


@fzoo.hookimpl
def fzoo_register_perturbations(register: Any) -> None:
    register(Gamma)


@fzoo.hookimpl
def fzoo_register_presets(register: Any) -> None:
    register(
        "color-stats-16",
        component="color-stats",
        params={"saturation_bins": 16},
        description="color-stats with a 16-bin saturation histogram",
    )
