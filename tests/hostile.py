"""Hostile inputs, generated on the fly: every case a forensic tool meets in the wild.

:func:`write_hostile` writes each case into a folder and returns ``name -> Case`` with what
:func:`fzoo.load_image` must do with it: ``"ok"`` (decodes, maybe with a note) or ``"skip"``
(refused with a one-line reason that contains ``reason``). Names are ``str`` file names; the
non-UTF-8 one is ``os.fsdecode(b"bad-\\xff.png")`` (a surrogate escape), which is what ``Path``
and ``os.listdir`` give back for it.

``small`` marks images that decode but are smaller than an 8-pixel patch or VAE multiple: each
command decides what to do with those (pad, or skip with "too small"/"smaller than").

Nothing here is big on disk: the 20000x20000 PNG is a 1-bit solid image (~50 KB) and the
decompression bomb is a PNG header that declares 100000x100000 pixels.
"""

from __future__ import annotations

import io
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import png
from PIL import Image
from skimage import data as skdata

NON_UTF8 = os.fsdecode(b"bad-\xff.png")
LONG = "L" * 246 + ".png"  # 250 bytes: the longest name most filesystems allow is 255


@dataclass(frozen=True)
class Case:
    """What must happen to one hostile file."""

    outcome: str  # "ok" or "skip"
    reason: str = ""  # a substring of the skip reason
    small: bool = False  # decodes, but is smaller than any 8-px patch or VAE multiple
    why: str = ""  # for a case that cannot be produced here (e.g. permissions as root)


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def solid_png_bytes(width: int, height: int) -> bytes:
    """A valid 1-bit grayscale PNG of a solid colour, streamed: small on disk at any size."""
    comp = zlib.compressobj(9)
    row = b"\x00" + b"\xff" * ((width + 7) // 8)
    chunks = [comp.compress(row) for _ in range(height)]
    idat = b"".join(chunks) + comp.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", idat)
        + (_png_chunk(b"IEND", b""))
    )


def bomb_png_bytes(width: int = 100_000, height: int = 100_000) -> bytes:
    """A tiny PNG that declares ``width x height`` RGB pixels (a decompression bomb's header)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 1024, 9)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", idat)
        + (_png_chunk(b"IEND", b""))
    )


def _encoded(arr: np.ndarray | Image.Image, fmt: str, **kw) -> bytes:
    img = arr if isinstance(arr, Image.Image) else Image.fromarray(arr)
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def write_hostile(folder: Path, *, huge: bool = True) -> dict[str, Case]:
    """Write every hostile case into ``folder``; returns file name -> :class:`Case`."""
    folder.mkdir(parents=True, exist_ok=True)
    base = skdata.coffee()[60:124, 200:264]  # 64x64 RGB, not used by the good sets
    cases: dict[str, Case] = {}

    def put(name: str, data: bytes, case: Case) -> None:
        (folder / name).write_bytes(data)
        cases[name] = case

    put("zero.png", b"", Case("skip", "empty file"))
    put("zero.jpg", b"", Case("skip", "empty file"))
    jpg = _encoded(base, "JPEG", quality=90)
    put("truncated.jpg", jpg[: len(jpg) // 3], Case("skip", "cannot decode"))
    png_bytes = _encoded(base, "PNG")
    put("truncated.png", png_bytes[: len(png_bytes) // 2], Case("skip", "cannot decode"))
    put("header-only.png", png_bytes[:33], Case("skip", "cannot decode"))
    put("text.png", b"this is not an image\n", Case("skip", "not a recognised image format"))
    put("html.jpg", b"<html><body>404</body></html>", Case("skip", "not a recognised"))
    put("png-named.jpg", png_bytes, Case("ok"))  # wrong extension: decoded by content
    put("jpeg-named.png", jpg, Case("ok"))
    put("cmyk.jpg", _encoded(Image.fromarray(base).convert("CMYK"), "JPEG"), Case("ok"))

    sixteen = (base.astype(np.uint16) * 257 + 5).reshape(64, 64 * 3)
    buf = io.BytesIO()
    png.Writer(64, 64, greyscale=False, bitdepth=16).write(buf, sixteen.tolist())
    put("rgb16.png", buf.getvalue(), Case("ok"))
    buf = io.BytesIO()
    png.Writer(64, 64, greyscale=True, bitdepth=16).write(
        buf, (base[..., 0].astype(np.uint16) * 257).tolist()
    )
    put("gray16.png", buf.getvalue(), Case("ok"))

    put("palette.png", _encoded(Image.fromarray(base).convert("P"), "PNG"), Case("ok"))
    pal = Image.fromarray(base).convert("P")
    buf = io.BytesIO()
    pal.save(buf, format="PNG", transparency=0)
    put("palette-transparent.png", buf.getvalue(), Case("ok"))
    rgba = np.dstack([base, np.full(base.shape[:2], 7, np.uint8)])
    put("rgba.png", _encoded(rgba, "PNG"), Case("ok"))
    la = Image.fromarray(base[..., 0]).convert("LA")
    buf = io.BytesIO()
    la.save(buf, format="PNG")
    put("gray-alpha.png", buf.getvalue(), Case("ok"))

    put("one.png", _encoded(base[:1, :1], "PNG"), Case("ok", small=True))
    put("seven.png", _encoded(base[:7, :7], "PNG"), Case("ok", small=True))
    put("thin.png", _encoded(base[:1, :64], "PNG"), Case("ok", small=True))

    bomb = Case("skip", "pixels exceeds max_pixels=100000000 (possible decompression bomb)")
    if huge:
        put("huge-20000.png", solid_png_bytes(20_000, 20_000), bomb)
    put("bomb.png", bomb_png_bytes(), bomb)

    frames = [Image.fromarray(base), Image.fromarray(255 - base)]
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:], duration=50)
    put("animated.gif", buf.getvalue(), Case("ok"))

    exif = Image.Exif()
    exif[0x0112] = 6
    put("exif-rotated.jpg", _encoded(base, "JPEG", exif=exif.tobytes()), Case("ok"))

    (folder / NON_UTF8).write_bytes(png_bytes)  # the bytes b"bad-\xff.png" on disk
    cases[NON_UTF8] = Case("ok")
    put(LONG, png_bytes, Case("ok"))
    put("spaces and ünïcode ✓.png", png_bytes, Case("ok"))

    os.symlink("loop-b.png", folder / "loop-a.png")
    os.symlink("loop-a.png", folder / "loop-b.png")
    cases["loop-a.png"] = Case("skip", "")
    cases["loop-b.png"] = Case("skip", "")
    os.symlink("does-not-exist.png", folder / "dangling.png")
    cases["dangling.png"] = Case("skip", "")

    locked = folder / "unreadable.png"
    locked.write_bytes(png_bytes)
    locked.chmod(0)
    if os.geteuid() == 0:  # root reads mode-000 files: the case cannot be produced
        cases["unreadable.png"] = Case("ok", why="running as root: mode 000 does not block reads")
    else:
        cases["unreadable.png"] = Case("skip", "cannot read")
    return cases


LOOPS = frozenset({"loop-a.png", "loop-b.png"})
SYMLINKS = LOOPS | {"dangling.png"}
