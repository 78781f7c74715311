"""Real photos in the laundering study: pristine vs laundered on Debian wallpaper photographs.

The embedded study (``fzoo demo``, docs/study.md) launders simulated camera renders with the
bundled ``fzoo-tiny-vae``. This script asks the same pristine-vs-laundered question on real
photographs that no one here produced, with the bundled autoencoder and, when its weights are
given, TAEF2 (a pretrained tiny autoencoder of the FLUX.2 latent space), and any other
autoencoder (``--vae``):

1. **Photos.** Debian wallpaper packages fetched with ``training/debian_photos.py`` (its
   ``fetch``/``photos``/``load_rgb`` are imported, not copied); by default
   ``lomiri-wallpapers-16.04`` and ``lomiri-wallpapers-20.04``, which are neither
   ``mate-backgrounds`` (kept for held-out checks) nor the packages the new bundled autoencoder
   trains on (``TRAIN_PACKAGES``), so comparing it later is fair. Renders and vector art that
   are not photographs are skipped by name (``SKIP``, recorded in the output).
2. **Crops.** Up to ``--crops-per-photo`` exact 256 x 256 crops per photo: the centre crop, then
   its non-overlapping neighbours (left, right, above, below, corners), decoded exactly and
   never resized; a photo smaller than one crop is skipped. They are written as PNG to
   ``OUT/photos/pristine/<photo>/c<k>.png``, and the ``folder`` dataset reads them with
   ``group_by: parent``: every crop of a photo has the photo as its source, so the split
   (``test_size``, by photo) never puts one photo on both sides.
3. **Experiment.** ``OUT/real-photos.yaml``, an ordinary fzoo experiment: one derived class
   ``laundered-<ae>`` per autoencoder (``data.derive`` with the launderer), conditions
   ``clean``, ``jpeg-90`` and ``resize-0.5`` (applied to test images only; training sees clean
   images), pipelines per detector family (reconstruction error through each autoencoder:
   AEROBLADE's score and logistic regression on the error statistics; FFT and DCT spectra;
   the SRM residual fingerprint; each with logistic regression) and tasks ``<ae>`` (train and
   test on that autoencoder) and ``<a>-to-<b>`` (train on ``a``'s laundered images, test on
   ``b``'s). It is run by fzoo's own ``Runner`` (the code of ``fzoo run``), so the numbers come
   from the same code as the study; ``OUT/run/`` is the usual report folder (``results.json``
   with seeds, versions, fingerprints and the weights' sha256).
4. **Summary.** ``OUT/real_photos.md`` (tables) and ``OUT/real_photos.json``: PSNR and mean
   per-channel colour shift per autoencoder (each laundered crop against its pristine crop,
   read back from the run's cache), AUC per pipeline, task and condition, wall time and load
   average.

Run (``nice``: the cores are shared)::

    nice -n 5 .venv/bin/python benchmarks/real_photos.py --out /tmp/real-photos --max-photos 8
    nice -n 5 .venv/bin/python benchmarks/real_photos.py --out /tmp/real-photos
    ... --taef2 none          # the bundled autoencoder only
    ... --vae sdxl-vae        # a third autoencoder: a preset name or a diffusers VAE folder

Not measured here: the Mandelli et al. patch detector (EfficientNet, ``mandelli2024-*``)
fine-tuned on the embedded world; fine-tuning it on two CPU cores does not fit this run.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_PACKAGES = ("lomiri-wallpapers-16.04", "lomiri-wallpapers-20.04")
DEFAULT_TAEF2 = ROOT.parent / "shared" / "weights" / "taef2"
#: files of the default packages that are renders or vector art, not photographs (by file stem)
SKIP: dict[str, str] = {
    "umang_by_Abhishek_Mudgal": "colour-gradient render",
    "Fossa_by_Jasper_Roks": "vector-style render (Ubuntu 20.04 mascot)",
    "Infinite-Sea_by_Aury88": "digital composite / render",
    "Painting-Colors_by__herobrine7gamer": "flat vector stripes",
}
#: crop offsets around the centre crop, in crop sides: centre, left, right, up, down, corners
OFFSETS: tuple[tuple[int, int], ...] = (
    (0, 0),
    (-1, 0),
    (1, 0),
    (0, -1),
    (0, 1),
    (-1, -1),
    (1, -1),
    (-1, 1),
    (1, 1),
)
CONDITIONS: tuple[tuple[str, list[str]], ...] = (
    ("clean", []),
    ("jpeg-90", ["jpeg-90"]),
    ("resize-0.5", ["resize-half"]),
)
#: pipelines that do not depend on the autoencoders: (name, feature spec, family)
SPECTRAL: tuple[tuple[str, Any, str], ...] = (
    ("fft-lr", "fft-64", "spectrum (FFT radial profile)"),
    ("dct-lr", "dct-16", "spectrum (block DCT)"),
    ("residual-lr", "srm-residual", "residual (SRM fingerprint)"),
)


def load_debian_photos() -> ModuleType:
    """``training/debian_photos.py`` imported by path (``training/`` is not installed)."""
    path = ROOT / "training" / "debian_photos.py"
    spec = importlib.util.spec_from_file_location("fzoo_training_debian_photos", path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is made
    spec.loader.exec_module(module)
    return module


# ---------------------------------------------------------------------------- photos and crops
def crop_boxes(width: int, height: int, size: int, k: int) -> list[tuple[int, int]]:
    """Top-left corners of up to ``k`` non-overlapping ``size`` crops: the centre crop first
    (the same as ``debian_photos.centre_crop``), then its neighbours that fit in the image."""
    if width < size or height < size:
        return []
    left, top = (width - size) // 2, (height - size) // 2
    boxes = []
    for dx, dy in OFFSETS:
        x, y = left + dx * size, top + dy * size
        if x >= 0 and y >= 0 and x + size <= width and y + size <= height:
            boxes.append((x, y))
        if len(boxes) == k:
            break
    return boxes


def photo_name(package: str, path: str) -> str:
    """The folder name of a photo: ``<package>__<file stem>``, safe characters only."""
    stem = Path(path).stem
    return re.sub(r"[^A-Za-z0-9._-]", "_", f"{package}__{stem}")


@dataclass
class PhotoCrops:
    """One photo: where it came from and the crops written for it (or why it was skipped)."""

    name: str
    package: str
    path: str
    width: int
    height: int
    crops: list[str] = field(default_factory=list)
    boxes: list[tuple[int, int]] = field(default_factory=list)
    skipped: str | None = None


def write_crops(
    photos: Sequence[Any],
    root: Path,
    load_rgb: Any,
    size: int = 256,
    per_photo: int = 4,
    skip: dict[str, str] | None = None,
    max_photos: int | None = None,
) -> list[PhotoCrops]:
    """Write the crops of ``photos`` (``WallpaperPhoto``-like: package, path, width, height) as
    PNG under ``root/pristine/<photo>/c<k>.png``; returns every photo with its crops or the
    reason it was skipped. ``max_photos`` counts used photos only (in the given order)."""
    from PIL import Image

    skip = SKIP if skip is None else skip
    out: list[PhotoCrops] = []
    used = 0
    for p in photos:
        name = photo_name(p.package, p.path)
        entry = PhotoCrops(name, p.package, str(p.path), int(p.width), int(p.height))
        out.append(entry)
        stem = Path(p.path).stem
        if stem in skip:
            entry.skipped = f"not a photograph: {skip[stem]}"
            continue
        if max_photos is not None and used >= max_photos:
            entry.skipped = "beyond --max-photos"
            continue
        pixels = load_rgb(p.path)  # exact decode, never resampled
        boxes = crop_boxes(pixels.shape[1], pixels.shape[0], size, per_photo)
        if not boxes:
            entry.skipped = f"smaller than {size} x {size}"
            continue
        folder = root / "pristine" / name
        folder.mkdir(parents=True, exist_ok=True)
        for i, (x, y) in enumerate(boxes):
            target = folder / f"c{i}.png"
            Image.fromarray(np.ascontiguousarray(pixels[y : y + size, x : x + size])).save(target)
            entry.crops.append(str(target))
        entry.boxes = boxes
        used += 1
    return out


# ---------------------------------------------------------------------------- the experiment
@dataclass(frozen=True)
class Autoencoder:
    """One autoencoder under study: its short name (labels, tasks) and its launderer spec."""

    key: str
    spec: Any  # a preset name or a {name, params} mapping, as the YAML takes it

    @property
    def label(self) -> str:
        return f"laundered-{self.key}"


def autoencoders(taef2: str | None, vae: str | None) -> list[Autoencoder]:
    """``fzoo-tiny-vae`` always; TAEF2 when its folder is given; ``vae`` (a preset name, or a
    diffusers VAE folder) when given."""
    out = [Autoencoder("tiny", "fzoo-tiny-vae")]
    if taef2:
        out.append(Autoencoder("taef2", {"name": "taef2", "params": {"weights": str(taef2)}}))
    if vae:
        if Path(vae).expanduser().exists():
            folder = str(Path(vae).expanduser().resolve())
            out.append(Autoencoder("vae", {"name": "sd-vae", "params": {"weights": folder}}))
        else:
            out.append(Autoencoder("vae", vae))
    return out


def build_experiment(
    photos_root: Path, aes: Sequence[Autoencoder], seed: int = 0, test_size: float = 0.5
) -> dict[str, Any]:
    """The experiment (as a YAML mapping): derived laundered classes, conditions, one pipeline
    per detector family and autoencoder, direct and transfer tasks."""
    tasks: list[dict[str, Any]] = []
    for a in aes:
        tasks.append(
            {
                "name": a.key,
                "type": "binary",
                "positive": [a.label],
                "train_on": ["pristine", a.label],
                "test_on": ["pristine", a.label],
            }
        )
    for a in aes:
        for b in aes:
            if a.key != b.key:
                tasks.append(
                    {
                        "name": f"{a.key}-to-{b.key}",
                        "type": "binary",
                        "positive": [a.label, b.label],
                        "train_on": ["pristine", a.label],
                        "test_on": ["pristine", b.label],
                    }
                )
    pipelines: list[dict[str, Any]] = []
    for a in aes:
        recon = {"name": "recon-error", "params": {"launderers": [a.spec]}}
        # AEROBLADE's rule (the error itself is the score), then LR on the error statistics
        for name, classifier in (("recon-score", "feature-score"), ("recon-lr", "lr-balanced")):
            pipelines.append(
                {"name": f"{name}-{a.key}", "features": [recon], "classifier": classifier}
            )
    for name, feature, _family in SPECTRAL:
        pipelines.append({"name": name, "features": [feature], "classifier": "lr-balanced"})
    return {
        "name": "real-photos",
        "description": (
            "Debian wallpaper photographs (exact 256 x 256 crops, split by photo) against their "
            "round trips through each autoencoder; perturbations on test images only."
        ),
        "seed": seed,
        "data": {
            "dataset": {
                "name": "folder",
                "params": {"root": str(photos_root), "group_by": "parent"},
            },
            "derive": [{"label": a.label, "from": "pristine", "launderer": a.spec} for a in aes],
        },
        "split": {"test_size": test_size, "seed": seed},
        "conditions": [
            {"name": n, "perturbations": p} if p else {"name": n} for n, p in CONDITIONS
        ],
        "pipelines": pipelines,
        "tasks": tasks,
    }


def family_of(pipeline: str) -> str:
    """The detector family of a pipeline of :func:`build_experiment`."""
    for name, _feature, family in SPECTRAL:
        if pipeline == name:
            return family
    if pipeline.startswith("recon-score-"):
        return f"reconstruction error through {pipeline.removeprefix('recon-score-')} (score)"
    if pipeline.startswith("recon-lr-"):
        return f"reconstruction error through {pipeline.removeprefix('recon-lr-')} (LR)"
    return "?"


def to_yaml(experiment: dict[str, Any]) -> str:
    """The experiment as YAML, every value written out (no anchors)."""
    import yaml

    class Plain(yaml.SafeDumper):
        def ignore_aliases(self, data: Any) -> bool:
            return True

    return yaml.dump(experiment, Dumper=Plain, sort_keys=False)


# ---------------------------------------------------------------------------- measurements
def colour_shift(source: np.ndarray, derived: np.ndarray) -> float:
    """Mean over RGB of |mean(derived_c) - mean(source_c)|, in 8-bit levels (uint8 images as
    they are, float images in [0, 1] scaled by 255)."""
    scale = [1.0 if np.asarray(x).dtype == np.uint8 else 255.0 for x in (source, derived)]
    a = np.asarray(source, np.float64) * scale[0]
    b = np.asarray(derived, np.float64) * scale[1]
    return float(np.mean(np.abs(b.mean(axis=(0, 1)) - a.mean(axis=(0, 1)))))


def psnr_db(source: np.ndarray, derived: np.ndarray) -> float:
    """PSNR in dB of two images of the same scale ([0, 1] floats): fzoo's own
    :func:`fzoo.images.psnr`."""
    from fzoo.images import psnr

    return psnr(np.asarray(source), np.asarray(derived))


def quality(runner: Any, aes: Sequence[Autoencoder]) -> dict[str, dict[str, Any]]:
    """PSNR and colour shift of every laundered crop against its pristine crop, from the run's
    images (cache hits; the runner made them)."""
    labels = {a.label: a.key for a in aes}
    per: dict[str, dict[str, list[float]]] = {a.key: {"psnr": [], "shift": []} for a in aes}
    for data, mat in runner._data_memo.values():  # the run's items and pixels (its own cache)
        for it in data.items:
            if it.label in labels and it.steps:
                src, out = mat.base(it), mat.image(it)
                per[labels[it.label]]["psnr"].append(psnr_db(src, out))
                per[labels[it.label]]["shift"].append(colour_shift(src, out))
        break  # one cell
    summary: dict[str, dict[str, Any]] = {}
    for key, v in per.items():
        p, s = np.asarray(v["psnr"]), np.asarray(v["shift"])
        summary[key] = {
            "n": int(p.size),
            "psnr_db_mean": round(float(p.mean()), 2) if p.size else None,
            "psnr_db_min": round(float(p.min()), 2) if p.size else None,
            "colour_shift_mean": round(float(s.mean()), 2) if s.size else None,
            "colour_shift_max": round(float(s.max()), 2) if s.size else None,
        }
    return summary


def auc_table(rows: Sequence[Any]) -> dict[str, dict[str, dict[str, float | None]]]:
    """``{task: {pipeline: {condition: auc}}}`` from the run's metric rows."""
    out: dict[str, dict[str, dict[str, float | None]]] = {}
    for r in rows:
        if r.error is not None:
            continue
        value = r.metrics.get("auc")
        cell = out.setdefault(r.task, {}).setdefault(r.pipeline, {})
        cell[r.condition] = None if value is None else round(float(value), 3)
    return out


def _fmt(v: Any, digits: int = 3) -> str:
    return "—" if v is None else f"{v:.{digits}f}" if isinstance(v, float) else str(v)


def markdown(summary: dict[str, Any]) -> str:
    """The tables of ``real_photos.md``."""
    lines = ["# Real photos: pristine vs laundered", ""]
    d = summary["data"]
    lines.append(
        f"{d['photos_used']} photos ({', '.join(d['packages'])}), {d['crops']} crops of "
        f"{d['crop']} x {d['crop']} (up to {d['crops_per_photo']} per photo); split by photo "
        f"(test_size {summary['test_size']}, seed {summary['seed']}): "
        f"{summary['split']['train_photos']} photos train, "
        f"{summary['split']['test_photos']} test. Perturbations on test images only."
    )
    lines += ["", "| autoencoder | crops | PSNR dB mean (min) | colour shift /255 mean (max) |"]
    lines.append("|---|---|---|---|")
    for key, q in summary["quality"].items():
        lines.append(
            f"| {key} | {q['n']} | {_fmt(q['psnr_db_mean'], 2)} ({_fmt(q['psnr_db_min'], 2)}) | "
            f"{_fmt(q['colour_shift_mean'], 2)} ({_fmt(q['colour_shift_max'], 2)}) |"
        )
    conds = [c for c, _ in CONDITIONS]
    for task, per_pipe in summary["auc"].items():
        lines += ["", f"AUC, task `{task}` ({summary['task_text'].get(task, '')}):", ""]
        lines.append("| pipeline | family | " + " | ".join(conds) + " |")
        lines.append("|---|---|" + "---|" * len(conds))
        for pipe, per_cond in per_pipe.items():
            cells = " | ".join(_fmt(per_cond.get(c)) for c in conds)
            lines.append(f"| {pipe} | {family_of(pipe)} | {cells} |")
    t = summary["timing"]
    lines += [
        "",
        f"Wall time {t['wall_s']:.0f} s (run {t['run_s']:.0f} s); load average "
        f"{t['load_start']} at start, {t['load_end']} at end.",
    ]
    return "\n".join(lines) + "\n"


def task_text(aes: Sequence[Autoencoder]) -> dict[str, str]:
    """A phrase per task name."""
    out = {a.key: f"train and test on {a.key}" for a in aes}
    for a in aes:
        for b in aes:
            if a.key != b.key:
                out[f"{a.key}-to-{b.key}"] = f"train on {a.key}, test on {b.key}"
    return out


# ---------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=Path("real-photos-out"))
    ap.add_argument("--packages", nargs="+", default=list(DEFAULT_PACKAGES))
    ap.add_argument("--debian-cache", type=Path, default=None, help="debian_photos cache folder")
    ap.add_argument("--cache-dir", type=Path, default=None, help="fzoo's cache (default: fzoo's)")
    ap.add_argument("--max-photos", type=int, default=None, help="smoke run: use N photos")
    ap.add_argument("--crops-per-photo", type=int, default=4)
    ap.add_argument("--crop", type=int, default=256)
    ap.add_argument("--test-size", type=float, default=0.5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--taef2",
        default=str(DEFAULT_TAEF2) if DEFAULT_TAEF2.exists() else "none",
        help="TAEF2 weights folder (default ../shared/weights/taef2 if present); 'none': skip",
    )
    ap.add_argument("--vae", default=None, help="another autoencoder: preset name or VAE folder")
    ap.add_argument("--no-run", action="store_true", help="write crops and YAML only")
    args = ap.parse_args(argv)

    t0, load_start = time.time(), round(os.getloadavg()[0], 2)
    dp = load_debian_photos()
    held_out = set(dp.HELDOUT_PACKAGES) & set(args.packages)
    if held_out:
        ap.error(f"{sorted(held_out)} is kept for held-out checks; choose other packages")
    trained = sorted(set(dp.TRAIN_PACKAGES) & set(args.packages))
    if trained:
        print(f"note: {trained} is in debian_photos.TRAIN_PACKAGES (the new VAE trains on it)")
    cache = args.debian_cache or dp.DEFAULT_CACHE
    photos = sorted(dp.photos(args.packages, cache), key=lambda p: (p.package, p.path))
    out: Path = args.out
    root = out / "photos"
    marker = root / ".written-by-real_photos"
    if root.exists():  # crops of an earlier call: written again (same pixels); nothing else
        if not marker.exists():
            ap.error(f"{root} exists and was not written by this script; choose another --out")
        import shutil

        shutil.rmtree(root)
    root.mkdir(parents=True)
    marker.write_text("crops of benchmarks/real_photos.py; removed and rewritten by each call\n")
    written = write_crops(
        photos, root, dp.load_rgb, args.crop, args.crops_per_photo, SKIP, args.max_photos
    )
    used = [p for p in written if not p.skipped]
    print(f"{len(used)} photos, {sum(len(p.crops) for p in used)} crops -> {root}")
    aes = autoencoders(None if args.taef2 == "none" else args.taef2, args.vae)
    exp = build_experiment(root.resolve(), aes, args.seed, args.test_size)
    yaml_path = out / "real-photos.yaml"
    yaml_path.write_text(to_yaml(exp))
    if args.no_run:
        return 0

    from fzoo.config import load_experiment
    from fzoo.experiment import Runner
    from fzoo.report import write_report

    experiment = load_experiment(yaml_path)
    t1 = time.time()
    runner = Runner(experiment, out / "run", args.cache_dir)
    result = runner.run()
    run_s = time.time() - t1
    write_report(result, out / "run")
    q = quality(runner, aes)
    split: dict[str, Any] = next(iter(result.meta["split"].values()), {})
    summary: dict[str, Any] = {
        "seed": args.seed,
        "test_size": args.test_size,
        "data": {
            "packages": args.packages,
            "crop": args.crop,
            "crops_per_photo": args.crops_per_photo,
            "photos_used": len(used),
            "crops": sum(len(p.crops) for p in used),
            "photos": [asdict(p) for p in written],
            "licences": {
                k: v
                for k, v in json.loads((Path(cache).expanduser() / "manifest.json").read_text())[
                    "packages"
                ].items()
                if k in args.packages
            },
        },
        "autoencoders": {a.key: a.spec for a in aes},
        "split": {
            "train_photos": _count(split, "train"),
            "test_photos": _count(split, "test"),
            "detail": split,
        },
        "quality": q,
        "fzoo_derived_quality": result.meta.get("derived_quality"),
        "auc": auc_table(result.rows),
        "task_text": task_text(aes),
        "errors": list(result.errors),
        "training_sees_perturbations": False,
        "not_measured": {
            "mandelli2024 patch detector fine-tuned on the embedded world": (
                "EfficientNet fine-tuning on two shared CPU cores does not fit this benchmark"
            )
        },
        "versions": result.meta.get("versions"),
        "provenance": result.meta.get("provenance"),
        "timing": {
            "wall_s": round(time.time() - t0, 1),
            "run_s": round(run_s, 1),
            "load_start": load_start,
            "load_end": round(os.getloadavg()[0], 2),
        },
        "command": " ".join(sys.argv),
    }
    (out / "real_photos.json").write_text(json.dumps(summary, indent=1, default=str) + "\n")
    text = markdown(summary)
    (out / "real_photos.md").write_text(text)
    print(text)
    return 1 if result.errors else 0


def _count(split: dict[str, Any], side: str) -> int | None:
    """Number of pristine sources (photos) on one side of ``meta.split`` of a cell."""
    per = split.get("sources_per_class", {}).get("pristine") if isinstance(split, dict) else None
    return per.get(side) if isinstance(per, dict) else None


if __name__ == "__main__":
    raise SystemExit(main())
