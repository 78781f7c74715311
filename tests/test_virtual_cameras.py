"""The virtual-cameras dataset: determinism, records, camera traces, and colour is no signature."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, JpegImagePlugin
from pydantic import ValidationError
from scipy import ndimage
from skimage import data as skdata

import fzoo
from fzoo.plugin_manager import get_registry
from fzoo_builtins.virtual_cameras import CAMERAS, VirtualCameras
from fzoo_builtins.virtual_cameras.pipeline import (
    demosaic,
    mosaic,
    prepare_scene,
    prnu_pattern,
    render,
    srgb_to_linear,
)

SMALL = {"photos": ["astronaut", "coffee"], "scene_size": 64, "tiles_per_photo": 2}
SUBSAMPLING = {"4:4:4": 0, "4:2:2": 1, "4:2:0": 2}


@pytest.fixture(scope="module")
def small_records() -> list[fzoo.Record]:
    return list(VirtualCameras(**SMALL).records())


@pytest.fixture(scope="module")
def study() -> list[fzoo.Record]:
    """Three 128 px tiles of every bundled colour photo, through every camera (~170 renders)."""
    return list(VirtualCameras(scene_size=128, tiles_per_photo=3, seed=0).records())


def test_registered_and_built_by_name():
    assert "virtual-cameras" in get_registry().names("dataset")
    ds = fzoo.create_component("dataset", "virtual-cameras", **SMALL)
    assert isinstance(ds, VirtualCameras)


def test_the_documented_experiment_validates(tmp_path):
    from fzoo.config import load_experiment

    doc = (Path(__file__).parents[1] / "docs" / "virtual-cameras.md").read_text()
    block = doc.split("```yaml\n", 1)[1].split("```", 1)[0]
    (tmp_path / "exp.yaml").write_text(block)
    exp = load_experiment(tmp_path / "exp.yaml")
    assert exp.spec.data.dataset.name == "virtual-cameras"
    assert exp.spec.tasks[0].target == "camera"


def test_params_are_validated():
    with pytest.raises(ValidationError):
        VirtualCameras(downscale=1.5)
    with pytest.raises(ValueError, match="unknown camera"):
        next(VirtualCameras(cameras=["nokia-3310"]).records())
    with pytest.raises(ValueError, match="unknown photos"):
        next(VirtualCameras(photos=["camera"]).records())  # grayscale: not a colour photo


def test_every_record_has_camera_source_and_decodable_jpeg(small_records):
    assert len(small_records) == 2 * 2 * len(CAMERAS)
    for r in small_records:
        assert r.camera in CAMERAS and r.label == "pristine" and r.path is None
        assert r.source == r.meta["photo"] == r.meta["split_group"] in SMALL["photos"]
        assert r.meta["camera_params"]["cfa"] == CAMERAS[r.camera].cfa
        assert 2.0**-0.5 <= r.meta["exposure"] <= 2.0**0.5
        img = fzoo.decode_bytes(r.data)
        assert img.format == "JPEG" and img.shape == (64, 64) and not img.notes
    names = [r.meta["name"] for r in small_records]
    assert len(set(names)) == len(names)


def test_deterministic_by_seed_and_independent_of_the_subset(small_records):
    again = list(VirtualCameras(**SMALL).records())
    assert [r.data for r in again] == [r.data for r in small_records]
    assert [r.meta for r in again] == [r.meta for r in small_records]
    subset = list(
        VirtualCameras(**{**SMALL, "cameras": ["phone-b"], "photos": ["coffee"]}).records()
    )
    by_name = {r.meta["name"]: r.data for r in small_records}
    assert subset and all(by_name[r.meta["name"]] == r.data for r in subset)
    other = list(VirtualCameras(**{**SMALL, "seed": 1}).records())
    assert all(a.data != b.data for a, b in zip(other, small_records, strict=True))


def test_cameras_differ_like_real_models():
    cams = list(CAMERAS.values())
    assert len(cams) >= 6
    assert {c.cfa for c in cams} == {"RGGB", "BGGR", "GRBG", "GBRG"}
    assert {c.demosaic for c in cams} == {
        "bilinear",
        "malvar2004",
        "menon2007",
        "vng",
        "edge-aware",
    }
    assert len({(c.cfa, c.demosaic) for c in cams}) == len(cams)
    assert len({tuple(map(tuple, c.qtables())) for c in cams}) == len(cams)
    assert len({c.subsampling for c in cams}) == 3 and len({c.tone for c in cams}) == 3
    assert len({c.prnu_seed for c in cams}) == len(cams)
    for c in cams:
        assert 0.01 <= c.prnu_std <= 0.03
        np.testing.assert_allclose(np.sum(c.ccm, axis=1), 1.0, atol=1e-9)  # white stays white


def test_jpeg_tables_and_subsampling_in_the_bytes(small_records):
    seen = set()
    for r in small_records:
        cam = CAMERAS[str(r.camera)]
        img = Image.open(io.BytesIO(r.data))
        luma, chroma = cam.qtables()
        assert {k: list(v) for k, v in img.quantization.items()} == {0: luma, 1: chroma}
        assert JpegImagePlugin.get_sampling(img) == SUBSAMPLING[cam.subsampling]
        seen.add(cam.name)
    assert seen == set(CAMERAS)


@pytest.mark.parametrize("name", list(CAMERAS))
def test_demosaicing_follows_the_cfa_layout(name):
    """A smooth scene mosaicked and demosaiced comes back close: the layout names agree."""
    cam = CAMERAS[name]
    scene = srgb_to_linear(prepare_scene(skdata.coffee(), 4)[:64, :96] / 255.0)
    smooth = ndimage.gaussian_filter(scene, (2, 2, 0))
    out = demosaic(mosaic(smooth, cam.cfa), cam.cfa, cam.demosaic)
    err = np.abs(out - smooth)[4:-4, 4:-4].mean()
    assert err < 0.01, (name, err)
    other = {"RGGB": "BGGR", "BGGR": "RGGB", "GRBG": "GBRG", "GBRG": "GRBG"}[cam.cfa]
    wrong = np.abs(demosaic(mosaic(smooth, cam.cfa), other, cam.demosaic) - smooth)[4:-4, 4:-4]
    assert wrong.mean() > 3 * err


def test_prnu_is_a_fixed_pattern_per_camera():
    cam = CAMERAS["dslr-aps"]
    big, small = prnu_pattern(cam, 300, 200), prnu_pattern(cam, 40, 70)
    np.testing.assert_array_equal(big[:40, :70], small)
    assert abs(float(big.mean())) < 2e-3 and 0.8 < big.std() / cam.prnu_std < 1.2
    assert prnu_pattern(cam, 2000, 10).shape == (2000, 10)  # tiled beyond the stored size

    n = 160
    yy, xx = np.mgrid[0:n, 0:n] / n
    scenes = [  # two different flat-ish scenes
        np.stack([150 + 30 * xx, 150 + 20 * yy, 140 + 10 * xx], -1),
        np.stack([175 - 20 * yy, 165 + 10 * xx, 170 - 25 * xx * yy], -1),
    ]

    def residual(jpeg: bytes) -> np.ndarray:
        g = fzoo.decode_bytes(jpeg).pixels.astype(np.float64) @ np.array([0.299, 0.587, 0.114])
        r = g - ndimage.gaussian_filter(g, 1.5)
        return (r - r.mean()) / r.std()

    res = {
        name: [
            residual(render(s.round().astype(np.uint8), c, np.random.default_rng(7 * k + i)).jpeg)
            for i, s in enumerate(scenes)
        ]
        for k, (name, c) in enumerate(CAMERAS.items())
    }
    names = list(CAMERAS)
    corr = np.array([[np.mean(res[a][0] * res[b][1]) for b in names] for a in names])
    same, different = np.diag(corr), corr[~np.eye(len(names), dtype=bool)]
    assert same.min() > 0.08, same
    assert np.abs(different).max() < 0.04, different
    assert same.min() > 3 * np.abs(different).max()


def colour_histograms(pixels: np.ndarray) -> np.ndarray:
    """Per-channel 16-bin histograms (fractions): the global colour of an image."""
    return np.concatenate(
        [
            np.histogram(pixels[..., c], bins=16, range=(0, 1))[0] / pixels[..., c].size
            for c in range(3)
        ]
    )


def noise_residual_stats(pixels: np.ndarray) -> np.ndarray:
    """High-frequency statistics: per channel, the energy of the horizontal and vertical second
    differences at each of the four 2 x 2 phases (CFA / demosaicing periodicity), their
    cross-channel correlations and lag-1/2 autocorrelations (noise colour, sharpening)."""
    x = pixels.astype(np.float64)
    feats: list[float] = []
    total = []
    for c in range(3):
        rh = ndimage.correlate1d(x[..., c], [-0.5, 1.0, -0.5], axis=1, mode="reflect")
        rv = ndimage.correlate1d(x[..., c], [-0.5, 1.0, -0.5], axis=0, mode="reflect")
        for r in (rh, rv):
            e = np.array([np.mean(r[dy::2, dx::2] ** 2) for dy in (0, 1) for dx in (0, 1)]) + 1e-12
            feats += [*np.log(e / e.mean()), float(np.log(e.mean()))]
        total.append(rh + rv)
    corr = np.corrcoef(np.stack([r.ravel() for r in total]))
    feats += [corr[0, 1], corr[0, 2], corr[1, 2]]
    for r in total:
        r = r - r.mean()
        v = np.mean(r * r) + 1e-12
        feats += [np.mean(r[:, 1:] * r[:, :-1]) / v, np.mean(r[1:] * r[:-1]) / v]
        feats += [np.mean(r[:, 2:] * r[:, :-2]) / v]
    return np.array(feats)


def grouped_balanced_accuracy(X: np.ndarray, y: np.ndarray, groups: np.ndarray) -> float:
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import balanced_accuracy_score
    from sklearn.model_selection import GroupKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=3000))
    pred = cross_val_predict(clf, X, y, groups=groups, cv=GroupKFold(n_splits=4))
    return float(balanced_accuracy_score(y, pred))


def test_global_colour_is_no_signature_but_high_frequencies_are(study):
    """Camera identity lives in the high-frequency traces, as in real cameras: a colour-histogram
    classifier is near chance on held-out photos, a noise-residual one is far above it."""
    pixels = [fzoo.decode_bytes(r.data).pixels for r in study]
    y = np.array([r.camera for r in study])
    groups = np.array([r.source for r in study])  # cross-validated by photo
    assert len(set(groups)) >= 8 and len(study) >= 150
    chance = 1.0 / len(CAMERAS)
    hist = grouped_balanced_accuracy(np.array([colour_histograms(p) for p in pixels]), y, groups)
    resid = grouped_balanced_accuracy(
        np.array([noise_residual_stats(p) for p in pixels]), y, groups
    )
    print(f"camera-ID balanced accuracy: colour histogram {hist:.3f}, residual {resid:.3f}")
    assert hist < chance + 0.15, hist
    assert resid > chance + 0.3, resid
