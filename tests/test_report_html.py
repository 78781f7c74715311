"""report.html: self-contained, sortable table, figures; rendered by headless Chromium."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fzoo.config import load_experiment
from fzoo.experiment import run_experiment

EXP = """\
name: html-test
description: pristine crops against JPEG-70 copies
data:
  dataset: {name: sample-photos, params: {crop: 64, crops_per_photo: 3, photos: [astronaut, coffee, chelsea, rocket, retina, flower]}}
  derive:
    - {label: jpeg, from: pristine, perturbations: [jpeg-70]}
conditions:
  - name: clean
  - name: blur
    perturbations: [{name: blur, params: {sigma: 0.7}}]
pipelines:
  - {name: dct, features: [{name: dct-spectrum, params: {size: 8}}], classifier: logistic-regression}
tasks:
  - {name: jpeg-vs-pristine, type: binary, positive: [jpeg]}
  - {name: two-class, type: multiclass}
grid:
  pipelines.dct.features.0.params.size: [4, 8]
"""  # noqa: E501


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("html")
    (root / "exp.yaml").write_text(EXP)
    run_experiment(load_experiment(root / "exp.yaml"), root / "out", progress=None)
    return root / "out"


def test_report_is_self_contained_with_figures(report):
    page = (report / "report.html").read_text()
    assert page.startswith("<!DOCTYPE html>")
    assert 'class="sortable"' in page and "<script>" in page
    # 2 cells x 2 tasks x 2 conditions rows in the comparison table
    table = page.split('<table class="sortable">', 1)[1].split("</table>", 1)[0]
    assert table.count("<tr>") == 1 + 8
    images = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    # heatmap x2, ROC x2 (binary task), confusion x4 (2 cells x 2 tasks), spectra, examples
    assert len(images) == 10
    assert 'src="http' not in page and "<link" not in page  # nothing to fetch
    pngs = sorted(p.name for p in (report / "figures").glob("*.png"))
    assert len(pngs) == 10 and "spectra.png" in pngs and "examples.png" in pngs
    assert "seeds, versions, fingerprints" in page


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(_chromium() is None, reason="Chromium not installed (.ci/run installs it)")
def test_chromium_renders_table_and_plots(report, tmp_path):
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}",
    ]
    url = (report / "report.html").as_uri()
    dom = subprocess.run(
        [_chromium(), *flags, "--dump-dom", url], capture_output=True, text=True, timeout=120
    )
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert dom.stdout.count("<img") == 10 and "jpeg-vs-pristine" in dom.stdout
    shot = tmp_path / "shot.png"
    proc = subprocess.run(
        [_chromium(), *flags, "--window-size=1280,2000", f"--screenshot={shot}", url],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0 and shot.exists(), proc.stderr[-2000:]
    pixels = np.asarray(Image.open(shot).convert("L"), dtype=np.float32)
    assert pixels.shape == (2000, 1280)
    # a rendered page with a table and plots, not a blank or error page
    assert pixels.std() > 20 and (pixels < 128).mean() > 0.02
    keep = Path(__file__).parent.parent / "build" / "report-screenshot.png"
    keep.parent.mkdir(exist_ok=True)
    shutil.copy(shot, keep)
