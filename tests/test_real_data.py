"""The real-data path: photos cut into tiles never straddle the split, leaks are refused.

Real photos (the ones shipped with scikit-image and scikit-learn) are saved as PNG files in a
camera-dataset layout (``Camera_Model/photo.png``, as Dresden or VISION) and run through
``fzoo run`` on small YAML files: tiled by the dataset (``tile:``), already cut into tiles and
grouped (``group_by:``), listed in a manifest; a duplicated file and a crafted manifest are
refused with the offending names; ``target: camera`` puts every camera on both sides.
"""

from __future__ import annotations

import csv
import json
import re
import shutil
import textwrap
from pathlib import Path

import numpy as np
import pytest
import skimage.data
import sklearn.datasets
from PIL import Image

import fzoo
from fzoo.cli import main
from fzoo.data import Item, SplitLeakError, check_split
from fzoo_builtins.datasets import FolderDataset, ManifestDataset

H, W, TILE = 128, 192, 64  # each photo: a 2 x 3 grid of 64-pixel tiles


def _photos() -> dict[str, np.ndarray]:
    china, flower = sklearn.datasets.load_sample_images().images
    full = {
        "astronaut": skimage.data.astronaut(),
        "chelsea": skimage.data.chelsea(),
        "coffee": skimage.data.coffee(),
        "rocket": skimage.data.rocket(),
        "ihc": skimage.data.immunohistochemistry(),
        "hubble": skimage.data.hubble_deep_field(),
        "retina": skimage.data.retina(),
        "china": china,
        "flower": flower,
    }
    out = {}
    for name, img in full.items():
        y, x = (img.shape[0] - H) // 2, (img.shape[1] - W) // 2
        out[name] = np.ascontiguousarray(img[y : y + H, x : x + W, :3])
    return out


PHOTOS = _photos()
CAMERAS = {
    "Canon_Ixus70": ["astronaut", "chelsea", "coffee"],
    "Nikon_D70": ["rocket", "ihc", "hubble"],
    "Sony_DSC-H50": ["retina", "china", "flower"],
}


def save(path: Path, pixels: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)


def camera_tree(root: Path) -> Path:
    """``root/<camera>/<photo>.png``: whole photos, one folder per camera model."""
    for camera, names in CAMERAS.items():
        for name in names:
            save(root / camera / f"{name}.png", PHOTOS[name])
    return root


def pretiled_tree(root: Path) -> Path:
    """``root/<camera>/<photo>/<photo>_tileK.png``: photos someone already cut into tiles."""
    for camera, names in CAMERAS.items():
        for name in names:
            k = 0
            for y in range(0, H, TILE):
                for x in range(0, W, TILE):
                    tile = PHOTOS[name][y : y + TILE, x : x + TILE]
                    save(root / camera / name / f"{name}_tile{k}.png", tile)
                    k += 1
    return root


def experiment(tmp_path: Path, dataset: str, extra: str = "", tasks: str = "") -> Path:
    text = textwrap.dedent(
        """\
        name: real-data
        seed: 0
        data:
          dataset:
        {dataset}
          derive:
            - {{label: jpeg, from: pristine, perturbations: [jpeg-75]}}
        split: {{test_size: 0.34{extra}}}
        pipelines:
          - name: dct-lr
            features: [dct-16]
            classifier: logistic-regression
        tasks:
          - {{name: pristine-vs-jpeg, type: binary, positive: [jpeg]}}
        {tasks}"""
    ).format(dataset=textwrap.indent(dataset, " " * 4), extra=extra, tasks=tasks)
    path = tmp_path / "exp.yaml"
    path.write_text(text)
    return path


CAMERA_TASK = "  - {name: camera-id, target: camera, train_on: [pristine], test_on: [pristine]}\n"


def run(cfg: Path, out: Path) -> dict:
    assert main(["run", str(cfg), "--out", str(out), "--cache-dir", str(out / "cache")]) == 0
    return json.loads((out / "results.json").read_text())


def split_of(results: dict) -> dict:
    splits = results["meta"]["split"]
    assert len(splits) == 1
    return next(iter(splits.values()))


def photo_of(source: str) -> str:
    """The photo name in a source (``Canon_Ixus70/astronaut`` -> ``astronaut``)."""
    return source.rsplit("/", 1)[-1]


def test_tiles_of_a_photo_never_straddle_the_split(tmp_path: Path) -> None:
    root = camera_tree(tmp_path / "cameras")
    ds = f"name: folder\nparams: {{root: {root}, folders: camera, tile: {TILE}}}"
    results = run(experiment(tmp_path, ds), tmp_path / "out")
    split = split_of(results)
    train, test = set(split["train"]["names"]), set(split["test"]["names"])
    assert train and test and not train & test
    assert train | test == {f"{c}/{p}" for c, ps in CAMERAS.items() for p in ps}
    # every tested image (a tile id ends in #x=..,y=..) is a tile of a test photo
    preds = list(csv.DictReader((tmp_path / "out" / "predictions.csv").open()))
    assert preds
    for row in preds:
        found = re.fullmatch(r"(?:pristine|jpeg)/(.+)#x=(\d+),y=(\d+)", row["item"])
        assert found, row["item"]
        assert found.group(1) == row["source"]
        assert found.group(1) in test and found.group(1) not in train
    n_test_items = sum(1 for r in preds if r["condition"] == "clean")
    assert n_test_items == len(test) * 6 * 2  # 6 tiles, pristine + jpeg twin


def test_tiles_are_exact_crops_and_the_draw_is_seeded(tmp_path: Path) -> None:
    root = camera_tree(tmp_path / "cameras")
    ds = FolderDataset(root=root, folders="camera", tile=TILE)
    recs = [r for r in ds.records() if r.source == "Canon_Ixus70/coffee"]
    assert [r.tile for r in recs] == [
        (x, y, TILE, TILE) for y in range(0, H, TILE) for x in range(0, W, TILE)
    ]
    from fzoo.data import decode_record

    for r in recs:
        x, y, w, h = r.tile or (0, 0, 0, 0)
        got = decode_record(r, 10**8).pixels
        want = PHOTOS["coffee"][y : y + h, x : x + w].astype(np.float32) / 255
        assert np.array_equal(got, want)
        assert r.display.endswith(f"coffee.png#x={x},y={y}")

    def draw(seed: int) -> list:
        d = FolderDataset(root=root, folders="camera", tile=TILE, tiles_per_image=2, seed=seed)
        return [(r.source, r.tile) for r in d.records()]

    assert draw(0) == draw(0)
    assert len(draw(0)) == 9 * 2
    assert draw(0) != draw(1)
    stride = FolderDataset(root=root, folders="camera", tile=TILE, stride=32)
    assert sum(1 for r in stride.records() if r.source == "Canon_Ixus70/coffee") == 3 * 5


def test_group_by_parent_and_regex_keep_pretiled_photos_together(tmp_path: Path) -> None:
    root = pretiled_tree(tmp_path / "tiles")
    by_parent = FolderDataset(root=root, folders="camera", group_by="parent")
    by_regex = FolderDataset(root=root, folders="camera", group_by={"regex": r"([^/]+)_tile\d+$"})
    for ds in (by_parent, by_regex):
        sources = {r.source for r in ds.records()}
        assert sources == {f"{c}/{p}" for c, ps in CAMERAS.items() for p in ps}
    ds = f"name: folder\nparams: {{root: {root}, folders: camera, group_by: parent}}"
    split = split_of(run(experiment(tmp_path, ds), tmp_path / "out"))
    assert not set(split["train"]["names"]) & set(split["test"]["names"])
    assert split["train"]["sources"] + split["test"]["sources"] == 9


def test_without_grouping_pretiled_photos_leak_and_the_count_shows_it(tmp_path: Path) -> None:
    """The documented failure: each tile its own source, tiles of one photo on both sides."""
    root = pretiled_tree(tmp_path / "tiles")
    ds = f"name: folder\nparams: {{root: {root}, folders: camera}}"
    split = split_of(run(experiment(tmp_path, ds), tmp_path / "out"))
    photos = {
        side: {photo_of(s).split("_tile")[0] for s in split[side]["names"]}
        for side in ("train", "test")
    }
    assert photos["train"] & photos["test"]  # what tile:/group_by: prevent
    (warning,) = split["warnings"]  # the run says so
    n_straddling = len(photos["train"] & photos["test"])
    assert f"{n_straddling} photo(s) by their sub-folders have pieces on both sides" in warning
    assert "group_by: parent" in warning


def test_a_bad_group_by_regex_names_the_file(tmp_path: Path) -> None:
    root = pretiled_tree(tmp_path / "tiles")
    ds = FolderDataset(root=root, folders="camera", group_by={"regex": r"^(.*)_crop\d+$"})
    with pytest.raises(ValueError, match=r"does not match 'astronaut/astronaut_tile0'"):
        list(ds.records())
    with pytest.raises(ValueError, match="exactly one group"):
        FolderDataset(root=root, group_by={"regex": "tile"})


def write_manifest(tmp_path: Path, rows: list[dict[str, str]]) -> Path:
    path = tmp_path / "manifest.csv"
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def test_manifest_tiles_and_column_grouping(tmp_path: Path) -> None:
    root = camera_tree(tmp_path / "cameras")
    rows = [
        {"path": f"{c}/{p}.png", "label": "pristine", "camera": c, "source": f"{c}/{p}"}
        for c, ps in CAMERAS.items()
        for p in ps
    ]
    manifest = write_manifest(root, rows)
    ds = f"name: manifest\nparams: {{path: {manifest}, tile: {TILE}}}"
    split = split_of(run(experiment(tmp_path, ds), tmp_path / "out"))
    assert not set(split["train"]["names"]) & set(split["test"]["names"])
    assert split["train"]["sources"] + split["test"]["sources"] == 9

    tiles = pretiled_tree(tmp_path / "tiles")
    rows = [
        {"path": str(p.relative_to(tiles)), "label": "pristine", "photo": p.parent.name}
        for p in sorted(tiles.rglob("*.png"))
    ]
    grouped = ManifestDataset(path=write_manifest(tiles, rows), group_by={"column": "photo"})
    assert {r.source for r in grouped.records()} == {p for ps in CAMERAS.values() for p in ps}
    parent = ManifestDataset(path=tiles / "manifest.csv", group_by="parent")
    assert {r.source for r in parent.records()} == {
        f"{c}/{p}" for c, ps in CAMERAS.items() for p in ps
    }


def test_a_crafted_manifest_forcing_one_photo_onto_both_sides_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = camera_tree(tmp_path / "cameras")
    rows = [
        {"path": f"{c}/{p}.png", "label": "pristine", "source": p, "split": ""}
        for c, ps in CAMERAS.items()
        for p in ps
    ]
    rows += [
        {"path": "Nikon_D70/rocket.png", "label": "pristine", "source": "rocket", "split": s}
        for s in ("train", "test")
    ]
    rows[0]["split"] = "train"
    manifest = write_manifest(root, rows)
    ds = f"name: manifest\nparams: {{path: {manifest}, tile: {TILE}}}"
    cfg = experiment(tmp_path, ds)
    assert (
        main(["run", str(cfg), "--out", str(tmp_path / "out"), "--cache-dir", str(tmp_path / "c")])
        != 0
    )
    err = capsys.readouterr().err
    assert "split leak" in err and "'rocket'" in err and "both train and test" in err


def test_a_duplicated_file_under_two_names_is_refused_with_its_names(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = camera_tree(tmp_path / "cameras")
    for camera, names in CAMERAS.items():  # copies: other sources, same pixels
        for name in names:
            shutil.copy(root / camera / f"{name}.png", root / camera / f"{name}-copy.png")
    ds = f"name: folder\nparams: {{root: {root}, folders: camera}}"
    # (with split seed 0, every copy happens to land beside its original: no leak to refuse)
    cfg = experiment(tmp_path, ds, extra=", seed: 1", tasks=CAMERA_TASK)
    assert (
        main(["run", str(cfg), "--out", str(tmp_path / "out"), "--cache-dir", str(tmp_path / "c")])
        != 0
    )
    err = capsys.readouterr().err
    assert "split leak" in err and "same pixels" in err and "-copy.png" in err
    assert "allow_duplicates" in err and "group_by" in err
    # knowingly accepted
    cfg = experiment(tmp_path, ds, extra=", seed: 1, allow_duplicates: true", tasks=CAMERA_TASK)
    run(cfg, tmp_path / "out2")


def test_check_split_keeps_derived_twins_and_ignores_one_colour_tiles() -> None:
    def item(i: str, source: str, h: str, uniform: bool = False) -> Item:
        rec = fzoo.Record(label="pristine", source=source, path=f"{i}.png")
        return Item(id=i, label="pristine", source=source, base_hash=h, record=rec, uniform=uniform)

    flat = [item("a", "a", "white", True), item("b", "b", "white", True)]
    check_split(flat, {"a": "train", "b": "test"})
    with pytest.raises(SplitLeakError, match=r"a\.png \(train\) = b\.png \(test\)"):
        check_split([item("a", "a", "h"), item("b", "b", "h")], {"a": "train", "b": "test"})


def test_camera_stratification_puts_every_camera_on_both_sides(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = camera_tree(tmp_path / "cameras")
    save(
        root / "Olympus_1050SW" / "colorwheel.png",  # one photo: cannot be on both sides
        skimage.data.colorwheel()[:H, :W, :3],
    )
    ds = f"name: folder\nparams: {{root: {root}, folders: camera, tile: {TILE}}}"
    for seed in range(2):
        cfg = experiment(tmp_path, ds, extra=f", seed: {seed}", tasks=CAMERA_TASK)
        split = split_of(run(cfg, tmp_path / f"out{seed}"))
        assert split["stratified_by"] == "label+camera"
        per_camera = split["sources_per_camera"]
        for camera in CAMERAS:
            assert per_camera[camera]["train"] >= 1 and per_camera[camera]["test"] >= 1
        assert sum(per_camera["Olympus_1050SW"].values()) == 1
        assert any("Olympus_1050SW" in w and "at least 2 photos" in w for w in split["warnings"])
        report = (tmp_path / f"out{seed}" / "report.md").read_text()
        assert "sources per class (train/test)" in report and "Olympus_1050SW" in report
    assert "warning: split: camera 'Olympus_1050SW'" in capsys.readouterr().err


def test_pipeline_tasks_typo_is_located_at_the_name(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = tmp_path / "typo.yaml"
    cfg.write_text(
        textwrap.dedent(
            """\
            data:
              dataset: {name: sample-photos, params: {crop: 64}}
              derive: [{label: jpeg, from: pristine, perturbations: [jpeg-75]}]
            pipelines:
              - name: dct-lr
                features: [dct-16]
                classifier: logistic-regression
                tasks: [pristine-vs-jpeg, pristine-vs-jpg]
            tasks:
              - {name: pristine-vs-jpeg, type: binary, positive: [jpeg]}
            """
        )
    )
    assert main(["run", str(cfg), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "typo.yaml:8:31: pipelines.0.tasks.1: pipeline 'dct-lr' names unknown task" in err
    assert "did you mean 'pristine-vs-jpeg'?" in err


def test_a_tile_hashes_like_the_same_pixels_saved_as_a_file(tmp_path: Path) -> None:
    """Tiles cut by the dataset and pre-cut tile files share content hashes (cache entries)."""
    from fzoo.data import decode_record

    root = camera_tree(tmp_path / "cameras")
    tiles = pretiled_tree(tmp_path / "tiles")
    cut = FolderDataset(root=root, folders="camera", tile=TILE)
    files = FolderDataset(root=tiles, folders="camera", group_by="parent")
    hashes = {decode_record(r, 10**8).content_hash for r in cut.records()}
    assert hashes == {decode_record(r, 10**8).content_hash for r in files.records()}
    assert len(hashes) == 9 * 6


def test_a_photo_that_does_not_decode_is_skipped_once_not_per_tile(tmp_path: Path) -> None:
    from fzoo.config import DataSpec
    from fzoo.data import load_items

    root = camera_tree(tmp_path / "cameras")
    broken = root / "Nikon_D70" / "rocket.png"
    broken.write_bytes(broken.read_bytes()[: broken.stat().st_size // 2])  # header intact
    save(root / "Nikon_D70" / "small.png", PHOTOS["ihc"][:32, :32])
    spec = DataSpec.model_validate(
        {
            "dataset": {
                "name": "folder",
                "params": {"root": str(root), "folders": "camera", "tile": TILE},
            }
        }
    )
    data = load_items(spec, seed=0)
    reasons = {Path(s.path).name: s.reason for s in data.skipped}
    assert set(reasons) == {"rocket.png", "small.png"}
    assert reasons["small.png"] == f"32x32 is smaller than tile: {TILE}"
    assert len(data.items) == 8 * 6


def test_a_tile_travels_to_a_remote_worker_as_its_position(tmp_path: Path) -> None:
    """The Ray engine ships a WorkUnit (path and tile), not pixels; a worker cuts the same tile."""
    import pickle

    from fzoo.cache import ArrayCache
    from fzoo.config import DataSpec
    from fzoo.data import Materializer, WorkUnit, load_items

    root = camera_tree(tmp_path / "cameras")
    params = {"root": str(root), "folders": "camera", "tile": TILE, "tiles_per_image": 2}
    data = load_items(DataSpec.model_validate({"dataset": {"name": "folder", "params": params}}), 0)
    mat = Materializer(ArrayCache(tmp_path / "cache"), 10**8)
    for item in data.items[:4]:
        unit = pickle.loads(pickle.dumps(WorkUnit.of(item, (), 10**8)))
        assert item.record is not None and unit.tile == item.record.tile is not None
        remote, _ = unit.to_item(lambda ref, fp: None)  # type: ignore[arg-type,return-value]
        assert np.array_equal(mat.load(remote), mat.load(item))
