"""Weights provenance (issue #15): content-hash fingerprints, the on-disk hash cache, the taesd
variant in launderers.json / results.json / pipeline.json, launder failures that leave nothing
misleading behind, and progress lines when output is redirected."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import fzoo
from fzoo import weights as fw
from fzoo.cli import main
from fzoo.pipeline import read_saved_pipeline
from fzoo.progress import Progress

from .conftest import make_class_folder
from .test_sd_vae import _save_original_layout

REPO = Path(__file__).resolve().parents[1]
TAEF2 = REPO.parent / "shared" / "weights" / "taef2"
needs_taef2 = pytest.mark.skipif(
    not TAEF2.is_dir(), reason=f"real TAEF2 weights not at {TAEF2} (../shared beside the repo)"
)
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}


def _taesd(weights: Path | str, **params):
    return fzoo.create_component("launderer", "taesd", weights=str(weights), **params)


# --------------------------------------------------------------------------- fingerprints


def test_components_without_weights_keep_their_fingerprints():
    """Cache keys of weightless components are unchanged by the content-hash fingerprints
    (values computed before the change, over every registered component without required
    parameters; these are a sample)."""
    before = {
        ("perturbation", "jpeg"): "488204f0b9251ac699f9",
        ("perturbation", "blur"): "b7b1882a7e1ca3ef4f23",
        ("feature_extractor", "dct-spectrum"): "89385d7529443f2d677e",
        ("feature_extractor", "fft-spectrum"): "70e9bede99ec247581e1",
        ("classifier", "logistic-regression"): "778efdd7d7bb771f6352",
        ("dataset", "virtual-cameras"): "638d89f8d874b159feea",
        ("generator", "tiny-ldm"): "50498d936baba166dac0",  # weights None: bundled, unchanged
    }
    for (kind, name), fp in before.items():
        assert fzoo.create_component(kind, name).fingerprint() == fp, (kind, name)


def test_fingerprint_follows_weight_content_not_path(tmp_path):
    w = tmp_path / "w"
    _save_original_layout(w / "taef2", "taef2", 32, True)
    (tmp_path / "link").symlink_to(w / "taef2", target_is_directory=True)
    spellings = [w / "taef2", f"{w}/./taef2/", tmp_path / "link", f"{tmp_path}/w/../w/taef2"]
    fps = {_taesd(s, variant="taef2").fingerprint() for s in spellings}
    assert len(fps) == 1, fps
    (fp,) = fps
    prov = fzoo.components.provenance_of(fp)
    assert prov is not None and prov["variant"] == "taef2" and prov["component"] == "taesd"
    assert set(prov["weights"]) == {"taef2_encoder.pth", "taef2_decoder.pth"}
    # other parameters still count
    assert _taesd(w / "taef2", variant="taef2", tile_size=256).fingerprint() != fp
    # a changed file (same path) is other weights
    dec = w / "taef2" / "taef2_decoder.pth"
    state = torch.load(dec, weights_only=True)
    key = next(iter(state))
    state[key] = state[key] + 1e-3
    torch.save(state, dec)
    assert _taesd(w / "taef2", variant="taef2").fingerprint() != fp


def test_sd_vae_fingerprint_ignores_the_path_spelling(kl4, tmp_path):
    (tmp_path / "vae").symlink_to(kl4, target_is_directory=True)
    a = fzoo.create_component("launderer", "sd-vae", weights=str(kl4)).fingerprint()
    b = fzoo.create_component("launderer", "sd-vae", weights=f"{tmp_path}/./vae/").fingerprint()
    assert a == b


@pytest.fixture(scope="module")
def kl4(tmp_path_factory):
    from .test_sd_vae import build_tiny_kl

    folder = tmp_path_factory.mktemp("kl4")
    build_tiny_kl(4).save_pretrained(folder)
    return folder


def test_weight_hashes_are_cached_on_disk_by_path_size_mtime(tmp_path, monkeypatch):
    f = tmp_path / "model.safetensors"
    f.write_bytes(b"x" * 1000)
    digest = fw.file_sha256(f)
    cached = list((Path(os.environ["FZOO_CACHE_DIR"]) / fw.HASH_CACHE).glob("*.txt"))
    assert [c.read_text().strip() for c in cached] == [digest]
    fw._cached_sha.cache_clear()  # a new process: memory cache empty, the disk cache answers

    def no_hashing(path, chunk=0):
        raise AssertionError("hashed again")

    monkeypatch.setattr(fw, "sha256_file", no_hashing)
    assert fw.file_sha256(f) == digest
    assert fw.weight_hashes(tmp_path) == {"model.safetensors": digest}
    monkeypatch.undo()
    f.write_bytes(b"y" * 1000)  # same size, new mtime
    os.utime(f, ns=(1, 1))
    assert fw.file_sha256(f) != digest


# --------------------------------------------------------------------------- taesd variants


def test_taesd_variant_never_falls_back_to_another_model(tmp_path):
    _save_original_layout(tmp_path, "taef1", 16, False)
    x = torch.rand(1, 3, 16, 16)
    # taesd3 has the same 16 channels as taef1: only the file names tell them apart
    with pytest.raises(fzoo.WeightsError) as err:
        _taesd(tmp_path, variant="taesd3").launder(x)
    msg = str(err.value)
    assert "taesd3_encoder.pth and taesd3_decoder.pth" in msg
    assert "found taef1_decoder.pth, taef1_encoder.pth" in msg
    assert "curl -LO https://github.com/madebyollin/taesd/raw/main/taesd3_encoder.pth" in msg
    with pytest.raises(fzoo.WeightsError, match="is a taef1 file but variant is 'taesd3'"):
        _taesd(tmp_path / "taef1_decoder.pth", variant="taesd3").launder(x)
    lau = _taesd(tmp_path)  # auto: the only pair
    assert lau.launder(x).shape == x.shape and lau.provenance()["variant"] == "taef1"
    (tmp_path / "taef1_decoder.pth").unlink()
    with pytest.raises(fzoo.WeightsError, match="found taef1_encoder.pth"):
        _taesd(tmp_path, variant="taef1").launder(x)


@needs_taef2
def test_taef2_preset_with_fzoo_launder(tmp_path, capsys):
    src = tmp_path / "in"
    src.mkdir()
    img = np.asarray(Image.open(io.BytesIO(_astronaut_png())))[:64, :96]
    Image.fromarray(img).save(src / "a.png")
    out = tmp_path / "out"
    rc = main(["launder", str(src), str(out), "--launderer", "taef2", "--quiet",
               "--param", f"weights={TAEF2}"])  # fmt: skip
    assert rc == 0, capsys.readouterr().err
    (entry,) = json.loads((out / "launderers.json").read_text()).values()
    assert entry["component"] == "taesd" and entry["params"]["variant"] == "taef2"
    assert entry["provenance"]["variant"] == "taef2"
    assert entry["provenance"]["weights"]["taef2_encoder.pth"] == fw.file_sha256(
        TAEF2 / "taef2_encoder.pth"
    )
    # the preset without weights: the fetch commands, no output folder
    capsys.readouterr()
    rc = main(["launder", str(src), str(tmp_path / "none"), "--launderer", "taef2", "--quiet"])
    err = capsys.readouterr().err
    assert rc == 1 and "taef2_encoder.pth" in err and "curl -LO" in err
    assert "resume" not in err and not (tmp_path / "none").exists()


def _astronaut_png() -> bytes:
    from skimage import data

    buf = io.BytesIO()
    Image.fromarray(data.astronaut()).save(buf, format="PNG")
    return buf.getvalue()


# --------------------------------------------------------------------------- launder failures


def test_a_setting_that_always_fails_leaves_no_files(tmp_path, capsys):
    _save_original_layout(tmp_path / "w", "taesd", 4, False)
    src = tmp_path / "in"
    src.mkdir()
    for i in range(3):  # 4x4 images: smaller than the multiple 8, cannot be cropped
        Image.fromarray(np.full((4, 4, 3), 40 * i, np.uint8)).save(src / f"{i}.png")
    out = tmp_path / "out"
    rc = main(["launder", str(src), str(out), "--launderer", "taesd", "--quiet",
               "--param", f"weights={tmp_path / 'w'}"])  # fmt: skip
    err = capsys.readouterr().err
    assert rc == 1 and not out.exists()
    assert "running again would fail the same way" in err and "resume" not in err
    # into an existing folder: it stays, but no launderers.json or header-only manifest
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    main(["launder", str(src), str(out), "--launderer", "taesd", "--quiet",
          "--param", f"weights={tmp_path / 'w'}"])  # fmt: skip
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]


def test_a_variant_mismatch_stops_before_any_image(tmp_path, capsys):
    _save_original_layout(tmp_path / "w", "taesd", 4, False)
    src = tmp_path / "in"
    src.mkdir()
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(src / "a.png")
    rc = main(["launder", str(src), str(tmp_path / "out"), "--launderer", "taesd", "--quiet",
               "--param", f"weights={tmp_path / 'w'}", "--param", "variant=taesdxl"])  # fmt: skip
    err = capsys.readouterr().err
    assert rc == 1 and "taesdxl_encoder.pth" in err and "skipped" not in err
    assert not (tmp_path / "out").exists()


# --------------------------------------------------------------------------- results, pipelines


def test_results_and_pipelines_record_the_weights(tmp_path):
    root = make_class_folder(tmp_path / "imgs", n_per_photo=2, size=32)
    _save_original_layout(tmp_path / "w", "taef2", 32, True)
    exp = tmp_path / "exp.yaml"
    exp.write_text(
        textwrap.dedent(f"""\
        name: prov
        data:
          dataset: {{name: folder, params: {{root: "{root}"}}}}
        conditions:
          - name: clean
          - name: tae
            launderer: {{name: taesd, params: {{weights: "{tmp_path}/./w/", variant: taef2}}}}
        pipelines:
          - name: dct-lr
            features: [{{name: dct-spectrum, params: {{size: 8}}}}]
            classifier: logistic-regression
        tasks:
          - {{name: processed, type: binary, positive: [processed]}}
        """)
    )
    assert main(["run", str(exp), "--out", str(tmp_path / "out"), "--quiet"]) == 0
    meta = json.loads((tmp_path / "out" / "results.json").read_text())
    meta = meta.get("meta", meta)
    (cell,) = meta["provenance"].values()
    (prov,) = cell.values()
    assert prov["variant"] == "taef2" and prov["component"] == "taesd"
    assert set(prov["weights"]) == {"taef2_encoder.pth", "taef2_decoder.pth"}
    (pj,) = (tmp_path / "out" / "pipelines").rglob("pipeline.json")
    saved = read_saved_pipeline(pj)
    assert saved.weights == {}  # dct has no weights; the field is there and typed
    data = json.loads(pj.read_text())
    del data["weights"]  # a file written before the field existed still loads
    pj.write_text(json.dumps(data))
    assert read_saved_pipeline(pj).weights == {}
    data["weights"] = {"features[0]:x": {"a.pth": 3}}
    pj.write_text(json.dumps(data))
    with pytest.raises(ValueError, match="weights"):
        read_saved_pipeline(pj)


# --------------------------------------------------------------------------- progress


def test_progress_lines_when_redirected(monkeypatch):
    monkeypatch.setenv("FZOO_PROGRESS_INTERVAL", "0")
    stream = io.StringIO()
    with Progress("fit x", 4, "step", stream=stream) as bar:
        for i in range(4):
            bar.update(1, loss=1.0 / (i + 1))
    lines = stream.getvalue().splitlines()
    assert lines[0].startswith("[fzoo] fit x: 1/4 step (25%), ") and "ETA" in lines[0]
    assert "loss 1" in lines[0] and "loss 0.25" in lines[-1] and "done" in lines[-1]
    monkeypatch.setenv("FZOO_PROGRESS_INTERVAL", "3600")
    stream = io.StringIO()
    with Progress("quiet", 4, stream=stream) as bar:
        bar.update(4)
    assert stream.getvalue() == ""  # nothing printed before the interval: no closing line


def test_fzoo_run_redirected_prints_stage_counts_and_eta(tmp_path):
    root = make_class_folder(tmp_path / "imgs", n_per_photo=2, size=32)
    exp = tmp_path / "exp.yaml"
    exp.write_text(
        textwrap.dedent(f"""\
        name: progress
        data:
          dataset: {{name: folder, params: {{root: "{root}"}}}}
        pipelines:
          - name: dct-lr
            features: [{{name: dct-spectrum, params: {{size: 8}}}}]
            classifier: logistic-regression
        tasks:
          - {{name: processed, type: binary, positive: [processed]}}
        """)
    )
    log = tmp_path / "log.txt"
    env = {**ENV, "FZOO_PROGRESS_INTERVAL": "0", "FZOO_CACHE_DIR": str(tmp_path / "c")}
    with open(log, "w") as fh:
        rc = subprocess.run([sys.executable, "-m", "fzoo.cli", "run", str(exp), "--out",
                             str(tmp_path / "out")], stdout=fh, stderr=subprocess.STDOUT,
                            env=env, check=False).returncode  # fmt: skip
    text = log.read_text()
    assert rc == 0, text
    lines = [ln for ln in text.splitlines() if ln.startswith("[fzoo] features: ")]
    assert lines and "ETA" in lines[0] and "/s" in lines[0], text


@needs_taef2
def test_large_image_tiled_launder_bounded_memory_and_progress(tmp_path):
    """A 1024x768 real photo (mirror-tiled astronaut) through TAEF2 with tile_size 256 in a
    subprocess, output redirected: peak RSS stays far below what one full-size activation
    (64 channels x 1024 x 768 float32 = 201 MB, several alive at once) would need on top of
    the process' base, and the log shows progress lines with the stage and an ETA."""
    sys.path.insert(0, str(REPO / "benchmarks"))
    from bench_taesd_tiling import big_photo

    src = tmp_path / "in"
    src.mkdir()
    Image.fromarray(big_photo(1024, 768)).save(src / "big.png")
    Image.fromarray(big_photo(64, 64)).save(src / "small.png")  # the first, quick image
    probe = textwrap.dedent(f"""\
        import resource, sys, torch
        from fzoo.config import create_component
        create_component("launderer", "taef2", weights="{TAEF2}").model()
        print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024)
        """)
    base = int(subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                              env=ENV, check=True).stdout.split()[-1])  # fmt: skip
    script = textwrap.dedent(f"""\
        import resource, sys
        from fzoo.cli import main
        rc = main(["launder", "{src}", "{tmp_path / "out"}", "--launderer", "taef2",
                   "--batch-size", "1", "--param", "weights={TAEF2}", "--param", "tile_size=256"])
        print("PEAK_MB", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024)
        sys.exit(rc)
        """)
    log = tmp_path / "log.txt"
    env = {**ENV, "FZOO_PROGRESS_INTERVAL": "0.5"}
    with open(log, "w") as fh:
        rc = subprocess.run([sys.executable, "-c", script], stdout=fh, stderr=subprocess.STDOUT,
                            env=env, check=False).returncode  # fmt: skip
    text = log.read_text()
    assert rc == 0, text
    peak = int(text.split("PEAK_MB")[-1].split()[0])
    assert peak - base < 400, f"peak {peak} MB, base {base} MB"
    progress = [ln for ln in text.splitlines() if ln.startswith("[fzoo] launder: ")]
    assert progress and "1/2 img" in progress[0] and "ETA" in progress[0], text
