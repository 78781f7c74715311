"""``fzoo launder``: the command line of :func:`fzoo.launder.launder_folder` (arguments, exit
status, the summary line)."""

from __future__ import annotations

import argparse
import sys

from fzoo.commands._common import EXIT_ERROR, EXIT_OK, EXIT_USAGE, parse_params, print_json


def cmd_launder(args: argparse.Namespace) -> int:
    """``fzoo launder``: exit 0 done, 1 nothing laundered (or weights), 2 usage error."""
    from fzoo.config import create_component
    from fzoo.contracts import ContractError
    from fzoo.launder import LaunderUsageError, launder_folder
    from fzoo.plugin_manager import UnknownComponentError
    from fzoo.weights import WeightsError

    try:
        params = parse_params(args.param)
        launderer = create_component("launderer", args.launderer, **params)
    except (UnknownComponentError, ValueError) as exc:  # --param errors worded as in YAML
        from fzoo.commands._common import component_error_lines

        for line in component_error_lines(exc, "launderer", args.launderer):
            print(f"fzoo launder: {line}", file=sys.stderr)
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
    except ContractError as exc:  # the launderer's output is wrong: no image can succeed
        print(f"fzoo launder: {exc}", file=sys.stderr)
        return EXIT_ERROR
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
        print_json(data)
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
