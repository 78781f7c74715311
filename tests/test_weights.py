"""The weights resolver: local folders and files, hub references, offline errors, hashes, sums."""

from __future__ import annotations

import hashlib
import os
import time

import pytest

import fzoo
from fzoo.weights import HubRef, parse_hub_ref


@pytest.fixture
def folder(tmp_path):
    d = tmp_path / "vae"
    d.mkdir()
    (d / "config.json").write_text('{"_class_name": "AutoencoderKL"}')
    (d / "diffusion_pytorch_model.safetensors").write_bytes(b"\x00weights" * 100)
    (d / "README.md").write_text("not a weight file")
    (d / "sub").mkdir()
    (d / "sub" / "extra.pth").write_bytes(b"pth")
    return d


def test_local_folder_and_file_resolve_as_local(folder, monkeypatch):
    got = fzoo.resolve_weights(str(folder))
    assert got.source == "local" and got.path == folder.resolve() and not got.is_file
    f = fzoo.resolve_weights(folder / "config.json")
    assert f.is_file and f.ref is None
    monkeypatch.chdir(folder.parent)
    assert fzoo.resolve_weights("vae").path == folder.resolve()  # relative paths are local first
    with pytest.raises(fzoo.WeightsNotFoundError, match="no such file or folder"):
        fzoo.resolve_weights("./missing-folder")
    with pytest.raises(fzoo.WeightsNotFoundError, match="not a hub id"):
        fzoo.resolve_weights("a/b/c/d")


@pytest.mark.parametrize(
    "text, expected",
    [
        ("stabilityai/sdxl-vae", HubRef("stabilityai/sdxl-vae")),
        ("org/name@v1.0", HubRef("org/name", "v1.0")),
        ("org/name#vae", HubRef("org/name", None, "vae")),
        ("org/name@main#sub/dir", HubRef("org/name", "main", "sub/dir")),
        (
            "stable-diffusion-v1-5/stable-diffusion-v1-5@abc123#vae",
            HubRef("stable-diffusion-v1-5/stable-diffusion-v1-5", "abc123", "vae"),
        ),
        ("black-forest-labs/FLUX.1-dev#vae", HubRef("black-forest-labs/FLUX.1-dev", None, "vae")),
        ("just-a-name", None),
        ("a/b/c", None),
        ("org/name#", None),
    ],
)
def test_hub_reference_parsing(text, expected):
    assert parse_hub_ref(text) == expected


def test_download_command():
    assert HubRef("org/name").download_command() == "hf download org/name"
    assert (
        HubRef("org/name", "v2", "vae").download_command()
        == "hf download org/name --revision v2 --include 'vae/*'"
    )


def test_offline_error_names_the_command_and_the_yaml_line(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.perf_counter()
    with pytest.raises(fzoo.WeightsNotFoundError) as info:
        fzoo.resolve_weights("stabilityai/sd-vae-ft-mse")
    assert time.perf_counter() - start < 2.0
    msg = str(info.value)
    assert "offline" in msg
    assert "hf download stabilityai/sd-vae-ft-mse --local-dir ./weights/sd-vae-ft-mse" in msg
    assert "params: {weights: ./weights/sd-vae-ft-mse}" in msg
    with pytest.raises(fzoo.WeightsNotFoundError) as info:
        fzoo.resolve_weights("stabilityai/stable-diffusion-3-medium-diffusers#vae", param="config")
    msg = str(info.value)
    assert "--include 'vae/*'" in msg
    assert "params: {config: ./weights/stable-diffusion-3-medium-diffusers/vae}" in msg


def test_weight_hashes_are_stable_and_follow_changes(folder):
    first = fzoo.weight_hashes(folder)
    assert set(first) == {"config.json", "diffusion_pytorch_model.safetensors", "sub/extra.pth"}
    expected = hashlib.sha256((folder / "config.json").read_bytes()).hexdigest()
    assert first["config.json"] == expected
    assert fzoo.weight_hashes(folder) == first
    assert fzoo.weight_hashes(folder / "sub" / "extra.pth") == {"extra.pth": first["sub/extra.pth"]}
    (folder / "README.md").write_text("changed docs do not matter")
    assert fzoo.weight_hashes(folder) == first
    target = folder / "diffusion_pytorch_model.safetensors"
    st = target.stat()
    target.write_bytes(b"\x01weights" * 100)  # same size
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    changed = fzoo.weight_hashes(folder)
    assert (
        changed["diffusion_pytorch_model.safetensors"]
        != first["diffusion_pytorch_model.safetensors"]
    )
    assert changed["config.json"] == first["config.json"]


def test_verify_sums_catches_a_tampered_file(folder):
    names = ["config.json", "diffusion_pytorch_model.safetensors"]
    lines = [f"{hashlib.sha256((folder / n).read_bytes()).hexdigest()}  {n}" for n in names]
    lines[1] = lines[1].replace("  ", " *")  # binary-mode marker of sha256sum
    (folder / "SHA256SUMS").write_text("\n".join(lines) + "\n\n")
    fzoo.verify_sums(folder)
    with open(folder / "diffusion_pytorch_model.safetensors", "r+b") as fh:
        fh.seek(10)
        fh.write(b"X")
    with pytest.raises(fzoo.WeightsIntegrityError, match="diffusion_pytorch_model.safetensors"):
        fzoo.verify_sums(folder)
    (folder / "SHA256SUMS").unlink()
    with pytest.raises(fzoo.WeightsIntegrityError, match="missing"):
        fzoo.verify_sums(folder)
    with pytest.raises(fzoo.WeightsIntegrityError, match="does not match"):
        fzoo.verify_sha256(folder / "config.json", "0" * 64)
