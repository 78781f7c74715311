"""Faults in plugin code at run time: a hang, a sys.exit, a race between runs, a passing error.

Plugins that must be found by a fresh ``fzoo`` process are hand-written installed distributions
(modules plus a ``.dist-info`` with an ``fzoo`` entry point) put on ``PYTHONPATH``, the way
users' plugins are found; the others are registered in this process. Each case checks the exit
status, the message, a time bound and that the healthy pipelines' rows are all there.
"""

from __future__ import annotations

import contextlib
import csv
import io
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

import fzoo
from fzoo.cli import main
from fzoo.config import load_experiment
from fzoo.experiment import run_experiment
from fzoo.plugin_manager import register_plugin, unregister_plugin

from .conftest import make_class_folder

RUNNER = (  # VmHWM: ru_maxrss would carry over the forking pytest process's size
    "import sys\n"
    "from fzoo.cli import main\n"
    "try:\n"
    "    code = main(sys.argv[1:])\n"
    "finally:\n"
    "    status = open('/proc/self/status').read().split('VmHWM:')[1]\n"
    "    print(f'PEAK_KB {status.split()[0]}', file=sys.stderr)\n"
    "sys.exit(code)\n"
)

EXP = """\
name: runtime-faults
seed: 0
data:
  dataset: {{name: folder, params: {{root: "{root}"}}}}
split: {{test_size: 0.34}}
pipelines:
  - name: dct
    features: [{{name: dct-spectrum, params: {{size: 8}}}}]
    classifier: logistic-regression
{extra}
tasks:
  - {{name: proc, type: binary, positive: [processed]}}
"""


def pipeline(name: str, feature: str, timeout: float | None = None) -> str:
    text = f"  - name: {name}\n    features: [{feature}]\n    classifier: logistic-regression\n"
    return text + (f"    timeout_s: {timeout}\n" if timeout is not None else "")


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    return make_class_folder(tmp_path_factory.mktemp("imgs") / "imgs", n_per_photo=1)


def write_exp(folder: Path, root: Path, extra: str, name: str = "exp.yaml") -> Path:
    path = folder / name
    path.write_text(EXP.format(root=root, extra=extra.rstrip("\n")), encoding="utf-8")
    return path


def installed(folder: Path, dist: str, modules: dict[str, str], entry_points: dict[str, str]):
    """A hand-made installed distribution: modules plus ``NAME-0.0.1.dist-info``."""
    folder.mkdir(parents=True, exist_ok=True)
    for module, source in modules.items():
        (folder / f"{module}.py").write_text(textwrap.dedent(source), encoding="utf-8")
    info = folder / f"{dist.replace('-', '_')}-0.0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.0.1\n")
    lines = "".join(f"{name} = {value}\n" for name, value in entry_points.items())
    (info / "entry_points.txt").write_text(f"[fzoo]\n{lines}")
    return folder


def run_fzoo(*args: str, site: Path | None = None, timeout: float = 300, env=None):
    """Run ``fzoo ARGS`` in a fresh process: (exit code, stdout, stderr, seconds, peak MB)."""
    full = {**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})}
    if site is not None:
        full["PYTHONPATH"] = os.pathsep.join([str(site), full.get("PYTHONPATH", "")])
    start = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-c", RUNNER, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=full,
    )
    seconds = time.monotonic() - start
    lines = done.stderr.splitlines()
    peak = [int(line.split()[1]) / 1024 for line in lines if line.startswith("PEAK_KB ")]
    err = "\n".join(line for line in lines if not line.startswith("PEAK_KB "))
    return done.returncode, done.stdout, err, seconds, (peak[0] if peak else float("nan"))


def results(out: Path) -> list[dict[str, str]]:
    with open(out / "results.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def written_outside(root: Path, out: Path, before: set[Path], allowed: tuple[Path, ...]) -> list:
    new = {p for p in root.rglob("*")} - before
    return [p for p in new if not any(p == a or a in p.parents for a in (out, *allowed))]


# --------------------------------------------------------------------------- hang: timeouts

SLOW = """
import sys
import time

import numpy as np

import fzoo


class Sleepy(fzoo.FeatureExtractor):
    'Never returns from extract (test double).'

    name = "sleepy"
    description = "never returns from extract (test double)"

    class Params(fzoo.Params):
        pass

    def extract(self, batch):
        time.sleep(10**6)


class HangingFit(fzoo.FeatureExtractor):
    'Never returns from fit (test double).'

    name = "hanging-fit"
    description = "never returns from fit (test double)"
    requires_fit = True

    def save_state(self, directory):
        pass

    def load_state(self, directory):
        pass

    class Params(fzoo.Params):
        fit_target: str = "label"

    def fit(self, batches, labels):
        time.sleep(10**6)

    def extract(self, batch):
        return batch.mean(dim=(2, 3)).numpy()


@fzoo.hookimpl
def fzoo_register_feature_extractors(register):
    register(Sleepy)
    register(HangingFit)
"""


@pytest.fixture(scope="module")
def slow_site(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("slow-site")
    return installed(folder, "fzoo-slow", {"fzoo_slow": SLOW}, {"slow": "fzoo_slow"})


def test_a_hung_extractor_or_fit_times_out_and_the_rest_finish(tmp_path, images, slow_site):
    extra = pipeline("sleepy", "sleepy", 2) + pipeline("hang-fit", "hanging-fit", 2)
    exp = write_exp(tmp_path, images, extra)
    out, cache = tmp_path / "out", tmp_path / "cache"
    before = {p for p in tmp_path.rglob("*")}
    code, stdout, err, seconds, peak = run_fzoo(
        "run", str(exp), "--out", str(out), "--cache-dir", str(cache), "--quiet",
        site=slow_site, timeout=240,
    )  # fmt: skip
    assert code == 0, err[-3000:]
    assert "Traceback" not in err
    rows = {r["pipeline"]: r for r in results(out)}
    assert rows["dct"]["error"] == "" and float(rows["dct"]["balanced_accuracy"]) >= 0
    assert rows["sleepy"]["error"] == "timed out after 2 s in sleepy.extract"
    assert (
        rows["hang-fit"]["error"]
        == "hanging-fit: fit failed: timed out after 2 s in hanging-fit.fit"
    )
    assert "timed out after 2 s in sleepy.extract" in err
    assert seconds < 120, seconds
    assert not written_outside(tmp_path, out, before, (cache,))
    print(f"hung extract + hung fit, timeout_s 2: {seconds:.1f} s, {peak:.0f} MB peak")


def test_the_global_timeout_applies_to_pipelines_without_their_own(tmp_path, images, slow_site):
    exp = write_exp(tmp_path, images, pipeline("sleepy", "sleepy"))
    out = tmp_path / "out"
    code, _, err, seconds, _ = run_fzoo(
        "run", str(exp), "--out", str(out), "--cache-dir", str(tmp_path / "c"), "--quiet",
        "--timeout", "8", site=slow_site, timeout=240,
    )  # fmt: skip
    assert code == 0, err[-3000:]
    rows = {r["pipeline"]: r for r in results(out)}
    assert rows["sleepy"]["error"] == "timed out after 8 s in sleepy.extract"
    assert rows["dct"]["error"] == ""
    assert seconds < 120
    code, _, err, _, _ = run_fzoo("run", str(exp), "--out", str(out), "--timeout", "-1")
    assert code == 2 and "positive number of seconds" in err


def test_timeout_s_is_validated(tmp_path, images):
    for bad, needle in (("0", "greater than 0"), (".inf", "finite number"), ("x", "number")):
        exp = write_exp(tmp_path, images, pipeline("p", "dct-16") + f"    timeout_s: {bad}\n")
        code, err = _call(["validate", str(exp)])
        assert code == 2 and needle in err and ":13:16:" in err, err


# --------------------------------------------------------------------------- sys.exit


def _call(argv: list[str]) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = main(argv)
    return code, err.getvalue()


EXIT_AT_IMPORT = """
import sys

sys.exit(0)
"""


def test_a_plugin_that_exits_at_import_is_listed_failed_and_others_load(tmp_path, images):
    site = installed(
        tmp_path / "site", "fzoo-exits", {"fzoo_exits": EXIT_AT_IMPORT}, {"exits": "fzoo_exits"}
    )
    code, stdout, err, _, _ = run_fzoo("plugins", site=site, timeout=120)
    assert code == 0, err
    line = next(line for line in stdout.splitlines() if line.startswith("exits "))
    assert "FAILED: called sys.exit(0)" in line and "fzoo_exits.py" in line
    assert "dct-spectrum" in stdout  # the built-ins loaded
    broken = write_exp(tmp_path, images, "").read_text().replace("dct-spectrum", "dct-spectrun")
    (tmp_path / "broken.yaml").write_text(broken)
    code, _, err, _, _ = run_fzoo("validate", str(tmp_path / "broken.yaml"), site=site, timeout=120)
    assert code == 2
    assert "unknown feature extractor 'dct-spectrun'" in err and "Traceback" not in err
    good = write_exp(tmp_path, images, "")
    code, stdout, err, _, _ = run_fzoo("validate", str(good), site=site, timeout=120)
    assert code == 0 and "OK" in stdout, err


class Exiting(fzoo.FeatureExtractor):
    """Calls sys.exit(0) in extract (test double)."""

    name = "exiting"
    description = "calls sys.exit(0) in extract (test double)"

    class Params(fzoo.Params):
        pass

    def extract(self, batch):
        sys.exit(0)


class ExitingFit(fzoo.FeatureExtractor):
    """Calls sys.exit(3) in fit (test double)."""

    name = "exiting-fit"
    description = "calls sys.exit(3) in fit (test double)"
    requires_fit = True

    def save_state(self, directory):
        pass

    def load_state(self, directory):
        pass

    class Params(fzoo.Params):
        fit_target: str = "label"

    def fit(self, batches, labels):
        sys.exit(3)

    def extract(self, batch):
        return batch.mean(dim=(2, 3)).numpy()


class Interrupting(fzoo.FeatureExtractor):
    """Raises KeyboardInterrupt in extract (test double)."""

    name = "interrupting"
    description = "raises KeyboardInterrupt in extract (test double)"

    class Params(fzoo.Params):
        pass

    def extract(self, batch):
        raise KeyboardInterrupt


class ExitPlugin:
    @staticmethod
    @fzoo.hookimpl
    def fzoo_register_feature_extractors(register):
        register(Exiting)
        register(ExitingFit)
        register(Interrupting)


@pytest.fixture
def exit_plugin():
    register_plugin(ExitPlugin, name="exit-test")
    yield
    unregister_plugin("exit-test")


@pytest.mark.parametrize("timeout", [None, 30])
def test_sys_exit_in_extract_or_fit_fails_only_that_pipeline(
    tmp_path, images, exit_plugin, timeout
):
    extra = pipeline("exits", "exiting", timeout) + pipeline("exits-fit", "exiting-fit", timeout)
    exp = write_exp(tmp_path, images, extra)
    out = tmp_path / "out"
    code, err = _call(["run", str(exp), "--out", str(out), "--quiet"])
    assert code == 0, err
    rows = {r["pipeline"]: r for r in results(out)}
    assert rows["dct"]["error"] == ""
    assert rows["exits"]["error"] == "exiting.extract called sys.exit(0)"
    assert (
        rows["exits-fit"]["error"] == "exiting-fit: fit failed: exiting-fit.fit called sys.exit(3)"
    )


def test_sys_exit_in_fzoo_extract_is_an_error_not_a_silent_success(tmp_path, images, exit_plugin):
    image = next(images.rglob("*.png"))
    out = tmp_path / "f.npz"
    code, err = _call(["extract", "--extractor", "exiting", "--out", str(out), str(image)])
    assert code != 0, err
    assert "sys.exit(0)" in err and "Traceback" not in err
    assert not out.exists()


@pytest.mark.parametrize("timeout", [None, 30])
def test_keyboard_interrupt_still_interrupts(tmp_path, images, exit_plugin, timeout):
    exp = write_exp(tmp_path, images, pipeline("ctrl-c", "interrupting", timeout))
    code, err = _call(["run", str(exp), "--out", str(tmp_path / "out"), "--quiet"])
    assert code == 130 and "interrupted" in err


# --------------------------------------------------------------------------- concurrent fits

RACE = """
import json
import os
import time
from pathlib import Path

import numpy as np

import fzoo


def _barrier():
    folder = Path(os.environ["FZOO_TEST_BARRIER"])
    (folder / str(os.getpid())).touch()
    deadline = time.time() + 120
    while len(list(folder.iterdir())) < 2 and time.time() < deadline:
        time.sleep(0.05)


class SlowCentroids(fzoo.FeatureExtractor):
    'A learned extractor whose fit and save are slow (test double).'

    name = "slow-centroids"
    description = "a learned extractor whose fit and save are slow (test double)"
    requires_fit = True

    class Params(fzoo.Params):
        fit_target: str = "label"

    def fit(self, batches, labels):
        feats = np.stack([b.mean(dim=(0, 2, 3)).numpy() for b in batches])
        self.classes_ = sorted(set(labels))
        self.means_ = np.stack([feats[np.asarray(labels) == c].mean(0) for c in self.classes_])
        _barrier()  # both runs are here: they save at the same time
        return self

    def extract(self, batch):
        x = batch.mean(dim=(2, 3)).numpy()
        return np.linalg.norm(x[:, None, :] - self.means_[None], axis=2).astype(np.float32)

    def save_state(self, directory):
        (directory / "part1.json").write_text(json.dumps(self.means_.tolist()))
        time.sleep(2)
        (directory / "part2.json").write_text(json.dumps(self.classes_))

    def load_state(self, directory):
        self.means_ = np.asarray(json.loads((directory / "part1.json").read_text()))
        self.classes_ = json.loads((directory / "part2.json").read_text())


@fzoo.hookimpl
def fzoo_register_feature_extractors(register):
    register(SlowCentroids)
"""


def test_two_runs_fitting_the_same_extractor_at_once_both_succeed(tmp_path, images):
    site = installed(tmp_path / "site", "fzoo-race", {"fzoo_race": RACE}, {"race": "fzoo_race"})
    exp = write_exp(tmp_path, images, pipeline("centroids", "slow-centroids"))
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    cache = tmp_path / "cache"
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "FZOO_TEST_BARRIER": str(barrier),
        "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]),
    }
    start = time.monotonic()
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "fzoo.cli",
                "run",
                str(exp),
                "--out",
                str(tmp_path / f"o{k}"),
                "--cache-dir",
                str(cache),
                "--quiet",
            ],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        for k in range(2)
    ]
    outs = [p.communicate(timeout=300) for p in procs]
    seconds = time.monotonic() - start
    for p, (_, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err[-3000:]
        assert "Traceback" not in err and "FileNotFoundError" not in err
    assert len(list(barrier.iterdir())) == 2, "the two fits did not overlap"
    a, b = results(tmp_path / "o0"), results(tmp_path / "o1")
    assert a == b and all(not r.get("error") for r in a) and len(a) == 2
    fitted = cache / "fitted"
    assert [p.name for p in fitted.iterdir() if p.name.startswith(".tmp-")] == []
    (state,) = list(fitted.iterdir())
    assert sorted(p.name for p in state.iterdir()) == ["COMPLETE", "part1.json", "part2.json"]
    print(f"two concurrent fits: {seconds:.1f} s")


# --------------------------------------------------------------------------- transient errors


class Flaky(fzoo.FeatureExtractor):
    """Fails on the bright images with ``error`` (None: works); counts the images it is given."""

    name = "flaky"
    description = "fails on bright images with a chosen exception (test double)"
    error: type[BaseException] | None = None
    threshold = 0.5
    seen = 0

    class Params(fzoo.Params):
        pass

    def extract(self, batch):
        Flaky.seen += batch.shape[0]
        means = batch.mean(dim=(1, 2, 3))
        if Flaky.error is not None and bool((means > Flaky.threshold).any()):
            raise Flaky.error("simulated")
        return batch.mean(dim=(2, 3)).numpy()


class FlakyPlugin:
    @staticmethod
    @fzoo.hookimpl
    def fzoo_register_feature_extractors(register):
        register(Flaky)


def _bright(images: Path) -> set[str]:
    from PIL import Image

    means = {p: np.asarray(Image.open(p)).mean() / 255 for p in images.rglob("*.png")}
    Flaky.threshold = float(np.median(list(means.values())))
    return {str(p) for p, m in means.items() if m > Flaky.threshold}


@pytest.mark.parametrize("error", [MemoryError, OSError])
def test_transient_errors_are_not_cached(tmp_path, images, error):
    bright = _bright(images)
    register_plugin(FlakyPlugin, name="flaky-test")
    try:
        exp = load_experiment(write_exp(tmp_path, images, pipeline("flaky", "flaky")))
        Flaky.error = error
        first = run_experiment(exp, tmp_path / "a", cache_dir=tmp_path / "c", progress=None)
        skipped = {s["path"] for s in first.skipped if "flaky" in s["reason"]}
        assert skipped == bright, (skipped, bright)
        reasons = [s["reason"] for s in first.skipped if "flaky" in s["reason"]]
        assert all(error.__name__ in r and "not cached" in r for r in reasons), reasons
        Flaky.error, Flaky.seen = None, 0
        second = run_experiment(exp, tmp_path / "b", cache_dir=tmp_path / "c", progress=None)
        assert Flaky.seen == len(bright)  # only the failed images were tried again
        assert not [s for s in second.skipped if "flaky" in s["reason"]]
        row = next(r for r in second.rows if r["pipeline"] == "flaky")
        assert "error" not in row and row["n_train"] + row["n_test"] == 12
    finally:
        Flaky.error = None
        unregister_plugin("flaky-test")


def test_a_permanent_error_is_cached(tmp_path, images):
    bright = _bright(images)
    register_plugin(FlakyPlugin, name="flaky-test")
    try:
        exp = load_experiment(write_exp(tmp_path, images, pipeline("flaky", "flaky")))
        Flaky.error = ValueError
        run_experiment(exp, tmp_path / "a", cache_dir=tmp_path / "c", progress=None)
        Flaky.error, Flaky.seen = None, 0
        second = run_experiment(exp, tmp_path / "b", cache_dir=tmp_path / "c", progress=None)
        assert Flaky.seen == 0  # remembered: the image and the extractor are the same
        assert {s["path"] for s in second.skipped if "flaky" in s["reason"]} == bright
    finally:
        Flaky.error = None
        unregister_plugin("flaky-test")
