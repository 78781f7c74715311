"""``fzoo detect``: score images with a pipeline saved by ``fzoo run`` (JSON lines), or with a
published detector and its released weights (``--detector``, no YAML, no training)."""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

from fzoo.commands._common import (
    EXIT_ERROR,
    EXIT_OK,
    EXIT_USAGE,
    expand_paths,
    parse_params,
    print_json,
    registry,
)
from fzoo.commands.listing import published_detectors


def cmd_detect(args: argparse.Namespace) -> int:
    """``fzoo detect``: one JSON line per image (``--pipeline``), or a table (``--detector``)."""
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

    for path in expand_paths(args.paths, fail):
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


def _detect_published(args: argparse.Namespace) -> int:
    """``fzoo detect --detector NAME``: the published score of each image, no YAML, no training."""
    from fzoo.config import ComponentSpec, resolve_component
    from fzoo.images import ImageError, load_image, to_tensor
    from fzoo.plugin_manager import UnknownComponentError
    from fzoo.weights import WeightsError

    reg = registry()
    published = published_detectors(reg)
    if args.detector not in published:
        hint = "" if args.detector in reg.components["feature_extractor"] else " (unknown)"
        print(
            f"fzoo detect: {args.detector!r} is not a published detector{hint}; "
            f"choose from {', '.join(published) or '(none installed)'} (fzoo list detectors)",
            file=sys.stderr,
        )
        return EXIT_USAGE
    try:
        params = parse_params(args.param)
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
    except (UnknownComponentError, ValueError) as exc:  # --param errors worded as in YAML
        from fzoo.commands._common import component_error_lines

        for line in component_error_lines(exc, "feature_extractor", args.detector):
            print(f"fzoo detect: {line}", file=sys.stderr)
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

    for path in expand_paths(args.paths):
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
        print_json(rows)
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
