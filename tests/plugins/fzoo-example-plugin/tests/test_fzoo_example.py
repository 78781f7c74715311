"""Unit tests of the example plugin, run in-process (``pip install -e .`` first, or from fzoo's
own test suite, where the ``src`` folder is put on ``sys.path`` when the plugin is not installed).

The contract every fzoo component keeps is checked by ``fzoo.testing``; the tests below it are
about what this plugin's components compute.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from pydantic import ValidationError
from scipy import stats

from fzoo.testing import Candidate, Check, check_plugin, parametrize_with_checks

try:
    import fzoo_example
except ImportError:  # not installed: test the source tree
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    import fzoo_example

from fzoo_example import ColorStats, Gamma, NearestCentroid

# --------------------------------------------------------------------------- the fzoo contract


@parametrize_with_checks(
    [
        ColorStats,
        (ColorStats, {"saturation_bins": 16}),
        NearestCentroid,
        (NearestCentroid, {"temperature": 0.5, "standardize": False}),
        Gamma,
        (Gamma, {"gamma": 0.5}),
    ]
)
def test_fzoo_contract(component: Candidate, check: Check) -> None:
    check(component)


def test_hooks_register_every_component() -> None:
    found = check_plugin(fzoo_example)
    assert found.components == {
        "feature_extractor": [ColorStats],
        "classifier": [NearestCentroid],
        "perturbation": [Gamma],
    }
    assert found.presets["color-stats-16"] == {
        "component": "color-stats",
        "kind": "feature_extractor",
        "params": {"saturation_bins": 16},
        "description": "color-stats with a 16-bin saturation histogram",
    }


# --------------------------------------------------------------------------- color-stats


def test_color_stats_of_a_flat_grey_image() -> None:
    ext = ColorStats()
    feats = ext.extract(torch.full((2, 3, 9, 7), 0.5))
    assert feats.shape == (2, ext.dim) == (2, 24)
    assert feats.dtype == np.float32
    f = dict(zip(ext.feature_names(), feats[0].tolist(), strict=True))
    assert f["mean_r"] == f["mean_g"] == f["mean_b"] == 0.5
    assert all(f[f"{m}_{c}"] == 0 for m in ("std", "skew", "kurt") for c in "rgb")
    assert f["sat_mean"] == f["sat_std"] == 0
    assert f["sat_hist_0"] == 1 and sum(f[f"sat_hist_{k}"] for k in range(8)) == 1
    assert f["overexposed"] == f["underexposed"] == 0


def test_color_stats_saturation_cues_of_pure_red() -> None:
    batch = torch.zeros(1, 3, 4, 4)
    batch[:, 0] = 1.0
    ext = ColorStats(saturation_bins=4)
    f = dict(zip(ext.feature_names(), ext.extract(batch)[0].tolist(), strict=True))
    assert f["sat_mean"] == 1 and f["sat_hist_3"] == 1
    assert f["overexposed"] == f["underexposed"] == 1


def test_color_stats_moments_match_scipy() -> None:
    batch = torch.rand(3, 3, 16, 16, generator=torch.Generator().manual_seed(0)) ** 2
    feats = ColorStats().extract(batch)
    x = batch.double().numpy().reshape(3, 3, -1)
    np.testing.assert_allclose(feats[:, 6:9], stats.skew(x, axis=2), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(feats[:, 9:12], stats.kurtosis(x, axis=2), rtol=1e-5, atol=1e-6)
    assert ColorStats().extract(batch[:0]).shape == (0, 24)


def test_color_stats_params_are_validated_and_fingerprinted() -> None:
    with pytest.raises(ValidationError):
        ColorStats(saturation_bins=1)
    with pytest.raises(ValidationError):
        ColorStats(bins=8)
    assert ColorStats().fingerprint() == ColorStats(saturation_bins=8).fingerprint()  # default
    assert ColorStats().fingerprint() != ColorStats(saturation_bins=16).fingerprint()


# --------------------------------------------------------------------------- nearest-centroid


def _blobs(n: int = 60) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    X = np.concatenate([rng.normal(0, 1, (n, 5)), rng.normal(3, 1, (n, 5))]) * [1, 10, 100, 1, 1]
    y = np.array(["fake"] * n + ["real"] * n)
    return X, y


def test_nearest_centroid_fits_and_gives_probabilities() -> None:
    X, y = _blobs()
    clf = NearestCentroid().fit(X, y)
    assert clf.classes_.tolist() == ["fake", "real"]
    proba = clf.predict_proba(X)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    assert (clf.predict(X) == y).mean() > 0.95
    sharp = NearestCentroid(temperature=0.1).fit(X, y).predict_proba(X)
    assert np.abs(sharp - 0.5).mean() > np.abs(proba - 0.5).mean()
    assert (sharp.argmax(axis=1) == proba.argmax(axis=1)).all()
    with pytest.raises(ValueError, match="two classes"):
        NearestCentroid().fit(X, ["fake"] * len(X))


def test_nearest_centroid_state_round_trips_without_pickle(tmp_path: Path) -> None:
    X, y = _blobs()
    clf = NearestCentroid(temperature=0.5).fit(X, y)
    clf.save_state(tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["nearest_centroid.json"]
    again = NearestCentroid(temperature=0.5)
    again.load_state(tmp_path)
    assert again.classes_.tolist() == clf.classes_.tolist()
    np.testing.assert_array_equal(again.predict_proba(X), clf.predict_proba(X))

    state = json.loads((tmp_path / "nearest_centroid.json").read_text())
    state["centroids"] = state["centroids"][:1]
    (tmp_path / "nearest_centroid.json").write_text(json.dumps(state))
    with pytest.raises(ValueError, match="inconsistent"):
        NearestCentroid().load_state(tmp_path)


# --------------------------------------------------------------------------- gamma


def test_gamma_is_a_power_law_with_fixed_ends() -> None:
    batch = torch.linspace(0, 1, 3 * 4 * 5).reshape(1, 3, 4, 5)
    rng = np.random.default_rng(0)
    out = Gamma().apply(batch, rng)
    assert out.shape == batch.shape and out.dtype == batch.dtype
    torch.testing.assert_close(out, batch**1.2)
    assert out.flatten()[0] == 0 and out.flatten()[-1] == 1
    torch.testing.assert_close(Gamma(gamma=1.0).apply(batch, rng), batch)
    with pytest.raises(ValidationError):
        Gamma(gamma=0)
