"""kill -9 in the middle of a grid, then run again: identical results, nothing recomputed twice."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

EXP = """\
name: resume-test
data:
  dataset: {name: sample-photos, params: {crop: 96, crops_per_photo: 6}}
  derive:
    - {label: jpeg, from: pristine, perturbations: [jpeg-80]}
conditions:
  - name: clean
  - name: noise
    perturbations: [{name: noise, params: {sigma: 1.0}}]
pipelines:
  - {name: res, features: [{name: residual-fingerprint, params: {bins: 16}}], classifier: logistic-regression}
  - {name: dct, features: [{name: dct-spectrum, params: {size: 8}}], classifier: logistic-regression}
tasks:
  - {name: jpeg, type: binary, positive: [jpeg]}
grid:
  pipelines.res.features.0.params.filter: [srm3, kv5]
"""  # noqa: E501


def fzoo(*args: str) -> list[str]:
    return [str(Path(sys.executable).parent / "fzoo"), *args]


def count_features(cache: Path) -> int:
    return sum(1 for _ in (cache / "features").rglob("*.npy")) if cache.exists() else 0


def test_kill_9_then_rerun_gives_identical_results(tmp_path):
    exp = tmp_path / "exp.yaml"
    exp.write_text(EXP)
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    cache = tmp_path / "cache"
    proc = subprocess.Popen(
        fzoo("run", str(exp), "--out", str(tmp_path / "a"), "--cache-dir", str(cache), "--quiet"),
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 240
    while count_features(cache) < 40 and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, "the run finished before it could be killed; make it bigger"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    saved = count_features(cache)
    assert saved >= 40
    assert not (tmp_path / "a" / "results.csv").exists()

    resumed = subprocess.run(
        fzoo(
            "run",
            str(exp),
            "--out",
            str(tmp_path / "a"),
            "--cache-dir",
            str(cache),
            "--quiet",
            "--json",
        ),  # fmt: skip
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    stats = json.loads(resumed.stdout)["cache"]["by_namespace"]["features"]
    assert stats[0] >= saved  # what was saved before the kill was reused, not recomputed

    fresh = subprocess.run(
        fzoo(
            "run",
            str(exp),
            "--out",
            str(tmp_path / "b"),
            "--cache-dir",
            str(tmp_path / "c2"),
            "--quiet",
        ),  # fmt: skip
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert fresh.returncode == 0, fresh.stderr[-3000:]
    a = (tmp_path / "a" / "results.csv").read_text()
    b = (tmp_path / "b" / "results.csv").read_text()
    assert a == b and a.count("\n") == 1 + 2 * 2 * 2  # 2 cells x 2 pipelines x 2 conditions
    pa = (tmp_path / "a" / "predictions.csv").read_text()
    assert pa == (tmp_path / "b" / "predictions.csv").read_text()
