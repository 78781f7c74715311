"""Exact image I/O: every odd format decodes explicitly or fails with a reason."""

from __future__ import annotations

import io

import numpy as np
import png
import pytest
from PIL import Image
from skimage import data as skdata

import fzoo
from fzoo.images import fit_to_multiple, write_png

from .conftest import write_odd_images


@pytest.fixture(scope="module")
def odd(tmp_path_factory):
    folder = tmp_path_factory.mktemp("odd")
    return folder, write_odd_images(folder)


def test_png_pixels_are_exact(tmp_path):
    arr = skdata.astronaut()[:50, :70]
    Image.fromarray(arr).save(tmp_path / "a.png")
    img = fzoo.load_image(tmp_path / "a.png")
    assert img.pixels.dtype == np.float32
    assert img.pixels.shape == (50, 70, 3)
    np.testing.assert_array_equal(np.round(img.pixels * 255).astype(np.uint8), arr)
    assert img.notes == [] and img.bit_depth == 8


def test_sixteen_bit_png_keeps_all_bits(odd):
    folder, _ = odd
    img = fzoo.load_image(folder / "sixteen.png")
    base = skdata.astronaut()[100:164, 100:164].astype(np.uint16) * 257 + 3
    assert img.bit_depth == 16
    np.testing.assert_array_equal(np.round(img.pixels * 65535).astype(np.uint16), base)
    assert any("16-bit" in n for n in img.notes)


def test_sixteen_bit_grayscale(tmp_path):
    arr = (np.arange(32 * 32, dtype=np.uint16) * 61).reshape(32, 32)
    with open(tmp_path / "g16.png", "wb") as fh:
        png.Writer(32, 32, greyscale=True, bitdepth=16).write(fh, arr.tolist())
    img = fzoo.load_image(tmp_path / "g16.png")
    assert img.bit_depth == 16
    np.testing.assert_array_equal(np.round(img.pixels[..., 1] * 65535).astype(np.uint16), arr)


@pytest.mark.parametrize(
    ("name", "note"),
    [
        ("rgba.png", "alpha channel dropped"),
        ("palette.png", "palette expanded"),
        ("gray.png", "grayscale replicated"),
        ("cmyk.jpg", "CMYK converted"),
    ],
)
def test_conversions_are_reported(odd, name, note):
    folder, _ = odd
    img = fzoo.load_image(folder / name)
    assert img.pixels.shape == (64, 64, 3)
    assert any(note in n for n in img.notes), img.notes


def test_rgba_drops_alpha_without_compositing(odd):
    folder, _ = odd
    img = fzoo.load_image(folder / "rgba.png")
    base = skdata.astronaut()[100:164, 100:164]
    np.testing.assert_array_equal(np.round(img.pixels * 255).astype(np.uint8), base)


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("zero.png", "empty file"),
        ("truncated.jpg", "cannot decode"),
        ("notes.png", "not a recognised image format"),
    ],
)
def test_broken_files_raise_with_reason(odd, name, reason):
    folder, _ = odd
    with pytest.raises(fzoo.ImageError) as info:
        fzoo.load_image(folder / name)
    assert reason in info.value.reason
    assert str(folder / name) in str(info.value)


def test_missing_file(tmp_path):
    with pytest.raises(fzoo.ImageError, match="cannot read"):
        fzoo.load_image(tmp_path / "nope.png")


def test_decompression_bomb_refused(tmp_path):
    Image.new("L", (3000, 3000)).save(tmp_path / "big.png")
    with pytest.raises(fzoo.ImageError, match="max_pixels"):
        fzoo.load_image(tmp_path / "big.png", max_pixels=1_000_000)


def test_exif_orientation_recorded_not_applied(tmp_path):
    arr = skdata.astronaut()[:40, :60]
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(arr).save(tmp_path / "o.jpg", quality=100, exif=exif.tobytes())
    img = fzoo.load_image(tmp_path / "o.jpg")
    assert img.shape == (40, 60)  # not rotated
    assert img.exif_orientation == 6
    assert any("orientation 6" in n for n in img.notes)


def test_animated_gif_uses_first_frame(tmp_path):
    frames = [Image.fromarray(np.full((16, 16, 3), v, np.uint8)) for v in (10, 200)]
    frames[0].save(tmp_path / "a.gif", save_all=True, append_images=frames[1:])
    img = fzoo.load_image(tmp_path / "a.gif")
    assert any("first of 2 frames" in n for n in img.notes)
    assert abs(float(img.pixels.mean()) * 255 - 10) < 2


def test_content_hash_depends_on_pixels_only(tmp_path):
    arr = skdata.coffee()[:32, :32]
    Image.fromarray(arr).save(tmp_path / "a.png")
    Image.fromarray(arr).save(tmp_path / "b.png", compress_level=0)
    other = arr.copy()
    other[0, 0, 0] ^= 1
    Image.fromarray(other).save(tmp_path / "c.png")
    a, b, c = (fzoo.load_image(tmp_path / f"{n}.png").content_hash for n in "abc")
    assert a == b != c


def test_fit_to_multiple_crops_or_pads_never_resamples():
    px = np.random.default_rng(0).random((30, 21, 3), dtype=np.float32)
    cropped, note = fit_to_multiple(px, 8, "crop")
    assert cropped.shape == (24, 16, 3) and "cropped 21x30 -> 16x24" in note
    np.testing.assert_array_equal(cropped, px[:24, :16])
    padded, note = fit_to_multiple(px, 8, "pad")
    assert padded.shape == (32, 24, 3) and "padded" in note
    np.testing.assert_array_equal(padded[:30, :21], px)
    same, note = fit_to_multiple(px[:24, :16], 8)
    assert note is None and same.shape == (24, 16, 3)
    with pytest.raises(ValueError, match="smaller than"):
        fit_to_multiple(px[:7, :7], 8, "crop")


def test_write_png_refuses_overwrite_and_round_trips(tmp_path):
    px = fzoo.quantize(np.random.default_rng(1).random((8, 9, 3)).astype(np.float32))
    write_png(tmp_path / "x.png", px)
    with pytest.raises(FileExistsError):
        write_png(tmp_path / "x.png", px)
    np.testing.assert_array_equal(fzoo.load_image(tmp_path / "x.png").pixels, px)


def test_tensor_round_trip():
    px = np.random.default_rng(2).random((5, 7, 3)).astype(np.float32)
    t = fzoo.to_tensor(px)
    assert tuple(t.shape) == (1, 3, 5, 7)
    np.testing.assert_array_equal(fzoo.to_array(t), px)


def test_decode_bytes_matches_file(tmp_path):
    arr = skdata.chelsea()[:20, :20]
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    (tmp_path / "c.png").write_bytes(buf.getvalue())
    a = fzoo.decode_bytes(buf.getvalue())
    b = fzoo.load_image(tmp_path / "c.png")
    np.testing.assert_array_equal(a.pixels, b.pixels)
