"""Tests of the built-in perturbations (robustness conditions) on real photos from scikit-image."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pydantic import ValidationError
from skimage import data

import fzoo
from fzoo.testing import Candidate, Check, parametrize_with_checks
from fzoo_builtins.perturbations import JPEG, Crop, GaussianBlur, GaussianNoise, Resize

PERTURBATIONS = (JPEG, Resize, GaussianBlur, Crop, GaussianNoise)


def photo(name: str, h: int | None = None, w: int | None = None) -> torch.Tensor:
    """A scikit-image photo as a 1x3xHxW tensor, optionally cropped (top-left) to h x w."""
    arr = getattr(data, name)().astype(np.float32) / 255
    return fzoo.to_tensor(arr[:h, :w])


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = float(torch.mean((a.double() - b.double()) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(1.0 / mse)


def highpass_energy(x: torch.Tensor) -> float:
    """Mean squared discrete Laplacian (interior pixels): the high-frequency energy."""
    lap = (
        4 * x[..., 1:-1, 1:-1]
        - x[..., :-2, 1:-1]
        - x[..., 2:, 1:-1]
        - x[..., 1:-1, :-2]
        - x[..., 1:-1, 2:]
    )
    return float(torch.mean(lap.double() ** 2))


def rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


@pytest.fixture(scope="module")
def astronaut() -> torch.Tensor:
    return photo("astronaut")


@pytest.fixture(scope="module")
def pair() -> torch.Tensor:
    """Two different real photos of the same size: a batch of 2."""
    return torch.cat([photo("astronaut", 300, 400), photo("coffee", 300, 400)])


# --- jpeg --------------------------------------------------------------------------------------


def test_jpeg_quality_ordering(pair: torch.Tensor) -> None:
    q95 = JPEG(quality=95).apply(pair, rng())
    q20 = JPEG(quality=20).apply(pair, rng())
    best = JPEG(quality=100, subsampling="4:4:4").apply(pair, rng())
    for i in range(2):
        p95, p20, p100 = (psnr(y[i], pair[i]) for y in (q95, q20, best))
        assert p100 > 40.0
        assert p100 > p95 > p20 + 5
        assert p20 > 20.0  # still the same picture
    assert q95.shape == pair.shape and q95.dtype == torch.float32
    assert torch.equal(q95, torch.round(q95 * 255) / 255)  # 8-bit quantised output


def test_jpeg_subsampling_matters_and_is_deterministic(astronaut: torch.Tensor) -> None:
    a = JPEG(quality=90, subsampling="4:2:0").apply(astronaut, rng(1))
    b = JPEG(quality=90, subsampling="4:4:4").apply(astronaut, rng(2))
    assert psnr(b, astronaut) > psnr(a, astronaut)
    assert torch.equal(a, JPEG(quality=90).apply(astronaut, rng(3)))


# --- resize ------------------------------------------------------------------------------------


@pytest.mark.parametrize("interp", ["bilinear", "bicubic", "lanczos", "nearest"])
def test_resize_halves_and_restores(pair: torch.Tensor, interp: str) -> None:
    half = Resize(scale=0.5, interpolation=interp).apply(pair, rng())
    assert half.shape == (2, 3, 150, 200) and half.dtype == torch.float32
    assert float(half.min()) >= 0.0 and float(half.max()) <= 1.0
    down_up = Resize(scale=0.5, interpolation=interp, restore=True).apply(pair, rng())
    assert down_up.shape == pair.shape
    assert 20.0 < psnr(down_up, pair) < 60.0  # lossy but the same picture


def test_resize_sizes_and_content(astronaut: torch.Tensor) -> None:
    odd = photo("coffee", 101, 333)
    assert Resize(scale=0.5).apply(odd, rng()).shape[-2:] == (51, 167)  # rounded half up
    assert Resize(scale=2.0).apply(odd, rng()).shape[-2:] == (202, 666)
    assert Resize(scale=1e-4).apply(odd, rng()).shape[-2:] == (1, 1)
    # a 2x nearest upscale repeats every pixel (8-bit quantised)
    small = photo("chelsea", 20, 30)
    up = Resize(scale=2.0, interpolation="nearest").apply(small, rng())
    expected = torch.round(small * 255) / 255
    assert torch.equal(up[..., ::2, ::2], expected) and torch.equal(up[..., 1::2, 1::2], expected)
    # DownUp-4 (Mandelli et al. 2024) loses more than DownUp-2
    du2 = Resize(scale=0.5, restore=True).apply(astronaut, rng())
    du4 = Resize(scale=0.25, restore=True).apply(astronaut, rng())
    assert psnr(du2, astronaut) > psnr(du4, astronaut)


# --- blur --------------------------------------------------------------------------------------


def test_blur_identity_for_zero_or_tiny_sigma(pair: torch.Tensor) -> None:
    assert torch.equal(GaussianBlur(sigma=0).apply(pair, rng()), pair)
    tiny = GaussianBlur(sigma=1e-3).apply(pair, rng())
    assert tiny.dtype == pair.dtype and tiny.shape == pair.shape
    assert float((tiny - pair).abs().max()) < 1e-6


def test_blur_lowers_high_frequencies(pair: torch.Tensor) -> None:
    energies = [highpass_energy(GaussianBlur(sigma=s).apply(pair, rng())) for s in (0.5, 1, 3)]
    assert highpass_energy(pair) > energies[0] > energies[1] > energies[2]
    assert energies[1] < 0.5 * highpass_energy(pair)
    blurred = GaussianBlur(sigma=2).apply(pair, rng())
    # low frequencies survive: the mean is kept and values stay in [0, 1]
    assert torch.allclose(blurred.mean(dim=(2, 3)), pair.mean(dim=(2, 3)), atol=2e-3)
    assert float(blurred.min()) >= 0.0 and float(blurred.max()) <= 1.0


def test_blur_reflect_padding_keeps_constant_and_small_images() -> None:
    flat = torch.full((2, 3, 5, 7), 0.25)
    out = GaussianBlur(sigma=3).apply(flat, rng())  # radius 9 > image size
    assert torch.allclose(out, flat, atol=1e-7)
    x64 = photo("chelsea", 16, 16).double()
    out64 = GaussianBlur().apply(x64, rng())
    assert out64.dtype == torch.float64


# --- crop --------------------------------------------------------------------------------------


def test_crop_center_and_fraction(astronaut: torch.Tensor) -> None:
    c = Crop(size=100).apply(astronaut, rng())
    assert torch.equal(c, astronaut[:, :, 206:306, 206:306])
    assert Crop().apply(astronaut, rng()).shape[-2:] == (224, 224)
    coffee = photo("coffee")  # 400 x 600
    assert Crop(fraction=0.5).apply(coffee, rng()).shape[-2:] == (200, 300)
    assert Crop(fraction=0.25).params.size is None
    with pytest.raises(ValueError, match="cannot crop 224x224"):
        Crop().apply(photo("coffee", 100, 600), rng())


def test_crop_random_uses_rng(pair: torch.Tensor) -> None:
    crop = Crop(size=64, position="random")
    a1, a2 = crop.apply(pair, rng(1)), crop.apply(pair, rng(1))
    b = crop.apply(pair, rng(2))
    assert a1.shape == (2, 3, 64, 64) and a1.dtype == pair.dtype
    assert torch.equal(a1, a2)
    assert not torch.equal(a1, b)
    # every random crop is a window of its own image
    r = rng(7)
    top, left = int(r.integers(0, 300 - 64 + 1)), int(r.integers(0, 400 - 64 + 1))
    out = crop.apply(pair, rng(7))
    assert torch.equal(out[0], pair[0, :, top : top + 64, left : left + 64])


# --- noise -------------------------------------------------------------------------------------


def test_noise_reproducible_with_right_std(astronaut: torch.Tensor) -> None:
    noise = GaussianNoise(sigma=4.0)
    a, b = noise.apply(astronaut, rng(5)), noise.apply(astronaut, rng(5))
    assert torch.equal(a, b)
    assert not torch.equal(a, noise.apply(astronaut, rng(6)))
    assert a.dtype == torch.float32 and float(a.min()) >= 0.0 and float(a.max()) <= 1.0
    # std in 8-bit units, measured where clipping cannot act
    inside = (astronaut > 0.1) & (astronaut < 0.9)
    diff = (a - astronaut)[inside] * 255
    assert abs(float(diff.std()) - 4.0) < 0.1 and abs(float(diff.mean())) < 0.05
    gray = torch.full((3, 3, 64, 64), 0.5)
    assert abs(float((GaussianNoise().apply(gray, rng(0)) - gray).std() * 255) - 2.0) < 0.05
    assert torch.equal(GaussianNoise(sigma=0).apply(astronaut, rng(0)), astronaut)


# --- shared contract: fzoo.testing (registration, params, output, determinism, fingerprint) ---


@parametrize_with_checks(
    [
        JPEG,
        (JPEG, {"quality": 50, "subsampling": "4:4:4"}),
        Resize,
        (Resize, {"scale": 0.5, "restore": True}),
        GaussianBlur,
        (Crop, {"size": 32}),
        (Crop, {"fraction": 0.5, "position": "random"}),
        GaussianNoise,
    ]
)
def test_fzoo_contract(component: Candidate, check: Check) -> None:
    check(component)


# --- beyond the contract: empty batches, float64, bad layout, parameters -----------------------


@pytest.mark.parametrize("cls", PERTURBATIONS)
@pytest.mark.parametrize("batch_size", [0, 3])
def test_any_batch_size_and_dtype(cls: type[fzoo.Perturbation], batch_size: int) -> None:
    params = {"size": 32} if cls is Crop else {}
    x = photo("rocket", 48, 64).repeat(batch_size, 1, 1, 1)
    for dtype in (torch.float32, torch.float64):
        y = cls(**params).apply(x.to(dtype), rng())
        assert y.dtype == dtype and y.shape[:2] == (batch_size, 3)
        assert torch.isfinite(y).all()
    with pytest.raises(ValueError, match=r"\[B, 3, H, W\]"):
        cls(**params).apply(x[:, :1] if batch_size else torch.rand(3, 8, 8), rng())


@pytest.mark.parametrize(
    "cls,changed",
    [
        (JPEG, {"quality": 95}),
        (JPEG, {"subsampling": "4:4:4"}),
        (Resize, {"scale": 2.0}),
        (Resize, {"interpolation": "lanczos"}),
        (Resize, {"restore": True}),
        (GaussianBlur, {"sigma": 2.0}),
        (Crop, {"size": 96}),
        (Crop, {"fraction": 0.5}),
        (Crop, {"position": "random"}),
        (GaussianNoise, {"sigma": 5.0}),
    ],
)
def test_fingerprint_changes_with_params(
    cls: type[fzoo.Perturbation], changed: dict[str, object]
) -> None:
    assert cls(**changed).fingerprint() != cls().fingerprint()


@pytest.mark.parametrize(
    "cls,bad",
    [
        (JPEG, {"quality": 0}),
        (JPEG, {"quality": 101}),
        (JPEG, {"subsampling": "4:2:2"}),
        (Resize, {"scale": 0}),
        (Resize, {"scale": -1}),
        (Resize, {"interpolation": "area"}),
        (GaussianBlur, {"sigma": -0.1}),
        (Crop, {"size": 0}),
        (Crop, {"fraction": 1.5}),
        (Crop, {"size": 64, "fraction": 0.5}),
        (Crop, {"size": None}),
        (Crop, {"position": "corner"}),
        (GaussianNoise, {"sigma": -1}),
        (GaussianNoise, {"std": 1}),
    ],
)
def test_invalid_params_raise(cls: type[fzoo.Perturbation], bad: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        cls(**bad)


@pytest.mark.parametrize("cls", PERTURBATIONS)
def test_metadata(cls: type[fzoo.Perturbation]) -> None:
    assert cls.description and cls.version  # name and docstring: the contract's registration
    assert cls.__doc__ and "20" in cls.__doc__.splitlines()[0]  # first line cites a protocol
    for prop in cls.params_schema()["properties"].values():
        assert prop.get("description")


def test_registry_sees_perturbations() -> None:
    from fzoo.plugin_manager import get_registry

    reg = get_registry(refresh=True)
    assert reg.plugins["perturbations"].error is None
    for cls in PERTURBATIONS:
        assert reg.get("perturbation", cls.name) is cls
        assert reg.owner("perturbation", cls.name) == "perturbations"
    assert {"jpeg", "resize", "blur", "crop", "noise"} <= set(reg.names("perturbation"))
