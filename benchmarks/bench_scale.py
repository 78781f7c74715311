"""Scale: what a grid costs, whether memory streams, and what the Ray engine adds.

    python benchmarks/bench_scale.py            # about 10 min on 2 busy cores
    python benchmarks/bench_scale.py --quick    # smoke run (small sizes)
    python benchmarks/bench_scale.py --only grid,memory --repeat 2 --json out.json

Every measurement is a whole ``fzoo run`` process (interpreter start, imports, decoding, report
included; wall clock) with a fresh cache, run side by side in this run so that ratios hold under
steady background load:

(a) grid cost: one pipeline using 3 extractors (``fft-spectrum``, ``dct-spectrum``,
    ``residual-fingerprint``) and one classifier, against 6 pipelines sharing those 3 extractors
    (each extractor x {logistic regression, random forest}); goal: ratio <= 1.3.
(b) streaming memory: peak RSS of ``fzoo run`` (``ru_maxrss`` of the process, via a wrapper
    process per run) on N and 10 N images (default 200 and 2,000 PNG files: crops of the bundled
    photos and their JPEG-60 twins saved as PNG); goal: within 15%.
(c) local vs Ray: the same experiment with ``engine: local`` and ``engine: {name: ray,
    num_cpus: 2, concurrency: 1}`` (a local Ray started by the run); the ratio is the Ray
    engine's overhead on one machine (start-up, actors, serialisation), not a speed-up.

Prints a Markdown table; ``--json FILE`` writes the raw numbers.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402

FZOO = str(Path(sys.executable).parent / "fzoo")
EXTRACTORS = {
    "fft": "{name: fft-spectrum, params: {bins: 32}}",
    "dct": "{name: dct-spectrum, params: {size: 8}}",
    "res": "{name: residual-fingerprint, params: {bins: 16}}",
}
CLASSIFIERS = {
    "lr": "logistic-regression",
    "rf": "{name: random-forest, params: {n_estimators: 100}}",
}


def make_folder(root: Path, n: int, size: int, seed: int = 0) -> Path:
    """``n`` PNG files: random crops of the bundled photos (pristine) and JPEG-60 twins."""
    from PIL import Image

    from fzoo.images import load_image
    from fzoo_builtins.datasets.sample_photos import PHOTOS, photo_path

    photos = []
    for name in PHOTOS:
        try:
            photos.append((name, (load_image(photo_path(name)).pixels * 255).round()))
        except (FileNotFoundError, OSError):
            continue
    rng = np.random.default_rng(seed)
    for label in ("pristine", "jpeg"):
        (root / label).mkdir(parents=True, exist_ok=True)
    for k in range(n // 2):
        name, px = photos[k % len(photos)]
        y = int(rng.integers(0, px.shape[0] - size))
        x = int(rng.integers(0, px.shape[1] - size))
        crop = Image.fromarray(px[y : y + size, x : x + size].astype(np.uint8))
        crop.save(root / "pristine" / f"{name}-{k:05d}.png")
        buf = io.BytesIO()
        crop.save(buf, format="JPEG", quality=60)
        Image.open(buf).convert("RGB").save(root / "jpeg" / f"{name}-{k:05d}.png")
    return root


def experiment(root: Path, pipelines: list[tuple[str, list[str], str]], engine: str = "") -> str:
    lines = [
        "name: bench-scale",
        "data:",
        f'  dataset: {{name: folder, params: {{root: "{root}"}}}}',
        "conditions:",
        "  - name: clean",
        "  - {name: jpeg90, perturbations: [jpeg-90]}",
        "pipelines:",
    ]
    for name, feats, clf in pipelines:
        lines.append(
            f"  - {{name: {name}, features: [{', '.join(EXTRACTORS[f] for f in feats)}], "
            f"classifier: {CLASSIFIERS[clf]}}}"
        )
    lines += ["tasks:", "  - {name: jpeg, type: binary, positive: [jpeg]}"]
    if engine:
        lines.append(f"engine: {engine}")
    return "\n".join(lines) + "\n"


WRAPPER = """
import json, resource, subprocess, sys, time
t = time.perf_counter()
p = subprocess.run(sys.argv[1:], capture_output=True, text=True)
wall = time.perf_counter() - t
rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # KiB on Linux
print(json.dumps({"rc": p.returncode, "wall_s": wall, "rss_kib": rss, "err": p.stderr[-2000:]}))
"""


def fzoo_run(text: str, work: Path, tag: str) -> dict[str, float]:
    """One ``fzoo run`` in a fresh process with a fresh cache: wall time and peak RSS."""
    exp = work / f"{tag}.yaml"
    exp.write_text(text)
    cache, out = work / f"cache-{tag}", work / f"out-{tag}"
    shutil.rmtree(cache, ignore_errors=True)
    shutil.rmtree(out, ignore_errors=True)
    cmd = [FZOO, "run", str(exp), "--out", str(out), "--cache-dir", str(cache), "--quiet"]
    res = subprocess.run(
        [sys.executable, "-c", WRAPPER, *cmd], capture_output=True, text=True, check=True
    )
    got = json.loads(res.stdout)
    if got["rc"] != 0:
        raise RuntimeError(f"fzoo run {tag} failed:\n{got['err']}")
    shutil.rmtree(cache, ignore_errors=True)
    return {"wall_s": got["wall_s"], "rss_mb": got["rss_kib"] / 1024}


def imports_rss(text: str, work: Path) -> float:
    """Peak RSS of ``fzoo validate`` on the same experiment: the interpreter and every plugin
    imported, no data read. What a run adds on top of this is what could grow with the data."""
    exp = work / "validate.yaml"
    exp.write_text(text)
    cmd = [FZOO, "validate", str(exp)]
    res = subprocess.run(
        [sys.executable, "-c", WRAPPER, *cmd], capture_output=True, text=True, check=True
    )
    return float(json.loads(res.stdout)["rss_kib"]) / 1024


def best(runs: list[dict[str, float]]) -> dict[str, float]:
    return {k: min(r[k] for r in runs) for k in runs[0]}


def side_by_side(configs: dict[str, str], work: Path, repeat: int) -> dict[str, dict[str, float]]:
    """Each config ``repeat`` times, interleaved (a, b, a, b); the minimum of each."""
    runs: dict[str, list[dict[str, float]]] = {k: [] for k in configs}
    for r in range(repeat):
        for tag, text in configs.items():
            runs[tag].append(fzoo_run(text, work, f"{tag}-{r}"))
            print(f"  {tag} #{r + 1}: {runs[tag][-1]}", file=sys.stderr)
    return {k: best(v) for k, v in runs.items()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="small sizes (smoke run)")
    ap.add_argument("--only", default="grid,memory,ray", help="which of grid,memory,ray")
    ap.add_argument("--repeat", type=int, default=1, help="runs per config (minimum kept)")
    ap.add_argument("--grid-n", type=int, default=None, help="images for (a) and (c)")
    ap.add_argument("--mem-n", type=int, default=None, help="small size for (b); large is 10x")
    ap.add_argument("--size", type=int, default=64, help="crop side in pixels")
    ap.add_argument("--json", default=None, help="write the raw results here")
    args = ap.parse_args(argv)
    only = set(args.only.split(","))
    grid_n = args.grid_n or (80 if args.quick else 600)
    mem_n = args.mem_n or (40 if args.quick else 200)
    work = Path(tempfile.mkdtemp(prefix="fzoo-bench-scale-"))
    rows: list[dict[str, str]] = []
    raw: dict[str, object] = {
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "loadavg_start": os.getloadavg(),
    }
    try:
        if only & {"grid", "ray"}:
            data = make_folder(work / f"imgs-{grid_n}", grid_n, args.size)
        if "grid" in only:
            print(f"(a) grid cost on {grid_n} images", file=sys.stderr)
            one = experiment(data, [("all3", list(EXTRACTORS), "lr")])
            six = experiment(data, [(f"{f}-{c}", [f], c) for f in EXTRACTORS for c in CLASSIFIERS])
            got = side_by_side({"one": one, "six": six}, work, args.repeat)
            raw["grid"] = got
            ratio = got["six"]["wall_s"] / got["one"]["wall_s"]
            rows.append(
                {
                    "benchmark": "(a) grid cost",
                    "setting": f"{grid_n} images, 2 conditions",
                    "baseline": f"1 pipeline (3 extractors, LR): {got['one']['wall_s']:.1f} s",
                    "measured": f"6 pipelines (3 extractors x LR/RF): {got['six']['wall_s']:.1f} s",
                    "ratio": f"{ratio:.2f}x",
                    "goal": "<= 1.3x",
                    "met": "yes" if ratio <= 1.3 else "no",
                }
            )
        if "memory" in only:
            small, large = mem_n, 10 * mem_n
            print(f"(b) peak memory, {small} vs {large} images", file=sys.stderr)
            pipes = [("fft-dct", ["fft", "dct"], "lr")]
            configs = {
                str(n): experiment(make_folder(work / f"mem-{n}", n, args.size), pipes)
                for n in (small, large)
            }
            got = side_by_side(configs, work, args.repeat)
            base = min(imports_rss(configs[str(small)], work) for _ in range(args.repeat))
            raw["memory"] = {**got, "imports_rss_mb": base}
            a, b = got[str(small)]["rss_mb"], got[str(large)]["rss_mb"]
            ratio = b / a
            rows.append(
                {
                    "benchmark": "(b) streaming memory",
                    "setting": f"fft+dct, LR, 2 conditions, {args.size} px PNG files",
                    "baseline": f"{small} images: {a:.0f} MB peak RSS",
                    "measured": f"{large} images: {b:.0f} MB peak RSS",
                    "ratio": f"{ratio:.3f}x",
                    "goal": "<= 1.15x",
                    "met": "yes" if ratio <= 1.15 else "no",
                }
            )
            rows.append(
                {
                    "benchmark": "(b) ... above imports",
                    "setting": f"minus `fzoo validate` peak RSS ({base:.0f} MB)",
                    "baseline": f"{small} images: +{a - base:.0f} MB",
                    "measured": f"{large} images: +{b - base:.0f} MB",
                    "ratio": f"{(b - base) / max(a - base, 1e-9):.2f}x",
                    "goal": "(reported)",
                    "met": "-",
                }
            )
        if "ray" in only:
            print(f"(c) local vs Ray on {grid_n} images", file=sys.stderr)
            pipes = [(f"{f}-lr", [f], "lr") for f in EXTRACTORS]
            ray_engine = "{name: ray, num_cpus: 2, concurrency: 1}"
            configs = {
                "local": experiment(data, pipes),
                "ray": experiment(data, pipes, engine=ray_engine),
            }
            got = side_by_side(configs, work, args.repeat)
            raw["ray"] = got
            ratio = got["ray"]["wall_s"] / got["local"]["wall_s"]
            rows.append(
                {
                    "benchmark": "(c) local vs Ray",
                    "setting": f"{grid_n} images, 3 extractors, 2 conditions, same machine",
                    "baseline": f"local: {got['local']['wall_s']:.1f} s",
                    "measured": f"ray (2 CPUs, 1 actor): {got['ray']['wall_s']:.1f} s",
                    "ratio": f"{ratio:.2f}x",
                    "goal": "(overhead, reported)",
                    "met": "-",
                }
            )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    raw["loadavg_end"] = os.getloadavg()
    cols = ["benchmark", "setting", "baseline", "measured", "ratio", "goal", "met"]
    print("| " + " | ".join(cols) + " |")
    print("|" + "---|" * len(cols))
    for row in rows:
        print("| " + " | ".join(row[c] for c in cols) + " |")
    print(
        f"\n{platform.platform()}, {os.cpu_count()} CPUs, load average "
        f"{raw['loadavg_start'][0]:.1f} at start, {raw['loadavg_end'][0]:.1f} at end "  # type: ignore[index]
        f"(whole processes, wall clock, minimum of {args.repeat})"
    )
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": rows, "raw": raw}, indent=2))
    return 0


if __name__ == "__main__":
    started = time.time()
    code = main()
    print(f"({time.time() - started:.0f} s)", file=sys.stderr)
    sys.exit(code)
