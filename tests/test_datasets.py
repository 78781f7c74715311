"""The built-in datasets: class-per-folder trees and CSV/JSONL manifests, on real image files."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import skimage.data
from PIL import Image
from pydantic import ValidationError

import fzoo
from fzoo_builtins.datasets import (
    FolderDataset,
    ManifestDataset,
    fzoo_register_datasets,
)

PHOTOS = {
    "astronaut": lambda: skimage.data.astronaut()[100:164, 180:244],
    "chelsea": lambda: skimage.data.chelsea()[80:128, 150:198],
    "coffee": lambda: skimage.data.coffee()[100:148, 200:248],
    "camera": lambda: skimage.data.camera()[100:140, 200:240],
}


def write_photo(path: Path, photo: str, fmt: str = "PNG") -> np.ndarray:
    pixels = PHOTOS[photo]()
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path, format=fmt)
    return pixels


def rows(records: list[fzoo.Record], root: Path) -> list[tuple[str, str, str]]:
    return [(r.label, r.source, Path(r.path or "").relative_to(root).as_posix()) for r in records]


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    write_photo(root / "pristine" / "b.png", "chelsea")
    write_photo(root / "pristine" / "a.png", "astronaut")
    write_photo(root / "pristine" / "sub" / "c.png", "coffee")
    write_photo(root / "pristine" / "Z.TIF", "camera", fmt="TIFF")
    write_photo(root / "laundered" / "a.png", "astronaut")
    write_photo(root / "laundered" / "b.jpg", "chelsea", fmt="JPEG")
    write_photo(root / "laundered" / ".hidden.png", "coffee")
    write_photo(root / "laundered" / ".cache" / "x.png", "coffee")
    (root / "laundered" / "notes.txt").write_text("not an image")
    (root / "laundered" / "a.png.json").write_text("{}")
    write_photo(root / ".trash" / "y.png", "coffee")  # hidden class folder
    write_photo(root / "stray.png", "coffee")  # not inside a class folder
    (root / "synthetic").mkdir()
    (root / "synthetic" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    return root


def test_folder_labels_sources_and_order(tree: Path) -> None:
    records = list(FolderDataset(root=tree).records())
    assert rows(records, tree) == [
        ("laundered", "a", "laundered/a.png"),
        ("laundered", "b", "laundered/b.jpg"),
        ("pristine", "Z", "pristine/Z.TIF"),
        ("pristine", "a", "pristine/a.png"),
        ("pristine", "b", "pristine/b.png"),
        ("pristine", "sub/c", "pristine/sub/c.png"),
        ("synthetic", "broken", "synthetic/broken.png"),
    ]
    assert all(r.camera is None and r.split is None and r.data is None for r in records)
    # a photo and its laundered version share a source, so the split keeps them together
    assert {r.label for r in records if r.source == "a"} == {"laundered", "pristine"}

    decoded = fzoo.load_image(records[3].path or "")
    expected = PHOTOS["astronaut"]().astype(np.float32) / 255.0
    np.testing.assert_array_equal(decoded.pixels, expected)
    # corrupt files are listed; decoding (and reporting) is the runner's job
    with pytest.raises(fzoo.ImageError, match="broken.png"):
        fzoo.load_image(records[-1].path or "")


def test_folder_of_cameras(tmp_path: Path) -> None:
    root = tmp_path / "cams"
    write_photo(root / "Canon_Ixus70" / "IMG_0001.png", "astronaut")
    write_photo(root / "Nikon_D70" / "IMG_0001.png", "coffee")
    write_photo(root / "Nikon_D70" / "IMG_0002.png", "chelsea")
    records = list(FolderDataset(root=root, folders="camera").records())
    assert [(r.label, r.camera, r.source) for r in records] == [
        ("pristine", "Canon_Ixus70", "Canon_Ixus70/IMG_0001"),
        ("pristine", "Nikon_D70", "Nikon_D70/IMG_0001"),  # a different photo: its own source
        ("pristine", "Nikon_D70", "Nikon_D70/IMG_0002"),
    ]
    again = FolderDataset(root=root, folders="camera", label="real", labels=["Nikon_D70"])
    assert [(r.label, r.camera) for r in again.records()] == [("real", "Nikon_D70")] * 2


def test_folder_is_deterministic_and_repeatable(tree: Path) -> None:
    ds = FolderDataset(root=str(tree))
    assert list(ds.records()) == list(ds.records())
    assert FolderDataset(root=tree).fingerprint() == ds.fingerprint()


def test_folder_labels_restrict_and_order(tree: Path) -> None:
    records = list(FolderDataset(root=tree, labels=["synthetic", "laundered"]).records())
    assert [r.label for r in records] == ["synthetic", "laundered", "laundered"]
    with pytest.raises(ValueError, match=r"\['fake'\].*class folders: \['laundered', 'pristine'"):
        list(FolderDataset(root=tree, labels=["pristine", "fake"]).records())
    with pytest.raises(ValueError, match="repeated"):
        list(FolderDataset(root=tree, labels=["pristine", "pristine"]).records())


def test_folder_not_recursive(tree: Path) -> None:
    records = list(FolderDataset(root=tree, recursive=False, labels=["pristine"]).records())
    assert [r.source for r in records] == ["Z", "a", "b"]


def test_folder_errors(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    with pytest.raises(FileNotFoundError, match="nowhere"):
        list(FolderDataset(root=missing).records())
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "loose.png").write_bytes(b"")
    (empty / ".hidden").mkdir()
    with pytest.raises(ValueError, match=r"no class folders in .*empty"):
        list(FolderDataset(root=empty).records())
    with pytest.raises(ValueError, match="not a folder"):
        list(FolderDataset(root=empty / "loose.png").records())
    with pytest.raises(ValidationError):
        FolderDataset(root=empty, recurse=True)
    with pytest.raises(ValidationError):
        FolderDataset()


def test_folder_symlink_loop_terminates(tree: Path) -> None:
    pristine = tree / "pristine"
    os.symlink(pristine, pristine / "sub" / "loop")  # sub/loop -> its own grandparent
    os.symlink(tree, tree / "laundered" / "up")  # laundered/up -> the dataset root
    followed = list(FolderDataset(root=tree, follow_symlinks=True).records())
    paths = [Path(r.path or "").relative_to(tree).as_posix() for r in followed]
    assert len(paths) == len(set(paths))
    pristine_rows = [p for p in paths if p.startswith("pristine/")]
    assert pristine_rows == [
        "pristine/Z.TIF",
        "pristine/a.png",
        "pristine/b.png",
        "pristine/sub/c.png",
    ]
    # laundered/up is a new real folder (the root): entered once, its own subfolders once each
    assert "laundered/up/pristine/a.png" in paths
    assert not any("/up/laundered/up/" in p for p in paths)

    plain = list(FolderDataset(root=tree).records())
    assert len(plain) == 7
    assert not any({"loop", "up"} & set(Path(r.path or "").relative_to(tree).parts) for r in plain)


def test_folder_symlinked_files_and_class_folders(tree: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    write_photo(elsewhere / "d.png", "coffee")
    os.symlink(elsewhere, tree / "generated")
    os.symlink(elsewhere / "d.png", tree / "synthetic" / "link.png")
    os.symlink(tmp_path / "gone.png", tree / "synthetic" / "dangling.png")

    default = list(FolderDataset(root=tree, labels=["synthetic"]).records())
    # linked files are listed (a dangling one too: the runner reports it as unreadable)
    assert [r.source for r in default] == ["broken", "dangling", "link"]
    assert "generated" not in {r.label for r in FolderDataset(root=tree).records()}
    with pytest.raises(ValueError, match="follow_symlinks"):
        list(FolderDataset(root=tree, labels=["generated"]).records())

    followed = list(FolderDataset(root=tree, labels=["generated"], follow_symlinks=True).records())
    assert rows(followed, tree) == [("generated", "d", "generated/d.png")]


# --- manifest -----------------------------------------------------------------------------------


@pytest.fixture
def images(tmp_path: Path) -> Path:
    base = tmp_path / "imgs"
    write_photo(base / "real" / "astro.png", "astronaut")
    write_photo(base / "fake" / "cat.png", "chelsea")
    return base


def test_manifest_csv(images: Path, tmp_path: Path) -> None:
    other = tmp_path / "abs" / "coffee.png"
    write_photo(other, "coffee")
    manifest = images / "manifest.csv"
    manifest.write_text(
        "path,label,source,camera,split,generator,quality\n"
        "real/astro.png,pristine,,Canon EOS,train,,95\n"
        "\n"
        f"{other},synthetic,scene-7,,TEST,sdxl,\n"
        "fake/cat.png,laundered,scene-7,,,sd-vae,90\n"
    )
    records = list(ManifestDataset(path=manifest).records())
    assert [(r.label, r.source, r.camera, r.split) for r in records] == [
        ("pristine", "astro", "Canon EOS", "train"),
        ("synthetic", "scene-7", None, "test"),
        ("laundered", "scene-7", None, None),
    ]
    assert [r.path for r in records] == [
        str(images / "real" / "astro.png"),
        str(other),
        str(images / "fake" / "cat.png"),
    ]
    assert records[0].meta == {"generator": "", "quality": "95"}
    assert records[2].meta == {"generator": "sd-vae", "quality": "90"}
    pixels = fzoo.load_image(records[0].path or "").pixels
    np.testing.assert_array_equal(pixels, PHOTOS["astronaut"]() / np.float32(255.0))


def test_manifest_jsonl_with_root(images: Path, tmp_path: Path) -> None:
    manifest = tmp_path / "lists" / "data.jsonl"
    manifest.parent.mkdir()
    lines = [
        {"path": "real/astro.png", "label": "pristine", "camera": "Nikon", "iso": 200},
        {"path": "fake/cat.png", "label": "laundered", "split": None, "tags": ["vae", "x2"]},
    ]
    manifest.write_text("\n".join(json.dumps(x) for x in lines) + "\n\n")
    records = list(ManifestDataset(path=manifest, root=images).records())
    assert [(r.label, r.source, r.camera, r.split) for r in records] == [
        ("pristine", "astro", "Nikon", None),
        ("laundered", "cat", None, None),
    ]
    assert records[0].path == str(images / "real" / "astro.png")
    assert records[0].meta == {"iso": 200}
    assert records[1].meta == {"tags": ["vae", "x2"]}
    assert all(Path(r.path or "").is_file() for r in records)
    # without root, relative paths resolve against the manifest's own folder
    default = list(ManifestDataset(path=manifest).records())
    assert default[0].path == str(manifest.parent / "real" / "astro.png")


def test_manifest_errors_name_file_and_line(images: Path) -> None:
    csv_path = images / "manifest.csv"
    csv_path.write_text(
        "path,label\nreal/astro.png,pristine\n\nfake/cat.png,\nfake/cat.png,laundered\n"
    )
    ds = ManifestDataset(path=csv_path)
    got = ds.records()
    assert next(got).label == "pristine"
    with pytest.raises(ValueError, match=r"manifest\.csv:4: missing 'label'"):
        next(got)

    csv_path.write_text("path,category\nreal/astro.png,pristine\n")
    with pytest.raises(ValueError, match=r"manifest\.csv:1: missing column\(s\) \['label'\]"):
        list(ds.records())
    csv_path.write_text("path,label\nreal/astro.png,pristine,extra\n")
    with pytest.raises(ValueError, match=r"manifest\.csv:2: 3 fields"):
        list(ds.records())
    csv_path.write_text("path,label,split\nreal/astro.png,pristine,validation\n")
    with pytest.raises(ValueError, match=r"manifest\.csv:2: split must be"):
        list(ds.records())

    jsonl = images / "m.jsonl"
    jsonl.write_text('{"path": "a.png", "label": "x"}\n{"path": "b.png", "label": \n')
    with pytest.raises(ValueError, match=r"m\.jsonl:2: invalid JSON"):
        list(ManifestDataset(path=jsonl).records())
    jsonl.write_text('\n\n{"path": "a.png"}\n')
    with pytest.raises(ValueError, match=r"m\.jsonl:3: missing 'label'"):
        list(ManifestDataset(path=jsonl).records())
    jsonl.write_text('["a.png", "x"]\n')
    with pytest.raises(ValueError, match=r"m\.jsonl:1: expected a JSON object"):
        list(ManifestDataset(path=jsonl).records())
    jsonl.write_text('{"path": {"file": "a.png"}, "label": "x"}\n')
    with pytest.raises(ValueError, match=r"m\.jsonl:1: 'path' must be a string"):
        list(ManifestDataset(path=jsonl).records())

    with pytest.raises(FileNotFoundError, match="absent.csv"):
        list(ManifestDataset(path=images / "absent.csv").records())
    odd = images / "list.txt"
    odd.write_text("path,label\nreal/astro.png,pristine\n")
    with pytest.raises(ValueError, match="format"):
        list(ManifestDataset(path=odd).records())
    assert [r.label for r in ManifestDataset(path=odd, format="csv").records()] == ["pristine"]


# --- registration -------------------------------------------------------------------------------


def test_datasets_are_registered() -> None:
    seen: list[type[fzoo.Dataset]] = []
    fzoo_register_datasets(register=seen.append)
    mine = [c for c in seen if c in (FolderDataset, ManifestDataset)]
    assert [c.name for c in mine] == ["folder", "manifest"]
    for cls in mine:
        assert cls.description and cls.version
        schema = cls.params_schema()["properties"]
        assert all(schema[key].get("description") for key in schema), cls.name

    from fzoo.plugin_manager import get_registry

    reg = get_registry(refresh=True)
    assert {"folder", "manifest"} <= set(reg.names("dataset"))
    assert reg.get("dataset", "folder") is FolderDataset
