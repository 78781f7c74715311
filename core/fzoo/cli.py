"""The ``fzoo`` command line: plugins, list, validate, run, extract, detect, launder."""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from fzoo.components import KIND_ALIASES, KINDS

EXIT_OK, EXIT_ERROR, EXIT_USAGE = 0, 1, 2


def _print_json(data: Any) -> None:
    from fzoo.report import to_json

    print(to_json(data))


def _registry() -> Any:
    from fzoo.plugin_manager import get_registry

    return get_registry()


# --------------------------------------------------------------------------- plugins / list


def cmd_plugins(args: argparse.Namespace) -> int:
    reg = _registry()
    infos = [info.as_dict() for info in reg.plugins.values()]
    if args.json:
        _print_json(infos)
        return EXIT_OK
    for info in infos:
        status = f"  FAILED: {info['error']}" if info["error"] else ""
        print(f"{info['name']} ({info['source']}){status}")
        if info["hooks"]:
            print(f"  hooks: {', '.join(info['hooks'])}")
        for kind, names in sorted(info["components"].items()):
            print(f"  {kind}: {', '.join(sorted(names))}")
        if info["presets"]:
            print(f"  presets: {', '.join(info['presets'])}")
    return EXIT_OK


_KIND_ALIASES = {**KIND_ALIASES, "presets": "preset", "experiments": "experiment"}


def cmd_list(args: argparse.Namespace) -> int:
    if args.kind in ("detector", "detectors"):
        return _list_detectors(args)
    reg = _registry()
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
        out[k] = [
            {
                "name": name,
                "plugin": reg.owner(k, name),
                "description": cls.description or (cls.__doc__ or "").strip().split("\n")[0],
                "version": cls.version,
                "params": cls.params_schema().get("properties", {}),
            }
            for name, cls in sorted(reg.components[k].items())
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
        _print_json(out)
        return EXIT_OK
    for k, entries in out.items():
        print(f"{k}s:" if not k.endswith("s") else f"{k}:")
        for e in entries:
            desc = f"  {e['description']}" if e.get("description") else ""
            plugin = f" [{e['plugin']}]" if "plugin" in e else ""
            comp = f" -> {e['component']} {e['params']}" if "component" in e else ""
            print(f"  {e['name']}{plugin}{comp}{desc}")
            for pname, schema in (e.get("params") or {}).items() if "plugin" in e else []:
                default = repr(schema["default"]) if "default" in schema else "(required)"
                typ = schema.get("type") or "/".join(
                    a.get("type", "?") for a in schema.get("anyOf", [])
                )
                pdesc = schema.get("description", "")
                print(f"      {pname}: {typ} = {default}  {pdesc}".rstrip())
    return EXIT_OK


# --------------------------------------------------------------------------- published detectors


def _published_detectors(reg: Any) -> dict[str, Any]:
    """Feature extractors that declare themselves published detectors (``published = True``)."""
    return {
        name: cls
        for name, cls in sorted(reg.components["feature_extractor"].items())
        if getattr(cls, "published", False) is True
    }


def _list_detectors(args: argparse.Namespace) -> int:
    reg = _registry()
    rows = []
    for name, cls in _published_detectors(reg).items():
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
        _print_json({"detectors": rows})
        return EXIT_OK
    print("detectors (published weights; use: fzoo detect --detector NAME --param weights=FILE):")
    for r in rows:
        print(f"  {r['name']} [{r['plugin']}]  {r['description']}")
        for key in ("paper", "protocol", "weights_file", "weights_url", "weights_licence"):
            if r[key]:
                print(f"      {key.replace('_', ' ')}: {r[key]}")
    return EXIT_OK


def _detect_published(args: argparse.Namespace) -> int:
    """``fzoo detect --detector NAME``: the published score of each image, no YAML, no training."""
    import math

    from fzoo.config import ComponentSpec, resolve_component
    from fzoo.images import ImageError, load_image, to_tensor
    from fzoo.plugin_manager import UnknownComponentError
    from fzoo.weights import WeightsError

    reg = _registry()
    published = _published_detectors(reg)
    if args.detector not in published:
        hint = "" if args.detector in reg.components["feature_extractor"] else " (unknown)"
        print(
            f"fzoo detect: {args.detector!r} is not a published detector{hint}; "
            f"choose from {', '.join(published) or '(none installed)'} (fzoo list detectors)",
            file=sys.stderr,
        )
        return EXIT_USAGE
    try:
        params = _parse_params(args.param)
        if params.get("output", "score") != "score":
            raise ValueError("--detector scores images: output must be 'score'")
        spec = ComponentSpec(name=args.detector, params=params)
        rc = resolve_component(spec, "feature_extractor")
        detector = rc.build()
        detector.weight_hashes()  # resolves the weights now: a missing file fails before any image
        load = getattr(detector, "network", None)
        if callable(load):
            load()  # a checkpoint of the wrong architecture fails here, once
    except WeightsError as exc:
        print(f"fzoo detect: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (UnknownComponentError, ValueError) as exc:
        print(f"fzoo detect: {exc}", file=sys.stderr)
        return EXIT_USAGE
    negative, positive = getattr(detector, "labels", ("real", "synthetic"))
    rows: list[dict[str, Any]] = []
    failed = 0

    def shown(text: str) -> str:  # no file name can forge an output line
        return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)

    def skip(path: Path, reason: str) -> None:
        nonlocal failed
        failed += 1
        print(f"skipped {shown(str(path))}: {shown(reason)}", file=sys.stderr)

    for path in _expand_paths(args.paths):
        try:
            img = load_image(path)
        except ImageError as exc:
            skip(path, exc.reason)
            continue
        try:
            out = detector.extract(to_tensor(img.pixels))
            score = float(out[0][0])
            if not math.isfinite(score):
                raise ValueError(f"non-finite score {score}")
        except Exception as exc:  # this image only (too small for the protocol, say)
            skip(path, f"{args.detector}: {str(exc).strip() or type(exc).__name__}")
            continue
        z = max(min(score, 500.0), -500.0)
        row: dict[str, Any] = {
            "path": str(path),
            "detector": args.detector,
            "score": score,
            "probability": 1.0 / (1.0 + math.exp(-z)),
            "predicted": positive if score > 0 else negative,
        }
        notes = list(img.notes) + detector.pop_notes()
        if notes:
            row["notes"] = notes
        rows.append(row)
    if args.json:
        _print_json(rows)
    else:
        width = max([len(shown(r["path"])) for r in rows] + [4])
        print(f"{'path':<{width}}  {'score':>10}  {'p(' + positive + ')':>14}  predicted")
        for r in rows:
            print(
                f"{shown(r['path']):<{width}}  {r['score']:>10.4f}  {r['probability']:>14.4f}"
                f"  {r['predicted']}"
            )
        print(f"{len(rows)} scored with {args.detector}, {failed} skipped")
    return EXIT_ERROR if failed else EXIT_OK


# --------------------------------------------------------------------------- validate / run


def _parse_sets(pairs: Sequence[str]) -> list[tuple[str, Any]] | None:
    """``--set KEY=VALUE`` (``KEY+=VALUE`` appends to a list) with YAML values; None on error."""
    out = []
    for pair in pairs:
        key, eq, text = pair.partition("=")
        if not eq or not key.strip():
            print(f"fzoo: --set expects KEY=VALUE or KEY+=VALUE, got {pair!r}", file=sys.stderr)
            return None
        from fzoo.config import parse_value

        try:
            value = parse_value(text, f"--set {key.strip()}")
        except ValueError as exc:
            print(f"fzoo: {exc}", file=sys.stderr)
            return None
        out.append((key.strip(), value))
    return out


def _load(
    path: str, variant: str | None = None, sets: Sequence[str] = (), max_cells: int | None = None
) -> Any:
    from fzoo.config import ConfigError, Limits, load_experiment

    try:
        overrides = _parse_sets(sets)
        if overrides is None:
            return None
        return load_experiment(path, variant, overrides, Limits.from_env(max_cells))
    except ConfigError as exc:
        for issue in exc.issues:
            print(str(issue), file=sys.stderr)
        return None


def cmd_validate(args: argparse.Namespace) -> int:
    exp = _load(args.experiment, args.variant, args.set, args.max_cells)
    if exp is None:
        return EXIT_USAGE
    spec = exp.spec
    counts = [
        (len(spec.pipelines), "pipeline"),
        (len(spec.tasks), "task"),
        (len(spec.conditions), "condition"),
        (len(exp.cells), "grid cell"),
    ]
    listing = ", ".join(f"{k} {word}{'s' if k != 1 else ''}" for k, word in counts)
    variant = f" [variant {args.variant}]" if args.variant else ""
    print(f"{args.experiment}{variant}: OK ({listing})")
    return EXIT_OK


def cmd_run(args: argparse.Namespace) -> int:
    from fzoo.experiment import LabelError, run_experiment, tqdm_progress
    from fzoo.weights import WeightsError

    exp = _load(args.experiment, args.variant, args.set, args.max_cells)
    if exp is None:
        return EXIT_USAGE
    out = Path(args.out)
    try:
        result = run_experiment(
            exp,
            out,
            cache_dir=args.cache_dir,
            progress=None if args.quiet else tqdm_progress,
            timeout_s=args.timeout,
        )
    except LabelError as exc:
        print(f"fzoo run: {exp.file}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (WeightsError, FileNotFoundError, ValueError, OSError) as exc:
        # dataset roots, weights, disks: one actionable line instead of a traceback
        print(f"fzoo run: {type(exc).__name__}: {exc}", file=sys.stderr)
        print("fzoo run: completed work is cached; fix the cause and run again", file=sys.stderr)
        return EXIT_ERROR
    if args.json:
        _print_json(
            {
                "out": str(out),
                "rows": result.rows,
                "skipped": result.skipped,
                "errors": result.errors,
                "cache": result.meta["cache"],
            }
        )
    else:
        ok = [r for r in result.rows if "error" not in r]
        print(f"wrote {out}/report.html, report.md, results.csv, results.json, predictions.csv")
        print(
            f"{len(ok)} result rows, {len(result.skipped)} skipped files, "
            f"{len(result.errors)} errors; feature cache: {result.meta['cache']['hits']} hits, "
            f"{result.meta['cache']['misses']} misses; {result.meta['wall_time_s']} s"
        )
        for r in ok[:20]:
            auc = r.get("auc")
            auc_s = "n/a" if auc is None or auc != auc else f"{auc:.3f}"
            print(
                f"  {r.get('cell') or '-':>1} {r['pipeline']:<20} {r['task']:<20} "
                f"{r['condition']:<12} auc={auc_s} bacc={r['balanced_accuracy']:.3f}"
            )
        if len(ok) > 20:
            print(f"  ... {len(ok) - 20} more rows in results.csv")
    return (
        EXIT_ERROR
        if result.errors and not [r for r in result.rows if "error" not in r]
        else EXIT_OK
    )


DEMO_EXPERIMENT = "laundering-study"


def cmd_demo(args: argparse.Namespace) -> int:
    from fzoo.experiment import LabelError, run_experiment, tqdm_progress
    from fzoo.headline import format_headline
    from fzoo.weights import WeightsError

    exp = _load(DEMO_EXPERIMENT, "quick" if args.quick else None, args.set)
    if exp is None:
        return EXIT_USAGE
    out = Path(args.out)
    what = "quick variant, " if args.quick else ""
    print(f"fzoo demo: {DEMO_EXPERIMENT} ({what}offline) -> {out}/", file=sys.stderr)
    try:
        result = run_experiment(
            exp, out, cache_dir=args.cache_dir, progress=None if args.quiet else tqdm_progress
        )
    except (LabelError, WeightsError, FileNotFoundError, ValueError, OSError) as exc:
        print(f"fzoo demo: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_ERROR
    for err in result.errors:
        print(f"fzoo demo: error: {err}", file=sys.stderr)
    if args.json:
        _print_json(result.headline)
    else:
        print(format_headline(result))
        print(f"\nreport: {out / 'report.html'} (also report.md, results.csv, headline.json)")
        print(f"wall time {result.meta['wall_time_s']} s")
    return EXIT_ERROR if result.errors else EXIT_OK


# --------------------------------------------------------------------------- extract / detect


def _parse_params(pairs: Sequence[str]) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for pair in pairs:
        if "=" not in pair:
            raise ValueError(f"--param {pair!r}: expected KEY=VALUE")
        key, value = pair.split("=", 1)
        from fzoo.config import parse_value

        params[key.strip()] = parse_value(value, f"--param {key.strip()}") if value != "" else ""
    return params


def _expand_paths(
    paths: Sequence[str], on_folder_error: Callable[[Path, str], None] | None = None
) -> list[Path]:
    """Files given, and the images under folders given; an unlistable folder goes to
    ``on_folder_error(folder, reason)`` once (default: a ``skipped`` line on stderr)."""
    from fzoo.images import folder_error, list_images

    def report(folder: Path, exc: OSError) -> None:
        reason = folder_error(folder, exc)
        if on_folder_error is not None:
            on_folder_error(folder, reason)
        else:
            _skip_line(folder, reason)

    out: list[Path] = []
    for p in paths:
        path = Path(p)
        if path.is_dir():
            out.extend(list_images(path, report))
        else:
            out.append(path)
    return out


def _skip_line(path: str | Path, reason: str) -> None:
    """One ``skipped PATH: REASON`` line on stderr; the path escaped so no name forges a line."""
    from fzoo.names import escape

    print(f"skipped {escape(str(path))}: {escape(reason)}", file=sys.stderr)


def _unwritable(out: Path) -> str | None:
    """Why ``out`` cannot be written (checked before any work), or None."""
    parent = out.parent if str(out.parent) else Path(".")
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        return exc.strerror or str(exc)
    if out.is_dir():
        return "is a folder"
    if not os.access(parent, os.W_OK | os.X_OK):
        return f"folder {parent} is not writable"
    return None


def _check_features(row: Any, dim: int | None) -> Any:
    """One image's features as a finite 1-D row; ``ValueError`` says what is wrong."""
    import numpy as np

    arr = np.asarray(row)
    if arr.ndim != 2 or arr.shape[0] != 1:
        raise ValueError(
            f"returned features of shape {list(arr.shape)} for one image; features must be "
            "2-D [N, D] (one row per image)"
        )
    if not np.issubdtype(arr.dtype, np.number) or np.iscomplexobj(arr):
        raise ValueError(f"returned features of dtype {arr.dtype}; features must be real numbers")
    if not np.isfinite(arr).all():
        raise ValueError("returned non-finite features (NaN or inf)")
    if dim is not None and arr.shape[1] != dim:
        raise ValueError(f"returned {arr.shape[1]} features; earlier images gave {dim}")
    return arr[0]


def cmd_extract(args: argparse.Namespace) -> int:
    import numpy as np

    from fzoo.config import ComponentSpec, resolve_component
    from fzoo.images import ImageError, load_image, to_tensor
    from fzoo.plugin_manager import UnknownComponentError

    try:
        rc = resolve_component(
            ComponentSpec(name=args.extractor, params=_parse_params(args.param)),
            "feature_extractor",
        )
    except (UnknownComponentError, ValueError) as exc:
        print(f"fzoo extract: {exc}", file=sys.stderr)
        return EXIT_USAGE
    extractor = rc.build()
    out = Path(args.out)
    if out.exists() and not args.overwrite:
        print(
            f"fzoo extract: {out} exists; refusing to overwrite (use --overwrite)", file=sys.stderr
        )
        return EXIT_USAGE
    unwritable = _unwritable(out)
    if unwritable:
        print(f"fzoo extract: cannot write {out}: {unwritable}", file=sys.stderr)
        return EXIT_ERROR
    feats: list[Any] = []
    names: list[str] = []
    skipped: list[dict[str, str]] = []

    def skip(path: Path, reason: str) -> None:
        skipped.append({"path": str(path), "reason": reason})
        _skip_line(path, reason)

    from fzoo.progress import track

    paths = list(_expand_paths(args.paths, skip))
    for path in track(paths, f"extract {extractor.name}", len(paths), "img"):
        try:
            img = load_image(path)
            row = extractor.extract(to_tensor(img.pixels))
            feats.append(_check_features(row, len(feats[0]) if feats else None))
            names.append(str(path))
        except ImageError as exc:
            skip(path, exc.reason)
        except Exception as exc:  # the extractor cannot handle this image (too small, say)
            skip(path, f"{extractor.name}: {str(exc).strip() or type(exc).__name__}")
    if not feats:
        print(
            f"fzoo extract: nothing written: no image gave features ({len(skipped)} skipped)",
            file=sys.stderr,
        )
        return EXIT_ERROR
    from fzoo.fsutil import atomic_writer

    try:
        with atomic_writer(out) as fh:  # a temporary file, removed on any failure
            np.savez(
                fh,
                features=np.stack(feats).astype(np.float32),
                paths=np.asarray(names),
                extractor=np.asarray(extractor.name),
                fingerprint=np.asarray(extractor.fingerprint()),
            )
    except OSError as exc:
        print(f"fzoo extract: cannot write {out}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_ERROR
    summary = {
        "out": str(out),
        "n": len(feats),
        "dim": len(feats[0]),
        "skipped": skipped,
    }
    if args.json:
        _print_json(summary)
    else:
        print(f"wrote {out}: {summary['n']} x {summary['dim']} features, {len(skipped)} skipped")
    return EXIT_OK


def cmd_detect(args: argparse.Namespace) -> int:
    if getattr(args, "detector", None) is not None:
        return _detect_published(args)
    from fzoo.images import ImageError, load_image
    from fzoo.persist import UntrustedStateError
    from fzoo.pipeline import load_pipeline

    try:
        pipe = load_pipeline(args.pipeline)
    except (FileNotFoundError, ValueError, UntrustedStateError, LookupError) as exc:
        print(f"fzoo detect: {exc}", file=sys.stderr)
        return EXIT_USAGE
    status = EXIT_OK
    failed: list[str] = []

    def fail(path: Path, reason: str) -> None:
        failed.append(str(path))
        print(json.dumps({"path": str(path), "error": reason}), flush=True)

    for path in _expand_paths(args.paths, fail):
        try:
            img = load_image(path)
        except ImageError as exc:
            fail(path, exc.reason)
            continue
        try:
            record = _detect_one(pipe, path, img)
        except Exception as exc:  # this image only (too small for a feature, say)
            fail(path, f"cannot score: {type(exc).__name__}: {str(exc).strip()}")
            continue
        print(json.dumps(record), flush=True)
    if failed:
        status = EXIT_ERROR
    return status


def _detect_one(pipe: Any, path: Path, img: Any) -> dict[str, Any]:
    """The JSON record of one decoded image scored by a saved pipeline."""
    from fzoo.images import to_tensor
    from fzoo.metrics import decide

    proba = pipe.predict_proba(to_tensor(img.pixels))[0]
    probs = {c: round(float(p), 6) for c, p in zip(pipe.saved.classes, proba, strict=True)}
    if not all(math.isfinite(p) for p in probs.values()):
        raise ValueError(f"the pipeline gave non-finite probabilities {probs}")
    pred = max(probs, key=lambda c: probs[c])
    if pipe.saved.positive is not None:
        positive = pipe.saved.positive
        pos = probs.get(positive, 0.0)
        if decide(pos, pipe.saved.threshold, positive, "") != positive:
            pred = next(c for c in pipe.saved.classes if c != positive)  # the other class
        else:
            pred = positive
    record: dict[str, Any] = {"path": str(path), "predicted": pred, "probabilities": probs}
    if img.notes:
        record["notes"] = img.notes
    return record


# --------------------------------------------------------------------------- launder


def cmd_launder(args: argparse.Namespace) -> int:
    from fzoo.config import create_component
    from fzoo.launder import LaunderUsageError, launder_folder
    from fzoo.plugin_manager import UnknownComponentError
    from fzoo.weights import WeightsError

    try:
        params = _parse_params(args.param)
        launderer = create_component("launderer", args.launderer, **params)
    except (UnknownComponentError, ValueError) as exc:
        print(f"fzoo launder: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if args.batch_size < 1:
        print("fzoo launder: --batch-size must be >= 1", file=sys.stderr)
        return EXIT_USAGE
    try:
        summary = launder_folder(
            launderer,
            args.in_dir,
            args.out_dir,
            name=args.launderer,
            batch_size=args.batch_size,
            progress=False if args.quiet else None,
        )
    except LaunderUsageError as exc:
        print(f"fzoo launder: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except WeightsError as exc:  # missing or mismatched weights: the message says what to do
        print(f"fzoo launder: {type(exc).__name__}: {exc}", file=sys.stderr)
        hint = "nothing laundered with these weights; fix them as said above, then run again"
        print(f"fzoo launder: {hint}", file=sys.stderr)
        return EXIT_ERROR
    except OSError as exc:  # a full disk, an unwritable folder
        print(f"fzoo launder: {type(exc).__name__}: {exc}", file=sys.stderr)
        hint = "free space or fix the folder, then run the same command to resume"
        print(f"fzoo launder: outputs written so far are kept; {hint}", file=sys.stderr)
        return EXIT_ERROR
    data = summary.as_dict()
    if args.json:
        _print_json(data)
    else:
        psnr = data["psnr_db_mean"]
        print(
            f"wrote {summary.written} PNG(s) to {summary.out_dir} "
            f"({summary.skipped_existing} existing kept, {len(summary.unreadable)} unreadable, "
            f"{len(summary.failed)} failed); mean PSNR "
            f"{'n/a' if psnr is None else f'{psnr:.2f} dB'}; manifest {summary.manifest}; "
            f"{data['wall_s']} s"
        )
    if summary.found == 0:
        print(f"fzoo launder: no images found in {summary.in_dir}", file=sys.stderr)
        return EXIT_ERROR
    if summary.written + summary.skipped_existing == 0 and (summary.unreadable or summary.failed):
        if summary.failed:  # the same setting would fail again: say so, not "run again"
            from fzoo.names import escape

            first = escape(summary.failed[0]["reason"])
            print(
                f"fzoo launder: no image could be laundered with these parameters (first "
                f"failure: {first}); running again would fail the same way: change --param "
                "values (e.g. multiple_mode=pad for images smaller than the launderer's "
                "multiple), try them on one image; no launderers.json or manifest was kept",
                file=sys.stderr,
            )
        return EXIT_ERROR  # nothing laundered, now or by an earlier run
    return EXIT_OK


# --------------------------------------------------------------------------- parser


def _add_set_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a value of the experiment (dotted path as in 'grid', YAML value; "
        "KEY+=VALUE appends to a list), repeatable",
    )


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        what = f"expected a positive integer, got {text[:50]!r}"
        raise argparse.ArgumentTypeError(what) from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        what = f"expected a number of seconds, got {text[:50]!r}"
        raise argparse.ArgumentTypeError(what) from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {value}")
    return value


def _add_max_cells_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--max-cells",
        type=_positive_int,
        default=None,
        metavar="N",
        help="allow a grid of up to N cells (default 1000, or $FZOO_MAX_CELLS)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fzoo",
        description="fzoo: the forensic detector zoo. Plugins of launderers, feature extractors "
        "and classifiers, composed in YAML experiments.",
    )
    from fzoo import __version__

    parser.add_argument("--version", action="version", version=f"fzoo {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("plugins", help="list installed plugins, their hooks and components")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_plugins)

    p = sub.add_parser("list", help="list components (with parameters), presets, experiments")
    p.add_argument(
        "kind", nargs="?", help=f"one of {', '.join(KINDS)}, preset, experiment, detectors"
    )
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("validate", help="check an experiment YAML (exit 2 with FILE:LINE:COL)")
    p.add_argument("experiment", help="experiment YAML file, or a name from registry.yaml")
    p.add_argument("--variant", default=None, help="apply one of the experiment's 'variants'")
    _add_set_argument(p)
    _add_max_cells_argument(p)
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("run", help="run an experiment and write the report into --out")
    p.add_argument("experiment", help="experiment YAML file, or a name from registry.yaml")
    p.add_argument("--out", required=True, help="output folder for the report files")
    p.add_argument("--variant", default=None, help="apply one of the experiment's 'variants'")
    _add_set_argument(p)
    p.add_argument("--cache-dir", default=None, help="feature cache (default ~/.cache/fzoo)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--json", action="store_true", help="print a JSON summary")
    _add_max_cells_argument(p)
    p.add_argument(
        "--timeout",
        type=_positive_float,
        default=None,
        metavar="SECONDS",
        help="longest one call into a component (an extract batch, a fit) may take; the "
        "pipeline then fails and the others finish (a pipeline's 'timeout_s' takes precedence)",
    )
    p.set_defaults(func=cmd_run)

    p = sub.add_parser(
        "demo",
        help="run the laundering study offline and print its headline numbers",
        description="Run the 'laundering-study' experiment of registry.yaml: simulated cameras, "
        "the bundled fzoo-tiny-vae as launderer and tiny-ldm as generator; camera-model "
        "identification before and after laundering, pristine/laundered/synthetic detection, "
        "reconstruction-error AUCs and robustness. Writes the report (report.html, figures, "
        "headline.json) into --out and prints the headline numbers. Nothing is downloaded.",
    )
    p.add_argument("--quick", action="store_true", help="the small variant (about 2 minutes)")
    p.add_argument("--out", default="fzoo-demo", help="report folder (default ./fzoo-demo)")
    _add_set_argument(p)
    p.add_argument("--cache-dir", default=None, help="feature cache (default ~/.cache/fzoo)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--json", action="store_true", help="print the headline as JSON")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("extract", help="extract features of images into an .npz")
    p.add_argument("--extractor", required=True, help="feature extractor name or preset")
    p.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="parameter (YAML value), repeatable",
    )
    p.add_argument("--out", required=True, help="output .npz (arrays: features, paths)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    p.add_argument("--json", action="store_true", help="print a JSON summary")
    p.add_argument("paths", nargs="+", help="image files or folders")
    p.set_defaults(func=cmd_extract)

    p = sub.add_parser(
        "launder",
        help="pass a folder of images through a launderer into lossless PNGs (resumable)",
        description="Launder every image under IN_DIR (e.g. a Stable Diffusion VAE round trip) "
        "and write 8-bit PNGs to OUT_DIR at the same relative paths, with OUT_DIR/manifest.csv "
        "(source, output, launderer, fingerprint, psnr_db, notes). Existing outputs are never "
        "overwritten: they are skipped, so re-running an interrupted command resumes it. "
        "OUT_DIR must not be IN_DIR, lie inside it or contain it. Unreadable images are "
        "reported and skipped. Exit status: 0 done, 1 nothing could be laundered (or missing "
        "weights), 2 usage error.",
    )
    p.add_argument(
        "--launderer", required=True, help="launderer name or preset (fzoo list launderer)"
    )
    p.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="launderer parameter (YAML value), repeatable, e.g. --param weights=DIR",
    )
    p.add_argument(
        "--batch-size",
        type=int,
        default=16,
        help="same-size images per launderer call and per manifest append (default 16)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--json", action="store_true", help="print a JSON summary")
    p.add_argument("in_dir", metavar="IN_DIR", help="folder of images (searched recursively)")
    p.add_argument("out_dir", metavar="OUT_DIR", help="output folder (created if missing)")
    p.set_defaults(func=cmd_launder)

    p = sub.add_parser(
        "detect", help="score images with a pipeline saved by a run, or a published detector"
    )
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--pipeline", help="OUT/pipelines/<pipeline>--<task> folder")
    which.add_argument(
        "--detector", help="a published detector (fzoo list detectors), e.g. cnndetection"
    )
    p.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="detector parameter (repeatable), e.g. --param weights=blur_jpg_prob0.5.pth",
    )
    p.add_argument(
        "--json",
        action="store_true",
        help="with --detector: one JSON list (--pipeline always prints JSON lines)",
    )
    p.add_argument("paths", nargs="+", help="image files or folders")
    p.set_defaults(func=cmd_detect)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_USAGE
    from fzoo.plugin_manager import PluginError

    try:
        return int(args.func(args))
    except PluginError as exc:
        print(f"fzoo: plugin error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except SystemExit as exc:  # argparse is done: only plugin code calls sys.exit from here on
        print(
            f"fzoo: error: a plugin called sys.exit({exc.code!r}) during {args.command!r}; "
            "it was stopped (find it with `fzoo plugins`, block it with FZOO_BLOCK_PLUGINS)",
            file=sys.stderr,
        )
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("fzoo: interrupted; completed work is cached, re-run to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
