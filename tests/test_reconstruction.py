"""recon-error (AEROBLADE) and dire (DIRE) on tiny diffusers models and test launderers."""

from __future__ import annotations

import math
import shutil
import textwrap
import time
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from pydantic import Field, ValidationError
from skimage import data as skdata

import fzoo
from fzoo.config import load_experiment
from fzoo.experiment import run_experiment
from fzoo.plugin_manager import (
    UnknownComponentError,
    get_registry,
    register_plugin,
    unregister_plugin,
)
from fzoo_builtins.reconstruction import DIRE, ReconError
from fzoo_builtins.reconstruction.recon_error import pool_map

diffusers = pytest.importorskip("diffusers")

# --------------------------------------------------------------------------- test launderers


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    r = max(1, math.ceil(3 * sigma))
    k = torch.exp(-0.5 * (torch.arange(-r, r + 1, dtype=torch.float32) / sigma) ** 2)
    k = (k / k.sum()).to(x.dtype)
    c = x.shape[1]
    y = F.pad(x, (r, r, r, r), mode="replicate")
    y = F.conv2d(y, k.view(1, 1, 1, -1).repeat(c, 1, 1, 1), groups=c)
    return F.conv2d(y, k.view(1, 1, -1, 1).repeat(c, 1, 1, 1), groups=c)


class IdentityLaunderer(fzoo.Launderer):
    """A perfect autoencoder: every image is a fixed point."""

    name = "test-identity"
    description = "identity (test)"

    class Params(fzoo.Params):
        pass

    def launder(self, batch: torch.Tensor) -> torch.Tensor:
        return batch.clone()


class BlurLaunderer(fzoo.Launderer):
    """A lossy 'autoencoder' with 8x8 blocks: crops (top-left) or pads to 8, then blurs."""

    name = "test-blur"
    description = "Gaussian blur on a multiple of 8 (test)"
    multiple: ClassVar[int] = 8

    class Params(fzoo.Params):
        sigma: float = Field(1.0, gt=0, description="blur sigma in pixels")
        fit: Literal["crop", "pad"] = Field("crop", description="crop or pad to a multiple of 8")

    params: Params

    def launder(self, batch: torch.Tensor) -> torch.Tensor:
        h, w = batch.shape[-2:]
        m = self.multiple
        if self.params.fit == "crop":
            nh, nw = h // m * m, w // m * m
            if nh == 0 or nw == 0:
                raise ValueError(f"{w}x{h} is smaller than {m}")
            if (nh, nw) != (h, w):
                self.note(f"cropped {w}x{h} -> {nw}x{nh}")
            return gaussian_blur(batch[..., :nh, :nw], self.params.sigma)
        nh, nw = -(-h // m) * m, -(-w // m) * m
        padded = F.pad(batch, (0, nw - w, 0, nh - h), mode="replicate")
        return gaussian_blur(padded, self.params.sigma)[..., :h, :w]


class ReconTestPlugin:
    @staticmethod
    @fzoo.hookimpl
    def fzoo_register_launderers(register: Any) -> None:
        register(IdentityLaunderer)
        register(BlurLaunderer)


@pytest.fixture(scope="module", autouse=True)
def test_launderers():
    register_plugin(ReconTestPlugin, name="recon-test")
    yield
    unregister_plugin("recon-test")


# --------------------------------------------------------------------------- tiny models


def tiny_unet(channels: int, seed: int, zero: bool = False) -> Any:
    torch.manual_seed(seed)
    unet = diffusers.UNet2DModel(
        sample_size=32,
        in_channels=channels,
        out_channels=channels,
        block_out_channels=(8, 16),
        layers_per_block=1,
        norm_num_groups=8,
        down_block_types=("DownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "UpBlock2D"),
    )
    if zero:  # the output conv predicts eps = 0 whatever the input
        with torch.no_grad():
            unet.conv_out.weight.zero_()
            unet.conv_out.bias.zero_()
    return unet


def tiny_vae(seed: int) -> Any:
    torch.manual_seed(seed)
    return diffusers.AutoencoderKL(
        block_out_channels=(8, 16, 16, 16),
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=8,
        down_block_types=4 * ("DownEncoderBlock2D",),
        up_block_types=4 * ("UpDecoderBlock2D",),
    )


def save_pipeline(root: Path, unet: Any, scheduler: bool = True) -> Path:
    unet.save_pretrained(root / "unet")
    if scheduler:
        diffusers.DDIMScheduler(num_train_timesteps=1000).save_pretrained(root / "scheduler")
    return root


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("models")
    out = {
        "vae": root / "vae",
        "vae2": root / "vae2",
        "pixel": save_pipeline(root / "pixel", tiny_unet(3, 0)),
        "pixel-zero": save_pipeline(root / "pixel-zero", tiny_unet(3, 0, zero=True)),
        "latent": save_pipeline(root / "latent", tiny_unet(4, 1)),
        "latent-zero": save_pipeline(root / "latent-zero", tiny_unet(4, 1, zero=True)),
        "bare": root / "bare" / "model",  # a UNet folder with no scheduler anywhere near
    }
    tiny_vae(0).save_pretrained(out["vae"])
    tiny_vae(1).save_pretrained(out["vae2"])
    tiny_unet(3, 0).save_pretrained(out["bare"])
    return out


def photo_batch(size: tuple[int, int] = (32, 32), n: int = 2) -> torch.Tensor:
    """Real photo crops (sharp textures), NCHW float32 in [0, 1]."""
    h, w = size
    crops = [
        skdata.astronaut()[100 : 100 + h, 150 : 150 + w],
        skdata.coffee()[60 : 60 + h, 200 : 200 + w],
    ]
    arr = np.stack(crops[:n]).astype(np.float32) / 255.0
    return torch.from_numpy(arr).permute(0, 3, 1, 2).contiguous()


# --------------------------------------------------------------------------- recon-error


def test_identity_launderer_gives_zero_error():
    ext = ReconError(launderers=["test-identity"], grid=2, iterations=3)
    feats = ext.extract(photo_batch())
    assert feats.shape == (2, 5 + 4 + 1) == (2, ext.dim) == (2, len(ext.feature_names()))
    assert feats.dtype == np.float32
    assert np.all(feats == 0.0)


def test_blur_error_matches_hand_computation_and_min_picks_the_fixed_point():
    x = photo_batch()
    ext = ReconError(launderers=["test-blur", "test-identity"], grid=2)
    feats = ext.extract(x)
    per_ae = 5 + 4
    blur, ident, agg = feats[:, :per_ae], feats[:, per_ae : 2 * per_ae], feats[:, -1]
    expected = (x - gaussian_blur(x, 1.0)).abs().mean(1)  # l1 map averaged over RGB
    np.testing.assert_allclose(blur[:, 0], expected.flatten(1).mean(1).numpy(), rtol=1e-5)
    np.testing.assert_allclose(blur[:, 1], expected.flatten(1).std(1, unbiased=False), rtol=1e-4)
    quad = expected[:, :16, :16].flatten(1).mean(1).numpy()  # grid cell [0, 0]
    np.testing.assert_allclose(blur[:, 5], quad, rtol=1e-5)
    assert np.all(blur[:, 0] > 0.002) and np.all(ident == 0)
    assert np.all(agg == 0)  # AEROBLADE: min over autoencoders -> the one the image is fixed for
    worst = ReconError(launderers=["test-blur", "test-identity"], grid=2, aggregate="max")
    np.testing.assert_allclose(worst.extract(x)[:, -1], blur[:, 0], rtol=1e-6)


def test_sharper_images_have_larger_error_and_laundered_ones_smaller():
    sharp = photo_batch()
    smooth = gaussian_blur(sharp, 2.0)
    laundered = torch.round(gaussian_blur(sharp, 1.0) * 255) / 255  # launder once, 8-bit
    ext = ReconError(launderers=[{"name": "test-blur", "params": {"sigma": 1.0}}], grid=0)
    e_sharp, e_smooth, e_laundered = (ext.extract(b)[:, 0] for b in (sharp, smooth, laundered))
    assert np.all(e_sharp > 2 * e_smooth)
    assert np.all(e_sharp > 1.5 * e_laundered)  # the laundered image moves less the 2nd time
    twice = ReconError(launderers=["test-blur"], grid=0, iterations=2).extract(sharp)[:, 0]
    assert np.all(twice > e_sharp)


def test_l2_distance_and_percentiles_match_numpy():
    x = photo_batch()
    ext = ReconError(
        launderers=["test-blur"], distance="l2", grid=0, stats=["p50", "p90", "p99", "max", "mean"]
    )
    feats = ext.extract(x)
    e = (x - gaussian_blur(x, 1.0)).square().mean(1).flatten(1).numpy()
    want = np.stack(
        [np.percentile(e, q, axis=1) for q in (50, 90, 99)] + [e.max(1), e.mean(1), e.mean(1)], 1
    )
    np.testing.assert_allclose(feats, want, rtol=1e-5, atol=1e-9)
    maps = torch.rand(3, 7, 5)
    pooled = pool_map(maps, ["p50", "std"], 0).numpy()
    np.testing.assert_allclose(pooled[:, 0], np.median(maps.flatten(1).numpy(), 1), rtol=1e-6)


@pytest.mark.parametrize("size", [(32, 32), (30, 45), (17, 9), (64, 40), (8, 8)])
@pytest.mark.parametrize("fit", ["crop", "pad"])
def test_layout_for_sizes_not_multiple_of_8(size, fit):
    x = torch.rand(3, 3, *size, generator=torch.Generator().manual_seed(1))
    for grid, stats in ((4, None), (3, ["mean"]), (0, ["std", "p99"])):
        kw = {"stats": stats} if stats is not None else {}
        spec = {"name": "test-blur", "params": {"fit": fit}}
        ext = ReconError(launderers=[spec, "test-identity"], grid=grid, **kw)
        feats = ext.extract(x)
        n_stats = 5 if stats is None else len(stats)
        assert feats.shape == (3, 2 * (n_stats + grid * grid) + 1) == (3, len(ext.feature_names()))
        assert np.isfinite(feats).all()
    # the compared region is the top-left crop the launderer kept
    ext = ReconError(launderers=[{"name": "test-blur", "params": {"fit": fit}}], grid=0)
    h, w = size
    kh, kw_ = (h // 8 * 8, w // 8 * 8) if fit == "crop" else (h, w)
    ref = x[..., :kh, :kw_]
    blurred = gaussian_blur(ref, 1.0) if fit == "crop" else BlurLaunderer(fit="pad").launder(x)
    want = (ref - blurred).abs().mean(1).flatten(1).mean(1).numpy()
    np.testing.assert_allclose(ext.extract(x)[:, 0], want, rtol=1e-5)
    notes = " ".join(ext.pop_notes())
    assert ("top-left" in notes) == ((kh, kw_) != (h, w))


def test_empty_batch_and_bad_input():
    ext = ReconError(launderers=["test-identity", "test-blur"], grid=2)
    assert ext.extract(torch.zeros(0, 3, 16, 16)).shape == (0, 2 * 9 + 1)
    with pytest.raises(ValueError, match="RGB"):
        ext.extract(torch.zeros(1, 1, 16, 16))
    with pytest.raises(ValueError, match="smaller"):
        ReconError(launderers=["test-blur"]).extract(torch.zeros(1, 3, 7, 30))


def test_params_validation_and_unknown_launderer():
    assert ReconError(launderers="test-blur").params.launderers[0].name == "test-blur"
    with pytest.raises(ValidationError):
        ReconError(launderers=[])
    with pytest.raises(ValidationError):
        ReconError(launderers=["test-blur"], stats=["mean", "mean"])
    with pytest.raises(ValidationError):
        ReconError(launderers=["test-blur"], distance="lpips")
    with pytest.raises(UnknownComponentError, match="test-blur"):
        ReconError(launderers=["test-blurr"]).fingerprint()


def test_fingerprint_follows_the_launderers(monkeypatch):
    a = ReconError(launderers=["test-blur"])
    assert a.fingerprint() == ReconError(launderers=[{"name": "test-blur"}]).fingerprint()
    b = ReconError(launderers=[{"name": "test-blur", "params": {"sigma": 2.0}}])
    assert a.fingerprint() != b.fingerprint()
    before = a.fingerprint()
    monkeypatch.setattr(BlurLaunderer, "version", "2")  # same params, different launderer
    assert ReconError(launderers=["test-blur"]).fingerprint() != before
    assert set(a.weight_hashes()) == {"launderers[0]:test-blur"}


def _weights_param(cls: type) -> str | None:
    fields = cls.Params.model_fields
    for name in ("weights", "vae", "path", "model", "repo"):
        if name in fields:
            return name
    return next((n for n in fields if "weight" in n or "vae" in n), None)


@pytest.fixture
def sd_vae_registry():
    """The registry with the real ``sd-vae`` launderer (registered here if built but not listed)."""
    reg = get_registry(refresh=True)
    if "sd-vae" in reg.names("launderer"):
        yield reg
        return
    try:
        import fzoo_builtins.sd_vae as sd_vae
    except ImportError:
        pytest.skip("the sd-vae launderer plugin is not available")
    register_plugin(sd_vae, name="sd-vae-for-recon-test")
    try:
        reg = get_registry()
        if "sd-vae" not in reg.names("launderer"):
            pytest.skip("fzoo_builtins.sd_vae registers no sd-vae launderer")
        yield reg
    finally:
        unregister_plugin("sd-vae-for-recon-test")


def test_with_the_sd_vae_launderer_if_installed(models, sd_vae_registry):
    param = _weights_param(sd_vae_registry.get("launderer", "sd-vae"))
    if param is None:
        pytest.skip("cannot tell which sd-vae parameter takes the weights folder")
    specs = [{"name": "sd-vae", "params": {param: str(models[k])}} for k in ("vae", "vae2")]
    x = photo_batch((36, 28))  # the launderer crops to 32x24: compared on that region
    ext = ReconError(launderers=specs, grid=2)
    feats = ext.extract(x)
    assert feats.shape == (2, 2 * 9 + 1) and np.isfinite(feats).all()
    assert any("top-left 24x32 region" in n for n in ext.pop_notes())
    assert np.all(feats[:, :9] > 0)
    assert feats[0, -1] == pytest.approx(min(feats[0, 0], feats[0, 9]))
    one, two = (ReconError(launderers=[s]).fingerprint() for s in specs)
    assert one != two  # a different VAE folder is a different cache key


# --------------------------------------------------------------------------- dire


def test_dire_zero_noise_unet_reconstructs_exactly(models):
    x = photo_batch()
    ext = DIRE(unet=str(models["pixel-zero"]), grid=2)
    z0 = x * 2 - 1
    m = ext.load()
    assert m.timesteps == list(range(0, 1000, 50)) and m.clip == 1.0  # ddim20, clip as ADM
    with torch.no_grad():
        zt = ext.ddim_invert(z0)
        a_t = m.alphas_cumprod[m.timesteps[-1]]
        torch.testing.assert_close(zt, math.sqrt(a_t) * z0, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(ext.ddim_reconstruct(zt), z0, rtol=1e-4, atol=1e-5)
    feats = ext.extract(x)
    assert feats.shape == (2, 5 + 4)
    assert np.abs(feats).max() < 1e-5


def test_dire_random_unet_is_deterministic_and_finite(models):
    x = photo_batch()
    one = DIRE(unet=str(models["pixel"]), steps=10).extract(x)
    two = DIRE(unet=str(models["pixel"]), steps=10).extract(x)
    assert one.shape == (2, 21) and np.isfinite(one).all()
    np.testing.assert_array_equal(one, two)
    assert np.all(one[:, 0] > 1e-3)  # a random UNet does not reconstruct


def test_dire_finds_the_unet_and_scheduler_three_ways(models):
    x = photo_batch()
    root = models["pixel"]
    ways = [
        DIRE(unet=str(root), steps=4),
        DIRE(unet=str(root), subfolder="unet", steps=4),
        DIRE(unet=str(root / "unet"), steps=4),  # scheduler/ beside the unet folder
    ]
    feats = [w.extract(x) for w in ways]
    for w in ways:
        assert w.paths().scheduler == root / "scheduler"
        assert set(w.weight_hashes()) == {
            "unet/config.json",
            "unet/diffusion_pytorch_model.safetensors",
            "scheduler/scheduler_config.json",
        }
    np.testing.assert_array_equal(feats[0], feats[1])
    np.testing.assert_array_equal(feats[0], feats[2])


def test_dire_scheduler_param_without_scheduler_folder(models):
    ext = DIRE(unet=str(models["bare"]), steps=3, scheduler={"num_train_timesteps": 300})
    feats = ext.extract(photo_batch())
    assert ext.paths().scheduler is None and np.isfinite(feats).all()
    assert ext.load().timesteps == [0, 100, 200]
    assert any("DDIMScheduler defaults" in n for n in ext.pop_notes())
    for kind in ("v_prediction", "sample"):
        other = DIRE(unet=str(models["bare"]), steps=2, scheduler={"prediction_type": kind})
        assert np.isfinite(other.extract(photo_batch())).all()
    with pytest.raises(ValidationError, match="num_steps"):
        DIRE(unet=str(models["bare"]), scheduler={"num_steps": 3})


def test_dire_latent_zero_unet_equals_the_vae_round_trip(models):
    x = photo_batch()
    ext = DIRE(unet=str(models["latent-zero"]), vae_weights=str(models["vae"]), grid=0, steps=5)
    feats = ext.extract(x)
    vae = diffusers.AutoencoderKL.from_pretrained(models["vae"], local_files_only=True).eval()
    with torch.no_grad():
        z = vae.encode(x * 2 - 1).latent_dist.mode()
        rec = (vae.decode(z).sample.clamp(-1, 1) + 1) / 2
    want = (x - rec).abs().mean(1).flatten(1)
    np.testing.assert_allclose(feats[:, 0], want.mean(1).numpy(), rtol=1e-4)
    np.testing.assert_allclose(feats[:, 4], np.percentile(want.numpy(), 99, axis=1), rtol=1e-4)
    assert ext.load().scaling == pytest.approx(0.18215) and ext.load().clip is None


def test_dire_reads_the_tiny_ldm_layout(models, tmp_path):
    """unet/ + scheduler/ + fzoo.json (latent scaling and shift), the VAE given apart."""
    ldm = tmp_path / "ldm"
    shutil.copytree(models["latent-zero"], ldm)
    (ldm / "fzoo.json").write_text('{"scaling_factor": 0.5, "shift_factor": 0.1}')
    ext = DIRE(unet=str(ldm), vae_weights=str(models["vae"]), steps=3, grid=0)
    m = ext.load()
    assert (m.scaling, m.shift, m.multiple) == (0.5, 0.1, 16)
    assert "fzoo.json" in ext.weight_hashes()
    x = photo_batch()
    plain = DIRE(unet=str(models["latent-zero"]), vae_weights=str(models["vae"]), steps=3, grid=0)
    np.testing.assert_allclose(ext.extract(x), plain.extract(x), rtol=1e-4, atol=1e-6)
    forced = DIRE(unet=str(ldm), vae_weights=str(models["vae"]), scaling_factor=2.0, shift_factor=0)
    assert (forced.load().scaling, forced.load().shift) == (2.0, 0.0)
    with pytest.raises(ValueError, match="latent model"):
        DIRE(unet=str(ldm)).paths()


def test_dire_latent_sizes_and_fingerprint(models):
    kw = {"vae_weights": str(models["vae"]), "steps": 3, "grid": 2}
    crop = DIRE(unet=str(models["latent"]), **kw)
    pad = DIRE(unet=str(models["latent"]), fit="pad", **kw)
    x = torch.rand(2, 3, 40, 24, generator=torch.Generator().manual_seed(0))  # latent multiple 16
    fc, fp = crop.extract(x), pad.extract(x)
    assert crop.load().multiple == 16
    assert fc.shape == fp.shape == (2, 9) and np.isfinite(fc).all() and np.isfinite(fp).all()
    assert any("cropped 24x40 -> 16x32" in n for n in crop.pop_notes())
    assert any("padded 24x40 -> 32x48" in n for n in pad.pop_notes())
    assert crop.dire_map(x).shape == (2, 32, 16) and pad.dire_map(x).shape == (2, 40, 24)
    np.testing.assert_array_equal(fc, crop.extract(x))
    other = DIRE(unet=str(models["latent"]), **{**kw, "vae_weights": str(models["vae2"])})
    assert other.fingerprint() != crop.fingerprint()
    assert "vae/diffusion_pytorch_model.safetensors" in crop.weight_hashes()


def test_dire_fingerprint_changes_with_the_unet_weights(models, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(models["pixel"], copy)
    a = DIRE(unet=str(copy)).fingerprint()
    assert a == DIRE(unet=str(copy)).fingerprint()
    tiny_unet(3, 5).save_pretrained(copy / "unet")
    assert DIRE(unet=str(copy)).fingerprint() != a


def test_dire_refuses_conditional_unets_and_missing_weights(tmp_path, models):
    folder = tmp_path / "cond"
    folder.mkdir()
    (folder / "config.json").write_text('{"_class_name": "UNet2DConditionModel"}')
    with pytest.raises(ValueError, match="out of scope"):
        DIRE(unet=str(folder)).fingerprint()
    with pytest.raises(ValidationError):
        DIRE(unet=str(models["pixel"]), latent=False, vae_weights=str(models["vae"]))
    with pytest.raises(ValueError, match="no vae_weights"):
        DIRE(unet=str(models["pixel"]), latent=True).paths()
    start = time.time()
    with pytest.raises(fzoo.WeightsNotFoundError, match="hf download"):
        DIRE(unet="no-such-org/no-such-adm#unet").fingerprint()
    assert time.time() - start < 5


# --------------------------------------------------------------------------- end to end


def test_experiment_mixing_recon_dire_and_fft(tmp_path, models):
    text = f"""\
    name: recon-zoo
    seed: 0
    data:
      dataset:
        name: sample-photos
        params: {{crop: 32, crops_per_photo: 2, photos: [astronaut, coffee, chelsea, rocket]}}
      derive:
        - label: laundered
          from: pristine
          launderer: {{name: test-blur, params: {{sigma: 0.8}}}}
        - label: synthetic
          from: pristine
          perturbations: [{{name: noise, params: {{sigma: 6}}}}]
    split: {{test_size: 0.5}}
    pipelines:
      - name: mixed
        features:
          - {{name: recon-error, params: {{launderers: [test-blur, test-identity], grid: 2}}}}
          - {{name: dire, params: {{unet: "{models["pixel"]}", steps: 3, grid: 2}}}}
          - {{name: fft-spectrum, params: {{bins: 16}}}}
        classifier: logistic-regression
      - name: aeroblade
        features: [{{name: recon-error, params: {{launderers: [test-blur], grid: 0}}}}]
        classifier: logistic-regression
    tasks:
      - {{name: three-way, type: multiclass, classes: [pristine, laundered, synthetic]}}
    """
    path = tmp_path / "exp.yaml"
    path.write_text(textwrap.dedent(text))
    result = run_experiment(load_experiment(path), tmp_path / "out", progress=None)
    assert not result.errors, result.errors
    rows = [r for r in result.rows if r["task"] == "three-way"]
    assert {r["pipeline"] for r in rows} == {"mixed", "aeroblade"}
    for r in rows:
        assert "error" not in r and r["n_test"] == 12 and r["n_train"] == 12
    assert result.meta["images_per_class"] == {"pristine": 8, "laundered": 8, "synthetic": 8}
    fps = result.meta["fingerprints"][""]
    assert fps["pipelines.mixed.features[0]"] != fps["pipelines.aeroblade.features[0]"]
    assert (tmp_path / "out" / "report.md").exists()


def test_registry_lists_the_extractors_and_the_aeroblade_preset():
    reg = get_registry(refresh=True)
    assert reg.plugins["reconstruction"].error is None
    assert reg.get("feature_extractor", "recon-error") is ReconError
    assert reg.get("feature_extractor", "dire") is DIRE
    for cls in (ReconError, DIRE):
        assert all(p.get("description") for p in cls.params_schema()["properties"].values())
    preset = reg.presets["aeroblade-sd"]
    assert (preset.kind, preset.component) == ("feature_extractor", "recon-error")
    ext = fzoo.create_component("feature_extractor", "aeroblade-sd", grid=2)
    assert [s.name for s in ext.params.launderers] == ["sd15-vae", "sd21-vae"]
    assert ext.dim == 2 * (5 + 4) + 1
