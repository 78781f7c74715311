"""Real photographs from Debian's wallpaper packages, for training and evaluating autoencoders.

``fetch(packages)`` downloads each package with ``apt-get download`` (no root needed: the ``.deb``
lands in the cache folder), unpacks it with ``dpkg-deb -x``, and lists its raster images
(``.jpg``/``.jpeg``/``.png``/``.webp``; vector art ``.svg``/``.xml`` is skipped). Duplicates are
dropped: the same bytes (sha256), and the same wallpaper shipped at several resolutions (KDE's
``wallpapers/<Name>/contents/images/<W>x<H>.*``: only the largest is kept). Each package's licence
lines (``License:`` fields of ``usr/share/doc/<pkg>/copyright``) are recorded with its version in
``manifest.json`` in the cache folder (default ``~/.cache/fzoo/debian-wallpapers``).

``load_rgb`` decodes a file exactly with Pillow (``convert("RGB")``, no resampling) and
``centre_crop`` cuts the evaluation crops (never resized; a photo smaller than the crop is
skipped by the caller).

:data:`HELDOUT_PACKAGES` (``mate-backgrounds``) is reserved for held-out evaluation: the training
scripts refuse to train on it.

Run::

    python training/debian_photos.py                       # training packages + held-out one
    python training/debian_photos.py --packages mate-backgrounds --cache DIR
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image

__all__ = [
    "DEFAULT_CACHE",
    "HELDOUT_PACKAGES",
    "TRAIN_PACKAGES",
    "WallpaperPhoto",
    "centre_crop",
    "fetch",
    "load_rgb",
    "photos",
]

DEFAULT_CACHE = Path("~/.cache/fzoo/debian-wallpapers").expanduser()
TRAIN_PACKAGES: tuple[str, ...] = (
    "plasma-workspace-wallpapers",
    "gnome-backgrounds",
    "ukui-wallpapers",
    "lomiri-wallpapers",
)
HELDOUT_PACKAGES: tuple[str, ...] = ("mate-backgrounds",)
RASTER = (".jpg", ".jpeg", ".png", ".webp")
_KDE = re.compile(r"wallpapers/([^/]+)/contents/images(?:_dark)?/(\d+)x(\d+)\.\w+$")


@dataclass(frozen=True)
class WallpaperPhoto:
    """One raster wallpaper file: where it is, which package shipped it, its size and hash."""

    package: str
    path: str  # absolute path of the unpacked file
    sha256: str
    width: int
    height: int


def _run(cmd: list[str], cwd: Path) -> str:
    done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed in {cwd}:\n{done.stderr.strip()}")
    return done.stdout


def _licences(root: Path, package: str) -> list[str]:
    """The distinct ``License:`` values of the package's Debian copyright file."""
    copyright_file = root / "usr" / "share" / "doc" / package / "copyright"
    if not copyright_file.exists():
        return ["(no copyright file)"]
    lines = copyright_file.read_text(errors="replace").splitlines()
    fields = [ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("License:")]
    if not fields:  # free-form copyright file (gnome-backgrounds): its "Licensed under" lines
        fields = [ln.strip().rstrip(".") for ln in lines if "licensed under" in ln.lower()]
    seen: list[str] = []
    for value in fields:
        if value and value not in seen:
            seen.append(value)
    return seen or ["(no licence line; see the copyright file)"]


def _unpack(package: str, cache: Path) -> tuple[Path, str]:
    """Download and unpack ``package`` once; returns (unpacked root, version)."""
    debs = cache / "debs"
    debs.mkdir(parents=True, exist_ok=True)
    found = sorted(debs.glob(f"{package}_*.deb"))
    if not found:
        _run(["apt-get", "download", package], debs)
        found = sorted(debs.glob(f"{package}_*.deb"))
        if not found:
            raise RuntimeError(f"apt-get download {package} left no .deb in {debs}")
    deb = found[-1]
    version = deb.name.split("_")[1]
    root = cache / "unpacked" / package
    if not (root / ".done").exists():
        root.mkdir(parents=True, exist_ok=True)
        _run(["dpkg-deb", "-x", str(deb), str(root)], cache)
        (root / ".done").write_text(version)
    return root, version


def _image_size(path: Path) -> tuple[int, int] | None:
    try:
        with Image.open(path) as im:
            return im.size
    except (OSError, ValueError):
        return None


def _thumbnail(path: Path) -> list[int]:
    """A 12 x 12 grey thumbnail, only to spot one picture shipped at several resolutions."""
    with Image.open(path) as im:
        im.draft("L", (96, 96))  # JPEG: decode at reduced size (hashing only, never training)
        small = im.convert("L").resize((12, 12), Image.Resampling.BOX)
        return [int(v) for v in np.asarray(small).ravel()]


def _same_picture(a: list[int], b: list[int]) -> bool:
    return float(np.mean(np.abs(np.asarray(a, float) - np.asarray(b, float)))) < 4.0


def fetch(packages: tuple[str, ...] | list[str], cache: Path = DEFAULT_CACHE) -> dict[str, object]:
    """Fetch, unpack and deduplicate ``packages``; write and return ``cache/manifest.json``."""
    cache = Path(cache).expanduser()
    cache.mkdir(parents=True, exist_ok=True)
    manifest_path = cache / "manifest.json"
    manifest: dict[str, object] = {"packages": {}, "photos": []}
    if manifest_path.exists():
        manifest = json.loads(manifest_path.read_text())
    pkgs: dict[str, object] = dict(manifest["packages"])  # type: ignore[arg-type]
    photos_by_sha: dict[str, dict[str, object]] = {
        p["sha256"]: p
        for p in manifest["photos"]  # type: ignore[union-attr]
    }
    for package in packages:
        root, version = _unpack(package, cache)
        done = pkgs.get(package)
        if isinstance(done, dict) and done.get("version") == version:
            continue  # listed already (re-listing would lose the near-duplicate check)
        kde_best: dict[str, tuple[int, Path]] = {}
        candidates: list[Path] = []
        skipped_vector = 0
        for f in sorted(root.rglob("*")):
            if not f.is_file():
                continue
            suffix = f.suffix.lower()
            if suffix in (".svg", ".svgz"):
                skipped_vector += 1
                continue
            if suffix not in RASTER or "/doc/" in str(f) or "/icons/" in str(f):
                continue
            if f.stem == "screenshot":  # KDE's previews of a wallpaper kept below
                continue
            m = _KDE.search(str(f))
            if m:  # one wallpaper at several resolutions: keep the largest
                key, area = m.group(1), int(m.group(2)) * int(m.group(3))
                if key not in kde_best or area > kde_best[key][0]:
                    kde_best[key] = (area, f)
                continue
            candidates.append(f)
        candidates += [f for _, f in kde_best.values()]
        kept, near_dups = 0, 0
        sized = [(s, f) for f in candidates if (s := _image_size(f)) is not None]
        thumbs: list[list[int]] = []
        for size, f in sorted(sized, key=lambda t: (-t[0][0] * t[0][1], str(t[1]))):
            sha = hashlib.sha256(f.read_bytes()).hexdigest()
            if sha in photos_by_sha:
                continue
            thumb = _thumbnail(f)  # the largest copy of a picture comes first and is kept
            if any(_same_picture(thumb, t) for t in thumbs):
                near_dups += 1
                continue
            thumbs.append(thumb)
            photos_by_sha[sha] = asdict(
                WallpaperPhoto(package, str(f), sha, int(size[0]), int(size[1]))
            )
            kept += 1
        pkgs[package] = {
            "version": version,
            "licences": _licences(root, package),
            "copyright_file": str(root / "usr" / "share" / "doc" / package / "copyright"),
            "photos": sum(1 for p in photos_by_sha.values() if p["package"] == package),
            "vector_files_skipped": skipped_vector,
            "near_duplicates_skipped": near_dups,
        }
        print(
            f"{package} {version}: {kept} new raster images, {near_dups} near-duplicates and "
            f"{skipped_vector} vector files skipped"
        )
    manifest = {"packages": pkgs, "photos": sorted(photos_by_sha.values(), key=lambda p: p["path"])}
    manifest_path.write_text(json.dumps(manifest, indent=1) + "\n")
    return manifest


def photos(
    packages: tuple[str, ...] | list[str], cache: Path = DEFAULT_CACHE, min_side: int = 0
) -> list[WallpaperPhoto]:
    """The deduplicated photos of ``packages`` (fetched if needed), at least ``min_side`` px."""
    manifest = fetch(packages, cache)
    out = [
        WallpaperPhoto(**p)  # type: ignore[arg-type]
        for p in manifest["photos"]  # type: ignore[union-attr]
        if p["package"] in packages and min(p["width"], p["height"]) >= min_side
    ]
    return out


def load_rgb(path: str | Path) -> np.ndarray:
    """Decode a file exactly with Pillow into ``(H, W, 3)`` uint8 (no resampling)."""
    with Image.open(path) as im:
        im.load()
        if im.mode in ("RGBA", "LA", "P", "PA"):
            im = im.convert("RGBA")
            bg = Image.new("RGBA", im.size, (0, 0, 0, 255))
            im = Image.alpha_composite(bg, im)
        return np.ascontiguousarray(np.asarray(im.convert("RGB"), dtype=np.uint8))


def centre_crop(image: np.ndarray, size: int) -> np.ndarray:
    """The central ``size`` x ``size`` crop of an ``(H, W, ...)`` array (never resized)."""
    h, w = image.shape[:2]
    if h < size or w < size:
        raise ValueError(f"image {w}x{h} is smaller than the {size}x{size} crop")
    top, left = (h - size) // 2, (w - size) // 2
    return image[top : top + size, left : left + size]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--packages", nargs="+", default=[*TRAIN_PACKAGES, *HELDOUT_PACKAGES])
    ap.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    args = ap.parse_args(argv)
    manifest = fetch(args.packages, args.cache)
    for name, info in manifest["packages"].items():  # type: ignore[union-attr]
        print(f"{name}: {info['photos']} photos, licences {info['licences']}")
    print(f"manifest: {Path(args.cache).expanduser() / 'manifest.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
