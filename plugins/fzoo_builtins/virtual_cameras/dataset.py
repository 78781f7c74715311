"""``virtual-cameras``: real photos photographed again by simulated camera models.

Each bundled colour photo (``sample-photos``: scikit-image, scikit-learn, matplotlib) is
downscaled with Lanczos by ``downscale`` >= 2 (the documented scene preparation that washes out
the photo's own camera traces), cut into non-overlapping ``scene_size`` tiles, and every tile is
rendered by every chosen camera (``pipeline.render``). A record carries the JPEG bytes the
camera wrote (``data``), the camera name (``camera``) and ``source`` = the photo name: every
tile of a photo, through every camera, is one split group, so no scene content is on both sides
of a split. Camera-model identification on such data follows Bondi et al. 2017 and Kirchner &
Gloe 2015; the traces are those of Malvar et al. 2004, Menon et al. 2007 (demosaicing),
Lukas, Fridrich & Goljan 2006 (PRNU) and Foi et al. 2008 (noise).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
from pydantic import Field

import fzoo
from fzoo_builtins.datasets.sample_photos import PHOTOS, photo_path
from fzoo_builtins.virtual_cameras.cameras import CAMERAS, get_camera
from fzoo_builtins.virtual_cameras.pipeline import MARGIN, prepare_scene, render


def render_seed(seed: int, *parts: str) -> np.random.SeedSequence:
    """Seed of one render, derived from the dataset seed and names only (not from the order), so
    a subset of cameras or photos gives the same bytes for the renders it keeps."""
    digest = fzoo.stable_hash([seed, *parts], length=32)
    return np.random.SeedSequence([int(digest[i : i + 8], 16) for i in range(0, 32, 8)])


def load_photo(name: str) -> np.ndarray:
    """A bundled photo as exact 8-bit sRGB ``[H, W, 3]`` (``FileNotFoundError`` if missing)."""
    img = fzoo.load_image(photo_path(name))
    if img.bit_depth != 8 or img.notes:
        raise ValueError(f"photo {name!r} is not a plain 8-bit RGB image: {img.notes}")
    return np.round(img.pixels * 255.0).astype(np.uint8)


def tiles(scene: np.ndarray, size: int | None) -> list[tuple[int, int, np.ndarray]]:
    """Non-overlapping ``size`` x ``size`` tiles (row-major) as ``(y, x, pixels)``; ``None``: the
    whole scene cropped top-left to a multiple of 16 px (whole JPEG MCUs and CFA periods)."""
    h, w = scene.shape[:2]
    if size is None:
        hh, ww = h - h % 16, w - w % 16
        return [(0, 0, scene[:hh, :ww])] if hh and ww else []
    return [
        (y, x, scene[y : y + size, x : x + size])
        for y in range(0, h - size + 1, size)
        for x in range(0, w - size + 1, size)
    ]


class VirtualCameras(fzoo.Dataset):
    """Bundled photos rendered by simulated cameras: a camera-model identification dataset.

    Pipeline per render (see ``fzoo_builtins.virtual_cameras.pipeline``): linearise, optics blur,
    CFA sampling, PRNU ``x (1 + K)`` (Lukas, Fridrich & Goljan 2006), Poisson-Gaussian noise
    ``a x + b`` (Foi et al. 2008), demosaicing (bilinear, Malvar et al. 2004, Menon et al. 2007,
    VNG, edge-aware), white balance + colour matrix with per-image exposure and AWB jitter,
    tone curve, unsharp mask, JPEG with the camera's quantisation tables. The camera models
    (``cameras.py``) differ like real models (Kirchner & Gloe 2015; Bondi et al. 2017).

    Records: ``data`` = the camera's JPEG bytes; ``camera``; ``source`` = photo name (the split
    group of every tile and camera of that photo); ``meta`` = photo, tile, tile position, the
    exposure and AWB error drawn for this image, and the camera's parameters. Each render's
    randomness is seeded from ``seed``, photo, tile and camera names, so the bytes do not depend
    on which other photos or cameras are chosen.
    """

    name = "virtual-cameras"
    description = "Bundled photos rendered through simulated camera models (camera-ID data)"
    version = "1"

    class Params(fzoo.Params):
        cameras: list[str] | None = Field(
            None, description=f"camera models to use (default all: {', '.join(CAMERAS)})"
        )
        photos: list[str] | None = Field(
            None, description="colour photos of sample-photos to use (default all available)"
        )
        downscale: float = Field(
            2.0,
            ge=2.0,
            le=64,
            description="Lanczos downscaling of each photo before the cameras (2..64)",
        )
        scene_size: int | None = Field(
            128,
            ge=2 * MARGIN,
            le=8192,
            description="side of the square scene tiles cut from each downscaled photo "
            "(null: the whole photo, cropped to a multiple of 16)",
        )
        tiles_per_photo: int | None = Field(
            6,
            ge=1,
            le=100_000,
            description="at most this many tiles per photo, chosen by seed (null: all; the big "
            "retina and hubble photos would otherwise dominate)",
        )
        label: str = Field("pristine", description="label given to every record")
        seed: int = Field(
            0, ge=0, le=2**32 - 1, description="seed of the tile choice and of every render"
        )

    params: Params

    def records(self) -> Iterator[fzoo.Record]:
        p = self.params
        cameras = [get_camera(n) for n in (p.cameras if p.cameras is not None else CAMERAS)]
        names = p.photos if p.photos is not None else list(PHOTOS)
        unknown = [n for n in names if n not in PHOTOS]
        if unknown:
            raise ValueError(f"unknown photos {unknown}; available: {', '.join(PHOTOS)}")
        for photo in names:
            try:
                original = load_photo(photo)
            except FileNotFoundError as exc:
                self.note(f"photo {photo!r} skipped: {exc}")
                continue
            scene = prepare_scene(original, p.downscale)
            grid = tiles(scene, p.scene_size)
            if not grid:
                self.note(f"photo {photo!r} skipped: smaller than one {p.scene_size}px tile")
                continue
            chosen = list(range(len(grid)))
            if p.tiles_per_photo is not None and p.tiles_per_photo < len(grid):
                rng = np.random.default_rng(render_seed(p.seed, "tiles", photo))
                chosen = sorted(rng.permutation(len(grid))[: p.tiles_per_photo].tolist())
            for k in chosen:
                y, x, tile = grid[k]
                for camera in cameras:
                    rng = np.random.default_rng(render_seed(p.seed, photo, str(k), camera.name))
                    out = render(tile, camera, rng)
                    yield fzoo.Record(
                        label=p.label,
                        source=photo,
                        data=out.jpeg,
                        camera=camera.name,
                        meta={
                            "name": f"{photo}/t{k}@{camera.name}",
                            "photo": photo,
                            "photo_file": ":".join(PHOTOS[photo]),
                            "split_group": photo,
                            "tile": f"t{k}",
                            "tile_yx": [y, x],
                            "scene_shape": [int(tile.shape[0]), int(tile.shape[1])],
                            "downscale": p.downscale,
                            "exposure": round(out.exposure, 6),
                            "wb_jitter": [round(v, 6) for v in out.wb_jitter],
                            "camera_params": camera.summary(),
                        },
                    )


def write_figures(directory: str, photo: str = "astronaut", tile: int = 1, seed: int = 0) -> None:
    """Write the documentation pictures: one tile of ``photo`` rendered by every camera.

    ``virtual-cameras.png``: the whole 128 px tile per camera, exactly as the dataset yields it.
    ``virtual-cameras-zoom.png``: per camera, a 24 x 24 px crop enlarged 8x (nearest neighbour)
    above its high-pass residual (pixel minus 3 x 3 mean, x8 around grey), where the demosaicing,
    noise, sharpening and JPEG traces show.
    """
    from PIL import Image, ImageDraw
    from scipy import ndimage

    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    ds = VirtualCameras(photos=[photo], tiles_per_photo=None, seed=seed)
    recs = [r for r in ds.records() if r.meta["tile"] == f"t{tile}"]
    images = [fzoo.decode_bytes(r.data or b"").pixels for r in recs]
    names = [str(r.camera) for r in recs]
    label_h, gap = 16, 4

    def labelled(panels: list[np.ndarray], titles: list[str]) -> Image.Image:
        h, w = panels[0].shape[:2]
        cols = 3
        rows = -(-len(panels) // cols)
        sheet = Image.new(
            "RGB", (cols * (w + gap) + gap, rows * (h + label_h + gap) + gap), "white"
        )
        draw = ImageDraw.Draw(sheet)
        for i, (panel, title) in enumerate(zip(panels, titles, strict=True)):
            x0 = gap + (i % cols) * (w + gap)
            y0 = gap + (i // cols) * (h + label_h + gap)
            draw.text((x0 + 2, y0 + 2), title, fill="black")
            u8 = np.clip(np.round(panel * 255), 0, 255).astype(np.uint8)
            sheet.paste(Image.fromarray(u8), (x0, y0 + label_h))
        return sheet

    labelled(images, names).save(out / "virtual-cameras.png")
    y, x, size, zoom = 40, 52, 24, 8
    zoomed = []
    for img in images:
        crop = img[y : y + size, x : x + size]
        resid = crop - ndimage.uniform_filter(img, (3, 3, 1))[y : y + size, x : x + size]
        both = np.concatenate([crop, np.clip(0.5 + 8 * resid, 0, 1)], axis=0)
        zoomed.append(np.repeat(np.repeat(both, zoom, axis=0), zoom, axis=1))
    labelled(zoomed, [f"{n} (top: pixels, bottom: residual)" for n in names]).save(
        out / "virtual-cameras-zoom.png"
    )
