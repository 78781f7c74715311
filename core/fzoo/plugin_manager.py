"""The plugin manager. (DESIGN.md calls it ``plugins.py``; ``fzoo_builtins`` is the built-ins.)

Built-in plugins are registered explicitly from :data:`DEFAULT_PLUGINS`, like llm's and pytest's
defaults. Third-party plugins arrive through the ``fzoo`` entry-point group; each is imported in
isolation, so a broken one is recorded (see ``fzoo plugins``) and does not stop the others.

Environment:
- ``FZOO_DISABLE_PLUGIN_AUTOLOAD=1``: load no entry-point plugins.
- ``FZOO_BLOCK_PLUGINS=name1,name2``: block plugins by name (built-ins too).
"""

from __future__ import annotations

import difflib
import importlib
import importlib.metadata
import os
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pluggy

from fzoo import hookspecs
from fzoo.catalogue import Preset, load_presets
from fzoo.components import KIND_TABLE, KINDS, Component
from fzoo.contracts import ComponentFailure, class_problems, kind_words

DEFAULT_PLUGINS: tuple[str, ...] = (
    "fzoo_builtins.frequency",
    "fzoo_builtins.sklearn",
    "fzoo_builtins.perturbations",
    "fzoo_builtins.datasets",
    "fzoo_builtins.generators",
    "fzoo_builtins.virtual_cameras",
    "fzoo_builtins.reconstruction",
    "fzoo_builtins.sd_vae",
    "fzoo_builtins.camera_id",
    "fzoo_builtins.published",
)

ENTRY_POINT_GROUP = "fzoo"

#: kind -> the hook that registers it (from :data:`fzoo.components.KIND_TABLE`)
HOOK_OF_KIND: dict[str, str] = {k.name: k.hook for k in KIND_TABLE}


class PluginError(Exception):
    """A plugin conflict the user must resolve (e.g. two plugins registering one name)."""


class UnknownComponentError(LookupError):
    """A component name that no installed plugin registers."""

    def __init__(self, kind: str, name: str, installed: list[str]) -> None:
        self.kind = kind
        self.name = name
        self.installed = installed
        long = len(name) > 200  # no did-you-mean for a huge name (difflib is quadratic)
        self.suggestions = [] if long else difflib.get_close_matches(name, installed, 3, 0.5)
        hint = f"; did you mean {self.suggestions[0]!r}?" if self.suggestions else ""
        listing = ", ".join(installed) if installed else "(none installed)"
        shown = f"{name[:200]!r}... ({len(name)} chars)" if long else repr(name)
        super().__init__(f"unknown {kind.replace('_', ' ')} {shown}{hint} Installed: {listing}")


class FailedComponentError(UnknownComponentError):
    """A component name whose class a plugin registered but which failed its contract."""

    def __init__(self, kind: str, name: str, installed: list[str], failure: ComponentFailure):
        super().__init__(kind, name, installed)
        self.failure = failure
        self.suggestions = []
        self.args = (f"{kind.replace('_', ' ')} {name!r} is not usable: {failure.message()}",)


@dataclass
class PluginInfo:
    """What ``fzoo plugins`` shows for one plugin."""

    name: str
    source: str
    hooks: list[str] = field(default_factory=list)
    components: dict[str, list[str]] = field(default_factory=dict)
    presets: list[str] = field(default_factory=list)
    error: str | None = None
    #: classes it registered that broke the registration contract (not in the registry)
    failed: list[ComponentFailure] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "source": self.source,
            "hooks": self.hooks,
            "components": self.components,
            "presets": self.presets,
            "error": self.error,
            "failed": [f.as_dict() for f in self.failed],
        }


@dataclass
class Registry:
    """Every registered component class and preset, with the plugin that registered it."""

    components: dict[str, dict[str, type[Component]]]
    owners: dict[tuple[str, str], str]
    presets: dict[str, Preset]
    plugins: dict[str, PluginInfo]

    def names(self, kind: str) -> list[str]:
        return sorted(self.components[kind])

    def get(self, kind: str, name: str) -> type[Component]:
        try:
            return self.components[kind][name]
        except KeyError:
            installed = self.names(kind) + sorted(
                p.name for p in self.presets.values() if p.kind == kind
            )
            failure = self.failed_component(kind, name)
            if failure is not None:
                raise FailedComponentError(kind, name, installed, failure) from None
            raise UnknownComponentError(kind, name, installed) from None

    def owner(self, kind: str, name: str) -> str:
        return self.owners.get((kind, name), "?")

    def failed_components(self) -> list[tuple[str, ComponentFailure]]:
        """(plugin, failure) of every registered class that broke the registration contract."""
        return [(p.name, f) for p in self.plugins.values() for f in p.failed]

    def failed_component(self, kind: str, name: str) -> ComponentFailure | None:
        """The failure of the class registered as ``name`` of ``kind`` (None: none failed)."""
        for _, failure in self.failed_components():
            if failure.kind == kind and failure.name == name:
                return failure
        return None

    def problems(self) -> list[str]:
        """What ``fzoo plugins --strict`` refuses: failed plugins, failed components, and
        presets that name a component no plugin registers (one line each)."""
        out = [f"plugin {p.name!r}: {p.error}" for p in self.plugins.values() if p.error]
        out += [f"plugin {p!r}: {f.message()}" for p, f in self.failed_components()]
        for preset in self.presets.values():
            known = self.components.get(preset.kind, {})
            if preset.component not in known:
                failed = self.failed_component(preset.kind, preset.component)
                why = "failed its contract" if failed else "is not registered"
                out.append(
                    f"preset {preset.name!r} ({preset.origin}): {kind_words(preset.kind)} "
                    f"{preset.component!r} {why}"
                )
        return out


_pm: pluggy.PluginManager | None = None
_registry: Registry | None = None
_failures: dict[str, PluginInfo] = {}
_sources: dict[str, str] = {}


def blocked_names() -> set[str]:
    """Plugin names blocked through ``FZOO_BLOCK_PLUGINS``."""
    raw = os.environ.get("FZOO_BLOCK_PLUGINS", "")
    return {n.strip() for n in raw.split(",") if n.strip()}


def _short_error(exc: BaseException) -> str:
    frames = traceback.extract_tb(exc.__traceback__)
    where = f" ({frames[-1].filename}:{frames[-1].lineno})" if frames else ""
    if isinstance(exc, SystemExit):
        return f"called sys.exit({exc.code!r}){where}; not loaded"
    text = str(exc)
    if len(text) > 300:
        text = f"{text[:300]}... ({len(text)} chars)"
    return f"{type(exc).__name__}: {text}{where}"


#: what plugin code may raise without stopping fzoo: a plugin that calls ``sys.exit`` fails
#: alone (``KeyboardInterrupt`` still interrupts)
PLUGIN_FAULTS: tuple[type[BaseException], ...] = (Exception, SystemExit)


def _builtin_name(module: str) -> str:
    return module.rsplit(".", 1)[-1]


def get_plugin_manager() -> pluggy.PluginManager:
    """The process-wide plugin manager, built on first use."""
    global _pm
    if _pm is not None:
        return _pm
    pm = pluggy.PluginManager("fzoo")
    pm.add_hookspecs(hookspecs)
    blocked = blocked_names()
    for name in blocked:
        pm.set_blocked(name)
    for module in DEFAULT_PLUGINS:
        name = _builtin_name(module)
        if name in blocked:
            continue
        try:
            pm.register(importlib.import_module(module), name=name)
            _sources[name] = "builtin"
        except PLUGIN_FAULTS as exc:
            _failures[name] = PluginInfo(name=name, source="builtin", error=_short_error(exc))
    if os.environ.get("FZOO_DISABLE_PLUGIN_AUTOLOAD", "") not in ("", "0", "false"):
        _pm = pm
        return _pm
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        if ep.name in blocked:
            continue
        dist = ep.dist
        source = f"{dist.name} {dist.version}" if dist is not None else ep.value
        if pm.get_plugin(ep.name) is not None:
            _failures[f"{ep.name} ({source})"] = PluginInfo(
                name=ep.name,
                source=source,
                error=f"plugin name {ep.name!r} is already used by {_sources.get(ep.name)!r}; "
                "not loaded (rename the entry point)",
            )
            continue
        try:
            pm.register(ep.load(), name=ep.name)
            _sources[ep.name] = source
        except PLUGIN_FAULTS as exc:
            _failures[ep.name] = PluginInfo(name=ep.name, source=source, error=_short_error(exc))
    _pm = pm
    return _pm


def _call_hook(impl: Any, **kwargs: Any) -> None:
    impl.function(*[kwargs[a] for a in impl.argnames])


def _load_registry_yaml_presets(add: Callable[[Preset], None]) -> None:
    for preset in load_presets():
        add(preset)


def build_registry(pm: pluggy.PluginManager | None = None) -> Registry:
    """Call every registration hook of every plugin and collect the results."""
    pm = pm or get_plugin_manager()
    components: dict[str, dict[str, type[Component]]] = {k: {} for k in KINDS}
    owners: dict[tuple[str, str], str] = {}
    presets: dict[str, Preset] = {}
    infos: dict[str, PluginInfo] = {}
    order = {_builtin_name(m): i for i, m in enumerate(DEFAULT_PLUGINS)}
    plugins = sorted(
        pm.get_plugins(), key=lambda p: (order.get(pm.get_name(p) or "", 99), pm.get_name(p) or "")
    )
    for plugin in plugins:
        name = pm.get_name(plugin) or repr(plugin)
        infos[name] = PluginInfo(name=name, source=_sources.get(name, "registered at runtime"))
        known = {*HOOK_OF_KIND.values(), "fzoo_register_presets"}
        callers = {hc.name for hc in pm.get_hookcallers(plugin) or []}
        infos[name].hooks = sorted(callers & known)
        attrs = {a for a in dir(plugin) if a.startswith("fzoo_")}
        unknown = sorted((attrs | callers) - set(infos[name].hooks))
        if unknown:  # a typo in a hook name, or a hook function without @fzoo.hookimpl
            hints = []
            for a in unknown:
                close = difflib.get_close_matches(a, sorted(known), 1)
                hint = f"{a!r}"
                if a in known:
                    hint += " (missing @fzoo.hookimpl?)"
                elif close:
                    hint += f" (did you mean {close[0]!r}?)"
                hints.append(hint)
            infos[name].error = f"not hook implementations: {', '.join(hints)}"
    infos.update({n: i for n, i in _failures.items()})

    for kind, hook_name in HOOK_OF_KIND.items():
        for impl in getattr(pm.hook, hook_name).get_hookimpls():
            plugin_name = impl.plugin_name

            def register(cls: type[Component], _k: str = kind, _p: str = plugin_name) -> None:
                name = getattr(cls, "name", None)
                previous = components[_k].get(name) if isinstance(name, str) else None
                if previous is not None and previous is not cls:
                    raise PluginError(
                        f"duplicate {_k.replace('_', ' ')} name {name!r}: registered by plugin "
                        f"{owners[(_k, str(name))]!r} and by plugin {_p!r}. Block one of them "
                        f"with FZOO_BLOCK_PLUGINS={_p}"
                    )
                problems = class_problems(cls, _k)
                if problems:  # this component fails; the plugin's others register
                    infos[_p].failed.append(ComponentFailure.of(cls, _k, problems))
                    return
                components[_k][cls.name] = cls
                owners[(_k, cls.name)] = _p
                infos[_p].components.setdefault(_k, []).append(cls.name)

            try:
                _call_hook(impl, register=register)
            except PluginError:
                raise
            except PLUGIN_FAULTS as exc:
                infos[plugin_name].error = _short_error(exc)

    def add_preset(preset: Preset) -> None:
        if preset.name in presets:
            raise PluginError(
                f"duplicate preset {preset.name!r}: defined by {presets[preset.name].origin} and "
                f"by {preset.origin}"
            )
        presets[preset.name] = preset

    for impl in pm.hook.fzoo_register_presets.get_hookimpls():
        plugin_name = impl.plugin_name

        def register_preset(
            name: str,
            component: str,
            params: dict[str, Any] | None = None,
            kind: str | None = None,
            description: str = "",
            _p: str = plugin_name,
        ) -> None:
            resolved_kind = kind or _kind_of(components, component)
            add_preset(Preset(name, resolved_kind, component, dict(params or {}), description, _p))
            infos[_p].presets.append(name)

        try:
            _call_hook(impl, register=register_preset)
        except PluginError:
            raise
        except PLUGIN_FAULTS as exc:
            infos[plugin_name].error = _short_error(exc)

    _load_registry_yaml_presets(add_preset)
    for kind_map in components.values():
        for name in kind_map:
            if name in presets:
                raise PluginError(
                    f"preset {name!r} ({presets[name].origin}) has the name of a component "
                    f"registered by plugin {owners.get((_kind_of(components, name), name))!r}"
                )
    return Registry(components, owners, presets, infos)


def _kind_of(components: dict[str, dict[str, type[Component]]], name: str) -> str:
    for kind, names in components.items():
        if name in names:
            return kind
    return "unknown"


def get_registry(refresh: bool = False) -> Registry:
    """The registry of every component and preset (built once per process)."""
    global _registry
    if _registry is None or refresh:
        _registry = build_registry()
    return _registry


def register_plugin(plugin: object, name: str) -> None:
    """Register a plugin object at runtime (tests, notebooks) and rebuild the registry."""
    pm = get_plugin_manager()
    pm.register(plugin, name=name)
    _sources[name] = "registered at runtime"
    try:
        get_registry(refresh=True)
    except BaseException:
        pm.unregister(plugin)
        _sources.pop(name, None)
        get_registry(refresh=True)
        raise


def unregister_plugin(name: str) -> None:
    """Undo :func:`register_plugin`."""
    pm = get_plugin_manager()
    plugin = pm.get_plugin(name)
    if plugin is not None:
        pm.unregister(plugin)
    _sources.pop(name, None)
    get_registry(refresh=True)


def reset() -> None:
    """Forget the plugin manager and registry (re-read environment and entry points)."""
    global _pm, _registry
    _pm = None
    _registry = None
    _failures.clear()
    _sources.clear()
