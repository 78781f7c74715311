"""The catalogue of real photographs that ship inside pip dependencies (one list for the zoo).

Used to train and evaluate the bundled autoencoders, and, through :data:`COLOUR` and
:func:`photo_path`, by the ``sample-photos`` and virtual-camera datasets.

No network is needed: every image is a file inside an installed package

* scikit-image ``skimage/data/*`` (``skimage.data``),
* scikit-learn ``sklearn/datasets/images/*.jpg`` (``sklearn.datasets.load_sample_images``),
* matplotlib ``mpl-data/sample_data/grace_hopper.jpg``.

The files are decoded exactly with Pillow (PNG is lossless; JPEG is decoded by the installed
libjpeg, without any resampling). Grayscale photographs are replicated to three channels, RGBA
images are not used. Nothing here resizes an image; :func:`crop_to_multiple` only crops.

The split is by photograph, never by crop: :data:`HOLDOUT` photos are never seen in training of
``fzoo-tiny-vae`` and are used only for the held-out PSNR measurement.

This module deliberately imports nothing from ``fzoo`` so that the training and evaluation scripts
next to it can run by path before the package is installed.
"""

from __future__ import annotations

import difflib
import importlib.util
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

__all__ = [
    "COLOUR",
    "HOLDOUT",
    "TRAIN_COLOUR",
    "TRAIN_GRAY",
    "Photo",
    "crop_to_multiple",
    "holdout_photos",
    "load_photo",
    "load_photos",
    "photo_names",
    "photo_path",
    "train_photos",
]

#: name -> (package, path inside the package, whether the source is grayscale)
_SOURCES: dict[str, tuple[str, str, bool]] = {
    # scikit-image colour photographs
    "astronaut": ("skimage", "data/astronaut.png", False),
    "coffee": ("skimage", "data/coffee.png", False),
    "chelsea": ("skimage", "data/chelsea.png", False),
    "rocket": ("skimage", "data/rocket.jpg", False),
    "motorcycle_left": ("skimage", "data/motorcycle_left.png", False),
    "motorcycle_right": ("skimage", "data/motorcycle_right.png", False),
    "hubble_deep_field": ("skimage", "data/hubble_deep_field.jpg", False),
    "immunohistochemistry": ("skimage", "data/ihc.png", False),
    "retina": ("skimage", "data/retina.jpg", False),
    # scikit-image grayscale photographs (replicated to RGB)
    "camera": ("skimage", "data/camera.png", True),
    "moon": ("skimage", "data/moon.png", True),
    "coins": ("skimage", "data/coins.png", True),
    "grass": ("skimage", "data/grass.png", True),
    "gravel": ("skimage", "data/gravel.png", True),
    "brick": ("skimage", "data/brick.png", True),
    "clock": ("skimage", "data/clock_motion.png", True),
    "cell": ("skimage", "data/cell.png", True),
    "page": ("skimage", "data/page.png", True),
    "text": ("skimage", "data/text.png", True),
    # scikit-learn sample images
    "china": ("sklearn", "datasets/images/china.jpg", False),
    "flower": ("sklearn", "datasets/images/flower.jpg", False),
    # matplotlib sample data
    "grace_hopper": ("matplotlib", "mpl-data/sample_data/grace_hopper.jpg", False),
}

#: name -> (package, path inside the package) of the colour photographs, in catalogue order.
COLOUR: dict[str, tuple[str, str]] = {
    n: (package, rel) for n, (package, rel, gray) in _SOURCES.items() if not gray
}

#: Colour photographs never used in training; the held-out evaluation set.
HOLDOUT: tuple[str, ...] = ("coffee", "china", "grace_hopper")

#: Colour photographs used for training.
TRAIN_COLOUR: tuple[str, ...] = tuple(
    n for n, (_, _, gray) in _SOURCES.items() if not gray and n not in HOLDOUT
)

#: Grayscale photographs (replicated to RGB) used for training.
TRAIN_GRAY: tuple[str, ...] = tuple(n for n, (_, _, gray) in _SOURCES.items() if gray)


@dataclass(frozen=True)
class Photo:
    """One decoded photograph: ``image`` is ``uint8`` of shape ``(H, W, 3)``."""

    name: str
    source: str
    path: Path
    grayscale: bool
    image: np.ndarray


def photo_names() -> tuple[str, ...]:
    """All known photo names, in a fixed order."""
    return tuple(_SOURCES)


def photo_path(name: str) -> Path:
    """Where a catalogued photo lies inside its installed package (nothing is imported).

    Raises ``KeyError`` for an unknown name and ``FileNotFoundError`` (saying which package
    to install) when its package is missing.
    """
    try:
        package, rel, _ = _SOURCES[name]
    except KeyError:
        close = difflib.get_close_matches(name, _SOURCES, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise KeyError(f"unknown photo {name!r}{hint}; known: {', '.join(_SOURCES)}") from None
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"photo {name!r} needs the package {package!r}: pip install it")
    return Path(next(iter(spec.submodule_search_locations))) / rel


def load_photo(name: str) -> Photo:
    """Decode one photograph by name into an ``(H, W, 3)`` ``uint8`` array."""
    path = photo_path(name)
    package, _, gray = _SOURCES[name]
    with Image.open(path) as im:
        if gray:
            arr = np.asarray(im.convert("L"), dtype=np.uint8)
            arr = np.repeat(arr[:, :, None], 3, axis=2)
        else:
            if im.mode not in ("RGB", "L"):
                raise ValueError(f"{path}: unexpected mode {im.mode}")
            arr = np.asarray(im.convert("RGB"), dtype=np.uint8)
    return Photo(
        name=name, source=package, path=path, grayscale=gray, image=np.ascontiguousarray(arr)
    )


def load_photos(names: tuple[str, ...] | list[str] | None = None) -> list[Photo]:
    """Decode several photographs (default: all) in the given order."""
    return [load_photo(n) for n in (photo_names() if names is None else names)]


def train_photos(include_gray: bool = True) -> list[Photo]:
    """The training photographs (everything except :data:`HOLDOUT`)."""
    names = TRAIN_COLOUR + (TRAIN_GRAY if include_gray else ())
    return load_photos(names)


def holdout_photos() -> list[Photo]:
    """The held-out evaluation photographs, :data:`HOLDOUT`."""
    return load_photos(HOLDOUT)


def crop_to_multiple(image: np.ndarray, multiple: int = 8) -> np.ndarray:
    """Centre-crop an ``(H, W, ...)`` array so that H and W are multiples of ``multiple``.

    Never resizes; at most ``multiple - 1`` rows and columns are dropped.
    """
    h, w = image.shape[:2]
    hh, ww = h - h % multiple, w - w % multiple
    if hh == 0 or ww == 0:
        raise ValueError(f"image {h}x{w} is smaller than {multiple}")
    top, left = (h - hh) // 2, (w - ww) // 2
    return image[top : top + hh, left : left + ww]
