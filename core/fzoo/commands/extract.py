"""``fzoo extract``: the features of images, by one extractor, into an ``.npz``.

A learned extractor (``requires_fit``) is fitted first on a labelled folder (``--fit-on DIR``,
labels from its sub-folders' names) or loads a fitted state (``--state DIR``); without either it
is refused before any image is read (:mod:`fzoo.commands.extract_fit`).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from fzoo.commands._common import (
    EXIT_ERROR,
    EXIT_OK,
    EXIT_USAGE,
    component_error_lines,
    expand_paths,
    parse_params,
    print_json,
    skip_line,
)


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


def _reason(exc: BaseException) -> str:
    return str(exc).strip() or type(exc).__name__


def _resolve(args: argparse.Namespace) -> Any:
    """The extractor's resolved spec, or None after printing why (``--param`` errors as in YAML)."""
    from fzoo.config import ComponentSpec, resolve_component
    from fzoo.plugin_manager import UnknownComponentError

    try:
        params = parse_params(args.param)
        rc = resolve_component(
            ComponentSpec(name=args.extractor, params=params), "feature_extractor"
        )
        if rc.cls is not None and getattr(rc.cls, "requires_fit", False) and args.fit_target:
            fields = rc.cls.Params.model_fields
            if "fit_target" in fields and "fit_target" not in params:
                params["fit_target"] = args.fit_target  # the fingerprint records what it learns
                spec = ComponentSpec(name=args.extractor, params=params)
                rc = resolve_component(spec, "feature_extractor")
    except (UnknownComponentError, ValueError) as exc:
        for line in component_error_lines(exc, "feature_extractor", args.extractor):
            print(f"fzoo extract: {line}", file=sys.stderr)
        return None
    return rc


def cmd_extract(args: argparse.Namespace) -> int:
    """``fzoo extract``: features of the images into ``--out`` (features, paths, extractor);
    a learned extractor is fitted first (``--fit-on``) or loads a fitted state (``--state``)."""
    import numpy as np

    from fzoo.images import ImageError, load_image, to_tensor

    rc = _resolve(args)
    if rc is None:
        return EXIT_USAGE
    extractor = rc.build()
    from fzoo.commands.extract_fit import FitUsageError, check_fit_args, prepare

    try:
        check_fit_args(args, extractor)  # before any image is read
    except FitUsageError as exc:
        print(f"fzoo extract: {exc}", file=sys.stderr)
        return EXIT_USAGE
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
        skip_line(path, reason)

    state: dict[str, Any] = {}
    if extractor.requires_fit:
        try:
            state = prepare(args, extractor)
        except FitUsageError as exc:
            print(f"fzoo extract: {exc}", file=sys.stderr)
            return EXIT_USAGE
        except Exception as exc:  # the plugin's fit/save/load failed: nothing to extract with
            print(f"fzoo extract: {extractor.name}: {_reason(exc)}", file=sys.stderr)
            return EXIT_ERROR
    from fzoo.progress import track

    paths = list(expand_paths(args.paths, skip))
    for path in track(paths, f"extract {extractor.name}", len(paths), "img"):
        try:
            img = load_image(path)
            row = extractor.extract(to_tensor(img.pixels))
            feats.append(_check_features(row, len(feats[0]) if feats else None))
            names.append(str(path))
        except ImageError as exc:
            skip(path, exc.reason)
        except Exception as exc:  # the extractor cannot handle this image (too small, say)
            skip(path, f"{extractor.name}: {_reason(exc)}")
    if not feats:
        print(
            f"fzoo extract: nothing written: no image gave features ({len(skipped)} skipped)",
            file=sys.stderr,
        )
        return EXIT_ERROR
    from fzoo.fsutil import atomic_writer

    arrays: dict[str, Any] = {
        "features": np.stack(feats).astype(np.float32),
        "paths": np.asarray(names),
        "extractor": np.asarray(extractor.name),
        "fingerprint": np.asarray(extractor.fingerprint()),
        **{k: np.asarray(v) for k, v in state.items()},  # where a learned one's state is from
    }
    try:
        with atomic_writer(out) as fh:  # a temporary file, removed on any failure
            np.savez(fh, **arrays)
    except OSError as exc:
        print(f"fzoo extract: cannot write {out}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_ERROR
    summary = {
        "out": str(out),
        "n": len(feats),
        "dim": len(feats[0]),
        "skipped": skipped,
        **state,
    }
    if args.json:
        print_json(summary)
    else:
        print(f"wrote {out}: {summary['n']} x {summary['dim']} features, {len(skipped)} skipped")
    return EXIT_OK
