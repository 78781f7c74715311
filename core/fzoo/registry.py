"""The old name of :mod:`fzoo.catalogue` (``registry.yaml``: named presets and experiments)."""

from fzoo.catalogue import (  # noqa: F401  (re-exported under the old module name)
    ENV_EXTRA,
    Preset,
    _load,
    experiments,
    load_presets,
    registry_paths,
)
