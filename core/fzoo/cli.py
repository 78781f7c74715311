"""The ``fzoo`` command line: the parser and :func:`main`, the console script.

Each command's function lives in a module of :mod:`fzoo.commands`, imported only when that command
runs (so ``fzoo list`` imports nothing ``fzoo run`` needs); the work itself lives on a lower floor
(``fzoo.launder``, ``fzoo.experiment``, ...). A new command: a module ``commands/<name>.py`` with
``cmd_<name>(args) -> int``, a four-line ``cmd_<name>`` below that imports it, and its sub-parser
in :func:`build_parser`.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import sys
from collections.abc import Sequence

from fzoo.commands._args import (
    add_max_cells_argument,
    add_param_argument,
    add_set_argument,
    positive_float,
)
from fzoo.commands._common import EXIT_ERROR, EXIT_OK, EXIT_USAGE
from fzoo.components import KINDS

__all__ = ["EXIT_ERROR", "EXIT_OK", "EXIT_USAGE", "build_parser", "main"]

#: exit status when stdout was closed early (``fzoo list | head``): 128 + SIGPIPE, as shells give
EXIT_CLOSED_STDOUT = 141


# --------------------------------------------------------------------------- the commands
# Each imports its module when it runs: the parser is built for every command, the rest is not.


def cmd_plugins(args: argparse.Namespace) -> int:
    """``fzoo plugins`` (:mod:`fzoo.commands.listing`)."""
    from fzoo.commands.listing import cmd_plugins

    return cmd_plugins(args)


def cmd_list(args: argparse.Namespace) -> int:
    """``fzoo list [KIND]`` (:mod:`fzoo.commands.listing`)."""
    from fzoo.commands.listing import cmd_list

    return cmd_list(args)


def cmd_validate(args: argparse.Namespace) -> int:
    """``fzoo validate`` (:mod:`fzoo.commands.run`)."""
    from fzoo.commands.run import cmd_validate

    return cmd_validate(args)


def cmd_run(args: argparse.Namespace) -> int:
    """``fzoo run`` (:mod:`fzoo.commands.run`)."""
    from fzoo.commands.run import cmd_run

    return cmd_run(args)


def cmd_demo(args: argparse.Namespace) -> int:
    """``fzoo demo`` (:mod:`fzoo.commands.run`)."""
    from fzoo.commands.run import cmd_demo

    return cmd_demo(args)


def cmd_extract(args: argparse.Namespace) -> int:
    """``fzoo extract`` (:mod:`fzoo.commands.extract`)."""
    from fzoo.commands.extract import cmd_extract

    return cmd_extract(args)


def cmd_detect(args: argparse.Namespace) -> int:
    """``fzoo detect`` (:mod:`fzoo.commands.detect`)."""
    from fzoo.commands.detect import cmd_detect

    return cmd_detect(args)


def cmd_launder(args: argparse.Namespace) -> int:
    """``fzoo launder`` (:mod:`fzoo.commands.launder`)."""
    from fzoo.commands.launder import cmd_launder

    return cmd_launder(args)


def cmd_new_plugin(args: argparse.Namespace) -> int:
    """``fzoo new-plugin`` (:mod:`fzoo.commands.new_plugin`)."""
    from fzoo.commands.new_plugin import cmd_new_plugin

    return cmd_new_plugin(args)


# --------------------------------------------------------------------------- the parser


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
    p.add_argument(
        "--strict",
        action="store_true",
        help="exit 1 when a plugin or component failed, or a preset names a missing component",
    )
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
    add_set_argument(p)
    add_max_cells_argument(p)
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("run", help="run an experiment and write the report into --out")
    p.add_argument("experiment", help="experiment YAML file, or a name from registry.yaml")
    p.add_argument("--out", required=True, help="output folder for the report files")
    p.add_argument("--variant", default=None, help="apply one of the experiment's 'variants'")
    add_set_argument(p)
    p.add_argument("--cache-dir", default=None, help="feature cache (default ~/.cache/fzoo)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--json", action="store_true", help="print a JSON summary")
    add_max_cells_argument(p)
    p.add_argument(
        "--timeout",
        type=positive_float,
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
    add_set_argument(p)
    p.add_argument("--cache-dir", default=None, help="feature cache (default ~/.cache/fzoo)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--json", action="store_true", help="print the headline as JSON")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("extract", help="extract features of images into an .npz")
    p.add_argument("--extractor", required=True, help="feature extractor name or preset")
    add_param_argument(p, "parameter (YAML value), repeatable")
    p.add_argument("--out", required=True, help="output .npz (arrays: features, paths)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    p.add_argument("--json", action="store_true", help="print a JSON summary")
    p.add_argument(
        "--fit-on",
        metavar="DIR",
        help="learned extractor: fit it first on DIR's images, labelled by sub-folder name",
    )
    p.add_argument(
        "--fit-target",
        choices=("label", "camera"),
        help="with --fit-on: sub-folders are labels (default) or cameras",
    )
    p.add_argument("--state", metavar="DIR", help="learned extractor: load this fitted state")
    p.add_argument("--save-state", metavar="DIR", help="with --fit-on: save the fitted state")
    p.add_argument("paths", nargs="+", help="image files or folders")
    p.set_defaults(func=cmd_extract)

    p = sub.add_parser(
        "new-plugin",
        help="write a new plugin package (pyproject, an example extractor, tests, README)",
        description="Write a pip-installable fzoo plugin package into OUT/NAME: pyproject.toml "
        "with the 'fzoo' entry point, one example feature extractor, tests that run "
        "fzoo.testing's checks and a tiny experiment, and a README. Refuses an existing folder.",
    )
    p.add_argument("name", metavar="NAME", help="package name (PEP 508), e.g. fzoo-local-var")
    p.add_argument("--out", default=".", help="folder to create NAME in (default: here)")
    p.set_defaults(func=cmd_new_plugin)

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
    add_param_argument(p, "launderer parameter (YAML value), repeatable, e.g. --param weights=DIR")
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
    add_param_argument(
        p, "detector parameter (repeatable), e.g. --param weights=blur_jpg_prob0.5.pth"
    )
    p.add_argument(
        "--json",
        action="store_true",
        help="with --detector: one JSON list (--pipeline always prints JSON lines)",
    )
    p.add_argument("paths", nargs="+", help="image files or folders")
    p.set_defaults(func=cmd_detect)
    return parser


# --------------------------------------------------------------------------- main


def _stdout_closed() -> bool:
    """True when the reader of stdout has gone (a pipe whose read end is closed)."""
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, ValueError, io.UnsupportedOperation):
        return False  # stdout is not a file (a test's StringIO): not a closed pipe
    import select

    if not hasattr(select, "poll"):
        return True
    poller = select.poll()
    poller.register(fd, select.POLLOUT)  # POLLERR: the read end of the pipe is closed
    return any(events & select.POLLERR for _, events in poller.poll(0))


def _quiet_stdout() -> None:
    """Point stdout's descriptor at /dev/null, so the flush at exit cannot fail a second time."""
    with contextlib.suppress(AttributeError, ValueError, OSError, io.UnsupportedOperation):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)


def omp_wait_policy(
    environ: dict[str, str] | os._Environ[str],
    torch_loaded: bool,
    load: float | None,
) -> str | None:
    """The ``OMP_WAIT_POLICY`` the console script sets before torch loads, or None for none.

    torch's OpenMP threads spin while they wait; when other work holds a core, a spinning
    thread waits for a descheduled peer. ``benchmarks/omp_wait_policy.py`` (2 cores, one busy
    process beside): ``PASSIVE`` made EfficientNet fine-tuning steps 1.63x and autoencoder
    passes 1.24x faster; on an idle machine it made the fine-tuning steps 0.78x as fast. So
    ``PASSIVE`` only when the 1-minute load average shows at least one core's worth of other
    work (``load >= 1``; torch's threads fill every core, so one busy core is enough to
    contend), and never over a value the user set, nor once torch is loaded (the runtime reads
    the variable once).
    """
    if "OMP_WAIT_POLICY" in environ or torch_loaded or load is None:
        return None
    return "PASSIVE" if load >= 1.0 else None


def _set_omp_wait_policy() -> None:
    try:
        load: float | None = os.getloadavg()[0]
    except (OSError, AttributeError):  # no load average on this platform
        load = None
    policy = omp_wait_policy(os.environ, "torch" in sys.modules, load)
    if policy is not None:
        os.environ["OMP_WAIT_POLICY"] = policy


def main(argv: Sequence[str] | None = None) -> int:
    """The ``fzoo`` console script: parse ``argv``, run the command, return its exit status."""
    _set_omp_wait_policy()
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_USAGE
    from fzoo.plugin_manager import PluginError

    try:
        code = int(args.func(args))
        sys.stdout.flush()  # a closed pipe shows here, not at exit as "Exception ignored"
        return code
    except BrokenPipeError:
        if not _stdout_closed():
            raise  # a pipe of a plugin's, not our stdout: a real error
        _quiet_stdout()  # `fzoo list | head`: the reader has what it wanted
        return EXIT_CLOSED_STDOUT
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
