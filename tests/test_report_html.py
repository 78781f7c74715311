"""report.html and report.md read like a results section: summary first, the grid as plots,
details on demand; self-contained; driven in a real headless Chromium (sort, filter, metric)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from fzoo.config import load_experiment
from fzoo.experiment import run_experiment
from fzoo.report import write_report
from fzoo.report_model import build_model, short_names
from tests.report_synthetic import synthetic_result

ROOT = Path(__file__).resolve().parent.parent

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
  - {name: fft, features: [{name: fft-spectrum, params: {bins: 16}}], classifier: logistic-regression}
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


@pytest.fixture(scope="module")
def grid_report(tmp_path_factory) -> Path:
    """docs/examples/grid.yaml, run for real (two axes: a data and a feature parameter)."""
    out = tmp_path_factory.mktemp("grid") / "out"
    run_experiment(load_experiment(ROOT / "docs" / "examples" / "grid.yaml"), out, progress=None)
    return out


def _tables(page: str) -> list[tuple[int, int]]:
    """(position, body rows) of every table."""
    return [(m.start(), m.group(0).count("<tr>")) for m in re.finditer(r"<table.*?</table>", page)]


def _first_figure(page: str) -> int:
    return page.index("<figure")


def _sections(page: str) -> list[str]:
    return re.findall(r'<section id="([a-z]+)"', page)


def test_summary_first_then_plots(report):
    page = (report / "report.html").read_text()
    assert page.startswith("<!DOCTYPE html>")
    assert _sections(page)[:3] == ["summary", "grid", "robustness"]
    # no table over 20 rows before the first figure; the summary tables come first
    assert all(rows <= 20 for pos, rows in _tables(page) if pos < _first_figure(page))
    summary = page.split('<section id="summary">', 1)[1].split("</section>", 1)[0]
    # per metric: binary task AUC, balanced accuracy, TPR@1%FPR; multiclass the first two
    assert summary.count('<table class="summary">') == 3 + 2
    assert '<td class="best">' in summary and "is best on clean" in summary
    assert "size=" in summary  # the best cell's parameter in the footnote
    assert 'src="http' not in page and "<link" not in page  # nothing to fetch


def test_one_plot_per_axis_and_untouched_pipeline_once(report):
    page = (report / "report.html").read_text()
    grid = page.split('<section id="grid">', 1)[1].split("</section>", 1)[0]
    captions = re.findall(r"<figcaption>([^<]*)</figcaption>", grid)
    # one axis: one plot per metric (AUC, balanced accuracy, TPR@1%FPR), named by its axis
    assert len(captions) == 3 and all("against size" in c for c in captions)
    assert all("fft, which size does not affect" in c for c in captions)
    # fft's fingerprints are the same in both cells: its rows appear once, with size 'any'
    results = json.loads((report / "results.json").read_text())["rows"]
    assert sum(r["pipeline"] == "fft" for r in results) == 2 * 2 * 2  # the run: both cells
    table = page.split('id="results-table"', 1)[1].split("</table>", 1)[0]
    body = table.split("<tbody>", 1)[1]
    fft_rows = [r for r in body.split("<tr>") if ">fft<" in r]
    assert len(fft_rows) == 2 * 2 and all(">any<" in r for r in fft_rows)
    assert sum(">dct<" in r for r in body.split("<tr>")) == 2 * 2 * 2
    # ROC and confusion: small multiples inside one <details> per pipeline
    details = page.split('<section id="details">', 1)[1].split("</section>", 1)[0]
    assert details.count("<details>") == 2
    pngs = {p.name for p in (report / "figures").glob("*.png")}
    assert {"roc-jpeg-vs-pristine-dct.png", "confusion-two-class-fft.png", "spectra.png"} <= pngs
    md = (report / "report.md").read_text()
    assert md.index("## Summary") < md.index("## The grid") < md.index("## All results")
    assert "![" in md and "(figures/axis-size-auc.png)" in md and "**" in md


def test_grid_example_two_axes(grid_report):
    page = (grid_report / "report.html").read_text()
    assert _sections(page)[0] == "summary"
    grid = page.split('<section id="grid">', 1)[1].split("</section>", 1)[0]
    captions = re.findall(r"<figcaption>([^<]*)</figcaption>", grid)
    auc = [c for c in captions if c.startswith("AUC")]
    assert sum("against quality" in c for c in auc) == 1
    assert sum("against size" in c for c in auc) == 1
    assert sum("over quality x size" in c for c in auc) == 1  # the heatmap of two axes
    assert all(rows <= 20 for pos, rows in _tables(page) if pos < _first_figure(page))
    md = (grid_report / "report.md").read_text()
    assert "heatmap-pristine-vs-jpeg-auc.png" in md and "dct-lr is best on clean" in md


def test_untouched_axes_come_from_fingerprints(tmp_path):
    yaml = """\
name: three-axes
data:
  dataset: {name: sample-photos}
  derive: [{label: jpeg, from: pristine, perturbations: [jpeg]}]
conditions: [{name: clean}, {name: blur, perturbations: [{name: blur, params: {sigma: 1}}]}]
pipelines:
  - {name: a, features: [dct-16], classifier: lr-balanced}
  - {name: b, features: [fft-64], classifier: lr-balanced}
tasks: [{name: t, type: binary, positive: [jpeg]}]
grid:
  pipelines.a.classifier.params.C: [0.1, 1.0]
  data.derive.0.perturbations.0.params.quality: [50, 90]
  seed: [0, 1]
"""
    touches = {"pipelines.a.classifier.params.C": {"a"}, "seed": set()}
    touches["data.derive.0.perturbations.0.params.quality"] = {"*"}
    result = synthetic_result(yaml, tmp_path, touches, details=False)
    model = build_model(result)
    # C does not touch b; a seed is not fingerprinted, so it never counts as untouched
    assert model.untouched == {"a": set(), "b": {"pipelines.a.classifier.params.C"}}
    assert len(model.rows) == 8 * 2 * 2 and len(model.unique_rows) == 8 * 2 + 4 * 2
    s = model.summary("t", "auc")
    # b: 0.6 + 0.08 + 0.03 x (index of quality + 1); a: C adds up to 0.06 but starts 0.08 lower
    assert (
        s.reading == "b is best on clean (AUC 0.74), ahead of a (0.72), and loses 0.07 under blur."
    )
    assert "C does not affect it" in s.footnotes["b"]
    paths = write_report(result, tmp_path / "out")
    names = {p.name for p in paths}
    assert {"parallel-t-auc.png", "axis-C-auc.png", "axis-seed-auc.png"} <= names


def test_short_axis_names():
    assert short_names(["a.params.size", "b.params.size", "x.quality"]) == {
        "a.params.size": "a.params.size",
        "b.params.size": "b.params.size",
        "x.quality": "quality",
    }


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


DRIVER = """<!DOCTYPE html><html><body><pre id="out"></pre>
<iframe id="f" src="report.html" style="width:1280px;height:900px"></iframe><script>
document.getElementById('f').addEventListener('load', function () {
  var out = {};
  try {
    var w = this.contentWindow, d = w.document;
    out.load_ms = w.performance.getEntriesByType('navigation')[0].loadEventStart;
    function visible(el) { return el.getClientRects().length > 0 && !el.closest('[hidden]'); }
    function figs() {
      return Array.from(d.querySelectorAll('#grid img, #robustness img')).filter(visible)
        .map(function (i) { return [i.complete && i.naturalWidth, i.alt]; });
    }
    out.figures = figs();
    var t = d.getElementById('results-table');
    var heads = Array.from(t.tHead.rows[0].cells).map(function (h) { return h.title; });
    function col(name) {
      var k = heads.indexOf(name);
      return Array.from(t.tBodies[0].rows).filter(function (r) { return !r.hidden; })
        .map(function (r) { return r.cells[k].dataset.v || r.cells[k].textContent; });
    }
    t.tHead.rows[0].cells[heads.indexOf('auc')].click();
    out.sorted_auc = col('auc');
    var sel = t.querySelector('select[data-col="' + heads.indexOf('pipeline') + '"]');
    sel.value = sel.options[2].value;
    sel.dispatchEvent(new w.Event('change'));
    out.chosen = sel.value;
    out.filtered_pipelines = col('pipeline');
    out.filtered_auc = col('auc');
    out.count = d.getElementById('results-table-count').textContent;
    var m = d.getElementById('metric');
    m.value = 'balanced_accuracy';
    m.dispatchEvent(new w.Event('change'));
    out.figures_after = figs();
  } catch (e) { out.error = String(e); }
  document.getElementById('out').textContent = JSON.stringify(out);
});
</script></body></html>"""


def drive(report_dir: Path, profile: Path) -> tuple[dict, str]:
    """Open report.html in headless Chromium inside a driver page that clicks and filters."""
    (report_dir / "driver.html").write_text(DRIVER)
    flags = [
        "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--allow-file-access-from-files", "--enable-logging=stderr", "--v=0",
        f"--user-data-dir={profile}",
    ]  # fmt: skip
    proc = subprocess.run(
        [_chromium(), *flags, "--dump-dom", (report_dir / "driver.html").as_uri()],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    found = re.search(r'<pre id="out">(.*?)</pre>', proc.stdout, flags=re.DOTALL)
    assert found and found.group(1), proc.stdout[-2000:]
    import html

    return json.loads(html.unescape(found.group(1))), proc.stderr


def _check_driven(out: dict, stderr: str, pipeline_values: set[str]) -> None:
    assert "error" not in out, out
    console = [line for line in stderr.splitlines() if ":CONSOLE" in line]
    assert console == []  # no error, no message at all
    assert out["figures"] and all(w > 0 for w, _ in out["figures"])  # drawn, decoded
    assert all(alt.startswith("AUC") for _, alt in out["figures"])
    assert out["figures_after"] and all(
        alt.startswith("balanced accuracy") for _, alt in out["figures_after"]
    )
    values = [float(v) for v in out["sorted_auc"] if v != "–"]
    assert values == sorted(values) and len(values) > 1
    assert out["chosen"] in pipeline_values
    assert set(out["filtered_pipelines"]) == {out["chosen"]}
    n = len(out["filtered_pipelines"])
    assert out["count"].startswith(f"{n} of ") and n < len(out["sorted_auc"])
    aucs = [float(v) for v in out["filtered_auc"] if v != "–"]
    assert aucs == sorted(aucs)  # the sort holds under the filter


@pytest.mark.skipif(_chromium() is None, reason="Chromium not installed (.ci/run installs it)")
def test_chromium_sorts_filters_and_switches_metric(report, tmp_path):
    out, stderr = drive(report, tmp_path / "profile")
    _check_driven(out, stderr, {"dct", "fft"})


@pytest.mark.skipif(_chromium() is None, reason="Chromium not installed (.ci/run installs it)")
def test_thousand_rows_load_under_a_second(tmp_path):
    """1,000 result rows: 5 x 5 cells, 4 pipelines, 2 tasks, 5 conditions."""
    yaml = """\
name: thousand
data:
  dataset: {name: sample-photos}
  derive: [{label: jpeg, from: pristine, perturbations: [jpeg]}]
conditions:
  - {name: clean}
  - {name: blur-1, perturbations: [{name: blur, params: {sigma: 1}}]}
  - {name: blur-2, perturbations: [{name: blur, params: {sigma: 2}}]}
  - {name: jpeg-80, perturbations: [jpeg-80]}
  - {name: resize, perturbations: [resize-half]}
pipelines:
  - {name: p1, features: [dct-16], classifier: lr-balanced}
  - {name: p2, features: [fft-64], classifier: lr-balanced}
  - {name: p3, features: [dct-16], classifier: lr-balanced}
  - {name: p4, features: [fft-64], classifier: lr-balanced}
tasks:
  - {name: t1, type: binary, positive: [jpeg]}
  - {name: t2, type: binary, positive: [pristine]}
grid:
  pipelines.p1.classifier.params.C: [0.01, 0.1, 1.0, 10.0, 100.0]
  data.derive.0.perturbations.0.params.quality: [30, 50, 70, 80, 90]
"""
    # both axes touch every pipeline: all 1,000 rows are in the table
    touches = {
        "pipelines.p1.classifier.params.C": {"*"},
        "data.derive.0.perturbations.0.params.quality": {"*"},
    }
    result = synthetic_result(yaml, tmp_path, touches, details=False)
    assert len(result.rows) == 1000
    write_report(result, tmp_path / "out")
    out, stderr = drive(tmp_path / "out", tmp_path / "profile")
    _check_driven(out, stderr, {"p1", "p2", "p3", "p4"})
    assert out["count"] == "250 of 1000 rows"
    if out["load_ms"] >= 1000:  # a busy machine: the second load (warm browser) decides
        out, _ = drive(tmp_path / "out", tmp_path / "profile")
    assert out["load_ms"] < 1000, out["load_ms"]
    (ROOT / "build").mkdir(exist_ok=True)
    (ROOT / "build" / "report-load-ms.txt").write_text(f"{out['load_ms']:.0f}\n")
