"""Learning curve of the study's Mandelli detectors: ternary result against the number of photos.

The `laundering-study` of ``registry.yaml`` (``fzoo demo``) fine-tunes the paper's two
EfficientNet-Lite0 patch detectors (pipelines ``mandelli`` and ``mandelli-two-stage``) on the
training photos of the embedded world. This script reruns only those two pipelines, on the
clean ternary task, with the first N photos of a fixed order (``--photos 6 9 12``; the split is
by source photo, ``test_size: 0.34``, so about two thirds of them train), everything else as
the study has it: the same derived classes (``synthetic-noise`` scaled to 10 images per photo,
120 at 12 photos as in the study), the same detector parameters read from ``registry.yaml``
(``--variant quick`` for its smaller ones). It prints a Markdown table (one row per point: train
and test photos, images, ternary balanced accuracy of both pipelines, laundered-as-pristine and
laundered-as-synthetic rates) and writes it with the raw rows to ``--out``.

Not part of the tests or ``make demo``: with a shared cache folder (``--cache-dir``, default
``.fzoo-cache/learning-curve``) the laundered and synthetic images are made once; each point
fine-tunes both detectors on its own training photos (3 points: about 15 minutes on 2 cores).
With 2-4 test photos a point, one split decides more than the training size: ``--split-seeds
0 1 2`` runs each point on several draws of the train/test photos and adds a summary table
(mean, min, max per point).

    .venv/bin/python benchmarks/mandelli_learning_curve.py --photos 6 9 12 --out /tmp/lc
    .venv/bin/python benchmarks/mandelli_learning_curve.py --photos 6 9 12 --split-seeds 1 2 3
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import time
from pathlib import Path
from typing import Any

#: photo order: the quick demo's eight photos first, then the other four of the study
ORDER = (
    "astronaut",
    "coffee",
    "chelsea",
    "rocket",
    "china",
    "flower",
    "motorcycle_left",
    "grace_hopper",
    "motorcycle_right",
    "hubble_deep_field",
    "immunohistochemistry",
    "retina",
)
PIPELINES = ("mandelli", "mandelli-two-stage")
NOISE_PER_PHOTO = 10


def study_subset(
    n_photos: int, variant: str | None, tiles: int | None = None, split_seed: int | None = None
) -> dict[str, Any]:
    """The study's data, split, ternary task and Mandelli pipelines for the first ``n_photos``
    (``split_seed``: another draw of the train/test photos; None is the study's)."""
    import yaml

    from fzoo.config import load_experiment
    from fzoo.registry import experiments

    exp = load_experiment("laundering-study", variant)
    spec = exp.cells[0].spec if exp.cells else exp.spec
    registry_file, _ = experiments()["laundering-study"]
    raw = yaml.safe_load(Path(registry_file).read_text())["experiments"]["laundering-study"]
    data = raw["data"]
    params: dict[str, Any] = {"photos": list(ORDER[:n_photos])}
    if tiles is not None:
        params["tiles_per_photo"] = tiles
    data["dataset"] = {"name": "virtual-cameras", "params": params}
    for step in data["derive"]:
        if step["label"] == "synthetic-noise":
            step["n"] = NOISE_PER_PHOTO * n_photos
    pipelines = [
        p.model_dump(mode="json", exclude_none=True) for p in spec.pipelines if p.name in PIPELINES
    ]
    missing = set(PIPELINES) - {p["name"] for p in pipelines}
    if missing:
        raise SystemExit(f"registry.yaml: laundering-study has no pipeline {sorted(missing)}")
    split = dict(raw["split"])
    if split_seed is not None:
        split["seed"] = split_seed
    return {
        "name": f"mandelli-curve-{n_photos}",
        "seed": raw.get("seed", 0),
        "data": data,
        "split": split,
        "conditions": [{"name": "clean"}],
        "pipelines": pipelines,
        "tasks": [t for t in raw["tasks"] if t["name"] == "ternary"],
    }


def run_point(
    n_photos: int,
    variant: str | None,
    out: Path,
    cache: Path,
    tiles: int | None = None,
    split_seed: int | None = None,
) -> dict[str, Any]:
    """Run one point (one split); its row of the table."""
    import yaml

    from fzoo.config import load_experiment
    from fzoo.experiment import run_experiment

    split_name = "study-split" if split_seed is None else f"split-{split_seed}"
    folder = out / f"photos-{n_photos}" / split_name
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "experiment.yaml"
    spec = study_subset(n_photos, variant, tiles, split_seed)
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    start = time.time()
    result = run_experiment(load_experiment(path), folder / "out", cache_dir=cache, progress=None)
    wall = time.time() - start
    if result.errors:  # pragma: no cover - a failed point stops the curve
        raise SystemExit(f"{n_photos} photos: {result.errors}")
    saved = json.loads((folder / "out" / "results.json").read_text())
    with open(folder / "out" / "predictions.csv", newline="") as fh:
        preds = [p for p in csv.DictReader(fh) if p["condition"] == "clean"]
    test_photos = sorted({p["source"] for p in preds if p["label"] == "pristine"})
    row: dict[str, Any] = {
        "photos": n_photos,
        "split_seed": "study" if split_seed is None else split_seed,
        "train_photos": [n for n in ORDER[:n_photos] if n not in test_photos],
        "test_photos": test_photos,
        "wall_s": round(wall, 1),
    }
    for r in saved["rows"]:
        if r.get("condition") == "clean" and "error" not in r:
            row[f"bacc_{r['pipeline']}"] = r["balanced_accuracy"]
            row["n_train"], row["n_test"] = r.get("n_train"), r.get("n_test")
    for name in PIPELINES:
        laundered = [p for p in preds if p["pipeline"] == name and p["label"] == "laundered"]
        n = max(1, len(laundered))
        row[f"l2p_{name}"] = sum(p["predicted"] == "pristine" for p in laundered) / n
        row[f"l2s_{name}"] = sum(p["predicted"] == "synthetic" for p in laundered) / n
    return row


def table(rows: list[dict[str, Any]]) -> str:
    """The Markdown table of the points."""
    head = (
        "| photos (train / test) | split | train / test images | ternary bacc `mandelli` | "
        "`mandelli-two-stage` | laundered -> pristine | laundered -> synthetic | wall |\n"
        "|---|---|---|---|---|---|---|---|\n"
    )
    lines = []
    for r in rows:
        lines.append(
            f"| {r['photos']} ({len(r['train_photos'])} / {len(r['test_photos'])}) "
            f"| {r['split_seed']} "
            f"| {r.get('n_train')} / {r.get('n_test')} "
            f"| {r.get('bacc_mandelli', float('nan')):.3f} "
            f"| {r.get('bacc_mandelli-two-stage', float('nan')):.3f} "
            f"| {r['l2p_mandelli']:.3f} | {r['l2s_mandelli']:.3f} | {r['wall_s']:.0f} s |"
        )
    by_n: dict[int, list[float]] = {}
    for r in rows:
        by_n.setdefault(r["photos"], []).append(r.get("bacc_mandelli", float("nan")))
    if any(len(v) > 1 for v in by_n.values()):
        lines.append("")
        lines.append("| photos | splits | ternary bacc `mandelli`: mean | min | max |")
        lines.append("|---|---:|---:|---:|---:|")
        for n, v in by_n.items():
            lines.append(
                f"| {n} | {len(v)} | {statistics.mean(v):.3f} | {min(v):.3f} | {max(v):.3f} |"
            )
    return head + "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--photos", type=int, nargs="+", default=[6, 9, 12], help="points (<= 12)")
    ap.add_argument("--variant", default=None, help="study variant for the detector params")
    ap.add_argument(
        "--tiles-per-photo", type=int, default=None, help="fewer tiles (default: all, as the study)"
    )
    ap.add_argument(
        "--split-seeds",
        type=int,
        nargs="+",
        default=None,
        help="several train/test draws per point (default: the study's split only)",
    )
    ap.add_argument("--out", type=Path, default=Path("mandelli-curve"))
    ap.add_argument("--cache-dir", type=Path, default=Path(".fzoo-cache/learning-curve"))
    args = ap.parse_args(argv)
    if any(not 3 <= n <= len(ORDER) for n in args.photos):
        ap.error(f"--photos: each point between 3 and {len(ORDER)}")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    load = os.getloadavg()
    start = time.time()
    seeds: list[int | None] = list(args.split_seeds) if args.split_seeds else [None]
    rows = [
        run_point(n, args.variant, args.out, args.cache_dir, args.tiles_per_photo, seed)
        for n in args.photos
        for seed in seeds
    ]
    wall = time.time() - start
    end = os.getloadavg()
    text = table(rows)
    footer = (
        f"\nwall {wall:.0f} s; load average (1/5/15 min) {load[0]:.2f}/{load[1]:.2f}/"
        f"{load[2]:.2f} at start, {end[0]:.2f}/{end[1]:.2f}/{end[2]:.2f} at end\n"
    )
    print(text + footer, end="")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "learning_curve.md").write_text(text + footer)
    (args.out / "learning_curve.json").write_text(json.dumps(rows, indent=2, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
