"""``fzoo validate``, ``fzoo run`` and ``fzoo demo``: an experiment checked, run, or the bundled
laundering study run offline."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from fzoo.commands._common import EXIT_ERROR, EXIT_OK, EXIT_USAGE, load, print_json


def cmd_validate(args: argparse.Namespace) -> int:
    """``fzoo validate``: both phases of validation; exit 2 with FILE:LINE:COL per issue."""
    exp = load(args.experiment, args.variant, args.set, args.max_cells)
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
    """``fzoo run``: run an experiment, write the report into ``--out``, print a summary."""
    from fzoo.experiment import LabelError, run_experiment, tqdm_progress
    from fzoo.weights import WeightsError

    exp = load(args.experiment, args.variant, args.set, args.max_cells)
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
        print_json(
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


#: the experiment of ``registry.yaml`` that ``fzoo demo`` runs
DEMO_EXPERIMENT = "laundering-study"


def cmd_demo(args: argparse.Namespace) -> int:
    """``fzoo demo``: the laundering study of ``registry.yaml``, offline, and its headline."""
    from fzoo.experiment import LabelError, run_experiment, tqdm_progress
    from fzoo.headline import format_headline
    from fzoo.weights import WeightsError

    exp = load(DEMO_EXPERIMENT, "quick" if args.quick else None, args.set)
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
        print_json(result.headline)
    else:
        print(format_headline(result))
        print(f"\nreport: {out / 'report.html'} (also report.md, results.csv, headline.json)")
        print(f"wall time {result.meta['wall_time_s']} s")
    return EXIT_ERROR if result.errors else EXIT_OK
