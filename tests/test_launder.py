"""``fzoo launder``: exact outputs, never overwriting, refusing overlapping folders, resuming."""

from __future__ import annotations

import csv
import json
import os
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from fzoo.cli import main
from fzoo.launder import COLUMNS, MANIFEST, plan, read_manifest

from .conftest import photo_crops
from .test_sd_vae import build_tiny_kl, direct_roundtrip


@pytest.fixture(scope="module")
def vae_dir(tmp_path_factory):
    vae = build_tiny_kl(4)
    folder = tmp_path_factory.mktemp("vae")
    vae.save_pretrained(folder)
    return vae, folder


def make_inputs(folder: Path, n: int = 4, size: int = 64) -> dict[str, np.ndarray]:
    """Real photo crops as PNG/JPEG (some in a subfolder); returns relative name -> uint8."""
    crops = list(photo_crops(2, size, photos=("astronaut", "coffee", "chelsea")).values())[:n]
    out = {}
    for i, arr in enumerate(crops):
        rel = f"sub/img{i}.png" if i % 2 else f"img{i}.png"
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(arr).save(folder / rel)
        out[rel] = arr
    return out


def launder(*args: str, capsys) -> tuple[int, dict | None, str]:
    """Run ``fzoo launder --quiet ARGS``: exit code, the --json summary, stderr."""
    code = main(["launder", "--quiet", *args])
    captured = capsys.readouterr()
    out = captured.out
    return code, json.loads(out) if out.strip().startswith("{") else None, captured.err


def manifest_rows(out: Path) -> list[dict[str, str]]:
    with open(out / MANIFEST, newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.mark.parametrize("batch", ["1", "auto"])
def test_outputs_equal_the_direct_diffusers_round_trip(vae_dir, tmp_path, capsys, batch):
    """batch_size 1: PNGs bit-identical to the quantised one-image diffusers round trip.

    Automatic batching (4 images of 64x64 in one forward pass) runs other oneDNN kernels than a
    one-image call: the floats agree to ~1e-5 (see test_sd_vae), which moves a rare 8-bit value
    by one level.
    """
    vae, folder = vae_dir
    src, dst = tmp_path / "in", tmp_path / "out"
    inputs = make_inputs(src)
    extra = ["--param", "batch_size=1"] if batch == "1" else []
    code, summary, err = launder("--launderer", "sd-vae", "--param", f"weights={folder}", *extra,
                            "--json", str(src), str(dst), capsys=capsys)  # fmt: skip
    assert code == 0
    assert summary["written"] == len(inputs) and summary["psnr_db_mean"] is not None
    rows = {r["output"]: r for r in manifest_rows(dst)}
    assert set(rows) == set(inputs) and list(manifest_rows(dst)[0]) == list(COLUMNS)
    for rel, arr in inputs.items():
        x = torch.from_numpy(arr.astype(np.float32) / 255).permute(2, 0, 1)[None]
        expected = np.clip(np.round(direct_roundtrip(vae, x)[0].permute(1, 2, 0).numpy() * 255),
                           0, 255)  # fmt: skip
        got = np.asarray(Image.open(dst / rel))
        assert got.shape == arr.shape  # same size as the input
        if batch == "1":
            np.testing.assert_array_equal(got, expected)
        else:
            diff = np.abs(got - expected)
            assert diff.max() <= 1 and np.mean(diff == 0) > 0.999
        row = rows[rel]
        assert Path(row["source"]) == (src / rel).resolve()
        assert row["launderer"] == "sd-vae" and row["fingerprint"] == summary["fingerprint"]
        mse = np.mean((arr / 255.0 - got / 255.0) ** 2)
        assert float(row["psnr_db"]) == pytest.approx(10 * np.log10(1 / mse), abs=1e-3)
    recorded = json.loads((dst / "launderers.json").read_text())
    assert recorded[summary["fingerprint"]]["params"]["weights"] == str(folder)


def test_never_overwrites_and_resumes(vae_dir, tmp_path, capsys):
    _, folder = vae_dir
    src, dst = tmp_path / "in", tmp_path / "out"
    inputs = sorted(make_inputs(src, n=6))
    args = ("--launderer", "sd-vae", "--param", f"weights={folder}", "--json", str(src), str(dst))
    code, first, err = launder(*args, capsys=capsys)
    assert code == 0 and first["written"] == 6
    kept = {rel: ((dst / rel).stat().st_mtime_ns, (dst / rel).read_bytes()) for rel in inputs}
    deleted = inputs[::2]
    for rel in deleted:
        (dst / rel).unlink()
    time.sleep(0.01)
    code, second, err = launder(*args, capsys=capsys)
    assert code == 0
    assert second["written"] == len(deleted) and second["skipped_existing"] == 6 - len(deleted)
    assert second["stale_rows_dropped"] == len(deleted)
    for rel in set(inputs) - set(deleted):  # untouched: not rewritten
        assert (dst / rel).stat().st_mtime_ns == kept[rel][0]
    for rel in deleted:  # recomputed identically
        assert (dst / rel).read_bytes() == kept[rel][1]
    rows = manifest_rows(dst)
    assert sorted(r["output"] for r in rows) == inputs  # one row per output, no duplicates

    # a file the user put where a new output would go is never overwritten, and is reported
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(src / "new.png")
    (dst / "new.png").write_bytes(b"precious")
    code, third, err = launder(*args, capsys=capsys)
    assert code == 0 and third["written"] == 0 and third["skipped_existing"] == 7
    assert (dst / "new.png").read_bytes() == b"precious"
    assert third["unlisted_existing"] == ["new.png"]
    assert "1 of them are not in the manifest" in err
    assert not list(dst.rglob(".tmp-*"))


def test_refuses_overlapping_folders(vae_dir, tmp_path, capsys):
    _, folder = vae_dir
    src = tmp_path / "in"
    make_inputs(src, n=1)
    before = sorted(p.relative_to(src) for p in src.rglob("*"))
    for out in (src, src / "laundered", tmp_path):
        code = main(["launder", "--launderer", "sd-vae", "--param", f"weights={folder}",
                     str(src), str(out)])  # fmt: skip
        assert code == 2
        assert "OUT_DIR" in capsys.readouterr().err
    assert sorted(p.relative_to(src) for p in src.rglob("*")) == before
    assert main(["launder", "--launderer", "sd-vae", "--param", f"weights={folder}",
                 str(tmp_path / "missing"), str(tmp_path / "o")]) == 2  # fmt: skip


def test_corrupt_images_are_reported_and_skipped(vae_dir, tmp_path, capsys):
    _, folder = vae_dir
    src, dst = tmp_path / "in", tmp_path / "out"
    inputs = make_inputs(src, n=2)
    (src / "broken.png").write_bytes(b"not an image")
    (src / "empty.jpg").write_bytes(b"")
    code, summary, err = launder("--launderer", "sd-vae", "--param", f"weights={folder}", "--json",
                            str(src), str(dst), capsys=capsys)  # fmt: skip
    assert code == 0 and summary["written"] == len(inputs)
    assert sorted(Path(u["path"]).name for u in summary["unreadable"]) == [
        "broken.png",
        "empty.jpg",
    ]
    assert not (dst / "broken.png").exists()
    assert "broken.png" in err

    bad, out2 = tmp_path / "bad", tmp_path / "out2"
    bad.mkdir()
    (bad / "x.png").write_bytes(b"junk")
    assert main(["launder", "--quiet", "--launderer", "sd-vae", "--param", f"weights={folder}",
                 str(bad), str(out2)]) == 1  # fmt: skip
    assert "x.png" in capsys.readouterr().err


def test_odd_sizes_crop_or_pad_and_say_so(vae_dir, tmp_path, capsys):
    _, folder = vae_dir
    src = tmp_path / "in"
    src.mkdir()
    arr = photo_crops(1, 64, photos=("rocket",))["rocket-0"][:45, :61]
    Image.fromarray(arr).save(src / "odd.png")
    for mode, shape in (("crop", (40, 56, 3)), ("pad", (45, 61, 3))):
        dst = tmp_path / mode
        code, summary, err = launder("--launderer", "sd-vae", "--param", f"weights={folder}",
                                "--param", f"multiple_mode={mode}", "--json", str(src), str(dst),
                                capsys=capsys)  # fmt: skip
        assert code == 0
        assert np.asarray(Image.open(dst / "odd.png")).shape == shape
        (row,) = manifest_rows(dst)
        assert ("cropped 61x45 -> 56x40" if mode == "crop" else "padded 61x45 -> 64x48") in row[
            "notes"
        ]


def test_offline_hub_id_fails_fast_through_the_cli(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    src = tmp_path / "in"
    make_inputs(src, n=1)
    start = time.perf_counter()
    code = main(["launder", "--launderer", "sd-vae", "--param",
                 "weights=stabilityai/sd-vae-ft-mse", str(src), str(tmp_path / "out")])  # fmt: skip
    elapsed = time.perf_counter() - start
    err = capsys.readouterr().err
    assert code == 1 and elapsed < 2.0
    assert "hf download stabilityai/sd-vae-ft-mse" in err
    assert not (tmp_path / "out").exists()


def test_usage_errors_exit_2(vae_dir, tmp_path, capsys):
    _, folder = vae_dir
    src = tmp_path / "in"
    make_inputs(src, n=1)
    out = str(tmp_path / "out")
    assert main(["launder", "--launderer", "no-such-launderer", str(src), out]) == 2
    assert main(["launder", "--launderer", "sd-vae", "--param", "nonsense", str(src), out]) == 2
    assert main(["launder", "--launderer", "sd-vae", "--param", f"weights={folder}",
                 "--param", "dtype=float16", str(src), out]) == 2  # fmt: skip
    assert main(["launder", "--launderer", "sd-vae", str(src), out]) == 2  # weights is required
    with pytest.raises(SystemExit) as info:
        main(["launder", "--help"])
    assert info.value.code == 0
    assert "manifest.csv" in capsys.readouterr().out


def test_another_launderer_configuration_is_refused(vae_dir, tmp_path, capsys):
    _, folder = vae_dir
    src, dst = tmp_path / "in", tmp_path / "out"
    make_inputs(src, n=1)
    base = ["launder", "--quiet", "--launderer", "sd-vae", "--param", f"weights={folder}"]
    assert main([*base, str(src), str(dst)]) == 0
    assert main([*base, "--param", "iterations=2", str(src), str(dst)]) == 2
    assert "another launderer configuration" in capsys.readouterr().err


def test_a_partial_manifest_line_is_dropped(tmp_path):
    path = tmp_path / MANIFEST
    header = ",".join(COLUMNS) + "\n"
    path.write_text(header + "a,b.png,sd-vae,f,30.0,\n" + "c,d.png,sd-v")
    rows = read_manifest(path)
    assert [r["output"] for r in rows] == ["b.png"]
    assert path.read_text() == header + "a,b.png,sd-vae,f,30.0,\n"


def test_output_names_are_unique(tmp_path):
    for name in ("a.png", "a.jpg", "b.JPG", "c.tif"):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "notes.txt").write_text("not an image")
    outputs = {j.source.name: j.output for j in plan(tmp_path)}
    assert outputs == {"a.png": "a.png", "a.jpg": "a.jpg.png", "b.JPG": "b.png", "c.tif": "c.png"}


def test_batches_of_several_sizes(vae_dir, tmp_path, capsys):
    """Mixed sizes, batch size 2: grouped by size; each output equals laundering it alone."""
    vae, folder = vae_dir
    src, dst = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    rng = np.random.default_rng(0)
    sizes = [(32, 32), (40, 24), (32, 32), (40, 24), (32, 32)]
    arrays = {}
    for i, (h, w) in enumerate(sizes):
        arrays[f"{i}.png"] = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        Image.fromarray(arrays[f"{i}.png"]).save(src / f"{i}.png")
    code, summary, err = launder("--launderer", "sd-vae", "--param", f"weights={folder}",
                            "--batch-size", "2", "--json", str(src), str(dst),
                            capsys=capsys)  # fmt: skip
    assert code == 0 and summary["written"] == 5
    for name, arr in arrays.items():
        x = torch.from_numpy(arr.astype(np.float32) / 255).permute(2, 0, 1)[None]
        expected = np.round(direct_roundtrip(vae, x)[0].permute(1, 2, 0).numpy() * 255)
        got = np.asarray(Image.open(dst / name)).astype(np.float64)
        assert np.abs(got - expected).max() <= 1  # batching may move a value by one level
    assert os.path.exists(dst / MANIFEST)
