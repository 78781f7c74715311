"""Hook specifications of fzoo (pluggy): registration hooks, one per component kind.

Each hook receives a ``register`` callback owned by the core, in the style of
simonw/llm's ``register_models(register)``. An implementation may accept fewer
arguments than a spec declares, so specs can grow without breaking plugins.

Every class passed to ``register`` is checked first (:func:`fzoo.contracts.class_problems`): one
that lacks a valid ``name``, a ``Params`` model, the methods of its kind or a docstring is not
registered and ``fzoo plugins`` names it with its own file and line; the plugin's other classes
register. ``fzoo.testing.check_plugin`` runs the same checks in a plugin's own tests.
"""

from __future__ import annotations

from typing import Any

import pluggy

hookspec = pluggy.HookspecMarker("fzoo")
hookimpl = pluggy.HookimplMarker("fzoo")

Register = Any  # Callable[[type[Component]], None]; kept loose for pluggy's introspection


@hookspec
def fzoo_register_launderers(register: Register) -> None:
    """Register Launderer subclasses: ``register(cls)``."""


@hookspec
def fzoo_register_feature_extractors(register: Register) -> None:
    """Register FeatureExtractor subclasses: ``register(cls)``."""


@hookspec
def fzoo_register_classifiers(register: Register) -> None:
    """Register Classifier subclasses: ``register(cls)``."""


@hookspec
def fzoo_register_perturbations(register: Register) -> None:
    """Register Perturbation subclasses: ``register(cls)``."""


@hookspec
def fzoo_register_generators(register: Register) -> None:
    """Register Generator subclasses (sources of fully synthetic images): ``register(cls)``."""


@hookspec
def fzoo_register_datasets(register: Register) -> None:
    """Register Dataset subclasses: ``register(cls)``."""


@hookspec
def fzoo_register_presets(register: Register) -> None:
    """Register named presets: ``register(name, component, params=..., description=...)``."""
