"""The zoo's catalogue, ``registry.yaml``: named presets and named experiments.

Not the component registry (classes by name, :class:`fzoo.plugin_manager.Registry`): this is
the YAML file of presets and experiments; :mod:`fzoo.registry` is its old module name.

A preset is ``{kind, component, params, description}`` and can be used by name anywhere a
component of that kind is expected. An experiment is a whole experiment config, runnable as
``fzoo run NAME``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

from fzoo.yaml_loader import load_yaml

ENV_EXTRA = "FZOO_REGISTRY"


@dataclass
class Preset:
    """A named component configuration: ``component`` + ``params`` (+ where it was defined)."""

    name: str
    kind: str
    component: str
    params: dict[str, Any]
    description: str = ""
    origin: str = ""


def bundled_registry() -> Path:
    """The zoo's own ``registry.yaml``.

    A wheel carries it as ``fzoo/registry.yaml`` (copied by ``setup.py``); a source checkout or
    an editable install reads the file at the repository root, two folders above ``core/fzoo``.
    """
    packaged = Path(str(resources.files("fzoo") / "registry.yaml"))
    if packaged.is_file():
        return packaged
    return Path(__file__).resolve().parents[2] / "registry.yaml"


def registry_paths() -> list[Path]:
    """The zoo's registry.yaml plus extra files named in ``$FZOO_REGISTRY`` (os.pathsep)."""
    paths = [bundled_registry()]
    extra = os.environ.get(ENV_EXTRA, "")
    paths += [Path(p) for p in extra.split(os.pathsep) if p]
    return paths


@lru_cache(maxsize=8)
def _load(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {}
    # the bundled file is fzoo's own: composed by libyaml (a tenth of the time, same result);
    # the files of $FZOO_REGISTRY get the location-exact pure-Python loader of experiment files
    data, _ = load_yaml(path, trusted=path == bundled_registry())
    if not isinstance(data, dict):
        raise ValueError(f"{path}: the registry must be a mapping with 'presets' and 'experiments'")
    return data


def load_presets() -> list[Preset]:
    """Every preset from the registry files."""
    out: list[Preset] = []
    for path in registry_paths():
        for name, entry in (_load(path).get("presets") or {}).items():
            out.append(
                Preset(
                    name=str(name),
                    kind=str(entry["kind"]),
                    component=str(entry["component"]),
                    params=dict(entry.get("params") or {}),
                    description=str(entry.get("description", "")),
                    origin=str(path),
                )
            )
    return out


def experiments() -> dict[str, tuple[Path, dict[str, Any]]]:
    """Named experiments: name -> (registry file, raw config mapping)."""
    out: dict[str, tuple[Path, dict[str, Any]]] = {}
    for path in registry_paths():
        for name, entry in (_load(path).get("experiments") or {}).items():
            out[str(name)] = (path, entry)
    return out
