"""Start-up of the light commands: wall time, CPU time and peak memory of whole processes.

    python benchmarks/bench_startup.py                           # this checkout, N=5, medians
    python benchmarks/bench_startup.py --before /tmp/fzoo-before  # side by side with another
    python benchmarks/bench_startup.py --n 3 --json out.json

    git worktree add --detach /tmp/fzoo-before <commit>  # a checkout of the previous release
    mkdir /tmp/fzoo-before && git archive HEAD | tar -x -C /tmp/fzoo-before  # or: HEAD's files

Runs each command as a fresh process (interpreter start, imports, registry, output) and reports
per command the median wall time, the median CPU time (user + system: less sensitive to other
jobs on the machine than the wall time) and the median peak resident set size of the child
(``ru_maxrss`` of ``resource.getrusage(RUSAGE_CHILDREN)``, read in a fresh measuring process per
run so one child's peak does not hide the next one's). The commands:

- ``python -c "import fzoo"``: the floor (interpreter + package);
- ``fzoo --help``, ``fzoo list``, ``fzoo plugins``,
  ``fzoo validate docs/examples/quickstart.yaml``.

Each ``fzoo`` command runs as ``python -c "from fzoo.cli import main; main([...])"`` (output
discarded), so the console-script shim adds nothing. The table also names the heavy packages
(torch, scikit-learn, scipy, ...) each command imported.

``--before DIR`` measures a second checkout (its ``core/`` as ``fzoo``, its ``plugins/`` as
``fzoo_builtins``, through a folder of links put first on ``PYTHONPATH``: the editable install's
finder comes after ``sys.path``) with the same interpreter and packages, runs alternating with
this checkout's, and adds the ratios. The load averages (``os.getloadavg``: 1, 5 and 15 minutes,
as ``uptime`` shows them) are recorded before and after: absolute numbers need an idle machine;
CPU seconds and ratios measured side by side are meaningful under steady background load.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HEAVY = (
    "torch",
    "torchvision",
    "sklearn",
    "diffusers",
    "timm",
    "scipy",
    "skimage",
    "cv2",
    "matplotlib",
    "transformers",
    "open_clip",
    "efficientnet_pytorch",
    "colour",
    "colour_demosaicing",
)
COMMANDS: dict[str, list[str] | None] = {
    'python -c "import fzoo"': None,
    "fzoo --help": ["--help"],
    "fzoo list": ["list"],
    "fzoo plugins": ["plugins"],
    "fzoo validate quickstart.yaml": ["validate", "docs/examples/quickstart.yaml"],
}

# Runs in a fresh process: starts the command as its only child, waits, prints wall time, the
# child's CPU time and peak RSS (kB on Linux), and the heavy modules and fzoo the child imported.
_MEASURE = r"""
import json, resource, subprocess, sys, time
code = sys.argv[1]
t0 = time.perf_counter()
proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
wall = time.perf_counter() - t0
use = resource.getrusage(resource.RUSAGE_CHILDREN)
tail = proc.stderr.strip().splitlines()[-1:] if proc.stderr else []
print(json.dumps({"wall": wall, "cpu": use.ru_utime + use.ru_stime, "rss_kb": use.ru_maxrss,
                  "rc": proc.returncode, "tail": tail}))
"""


def _child_code(argv: list[str] | None) -> str:
    report = (
        "import sys as _s, fzoo as _f\n"
        f"_h = sorted(m for m in {HEAVY!r} if m in _s.modules)\n"
        "print('REPORT=' + _f.__file__ + '|' + ','.join(_h), file=_s.stderr)\n"
    )
    if argv is None:
        return "import fzoo\n" + report
    return (
        "import contextlib, io, sys\n"
        "from fzoo.cli import main\n"
        "rc = 0\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    try:\n"
        f"        rc = main({argv!r}) or 0\n"
        "    except SystemExit as e:\n"
        "        rc = e.code or 0\n" + report + "sys.exit(rc)\n"
    )


def shadow(checkout: Path, where: Path) -> Path:
    """A folder of links that imports ``checkout``'s fzoo.

    Since the layout move the checkout's ``core/fzoo`` and ``plugins/fzoo_builtins`` are linked
    as they are; an older checkout (``core/`` as ``fzoo``, ``plugins/`` as ``fzoo.plugins``)
    gets a folder ``where/fzoo`` of links to ``core/*`` plus ``plugins``.
    """
    if (checkout / "core" / "fzoo").is_dir():
        where.mkdir(parents=True, exist_ok=True)
        (where / "fzoo").symlink_to((checkout / "core" / "fzoo").resolve())
        (where / "fzoo_builtins").symlink_to((checkout / "plugins" / "fzoo_builtins").resolve())
        return where
    pkg = where / "fzoo"
    pkg.mkdir(parents=True)
    for entry in (checkout / "core").iterdir():
        if entry.name != "plugins":
            (pkg / entry.name).symlink_to(entry.resolve())
    (pkg / "plugins").symlink_to((checkout / "plugins").resolve())
    return where


def measure(python: str, argv: list[str] | None, cwd: Path, env: dict[str, str]) -> dict:
    out = subprocess.run(
        [python, "-c", _MEASURE, _child_code(argv)],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        check=True,
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    tail = result.pop("tail")
    line = tail[0] if tail else ""
    if not line.startswith("REPORT="):
        raise RuntimeError(f"{argv}: the child failed (exit {result['rc']}): {line}")
    result["fzoo"], heavy = line[len("REPORT=") :].split("|")
    result["heavy"] = [m for m in heavy.split(",") if m]
    return result


def summary(runs: list[dict]) -> dict:
    return {
        "wall_s": statistics.median(float(r["wall"]) for r in runs),
        "wall_s_min": min(float(r["wall"]) for r in runs),
        "cpu_s": statistics.median(float(r["cpu"]) for r in runs),
        "rss_mb": statistics.median(int(r["rss_kb"]) for r in runs) / 1024,
        "rc": sorted({int(r["rc"]) for r in runs}),
        "heavy": runs[-1]["heavy"],
        "fzoo": runs[-1]["fzoo"],
        "runs": runs,
    }


def _loads(loads: tuple[float, float, float]) -> str:
    """The 1, 5 and 15 minute load averages as ``uptime`` prints them."""
    return ", ".join(f"{x:.2f}" for x in loads)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--n", type=int, default=5, help="runs per command (median reported)")
    ap.add_argument("--python", default=sys.executable, help="interpreter with fzoo installed")
    ap.add_argument("--before", type=Path, help="another checkout to measure side by side")
    ap.add_argument("--json", type=Path, help="write the raw results here")
    ap.add_argument(
        "--bytecode-cache",
        type=Path,
        metavar="DIR",
        help="let the children write and use bytecode under DIR (PYTHONPYCACHEPREFIX; "
        "PYTHONDONTWRITEBYTECODE unset), as an installed fzoo would: by default they inherit "
        "this environment, and with PYTHONDONTWRITEBYTECODE=1 every run compiles fzoo's sources",
    )
    args = ap.parse_args(argv)
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    if args.bytecode_cache is not None:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = str(args.bytecode_cache.resolve())
    variants: dict[str, dict[str, str]] = {"this": env}
    if args.before is not None:
        import tempfile

        links = shadow(args.before, Path(tempfile.mkdtemp(prefix="fzoo-before-")))
        path = os.pathsep.join(p for p in (str(links), env.get("PYTHONPATH", "")) if p)
        variants = {"before": {**env, "PYTHONPATH": path}, "this": env}
    load_before = os.getloadavg()
    rows: dict[str, dict[str, dict]] = {}
    for label, cmd in COMMANDS.items():
        runs: dict[str, list[dict]] = {v: [] for v in variants}
        for venv in variants.values():  # warm the file cache, not counted
            measure(args.python, cmd, ROOT, venv)
        for i in range(args.n):
            order = list(variants) if i % 2 == 0 else list(reversed(variants))
            for v in order:
                runs[v].append(measure(args.python, cmd, ROOT, variants[v]))
        rows[label] = {v: summary(r) for v, r in runs.items()}
    load_after = os.getloadavg()
    when = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    print(
        f"{when}: {args.python} (Python {platform.python_version()}), {os.cpu_count()} CPUs, "
        f"N={args.n}, load average {_loads(load_before)} at start, {_loads(load_after)} at end; "
        + (
            f"bytecode cached under {args.bytecode_cache}"
            if args.bytecode_cache is not None
            else f"PYTHONDONTWRITEBYTECODE={os.environ.get('PYTHONDONTWRITEBYTECODE', '')!r}"
        )
    )
    for v in variants:
        print(f"{v}: fzoo from {next(iter(rows.values()))[v]['fzoo']}")
    cols = "wall s | CPU s | peak RSS MB | heavy modules"
    if args.before is None:
        print(f"| command | {cols} |\n|---|---|---|---|---|")
    else:
        print(
            "| command | wall s before | wall s now | x | CPU s before | CPU s now | x "
            "| RSS MB before | RSS MB now | heavy before | heavy now |"
        )
        print("|---|---|---|---|---|---|---|---|---|---|---|")
    for label, by in rows.items():
        now = by["this"]
        heavy_now = ", ".join(now["heavy"]) or "none"
        if args.before is None:
            print(
                f"| `{label}` | {now['wall_s']:.2f} | {now['cpu_s']:.2f} "
                f"| {now['rss_mb']:.0f} | {heavy_now} |"
            )
            continue
        old = by["before"]
        print(
            f"| `{label}` | {old['wall_s']:.2f} | {now['wall_s']:.2f} "
            f"| {old['wall_s'] / now['wall_s']:.1f} | {old['cpu_s']:.2f} | {now['cpu_s']:.2f} "
            f"| {old['cpu_s'] / max(now['cpu_s'], 1e-9):.1f} | {old['rss_mb']:.0f} "
            f"| {now['rss_mb']:.0f} | {', '.join(old['heavy']) or 'none'} | {heavy_now} |"
        )
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "when": when,
                    "python": args.python,
                    "n": args.n,
                    "cpus": os.cpu_count(),
                    "loadavg_start": load_before,
                    "loadavg_end": load_after,
                    "bytecode_cache": str(args.bytecode_cache or ""),
                    "dont_write_bytecode": os.environ.get("PYTHONDONTWRITEBYTECODE", ""),
                    "rows": rows,
                },
                indent=2,
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
