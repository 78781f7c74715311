"""benchmarks/real_photos.py, its pure parts: crops, the skip list, the split by photo, the YAML.

Two tiny PNG "photos" in tmp_path stand for the Debian wallpapers (no download, no model run).
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

import real_photos as rp  # noqa: E402


@dataclass(frozen=True)
class Photo:
    """What write_crops reads of debian_photos.WallpaperPhoto."""

    package: str
    path: str
    width: int
    height: int


@pytest.fixture()
def photos(tmp_path: Path) -> list[Photo]:
    rng = np.random.default_rng(0)
    out = []
    for name, (w, h) in {"wide": (200, 70), "tall": (64, 130), "tiny": (40, 40)}.items():
        path = tmp_path / "src" / f"{name} photo.png"
        path.parent.mkdir(exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(path)
        out.append(Photo("pkg-a", str(path), w, h))
    return out


def test_crop_boxes_centre_first_then_neighbours_that_fit() -> None:
    assert rp.crop_boxes(200, 70, 64, 9) == [(68, 3), (4, 3), (132, 3)]
    assert rp.crop_boxes(64, 130, 64, 9) == [(0, 33)]  # above/below would leave the image
    assert rp.crop_boxes(200, 200, 64, 2) == [(68, 68), (4, 68)]
    assert rp.crop_boxes(63, 200, 64, 4) == []
    assert rp.crop_boxes(800, 600, 256, 9) == [(272, 172), (16, 172), (528, 172)]
    boxes = rp.crop_boxes(1000, 800, 256, 9)
    assert len(boxes) == 9  # a 3 x 3 block of 256 px crops
    for i, (x, y) in enumerate(boxes):  # non-overlapping
        for x2, y2 in boxes[i + 1 :]:
            assert abs(x - x2) >= 256 or abs(y - y2) >= 256


def test_write_crops_exact_pixels_grouped_by_photo(photos: list[Photo], tmp_path: Path) -> None:
    dp = rp.load_debian_photos()
    root = tmp_path / "crops"
    skip = {"tall photo": "a render"}
    written = rp.write_crops(photos, root, dp.load_rgb, size=64, per_photo=2, skip=skip)
    by = {Path(p.path).stem: p for p in written}
    assert by["tall photo"].skipped == "not a photograph: a render"
    assert by["tiny photo"].skipped == "smaller than 64 x 64"
    wide = by["wide photo"]
    assert wide.skipped is None and wide.name == "pkg-a__wide_photo"
    assert [Path(c).relative_to(root).as_posix() for c in wide.crops] == [
        "pristine/pkg-a__wide_photo/c0.png",
        "pristine/pkg-a__wide_photo/c1.png",
    ]
    src = dp.load_rgb(wide.path)
    first = np.asarray(Image.open(wide.crops[0]))
    assert np.array_equal(first, dp.centre_crop(src, 64))  # the centre crop, exact pixels
    assert np.array_equal(np.asarray(Image.open(wide.crops[1])), src[3:67, 4:68])
    assert sorted(p.name for p in root.glob("pristine/*")) == ["pkg-a__wide_photo"]
    capped = rp.write_crops(photos, tmp_path / "c2", dp.load_rgb, 64, 1, {}, max_photos=1)
    assert [p.skipped for p in capped] == [None, "beyond --max-photos", "beyond --max-photos"]


def test_experiment_validates_and_splits_by_photo(photos: list[Photo], tmp_path: Path) -> None:
    from fzoo.config import load_experiment
    from fzoo.data import load_items

    dp = rp.load_debian_photos()
    root = tmp_path / "crops"
    more = [Photo("pkg-b", p.path, p.width, p.height) for p in photos[:1]]  # a second photo
    rp.write_crops(photos + more, root, dp.load_rgb, size=64, per_photo=3, skip={})
    aes = rp.autoencoders(None, "fzoo-tiny-vae-16ch")
    assert [a.key for a in aes] == ["tiny", "vae"]
    exp = rp.build_experiment(root, aes, seed=3, test_size=0.5)
    assert [t["name"] for t in exp["tasks"]] == ["tiny", "vae", "tiny-to-vae", "vae-to-tiny"]
    transfer = exp["tasks"][2]
    assert transfer["train_on"] == ["pristine", "laundered-tiny"]
    assert transfer["test_on"] == ["pristine", "laundered-vae"]
    assert [p["name"] for p in exp["pipelines"]] == [
        "recon-score-tiny", "recon-lr-tiny", "recon-score-vae", "recon-lr-vae",
        "fft-lr", "dct-lr", "residual-lr",
    ]  # fmt: skip
    assert [c["name"] for c in exp["conditions"]] == ["clean", "jpeg-90", "resize-0.5"]
    path = tmp_path / "exp.yaml"
    path.write_text(rp.to_yaml(exp))
    assert "&id" not in path.read_text()  # every value written out
    experiment = load_experiment(path)
    spec = experiment.spec
    assert spec.seed == 3 and spec.split.test_size == 0.5
    plan = experiment.cells[0].plan
    assert plan is not None
    data = load_items(plan.data, spec.seed)
    pristine = [it for it in data.items if it.label == "pristine"]
    # wide: 3 crops; tall: 1 (64 wide, 130 high: above/below do not fit); pkg-b's wide: 3
    assert sorted(it.source for it in pristine) == (
        ["pkg-a__tall_photo"] + ["pkg-a__wide_photo"] * 3 + ["pkg-b__wide_photo"] * 3
    )
    laundered = sorted(it.source for it in data.items if it.label == "laundered-vae")
    assert laundered == sorted(it.source for it in pristine)  # a crop's copies keep its photo


def test_colour_shift_and_psnr() -> None:
    a = np.zeros((4, 4, 3))
    b = a.copy()
    b[..., 0] += 10 / 255
    b[..., 2] -= 4 / 255
    assert rp.colour_shift(a, b) == pytest.approx(14 / 3)
    grey = np.full((2, 2, 3), 200, np.uint8)
    assert rp.colour_shift(grey, grey - 3) == pytest.approx(3.0)  # uint8: in levels already
    assert rp.psnr_db(a, b) == pytest.approx(
        10 * np.log10(1 / (((10 / 255) ** 2 + (4 / 255) ** 2) / 3))
    )
    assert rp.psnr_db(a, a) == float("inf")


def test_held_out_package_refused_before_any_download(tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as exc:
        rp.main(["--packages", "mate-backgrounds", "--out", str(tmp_path / "o"), "--no-run"])
    assert exc.value.code == 2
    assert not (tmp_path / "o").exists()


def test_no_run_writes_yaml_and_keeps_a_foreign_photos_folder(tmp_path: Path) -> None:
    cache = tmp_path / "debian"  # a manifest already listing the packages: no download
    src = tmp_path / "p.png"
    Image.fromarray(np.full((300, 600, 3), 90, np.uint8)).save(src)
    photo = {"package": "pkg", "path": str(src), "sha256": "0", "width": 600, "height": 300}
    manifest = {"packages": {"pkg": {"version": "1"}}, "photos": [photo]}
    cache.mkdir()
    (cache / "manifest.json").write_text(json.dumps(manifest))
    (cache / "unpacked" / "pkg").mkdir(parents=True)
    (cache / "unpacked" / "pkg" / ".done").write_text("1")
    (cache / "debs").mkdir()
    (cache / "debs" / "pkg_1_all.deb").write_text("")
    out = tmp_path / "o"
    args = ["--packages", "pkg", "--debian-cache", str(cache), "--out", str(out), "--no-run"]
    args += ["--crop", "128", "--taef2", "none"]
    assert rp.main(args) == 0
    # 600 x 300 holds the centre crop of 128 and its left and right neighbours only
    crops = sorted(p.name for p in (out / "photos" / "pristine" / "pkg__p").iterdir())
    assert crops == ["c0.png", "c1.png", "c2.png"]
    assert "laundered-tiny" in (out / "real-photos.yaml").read_text()
    assert rp.main(args) == 0  # its own crops are rewritten
    (out / "photos" / ".written-by-real_photos").unlink()
    with pytest.raises(SystemExit):  # a folder it did not write is never removed
        rp.main(args)
    assert (out / "photos" / "pristine" / "pkg__p" / "c0.png").exists()


def test_markdown_lists_every_task_and_condition() -> None:
    aes = rp.autoencoders("/nowhere/taef2", None)
    summary = {
        "seed": 0,
        "test_size": 0.5,
        "data": {
            "packages": ["p"],
            "crop": 256,
            "crops_per_photo": 4,
            "photos_used": 2,
            "crops": 8,
        },
        "split": {"train_photos": 1, "test_photos": 1},
        "quality": {
            "tiny": {
                "n": 8,
                "psnr_db_mean": 21.0,
                "psnr_db_min": 19.5,
                "colour_shift_mean": 14.2,
                "colour_shift_max": 30.0,
            }
        },
        "auc": {"tiny-to-taef2": {"fft-lr": {"clean": 0.5, "jpeg-90": 0.25}}},
        "task_text": rp.task_text(aes),
        "timing": {"wall_s": 10.0, "run_s": 8.0, "load_start": 1.0, "load_end": 2.0},
    }
    text = rp.markdown(summary)
    assert "| tiny | 8 | 21.00 (19.50) | 14.20 (30.00) |" in text
    assert "train on tiny, test on taef2" in text
    assert "| fft-lr | spectrum (FFT radial profile) | 0.500 | 0.250 | — |" in text
