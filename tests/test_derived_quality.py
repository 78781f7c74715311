"""The PSNR and SSIM of every derived class against its source photos (issue #15): in
results.json and the report, equal to an independent computation, cached on re-runs."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
from PIL import Image
from skimage.metrics import structural_similarity

from fzoo.cli import main

from .conftest import jpeg_roundtrip, photo_crops

EXP = """\
name: derived-quality
seed: 0
data:
  dataset: {{name: folder, params: {{root: "{root}"}}}}
  derive:
    - {{label: jpeg, from: pristine, perturbations: [{{name: jpeg, params: {{quality: 75}}}}]}}
    - {{label: small, from: pristine, perturbations: [{{name: resize, params: {{scale: 0.5}}}}]}}
split: {{test_size: 0.5}}
pipelines:
  - name: dct
    features: [{{name: dct-spectrum, params: {{size: 4}}}}]
    classifier: logistic-regression
tasks:
  - {{name: t, type: binary, positive: [jpeg]}}
"""


def test_derived_class_quality_matches_an_independent_computation(
    tmp_path: Path, capsys: object
) -> None:
    crops = photo_crops(n_per_photo=2, size=48)
    root = tmp_path / "imgs"
    (root / "pristine").mkdir(parents=True)
    for name, arr in crops.items():
        Image.fromarray(arr).save(root / "pristine" / f"{name}.png")
    exp = tmp_path / "exp.yaml"
    exp.write_text(EXP.format(root=root))
    assert main(["run", str(exp), "--out", str(tmp_path / "out"), "--quiet"]) == 0

    psnrs, ssims = [], []
    for arr in crops.values():
        a = arr.astype(np.float64) / 255
        b = jpeg_roundtrip(arr, 75).astype(np.float64) / 255
        mse = float(np.mean((a - b) ** 2))
        psnrs.append(math.inf if mse == 0 else 10 * math.log10(1 / mse))
        ssims.append(structural_similarity(a, b, channel_axis=2, data_range=1.0))

    meta = json.loads((tmp_path / "out" / "results.json").read_text())["meta"]
    (quality,) = meta["derived_quality"].values()
    assert quality["jpeg"]["n"] == len(crops) and quality["jpeg"]["unpaired"] == 0
    # a crop JPEG leaves unchanged (a black corner) has no PSNR: counted as identical instead
    finite = [v for v in psnrs if math.isfinite(v)]
    assert quality["jpeg"]["identical"] == len(psnrs) - len(finite)
    assert quality["jpeg"]["psnr_db"]["mean"] == round(float(np.mean(finite)), 3)
    assert quality["jpeg"]["psnr_db"]["min"] == round(float(np.min(finite)), 3)
    assert quality["jpeg"]["ssim"]["mean"] == round(float(np.mean(ssims)), 3)
    # a resize changes the size: no pixel pairing, said so instead of a number
    assert (
        quality["small"]["unpaired"] == len(crops) and quality["small"]["psnr_db"]["mean"] is None
    )

    md = (tmp_path / "out" / "report.md").read_text()
    line = next(x for x in md.splitlines() if "derived classes against their sources" in x)
    assert f"jpeg {np.mean(finite):.2f} dB" in line and f"SSIM {np.mean(ssims):.3f}" in line
    assert "derived classes against their sources" in (tmp_path / "out" / "report.html").read_text()

    # a re-run reads the values back from the cache
    assert main(["run", str(exp), "--out", str(tmp_path / "out2"), "--quiet"]) == 0
    meta2 = json.loads((tmp_path / "out2" / "results.json").read_text())["meta"]
    assert meta2["derived_quality"] == meta["derived_quality"]
    by_ns = meta2["cache"]["by_namespace"]
    assert by_ns["derived-quality"][0] == 2 * len(crops), by_ns  # [hits, misses]
