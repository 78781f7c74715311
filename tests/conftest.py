"""Shared fixtures: real photos (bundled in scikit-image), odd image files, an isolated cache."""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # 2 cores: OpenMP oversubscription slows sklearn

import io  # noqa: E402
from pathlib import Path

import numpy as np
import png
import pytest
from PIL import Image
from skimage import data as skdata

os.environ.setdefault("HF_HUB_OFFLINE", "1")

PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "retina", "immunohistochemistry")


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("FZOO_CACHE_DIR", str(tmp_path_factory.mktemp("fzoo-cache")))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def photo_crops(n_per_photo: int = 3, size: int = 64, photos=PHOTOS) -> dict[str, np.ndarray]:
    """Non-overlapping crops of real photos: name -> uint8 HxWx3."""
    out = {}
    for name in photos:
        img = getattr(skdata, name)()
        for k in range(n_per_photo):
            y, x = 32 + k * size, 32 + k * size
            out[f"{name}-{k}"] = np.ascontiguousarray(img[y : y + size, x : x + size, :3])
    return out


def jpeg_roundtrip(arr: np.ndarray, quality: int) -> np.ndarray:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG", quality=quality)
    return np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))


def make_class_folder(root: Path, n_per_photo: int = 3, size: int = 64) -> Path:
    """root/pristine/<name>.png and root/processed/<name>.png (JPEG-50 twins saved as PNG)."""
    for name, arr in photo_crops(n_per_photo, size).items():
        for label, img in (("pristine", arr), ("processed", jpeg_roundtrip(arr, 50))):
            (root / label).mkdir(parents=True, exist_ok=True)
            Image.fromarray(img).save(root / label / f"{name}.png")
    return root


def write_odd_images(folder: Path) -> dict[str, str]:
    """Odd and broken files; returns file name -> 'ok' or 'skip' (what a run must do)."""
    folder.mkdir(parents=True, exist_ok=True)
    base = skdata.astronaut()[100:164, 100:164]
    expect: dict[str, str] = {}

    (folder / "zero.png").write_bytes(b"")
    expect["zero.png"] = "skip"

    buf = io.BytesIO()
    Image.fromarray(base).save(buf, format="JPEG", quality=90)
    (folder / "truncated.jpg").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 3])
    expect["truncated.jpg"] = "skip"

    (folder / "notes.png").write_bytes(b"this is not an image\n")
    expect["notes.png"] = "skip"

    Image.fromarray(base).convert("CMYK").save(folder / "cmyk.jpg", quality=95)
    expect["cmyk.jpg"] = "ok"

    sixteen = (base.astype(np.uint16) * 257 + 3).reshape(64, 64 * 3)
    with open(folder / "sixteen.png", "wb") as fh:
        png.Writer(64, 64, greyscale=False, bitdepth=16).write(fh, sixteen.tolist())
    expect["sixteen.png"] = "ok"

    rgba = np.dstack([base, np.full(base.shape[:2], 128, np.uint8)])
    Image.fromarray(rgba, "RGBA").save(folder / "rgba.png")
    expect["rgba.png"] = "ok"

    Image.fromarray(base).convert("P").save(folder / "palette.png")
    expect["palette.png"] = "ok"

    Image.fromarray(base[:, :, 0]).save(folder / "gray.png")
    expect["gray.png"] = "ok"

    Image.fromarray(base[:1, :1]).save(folder / "one.png")
    expect["one.png"] = "skip"  # decodes, but is too small for the spectral features

    Image.fromarray(base).save(folder / "misnamed.jpg", format="PNG")
    expect["misnamed.jpg"] = "ok"
    return expect
