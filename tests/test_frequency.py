"""Tests of the built-in frequency feature extractors on real photos from scikit-image."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pydantic import ValidationError
from scipy.fft import dctn
from skimage import data

import fzoo
from fzoo.testing import Candidate, Check, parametrize_with_checks
from fzoo_builtins.frequency import DCTSpectrum, FFTSpectrum, ResidualFingerprint

EXTRACTORS = (FFTSpectrum, DCTSpectrum, ResidualFingerprint)


def photo(name: str, h: int | None = None, w: int | None = None) -> torch.Tensor:
    """A scikit-image photo as a 1x3xHxW tensor, optionally cropped (top-left) to h x w."""
    arr = getattr(data, name)().astype(np.float32) / 255
    return fzoo.to_tensor(arr[:h, :w])


def checker(h: int, w: int, period: int = 8) -> np.ndarray:
    """A +-1 checkerboard of period ``period`` px (squares of period/2) in both directions."""
    i, j = np.mgrid[:h, :w]
    return np.where(((i % period) < period // 2) ^ ((j % period) < period // 2), 1.0, -1.0)


def plant(batch: torch.Tensor, amplitude: float = 8 / 255) -> torch.Tensor:
    """Add a faint period-8 checkerboard (same on every channel) to a photo, clipped to [0, 1]."""
    h, w = batch.shape[-2:]
    pattern = torch.from_numpy(checker(h, w) * amplitude).float()
    return (batch + pattern).clamp(0, 1)


@pytest.fixture(scope="module")
def astronaut() -> torch.Tensor:
    return photo("astronaut")


@pytest.fixture(scope="module")
def chelsea() -> torch.Tensor:
    return photo("chelsea")


# --- fft-spectrum ------------------------------------------------------------------------------


def test_fft_shape_range_and_shape_of_profile(astronaut: torch.Tensor) -> None:
    coffee = photo("coffee", 400, 512)
    batch = torch.cat([astronaut[:, :, :400], coffee])
    f = FFTSpectrum().extract(batch)
    assert f.shape == (2, 64) and f.dtype == np.float32
    assert np.all(np.isfinite(f)) and f.min() >= 0.0 and f.max() <= 1.0
    np.testing.assert_allclose(f[:, 0], 1.0, atol=1e-6)  # the DC ring is the maximum
    assert np.all(f[:, :16].mean(axis=1) > f[:, -16:].mean(axis=1) + 0.05)  # natural-image decay
    assert FFTSpectrum(bins=17).extract(batch).shape == (2, 17)


def test_fft_batch_equals_single_and_deterministic(astronaut: torch.Tensor) -> None:
    one, other = astronaut[:, :, :427], photo("rocket", 427, 512)
    ext = FFTSpectrum(bins=32)
    both = ext.extract(torch.cat([one, other]))
    np.testing.assert_allclose(both[0], ext.extract(one)[0], atol=1e-6)
    np.testing.assert_allclose(both[1], ext.extract(other)[0], atol=1e-6)
    np.testing.assert_array_equal(both, ext.extract(torch.cat([one, other])))


@pytest.mark.parametrize("hw", [(8, 8), (9, 13), (31, 8), (400, 600), (257, 129)])
def test_fft_any_size_gives_bins_values(hw: tuple[int, int]) -> None:
    h, w = hw
    x = photo("coffee", h, w)
    assert x.shape[-2:] == (h, w)
    f = FFTSpectrum().extract(x)
    assert f.shape == (1, 64) and np.all(np.isfinite(f))
    assert f.min() >= 0 and f.max() <= 1


@pytest.mark.parametrize("hw", [(7, 100), (100, 3), (1, 1)])
def test_fft_too_small_raises_clear_error(hw: tuple[int, int]) -> None:
    x = torch.rand(1, 3, *hw)
    with pytest.raises(ValueError, match="at least 8 px"):
        FFTSpectrum().extract(x)


def test_fft_planted_period8_changes_the_high_end(
    astronaut: torch.Tensor, chelsea: torch.Tensor
) -> None:
    ext = FFTSpectrum()
    for img in (astronaut, chelsea):
        f0, f1 = ext.extract(torch.cat([img, plant(img)]))
        low, high = slice(0, 16), slice(48, 64)
        # change relative to the photo's own dynamic range in each quarter of the profile
        rel_high = np.abs(f1[high] - f0[high]).max() / np.ptp(f0[high])
        rel_low = np.abs(f1[low] - f0[low]).max() / np.ptp(f0[low])
        assert rel_high > 0.05
        assert rel_high > 10 * rel_low


# --- dct-spectrum ------------------------------------------------------------------------------


@pytest.mark.parametrize("hw", [(64, 64), (63, 97), (17, 5), (3, 2), (1, 1), (300, 451)])
@pytest.mark.parametrize("channels,c", [("gray", 1), ("rgb", 3)])
def test_dct_length_is_fixed_for_any_size(hw: tuple[int, int], channels: str, c: int) -> None:
    x = photo("chelsea", *hw)
    f = DCTSpectrum(channels=channels).extract(torch.cat([x, x]))
    assert f.shape == (2, c * 16 * 16) and f.dtype == np.float32
    assert np.all(np.isfinite(f))
    assert DCTSpectrum(size=4, channels=channels).extract(x).shape == (1, c * 16)


def test_dct_values_are_block_means_of_log_dct(astronaut: torch.Tensor) -> None:
    x = astronaut[:, :, 100:164, 200:264]  # 64 x 64: size 16 -> exact 4 x 4 blocks
    f = DCTSpectrum(size=16).extract(x)[0].reshape(16, 16)
    rgb = x[0].double().numpy()
    g = 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2]
    logmag = np.log(np.abs(dctn(g, type=2, norm="ortho")) + 1e-6)
    expected = logmag.reshape(16, 4, 16, 4).mean(axis=(1, 3))
    np.testing.assert_allclose(f, expected, rtol=1e-5, atol=1e-5)
    assert f[0, 0] == f.max()  # the low-frequency corner carries the energy of a photo


def test_dct_rgb_of_gray_image_repeats_gray(chelsea: torch.Tensor) -> None:
    gray = chelsea[:, :1].repeat(1, 3, 1, 1)
    f_gray = DCTSpectrum(channels="gray", size=8).extract(gray)
    f_rgb = DCTSpectrum(channels="rgb", size=8).extract(gray)
    for k in range(3):
        np.testing.assert_allclose(f_rgb[:, k * 64 : (k + 1) * 64], f_gray, atol=1e-4)


def test_dct_crop(astronaut: torch.Tensor) -> None:
    ext = DCTSpectrum(crop=128)
    centre = astronaut[:, :, 192:320, 192:320]
    np.testing.assert_allclose(ext.extract(astronaut), DCTSpectrum().extract(centre), atol=1e-6)
    odd = photo("coffee", 301, 451)
    assert ext.extract(odd).shape == (1, 256)
    with pytest.raises(ValueError, match="centre-crop 128x128"):
        ext.extract(photo("coffee", 100, 451))


# --- residual-fingerprint ----------------------------------------------------------------------


@pytest.mark.parametrize("filt", ["srm3", "kv5", "median3"])
def test_residual_autocorrelation_lag8_rises_with_planted_pattern(
    astronaut: torch.Tensor, filt: str
) -> None:
    ext = ResidualFingerprint(filter=filt)
    f = ext.extract(torch.cat([astronaut, plant(astronaut)]))
    assert f.shape == (2, 64 + 2 * 16) and f.dtype == np.float32
    rows, cols = f[:, 64:80], f[:, 80:96]
    for ac in (rows, cols):
        lag8 = ac[:, 7]
        assert lag8[1] > lag8[0] + 0.1  # period-8 residual correlates with itself 8 px away
        assert lag8[1] > ac[1, 6] and lag8[1] > ac[1, 8]  # a peak at lag 8, not a trend
        assert np.all(np.abs(ac) <= 1.0 + 1e-3)
    # the checker's spectral peaks sit at (+-64, +-64) and (+-64, +-192) bins of the 512 x 512
    # spectrum (radii 90.5 and 202.4 -> rings 91 and 202 of 0..256); they raise the residual
    # power of a band holding those rings by more than 2x (0.3 in log10; how much of each
    # harmonic survives depends on the filter's frequency response)
    gain = f[1, :64] - f[0, :64]
    assert int(np.argmax(gain)) in {91 * 64 // 257, 202 * 64 // 257}
    assert gain.max() > 0.3


def test_residual_length_params_and_small_images(chelsea: torch.Tensor) -> None:
    ext = ResidualFingerprint(bins=10, max_lag=4)
    assert ext.extract(chelsea).shape == (1, 10 + 8)
    assert ext.extract(chelsea[:, :, :8, :9]).shape == (1, 18)
    with pytest.raises(ValueError, match="at least 17 px"):
        ResidualFingerprint().extract(chelsea[:, :, :16, :64])


# --- shared contract: fzoo.testing (registration, params, output, determinism, fingerprint) ---


@parametrize_with_checks(
    [
        *EXTRACTORS,
        (FFTSpectrum, {"bins": 16}),
        (DCTSpectrum, {"size": 8, "channels": "rgb"}),
        (ResidualFingerprint, {"filter": "kv5", "max_lag": 4}),
    ]
)
def test_fzoo_contract(component: Candidate, check: Check) -> None:
    check(component)


# --- beyond the contract: degenerate inputs, layout, parameters --------------------------------


@pytest.mark.parametrize("cls", EXTRACTORS)
@pytest.mark.parametrize("value", [0.0, 0.5, 1.0])
def test_constant_images_give_finite_features(
    cls: type[fzoo.FeatureExtractor], value: float
) -> None:
    x = torch.full((2, 3, 32, 40), value)
    f = cls().extract(x)
    assert f.shape[0] == 2 and np.all(np.isfinite(f))


@pytest.mark.parametrize("cls", EXTRACTORS)
def test_empty_batch_and_bad_layout(cls: type[fzoo.FeatureExtractor]) -> None:
    ext = cls()
    dim = ext.extract(torch.rand(1, 3, 32, 32)).shape[1]
    assert ext.extract(torch.rand(0, 3, 32, 32)).shape == (0, dim)
    with pytest.raises(ValueError, match=r"\[B, 3, H, W\]"):
        ext.extract(torch.rand(3, 32, 32))


@pytest.mark.parametrize(
    "cls,changed",
    [
        (FFTSpectrum, {"bins": 32}),
        (DCTSpectrum, {"size": 8}),
        (DCTSpectrum, {"channels": "rgb"}),
        (DCTSpectrum, {"crop": 256}),
        (ResidualFingerprint, {"filter": "kv5"}),
        (ResidualFingerprint, {"max_lag": 8}),
        (ResidualFingerprint, {"bins": 16}),
    ],
)
def test_fingerprint_changes_with_params(
    cls: type[fzoo.FeatureExtractor], changed: dict[str, object]
) -> None:
    assert cls(**changed).fingerprint() != cls().fingerprint()


@pytest.mark.parametrize(
    "cls,bad",
    [
        (FFTSpectrum, {"bins": 1}),
        (FFTSpectrum, {"bins": 3}),
        (FFTSpectrum, {"nbins": 64}),
        (DCTSpectrum, {"size": 0}),
        (DCTSpectrum, {"channels": "ycbcr"}),
        (DCTSpectrum, {"crop": 0}),
        (ResidualFingerprint, {"filter": "srm30"}),
        (ResidualFingerprint, {"max_lag": 0}),
        (ResidualFingerprint, {"bins": 1}),
    ],
)
def test_invalid_params_raise(cls: type[fzoo.FeatureExtractor], bad: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        cls(**bad)


@pytest.mark.parametrize("cls", EXTRACTORS)
def test_metadata(cls: type[fzoo.FeatureExtractor]) -> None:
    assert cls.description and cls.version  # name and docstring: the contract's registration
    assert cls.__doc__ and "20" in cls.__doc__.splitlines()[0]  # first line names the paper
    schema = cls.params_schema()
    for prop in schema["properties"].values():
        assert prop.get("description")


def test_registry_sees_frequency_extractors() -> None:
    from fzoo.plugin_manager import get_registry

    reg = get_registry(refresh=True)
    assert reg.plugins["frequency"].error is None
    names = reg.names("feature_extractor")
    for cls in EXTRACTORS:
        assert cls.name in names
        assert reg.get("feature_extractor", cls.name) is cls
        assert reg.owner("feature_extractor", cls.name) == "frequency"
