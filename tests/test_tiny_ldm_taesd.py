"""tiny-ldm on a TAESD-family autoencoder (the bundled ``tiny-ldm-tae4ch`` on ``fzoo-tae-4ch``).

A randomly initialised 4-channel TAESD-architecture autoencoder is saved in the original layout
(``*_encoder.safetensors`` / ``*_decoder.safetensors``, as ``fzoo-tae-4ch`` is) and a tiny UNet
is trained on its latents with ``train_tiny_ldm --quick``. The bundled model's own test is
skipped while its weights are not in the package.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

import fzoo
from fzoo.plugin_manager import get_registry
from fzoo_builtins.generators import autoencoders, tiny_ldm
from fzoo_builtins.sd_vae import TAESDLaunderer

from .test_generators import tiny_vae, train_script

pytest.importorskip("diffusers")


def save_tae(folder: Path, seed: int, prefix: str = "tae") -> Path:
    """A random 4-channel TAESD-architecture autoencoder in the original safetensors layout.

    At its random initialisation the latents have a std of ~0.04 and the decoder's output barely
    depends on them; the last convolutions are rescaled so that the latents have a std of ~1
    and the output varies with them (std ~0.13 around 0.5), as a trained one does.
    """
    from safetensors.torch import save_file

    from fzoo_builtins.sd_vae.taesd_arch import TinyAutoencoder

    torch.manual_seed(seed)
    model = TinyAutoencoder(4).eval()
    with torch.no_grad():
        model.encoder[-1].weight.mul_(25)
        model.encoder[-1].bias.mul_(25)
        model.decoder[-1].weight.mul_(20)
        model.decoder[-1].bias.fill_(0.5)
    folder.mkdir(parents=True, exist_ok=True)
    for part, module in (("encoder", model.encoder), ("decoder", model.decoder)):
        save_file(module.state_dict(), str(folder / f"{prefix}_{part}.safetensors"))
    return folder


@pytest.fixture(scope="module")
def tae_dir(tmp_path_factory) -> Path:
    return save_tae(tmp_path_factory.mktemp("ae") / "my-tae", seed=0)


@pytest.fixture(scope="module")
def tae_run(tmp_path_factory, tae_dir) -> Path:
    out = tmp_path_factory.mktemp("tiny-ldm-tae-run")
    threads = torch.get_num_threads()
    try:
        assert train_script.main(["--vae", str(tae_dir), "--out", str(out), "--quick"]) == 0
    finally:
        torch.set_num_threads(threads)
    return out


def make(tae_run: Path, tae_dir: Path | None, **params):
    base = {"weights": str(tae_run / "model"), "steps": 3}
    if tae_dir is not None:
        base["vae"] = str(tae_dir)
    return fzoo.create_component("generator", "tiny-ldm", **{**base, **params})


def test_folder_kind_and_identity(tmp_path, tae_dir):
    kl = tmp_path / "kl"
    tiny_vae().save_pretrained(kl)
    assert autoencoders.folder_kind(kl) == "autoencoder-kl"
    assert autoencoders.folder_kind(tae_dir) == "taesd"
    sha = fzoo.weight_hashes(kl)["diffusion_pytorch_model.safetensors"]
    assert autoencoders.identify(kl)["sha256"] == {"weights": sha}
    ident = autoencoders.identify(tae_dir)
    files = fzoo.weight_hashes(tae_dir)
    assert ident["kind"] == "taesd"
    assert ident["files"] == {"encoder": "tae_encoder.safetensors",
                              "decoder": "tae_decoder.safetensors"}  # fmt: skip
    assert ident["sha256"] == {"encoder": files["tae_encoder.safetensors"],
                               "decoder": files["tae_decoder.safetensors"]}  # fmt: skip
    (tmp_path / "empty").mkdir()
    with pytest.raises(fzoo.WeightsError, match="not an autoencoder folder"):
        autoencoders.folder_kind(tmp_path / "empty")
    # the first fzoo.json format (a KL VAE, one sha256 string) still reads
    old = {"vae": {"name": "fzoo-tiny-vae", "file": "x.safetensors", "sha256": "ab12"}}
    assert autoencoders.recorded(old) == ("autoencoder-kl", {"weights": "ab12"})


def test_quick_training_records_the_autoencoder_and_its_scaling(tae_run, tae_dir):
    model = tae_run / "model"
    fzoo.verify_sums(model)
    index = json.loads((model / "fzoo.json").read_text())
    assert index["format_version"] == tiny_ldm.FORMAT_VERSION == 2
    assert index["vae"] == {"name": "my-tae", **autoencoders.identify(tae_dir)}
    assert index["latent_channels"] == 4 and index["vae_factor"] == 8
    # the scaling is measured on the cached training latents: mean and 1 / std
    (cache,) = tae_run.glob("latents-*.pt")
    z = torch.load(cache, weights_only=True)["64"]
    assert tuple(z.shape) == (24, 4, 8, 8)
    assert index["shift_factor"] == pytest.approx(float(z.mean()), rel=1e-5)
    assert index["scaling_factor"] == pytest.approx(1 / float((z - z.mean()).std()), rel=1e-5)
    # and the latents are the TAESD encoder's, of images in [0, 1]
    crops, _ = train_script.sample_crops(
        train_script.parse_args(["--vae", "x", "--out", "y", "--quick"]), 64, 24, seed=0
    )
    ae = autoencoders.load(tae_dir)
    with torch.no_grad():
        torch.testing.assert_close(ae.model.encoder((crops + 1) / 2), z, atol=1e-4, rtol=0)


def test_generate_and_img2img_through_the_taesd_decoder(tae_run, tae_dir):
    gen = make(tae_run, tae_dir)
    a = gen.generate(2, seed=5)
    assert a.shape == (2, 3, 64, 64) and a.dtype == torch.float32
    assert float(a.min()) >= 0 and float(a.max()) <= 1
    assert torch.equal(a, gen.generate(2, seed=5))
    assert float((a - gen.generate(2, seed=6)).abs().mean()) > 0.01
    assert float((a[0] - a[1]).abs().mean()) > 0.01
    assert make(tae_run, tae_dir, size=48).generate(1, seed=0).shape == (1, 3, 48, 48)
    x = torch.rand(2, 3, 64, 72, generator=torch.Generator().manual_seed(0))
    # strength 0 is exactly the taesd launderer's round trip: laundering
    lau = fzoo.create_component("launderer", "taesd", weights=str(tae_dir), device="cpu")
    ref = lau.launder(x)
    torch.testing.assert_close(make(tae_run, tae_dir, strength=0.0).img2img(x, 1), ref)
    y = make(tae_run, tae_dir, strength=0.6).img2img(x, seed=1)
    assert y.shape == x.shape and float(y.min()) >= 0 and float(y.max()) <= 1
    assert float((y - ref).abs().mean()) > 2e-3  # float rounding is ~1e-6
    assert float((y - make(tae_run, tae_dir, strength=0.6).img2img(x, seed=2)).abs().max()) > 0.01
    hashes = gen.weight_hashes()
    assert {"vae/tae_encoder.safetensors", "vae/tae_decoder.safetensors"} <= set(hashes)


def test_another_autoencoder_is_refused(tae_run, tae_dir, tmp_path):
    other = save_tae(tmp_path / "other", seed=1)
    with pytest.raises(fzoo.WeightsError, match=r"trained on the autoencoder my-tae \(taesd"):
        make(tae_run, other).generate(1, seed=0)
    # the trained-on encoder with another decoder is another autoencoder too
    mixed = tmp_path / "mixed"
    shutil.copytree(other, mixed)
    shutil.copyfile(tae_dir / "tae_encoder.safetensors", mixed / "tae_encoder.safetensors")
    with pytest.raises(fzoo.WeightsError, match="decoder"):
        make(tae_run, mixed).generate(1, seed=0)
    kl = tmp_path / "kl"
    tiny_vae().save_pretrained(kl)
    with pytest.raises(fzoo.WeightsError, match="were trained on the autoencoder my-tae"):
        make(tae_run, kl).generate(1, seed=0)


def test_repin_takes_a_new_decoder_and_refuses_a_new_encoder(tae_run, tae_dir, tmp_path):
    """A decoder fine-tuned with the encoder frozen: ``repin`` records it (the old hash kept in
    the history), the generator then decodes through it; a changed encoder is refused."""
    model = tmp_path / "model"
    shutil.copytree(tae_run / "model", model)
    new_ae = tmp_path / "my-tae"
    shutil.copytree(tae_dir, new_ae)
    other = save_tae(tmp_path / "other", seed=1)
    shutil.copyfile(other / "tae_decoder.safetensors", new_ae / "tae_decoder.safetensors")
    with pytest.raises(fzoo.WeightsError, match="decoder"):
        make(model.parent, new_ae).generate(1, seed=0)
    old = json.loads((model / "fzoo.json").read_text())["vae"]["sha256"]
    train_script.repin(model, str(new_ae), why="test: decoder fine-tuned")
    vae = json.loads((model / "fzoo.json").read_text())["vae"]
    assert vae["sha256"]["encoder"] == old["encoder"]
    assert vae["sha256"]["decoder"] != old["decoder"]
    assert vae["decoder_history"][0]["sha256"] == old["decoder"]
    assert vae["decoder_history"][0]["why"] == "test: decoder fine-tuned"
    fzoo.verify_sums(model)  # SHA256SUMS rewritten for the new fzoo.json
    a = make(model.parent, new_ae).generate(1, seed=0)
    b = make(tae_run, tae_dir).generate(1, seed=0)
    assert a.shape == b.shape and float((a - b).abs().mean()) > 0.01  # the new decoder's output
    with pytest.raises(SystemExit, match="not the one"):
        train_script.repin(model, str(other), why="x")


def test_default_autoencoder_is_the_bundled_one_fzoo_json_names(tae_run, tae_dir, tmp_path,
                                                                 monkeypatch):  # fmt: skip
    monkeypatch.setattr(tiny_ldm, "bundled_vae_dir", lambda name="x": tmp_path / "w" / name)
    with pytest.raises(fzoo.WeightsNotFoundError, match="bundled autoencoder my-tae is missing"):
        make(tae_run, None).fingerprint()
    # a missing TAESD-family autoencoder: the taesd launderer's own hint (fzoo-tae-4ch: how to
    # rebuild it) follows
    index = json.loads((tae_run / "model" / "fzoo.json").read_text())
    index["vae"]["name"] = "fzoo-tae-4ch"
    with pytest.raises(fzoo.WeightsNotFoundError) as err:
        tiny_ldm.TinyLDM._vae_dir(index)
    with pytest.raises(fzoo.WeightsNotFoundError) as hint:
        TAESDLaunderer(weights=str(tmp_path / "w" / "fzoo-tae-4ch")).weights_path()
    assert "fzoo-tae-4ch" in str(hint.value).split("\n", 1)[1]  # a hint beyond "not found"
    assert str(err.value).endswith(str(hint.value))
    shutil.copytree(tae_dir, tmp_path / "w" / "my-tae")
    gen = make(tae_run, None)
    torch.testing.assert_close(gen.generate(1, seed=3), make(tae_run, tae_dir).generate(1, 3))
    assert gen.weight_hashes() == make(tae_run, tae_dir).weight_hashes()


def test_preset_and_missing_bundled_weights(monkeypatch, tmp_path):
    preset = get_registry().presets["tiny-ldm-tae4ch"]
    assert (preset.kind, preset.component) == ("generator", "tiny-ldm")
    assert preset.params["weights"] == str(tiny_ldm.bundled_weights_dir("tiny-ldm-tae4ch"))
    assert tiny_ldm.BUNDLED["tiny-ldm-tae4ch"] == "fzoo-tae-4ch"
    monkeypatch.setattr(tiny_ldm, "bundled_weights_dir", lambda name="tiny-ldm": tmp_path / name)
    gen = tiny_ldm.TinyLDM(weights=str(tmp_path / "tiny-ldm-tae4ch"))
    with pytest.raises(fzoo.WeightsNotFoundError) as err:
        gen.fingerprint()
    assert "--vae plugins/fzoo_builtins/sd_vae/weights/fzoo-tae-4ch" in str(err.value)
    assert "export .train-logs/tiny-ldm-tae4ch/model" in str(err.value)


def test_newer_format_is_refused(tae_run, tmp_path):
    copy = tmp_path / "m"
    shutil.copytree(tae_run / "model", copy)
    index = json.loads((copy / "fzoo.json").read_text())
    (copy / "fzoo.json").write_text(json.dumps({**index, "format_version": 3}))
    with pytest.raises(fzoo.WeightsError, match="format_version 3"):
        tiny_ldm.read_model_index(copy)


BUNDLED = tiny_ldm.bundled_weights_dir("tiny-ldm-tae4ch")
TAE = tiny_ldm.bundled_vae_dir("fzoo-tae-4ch")


@pytest.mark.skipif(
    not (BUNDLED / "fzoo.json").exists() or not (TAE / "SHA256SUMS").exists(),
    reason="bundled tiny-ldm-tae4ch or fzoo-tae-4ch not in the package (docs/models/tiny-ldm.md)",
)
def test_bundled_tiny_ldm_tae4ch(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    gen = fzoo.create_component("generator", "tiny-ldm-tae4ch", steps=10)
    x = gen.generate(2, seed=0)
    assert x.shape == (2, 3, 64, 64)
    assert float(x.min()) >= 0 and float(x.max()) <= 1
    assert float(x.std()) > 0.01  # not a flat image
    assert "vae/fzoo-tae-4ch_decoder.safetensors" in gen.weight_hashes()
    photo = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    lau = fzoo.create_component("launderer", "fzoo-tae-4ch", device="cpu")
    round_trip = fzoo.create_component("generator", "tiny-ldm-tae4ch", strength=0.0)
    torch.testing.assert_close(round_trip.img2img(photo, seed=0), lau.launder(photo))
