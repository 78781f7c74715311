"""``fzoo plugins``, ``fzoo list`` and ``fzoo list detectors``: what is installed."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from fzoo.commands._common import EXIT_ERROR, EXIT_OK, EXIT_USAGE, print_json, registry
from fzoo.components import KIND_ALIASES, KINDS


def cmd_plugins(args: argparse.Namespace) -> int:
    """``fzoo plugins``: each plugin, where it came from, its hooks, components and presets."""
    reg = registry()
    infos = [info.as_dict() for info in reg.plugins.values()]
    if args.json:
        print_json(infos)
    else:
        for info in infos:
            status = f"  FAILED: {info['error']}" if info["error"] else ""
            print(f"{info['name']} ({info['source']}){status}")
            if info["hooks"]:
                print(f"  hooks: {', '.join(info['hooks'])}")
            for kind, names in sorted(info["components"].items()):
                print(f"  {kind}: {', '.join(sorted(names))}")
            for failed in info["failed"]:  # broke the registration contract: not usable
                print(f"  FAILED {failed['kind']}: {failed['error']}")
            if info["presets"]:
                print(f"  presets: {', '.join(info['presets'])}")
    problems = reg.problems()  # failed plugins and components, presets naming missing ones
    if getattr(args, "strict", False) and problems:
        for line in problems:
            print(f"fzoo plugins --strict: {line}", file=sys.stderr)
        return EXIT_ERROR
    for line in problems:
        if line.startswith("preset "):  # the others are shown above
            print(f"warning: {line}", file=sys.stderr)
    return EXIT_OK


_KIND_ALIASES = {**KIND_ALIASES, "presets": "preset", "experiments": "experiment"}


def cmd_list(args: argparse.Namespace) -> int:
    """``fzoo list [KIND]``: components with their parameters, presets, experiments."""
    if args.kind in ("detector", "detectors"):
        return list_detectors(args)
    reg = registry()
    kind = args.kind
    if kind is not None:
        kind = _KIND_ALIASES.get(kind, kind).replace("-", "_")
        valid = (*KINDS, "preset", "experiment")
        if kind not in valid:
            print(
                f"fzoo list: unknown kind {args.kind!r}; choose from {', '.join(valid)}",
                file=sys.stderr,
            )
            return EXIT_USAGE
    out: dict[str, Any] = {}
    for k in KINDS:
        if kind not in (None, k):
            continue
        out[k] = [_entry(reg, k, name, cls) for name, cls in sorted(reg.components[k].items())]
        out[k] += [  # registered, but broke the registration contract: not usable
            {"name": f.name or f.qualname, "plugin": p, "failed": f.message(), "params": {}}
            for p, f in reg.failed_components()
            if f.kind == k
        ]
    if kind in (None, "preset"):
        out["preset"] = [
            {
                "name": p.name,
                "kind": p.kind,
                "component": p.component,
                "params": p.params,
                "description": p.description,
                "origin": p.origin,
            }
            for p in sorted(reg.presets.values(), key=lambda p: p.name)
        ]
    if kind in (None, "experiment"):
        from fzoo.catalogue import experiments

        out["experiment"] = [
            {"name": n, "description": (e.get("description") or ""), "origin": str(p)}
            for n, (p, e) in sorted(experiments().items())
        ]
    if args.json:
        print_json(out)
        return EXIT_OK
    for k, entries in out.items():
        print(f"{k}s:" if not k.endswith("s") else f"{k}:")
        for e in entries:
            desc = f"  {e['description']}" if e.get("description") else ""
            plugin = f" [{e['plugin']}]" if "plugin" in e else ""
            comp = f" -> {e['component']} {e['params']}" if "component" in e else ""
            if e.get("failed"):
                print(f"  {e['name']}{plugin}  FAILED: {e['failed']}")
                continue
            learned = f" ({e['learned']})" if e.get("learned") else ""
            print(f"  {e['name']}{plugin}{comp}{learned}{desc}")
            for pname, schema in (e.get("params") or {}).items() if "plugin" in e else []:
                default = repr(schema["default"]) if "default" in schema else "(required)"
                typ = e.get("types", {}).get(pname) or schema.get("type", "?")
                if e.get("bounds", {}).get(pname):
                    default += f" [{e['bounds'][pname]}]"
                pdesc = schema.get("description", "")
                print(f"      {pname}: {typ} = {default}  {pdesc}".rstrip())
    return EXIT_OK


def _entry(reg: Any, kind: str, name: str, cls: Any) -> dict[str, Any]:
    """One component of ``fzoo list``: its plugin, description, version and parameters."""
    schema = cls.params_schema()  # the costly part of a listing: made once per component
    return {
        "name": name,
        "plugin": reg.owner(kind, name),
        "description": cls.description or (cls.__doc__ or "").strip().split("\n")[0],
        "version": cls.version,
        "params": schema.get("properties", {}),
        **_types(cls, schema),
    }


def _types(cls: Any, schema: dict[str, Any]) -> dict[str, Any]:
    """``learned`` (needs fitting) and ``types`` (each parameter's type or choices)."""
    from fzoo.schema import learned_note, param_bounds, param_type

    defs = schema.get("$defs", {})
    props = schema.get("properties", {}).items()
    types = {p: param_type(s, defs, bounds=False) for p, s in props}
    bounds = {p: " ".join(param_bounds(s)) for p, s in props if param_bounds(s)}
    return {"learned": learned_note(cls), "types": types, "bounds": bounds}


def published_detectors(reg: Any) -> dict[str, Any]:
    """Feature extractors that declare themselves published detectors (``published = True``)."""
    return {
        name: cls
        for name, cls in sorted(reg.components["feature_extractor"].items())
        if getattr(cls, "published", False) is True
    }


def list_detectors(args: argparse.Namespace) -> int:
    """``fzoo list detectors``: the published detectors, their papers and weights."""
    reg = registry()
    rows = []
    for name, cls in published_detectors(reg).items():
        rows.append(
            {
                "name": name,
                "plugin": reg.owner("feature_extractor", name),
                "description": cls.description,
                "paper": getattr(cls, "paper", ""),
                "protocol": getattr(cls, "protocol", ""),
                "weights_file": getattr(cls, "weights_filename", ""),
                "weights_url": getattr(cls, "weights_url", ""),
                "weights_licence": getattr(cls, "weights_licence", ""),
            }
        )
    if args.json:
        print_json({"detectors": rows})
        return EXIT_OK
    print("detectors (published weights; use: fzoo detect --detector NAME --param weights=FILE):")
    for r in rows:
        print(f"  {r['name']} [{r['plugin']}]  {r['description']}")
        for key in ("paper", "protocol", "weights_file", "weights_url", "weights_licence"):
            if r[key]:
                print(f"      {key.replace('_', ' ')}: {r[key]}")
    return EXIT_OK
