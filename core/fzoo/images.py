"""Exact image I/O: decode without resampling or recompression, report every conversion.

Pixels come back as float32 RGB in [0, 1] (HWC numpy, or NCHW tensors through :func:`to_tensor`).
Conversions that a forensic analyst must know about (grayscale replicated, alpha dropped,
palette expanded, CMYK converted, 16-bit scaled) are listed in :attr:`DecodedImage.notes`. A file
that cannot be decoded raises :class:`ImageError` with the reason; the runner reports it and skips
the file. EXIF orientation is recorded but never applied: the pixels stay in sensor order.

Limits, all checked before the work they protect (so a hostile file costs neither time nor
memory):

* only regular files are opened (``os.stat`` first, symlinks resolved): a FIFO, a device such as
  ``/dev/zero``, a socket or a folder is refused without being opened, so nothing blocks;
* ``max_bytes`` (default :data:`DEFAULT_MAX_BYTES`, environment ``FZOO_MAX_IMAGE_BYTES``): a larger
  file (a huge sparse ``.png`` too) is refused from its size, before reading;
* ``max_pixels`` (default :data:`DEFAULT_MAX_PIXELS`; ``data.max_pixels`` in an experiment):
  width x height from the header;
* ``max_decoded_bytes`` (default :data:`DEFAULT_MAX_DECODED_BYTES`, environment
  ``FZOO_MAX_DECODED_BYTES``): width x height x channels x bytes per sample from the header (a
  9999 x 9999 16-bit RGBA PNG declares 800 MB), before decoding.
"""

from __future__ import annotations

import hashlib
import io
import math
import os
import re
import stat
import struct
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
from PIL import Image

if TYPE_CHECKING:
    import torch

IMAGE_EXTENSIONS = frozenset(
    {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp", ".gif", ".ppm", ".pgm", ".jp2"}
)
DEFAULT_MAX_PIXELS = 100_000_000
DEFAULT_MAX_BYTES = 512 * 2**20
DEFAULT_MAX_DECODED_BYTES = 512 * 2**20
MAX_BYTES_ENV = "FZOO_MAX_IMAGE_BYTES"
MAX_DECODED_BYTES_ENV = "FZOO_MAX_DECODED_BYTES"


class ImageError(Exception):
    """An image could not be decoded; ``reason`` says why in one line."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


@dataclass
class DecodedImage:
    """A decoded image: float32 HWC RGB pixels in [0, 1] plus what happened on the way."""

    pixels: np.ndarray
    bit_depth: int
    mode: str
    format: str | None
    content_hash: str
    notes: list[str] = field(default_factory=list)
    exif_orientation: int | None = None

    @property
    def shape(self) -> tuple[int, int]:
        return int(self.pixels.shape[0]), int(self.pixels.shape[1])


def _env_limit(name: str, default: int) -> int:
    """A positive integer limit from the environment variable ``name`` (else ``default``)."""
    text = os.environ.get(name, "").strip().replace("_", "")
    if not text:
        return default
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value <= 0:
        warnings.warn(
            f"{name}={os.environ[name]!r} is not a positive integer; using {default}", stacklevel=3
        )
        return default
    return value


def max_bytes_limit() -> int:
    """The byte-size cap on an image file: ``FZOO_MAX_IMAGE_BYTES`` or :data:`DEFAULT_MAX_BYTES`."""
    return _env_limit(MAX_BYTES_ENV, DEFAULT_MAX_BYTES)


def max_decoded_bytes_limit() -> int:
    """The cap on a decoded image: ``FZOO_MAX_DECODED_BYTES`` or the default."""
    return _env_limit(MAX_DECODED_BYTES_ENV, DEFAULT_MAX_DECODED_BYTES)


_FILE_KINDS = (
    (stat.S_ISDIR, "a folder"),
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def _not_regular(mode: int) -> str | None:
    """Why a file of this ``st_mode`` is not read as an image (None: a regular file)."""
    if stat.S_ISREG(mode):
        return None
    kind = next((what for test, what in _FILE_KINDS if test(mode)), "not a regular file")
    return f"not a regular file ({kind}); not opened"


def _too_big(size: int, max_bytes: int) -> str:
    return f"file is {size} bytes, over the limit of {max_bytes} bytes ({MAX_BYTES_ENV}); not read"


def read_image_bytes(path: str | os.PathLike[str], max_bytes: int | None = None) -> bytes:
    """The bytes of an image file, read only if it is a regular file of at most ``max_bytes``.

    ``os.stat`` (which follows symlinks) comes first, so a FIFO, a device or a socket is never
    opened; the file is then opened non-blocking and checked again with ``fstat`` (it may have
    been replaced in between). Raises :class:`ImageError` with the reason.
    """
    name = str(path)
    limit = max_bytes_limit() if max_bytes is None else max_bytes
    try:
        st = os.stat(path)
    except OSError as exc:
        raise ImageError(name, f"cannot read: {exc.strerror or exc}") from None
    why = _not_regular(st.st_mode)
    if why is not None:
        raise ImageError(name, why)
    if st.st_size > limit:
        raise ImageError(name, _too_big(st.st_size, limit))
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        raise ImageError(name, f"cannot read: {exc.strerror or exc}") from None
    try:
        st = os.fstat(fd)
        why = _not_regular(st.st_mode)
        if why is not None:
            raise ImageError(name, why)
        if st.st_size > limit:
            raise ImageError(name, _too_big(st.st_size, limit))
        chunks: list[bytes] = []
        total = 0
        while True:  # the file may grow while it is read: never read past the limit
            chunk = os.read(fd, min(1 << 20, limit + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
            if total > limit:
                raise ImageError(name, _too_big(total, limit))
        return b"".join(chunks)
    except OSError as exc:
        raise ImageError(name, f"cannot read: {exc.strerror or exc}") from None
    finally:
        os.close(fd)


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
#: PNG colour type -> samples per pixel (a palette is expanded to RGB)
_PNG_CHANNELS = {0: 1, 2: 3, 3: 3, 4: 2, 6: 4}


def _header_layout(raw: bytes, img: Image.Image) -> tuple[int, int, str]:
    """``(channels, bytes per sample, description)`` that decoding ``img`` will produce."""
    if raw[:8] == _PNG_SIGNATURE and raw[12:16] == b"IHDR" and len(raw) >= 26:
        depth, colour = struct.unpack(">BB", raw[24:26])
        if colour in _PNG_CHANNELS:
            channels = _PNG_CHANNELS[colour]
            return channels, 2 if depth == 16 else 1, f"{depth}-bit {img.mode}"
    bands = len(img.getbands())
    mode = img.mode
    size = 4 if mode in ("I", "F") else 2 if mode.startswith("I;16") else 1
    return bands, size, mode


def _check_decoded_size(name: str, raw: bytes, img: Image.Image, max_decoded_bytes: int) -> None:
    """Refuse, from the header, an image whose decoded pixels exceed ``max_decoded_bytes``."""
    width, height = img.size
    channels, sample, what = _header_layout(raw, img)
    # decoding always yields RGB: grayscale and palettes are expanded to 3 channels
    need = width * height * max(channels, 3) * sample
    if need > max_decoded_bytes:
        raise ImageError(
            name,
            f"{width}x{height} {what} decodes to {need} bytes, over the limit of "
            f"{max_decoded_bytes} bytes ({MAX_DECODED_BYTES_ENV}); not decoded",
        )


def _hash_array(arr: np.ndarray) -> str:
    h = hashlib.sha256()
    h.update(f"{arr.dtype.str}{arr.shape}".encode())
    h.update(np.ascontiguousarray(arr).tobytes())
    return h.hexdigest()


def _png_16bit(raw: bytes) -> tuple[np.ndarray, list[str]] | None:
    """Decode a 16-bit colour PNG exactly with pypng (Pillow truncates those to 8 bits)."""
    import png

    reader = png.Reader(bytes=raw)
    width, height, rows, info = reader.asDirect()
    if info.get("bitdepth") != 16 or info.get("greyscale"):
        return None
    planes = int(info["planes"])
    arr = np.vstack([np.asarray(r, dtype=np.uint16) for r in rows]).reshape(height, width, planes)
    notes = ["16-bit colour PNG decoded exactly (scaled by 1/65535)"]
    if planes == 4:
        notes.append("alpha channel dropped (not composited)")
    return arr[..., :3], notes


def _to_rgb(img: Image.Image, notes: list[str]) -> np.ndarray:
    mode = img.mode
    if mode in ("RGB",):
        return np.asarray(img)
    if mode in ("RGBA", "RGBa", "LA", "La", "PA"):
        notes.append("alpha channel dropped (not composited)")
        base = img.convert("RGB") if mode != "LA" else img.convert("L")
        arr = np.asarray(base)
        return np.repeat(arr[..., None], 3, axis=2) if arr.ndim == 2 else arr
    if mode == "P":
        has_alpha = "transparency" in img.info
        notes.append("palette expanded to RGB" + (" (transparency dropped)" if has_alpha else ""))
        return np.asarray(img.convert("RGB"))
    if mode in ("L", "1"):
        notes.append("grayscale replicated to RGB")
        arr = np.asarray(img.convert("L"))
        return np.repeat(arr[..., None], 3, axis=2)
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        notes.append(f"{mode} grayscale scaled by 1/65535 and replicated to RGB")
        arr = np.asarray(img, dtype=np.uint32 if mode == "I" else np.uint16)
        arr = np.clip(arr, 0, 65535).astype(np.uint16)
        return np.repeat(arr[..., None], 3, axis=2)
    if mode == "F":
        raise ValueError("floating-point images are not supported")
    if mode == "CMYK":
        notes.append("CMYK converted to RGB (naive, no ICC profile)")
        return np.asarray(img.convert("RGB"))
    if mode in ("YCbCr", "LAB", "HSV"):
        notes.append(f"{mode} converted to RGB")
        return np.asarray(img.convert("RGB"))
    raise ValueError(f"unsupported image mode {mode!r}")


def decode_bytes(
    raw: bytes,
    name: str = "<bytes>",
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_decoded_bytes: int | None = None,
) -> DecodedImage:
    """Decode encoded image bytes exactly; raises :class:`ImageError` with a one-line reason.

    ``max_decoded_bytes``: None means ``FZOO_MAX_DECODED_BYTES`` or the default.
    """
    if len(raw) == 0:
        raise ImageError(name, "empty file (0 bytes)")
    decoded_limit = max_decoded_bytes_limit() if max_decoded_bytes is None else max_decoded_bytes
    notes: list[str] = []
    try:
        with warnings.catch_warnings():
            # max_pixels (checked below) is the limit, not Pillow's warning threshold (89.5 M)
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(raw))
            width, height = img.size
            if width * height > max_pixels:
                raise ImageError(
                    name,
                    f"{width}x{height} = {width * height} pixels exceeds max_pixels={max_pixels}"
                    " (possible decompression bomb)",
                )
            _check_decoded_size(name, raw, img, decoded_limit)
            fmt = img.format
            n_frames = int(getattr(img, "n_frames", 1))
            if n_frames > 1:
                notes.append(f"first of {n_frames} frames used")
            orientation = img.getexif().get(0x0112)
            if orientation not in (None, 1):
                notes.append(f"EXIF orientation {orientation} recorded, not applied")
            img.load()
            mode = img.mode
    except ImageError:
        raise
    except Image.DecompressionBombError as exc:  # over Pillow's hard limit (2 x 89.5 M pixels)
        found = re.search(r"\((\d+) pixels\)", str(exc))
        size = f"{found.group(1)} pixels" if found else "the declared size"
        hard = 2 * int(Image.MAX_IMAGE_PIXELS or 0)
        limit = f"max_pixels={max_pixels}" if max_pixels < hard else f"Pillow's limit {hard}"
        raise ImageError(
            name, f"{size} exceeds {limit} (possible decompression bomb); not decoded"
        ) from None
    except Exception as exc:  # Pillow raises many types for broken files
        reason = str(exc).strip() or type(exc).__name__
        if isinstance(exc, Image.UnidentifiedImageError):
            reason = "not a recognised image format"
        raise ImageError(name, f"cannot decode: {reason}") from None

    arr: np.ndarray | None = None
    if fmt == "PNG" and mode in ("RGB", "RGBA") and raw[24:25] == b"\x10":
        got = _png_16bit(raw)
        if got is not None:
            arr, extra = got
            notes.extend(extra)
    if arr is None:
        try:
            arr = _to_rgb(img, notes)
        except ValueError as exc:
            raise ImageError(name, str(exc)) from None
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ImageError(name, f"unexpected decoded shape {arr.shape}")
    bit_depth = 16 if arr.dtype == np.uint16 else 8
    scale = 65535.0 if bit_depth == 16 else 255.0
    pixels = arr.astype(np.float32) / np.float32(scale)
    return DecodedImage(
        pixels=pixels,
        bit_depth=bit_depth,
        mode=mode,
        format=fmt,
        content_hash=_hash_array(arr),
        notes=notes,
        exif_orientation=orientation if isinstance(orientation, int) else None,
    )


def load_image(
    path: str | os.PathLike[str],
    max_pixels: int = DEFAULT_MAX_PIXELS,
    *,
    max_bytes: int | None = None,
    max_decoded_bytes: int | None = None,
) -> DecodedImage:
    """Read and decode one image file exactly; raises :class:`ImageError` with the reason.

    Every limit of the module docstring is checked before the work it protects; None means the
    environment variable or the default.
    """
    raw = read_image_bytes(path, max_bytes)
    return decode_bytes(
        raw, name=str(path), max_pixels=max_pixels, max_decoded_bytes=max_decoded_bytes
    )


def hash_pixels(pixels: np.ndarray) -> str:
    """Content hash of an in-memory image (float32 [0,1] or integer pixels)."""
    return _hash_array(np.asarray(pixels))


def to_tensor(pixels: np.ndarray) -> torch.Tensor:
    """HWC float32 [0,1] array -> 1x3xHxW float32 tensor."""
    import torch

    return torch.from_numpy(np.ascontiguousarray(pixels.transpose(2, 0, 1)))[None].float()


def to_array(batch: torch.Tensor) -> np.ndarray:
    """1x3xHxW (or 3xHxW) tensor -> HWC float32 array."""
    t = batch[0] if batch.dim() == 4 else batch
    return np.ascontiguousarray(t.detach().cpu().float().numpy().transpose(1, 2, 0))


def quantize(pixels: np.ndarray) -> np.ndarray:
    """Round float [0,1] pixels to 8 bits and back, as saving a PNG does."""
    return (np.clip(np.round(pixels * 255.0), 0, 255) / 255.0).astype(np.float32)


def to_uint8(pixels: np.ndarray) -> np.ndarray:
    """float [0,1] pixels (HWC, or any shape) -> uint8 of the same shape: rounded, clipped."""
    return np.clip(np.round(pixels * 255.0), 0, 255).astype(np.uint8)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB (peak 1) of two [0,1] images of the same shape; ``inf`` when identical."""
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(1.0 / mse)


def fit_to_multiple(
    pixels: np.ndarray, multiple: int, mode: Literal["crop", "pad"] = "crop"
) -> tuple[np.ndarray, str | None]:
    """Crop (top-left anchored) or edge-pad an HWC image so both sides are multiples.

    Never resamples. Returns the new pixels and a note describing the change (None if none).
    """
    h, w = pixels.shape[:2]
    if multiple <= 1 or (h % multiple == 0 and w % multiple == 0):
        return pixels, None
    if mode == "crop":
        nh, nw = (h // multiple) * multiple, (w // multiple) * multiple
        if nh == 0 or nw == 0:
            raise ValueError(f"{w}x{h} image is smaller than the multiple {multiple}; cannot crop")
        return pixels[:nh, :nw], f"cropped {w}x{h} -> {nw}x{nh} (multiple of {multiple})"
    nh, nw = -(-h // multiple) * multiple, -(-w // multiple) * multiple
    padded = np.pad(pixels, ((0, nh - h), (0, nw - w), (0, 0)), mode="edge")
    return padded, f"padded {w}x{h} -> {nw}x{nh} (edge, multiple of {multiple})"


def write_png(path: str | os.PathLike[str], pixels: np.ndarray, overwrite: bool = False) -> None:
    """Write an 8-bit lossless PNG atomically; refuses to overwrite unless asked."""
    from fzoo.fsutil import atomic_writer

    with atomic_writer(path, overwrite=overwrite) as fh:
        Image.fromarray(to_uint8(pixels)).save(fh, format="PNG")


def is_image_path(path: Path) -> bool:
    """True when the file extension is one fzoo treats as an image."""
    return path.suffix.lower() in IMAGE_EXTENSIONS


def list_images(root: Path, on_error: Callable[[Path, OSError], None]) -> list[Path]:
    """Every entry under the folder ``root`` with an image extension that is not a folder, sorted.

    Symlinks (dangling ones and loops too), FIFOs and devices are listed, so that reading them
    reports each by name; sub-folders are entered, symlinked ones not. A folder that cannot be
    listed (no permission, removed meanwhile) is passed to ``on_error`` once and skipped.
    """
    found: list[Path] = []
    stack = [root]
    while stack:
        folder = stack.pop()
        try:
            with os.scandir(folder) as it:
                entries = list(it)
        except OSError as exc:
            on_error(folder, exc)
            continue
        for entry in entries:
            path = folder / entry.name
            try:
                is_dir = entry.is_dir(follow_symlinks=False)
            except OSError:
                is_dir = False
            if is_dir:
                stack.append(path)
            elif is_image_path(path):
                found.append(path)
    return sorted(found)


def folder_error(folder: Path, exc: OSError) -> str:
    """The one-line reason a folder could not be listed."""
    return f"cannot list folder: {exc.strerror or exc}; its images are skipped"
