"""``sample-photos``: real photographs that ship inside pip dependencies, as a dataset of crops.

The photos are files inside scikit-image (``skimage/data``), scikit-learn (``china.jpg``,
``flower.jpg``) and matplotlib (``grace_hopper.jpg``), so the zoo runs offline. Each photo is
decoded exactly (``fzoo.load_image``), cut into non-overlapping square crops (never resampled), and
every crop is handed on as lossless PNG bytes. All crops of one photo share its ``source``, so the
split never puts crops of one photo on both sides.
"""

from __future__ import annotations

import io
from collections.abc import Iterator

import numpy as np
from PIL import Image
from pydantic import Field

import fzoo
from fzoo_builtins.sd_vae.photos import COLOUR, photo_path

__all__ = ["PHOTOS", "SamplePhotos", "photo_path"]

#: name -> (package, path inside the package); the colour photographs of the zoo's one photo
#: catalogue, :mod:`fzoo_builtins.sd_vae.photos`
PHOTOS: dict[str, tuple[str, str]] = COLOUR


def _png(pixels: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.clip(np.round(pixels * 255), 0, 255).astype(np.uint8)).save(buf, "PNG")
    return buf.getvalue()


class SamplePhotos(fzoo.Dataset):
    """Crops of the photographs bundled in scikit-image, scikit-learn and matplotlib."""

    name = "sample-photos"
    description = "Crops of real photos shipped inside pip packages (offline, exact pixels)"

    class Params(fzoo.Params):
        photos: list[str] | None = Field(
            None, description="photo names to use (default: all available)"
        )
        crop: int = Field(128, ge=8, description="side of the square crops, in pixels")
        crops_per_photo: int = Field(
            8, ge=1, description="at most this many non-overlapping crops per photo"
        )
        label: str = Field("pristine", description="label given to every record")
        seed: int = Field(0, description="seed for choosing which crops to take")

    def records(self) -> Iterator[fzoo.Record]:
        p = self.params
        names = p.photos if p.photos is not None else list(PHOTOS)
        unknown = [n for n in names if n not in PHOTOS]
        if unknown:
            raise ValueError(f"unknown photos {unknown}; available: {', '.join(PHOTOS)}")
        rng = np.random.default_rng(p.seed)
        for name in names:
            try:
                path = photo_path(name)
            except FileNotFoundError:
                continue
            img = fzoo.load_image(path)
            h, w = img.shape
            grid = [
                (y, x)
                for y in range(0, h - p.crop + 1, p.crop)
                for x in range(0, w - p.crop + 1, p.crop)
            ]
            chosen = sorted(rng.permutation(len(grid))[: p.crops_per_photo].tolist())
            for k in chosen:
                y, x = grid[k]
                crop = img.pixels[y : y + p.crop, x : x + p.crop]
                yield fzoo.Record(
                    label=p.label,
                    source=name,
                    data=_png(crop),
                    meta={"name": f"{name}@{y},{x}", "photo": str(path), "y": y, "x": x},
                )
