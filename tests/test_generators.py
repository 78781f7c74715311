"""Generators: tiny-ldm (quick training, sampling, img2img, bundled weights) and diffusers-pipeline.

Everything runs on tiny randomly initialised models built in the test, except the bundled
``tiny-ldm`` test, which is skipped when the bundled weights are not in the package.
"""

from __future__ import annotations

import csv
import inspect
import json
import string
import textwrap
from pathlib import Path

import pytest
import torch

import fzoo
from fzoo.config import load_experiment
from fzoo.experiment import run_experiment
from fzoo.plugin_manager import get_registry
from fzoo_builtins.generators import tiny_ldm

diffusers = pytest.importorskip("diffusers")


def _training_script(name: str):
    """A script of ``training/`` (not an installed module) imported from its file."""
    import importlib.util
    import sys

    path = Path(__file__).resolve().parents[1] / "training" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"fzoo_training_{name}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the file runs
    spec.loader.exec_module(module)
    return module


train_script = _training_script("train_tiny_ldm")


def tiny_vae(seed: int = 0):
    """A randomly initialised SD-style AutoencoderKL with 8x downsampling and 4 latent channels."""
    torch.manual_seed(seed)
    return diffusers.AutoencoderKL(
        block_out_channels=(8, 16, 16, 16),
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=8,
        mid_block_add_attention=False,
    )


@pytest.fixture(scope="module")
def vae_dir(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("tiny-vae")
    tiny_vae().save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory, vae_dir) -> Path:
    """``train_tiny_ldm --quick`` into a temporary folder (in-process, threads restored)."""
    out = tmp_path_factory.mktemp("tiny-ldm-run")
    threads = torch.get_num_threads()
    try:
        assert train_script.main(["--vae", str(vae_dir), "--out", str(out), "--quick"]) == 0
    finally:
        torch.set_num_threads(threads)
    return out


@pytest.fixture
def ldm(quick_run, vae_dir):
    def make(**params):
        base = {"weights": str(quick_run / "model"), "vae": str(vae_dir), "steps": 3}
        return fzoo.create_component("generator", "tiny-ldm", **{**base, **params})

    return make


def test_generators_are_registered():
    names = get_registry().names("generator")
    assert {"tiny-ldm", "diffusers-pipeline"} <= set(names)
    assert tiny_ldm.TinyLDM.supports_img2img


def test_quick_training_writes_a_loadable_model(quick_run, vae_dir):
    model = quick_run / "model"
    for name in ("unet/config.json", "unet/diffusion_pytorch_model.safetensors",
                 "scheduler/scheduler_config.json", "fzoo.json", "SHA256SUMS"):  # fmt: skip
        assert (model / name).is_file(), name
    fzoo.verify_sums(model)
    index = json.loads((model / "fzoo.json").read_text())
    assert index["format"] == "fzoo-tiny-ldm"
    vae_sha = fzoo.weight_hashes(vae_dir)["diffusion_pytorch_model.safetensors"]
    assert index["vae"]["kind"] == "autoencoder-kl" and index["format_version"] == 2
    assert index["vae"]["sha256"] == {"weights": vae_sha}
    assert index["vae"]["name"] == vae_dir.name
    assert index["scaling_factor"] > 0 and "shift_factor" in index
    with open(quick_run / "curve.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [int(r["step"]) for r in rows] == [0, 4, 8]
    assert all(float(r["eval_loss_ema"]) > 0 for r in rows)
    info = json.loads((quick_run / "train_info.json").read_text())
    assert info["finished"] and info["steps"] == 8
    assert not set(info["config"]["crops"]) - {64}


def test_export_for_bundling_halves_the_unet(quick_run, vae_dir, tmp_path):
    dest = tmp_path / "tiny-ldm"
    train_script.export(quick_run / "model", dest)
    fzoo.verify_sums(dest)
    src_size = (quick_run / "model/unet/diffusion_pytorch_model.safetensors").stat().st_size
    assert (dest / "unet/diffusion_pytorch_model.safetensors").stat().st_size < 0.6 * src_size
    params = {"vae": str(vae_dir), "steps": 3}
    a = tiny_ldm.TinyLDM(weights=str(quick_run / "model"), **params).generate(1, seed=0)
    b = tiny_ldm.TinyLDM(weights=str(dest), **params).generate(1, seed=0)
    assert b.dtype == torch.float32
    assert float((a - b).abs().mean()) < 0.02  # float16 rounding of the weights only


def test_training_uses_no_holdout_photo():
    from fzoo_builtins.sd_vae.photos import HOLDOUT

    cfg = train_script.parse_args(["--vae", "x", "--out", "y", "--quick"])
    crops, names = train_script.sample_crops(cfg, 64, 40, seed=1)
    assert crops.shape == (40, 3, 64, 64)
    assert float(crops.min()) >= -1 and float(crops.max()) <= 1
    assert not set(names) & set(HOLDOUT)


def test_generate_shape_range_determinism(ldm):
    gen = ldm()
    a = gen.generate(2, seed=5)
    assert a.shape == (2, 3, 64, 64) and a.dtype == torch.float32
    assert float(a.min()) >= 0.0 and float(a.max()) <= 1.0
    assert torch.equal(a, gen.generate(2, seed=5))
    assert not torch.allclose(a, gen.generate(2, seed=6))
    assert not torch.allclose(a[0], a[1])
    # image i depends on (seed, i) only, not on n or batch_size
    torch.testing.assert_close(gen.generate(1, seed=5)[0], a[0], atol=1e-4, rtol=0)
    one_by_one = ldm(batch_size=1).generate(2, seed=5)
    torch.testing.assert_close(one_by_one, a, atol=1e-4, rtol=0)
    assert ldm(size=96).generate(1, seed=0).shape == (1, 3, 96, 96)


def test_img2img_strength_and_crop(ldm, vae_dir):
    x = torch.rand(2, 3, 64, 72, generator=torch.Generator().manual_seed(0))
    gen = ldm(strength=0.6)
    y = gen.img2img(x, seed=1)
    assert y.shape == x.shape and float(y.min()) >= 0 and float(y.max()) <= 1
    assert torch.equal(y, gen.img2img(x, seed=1))
    assert not torch.allclose(y, gen.img2img(x, seed=2))
    assert not gen.pop_notes()
    # strength 0 is the plain VAE round trip D(E(x)) with the posterior mode
    vae = diffusers.AutoencoderKL.from_pretrained(str(vae_dir)).eval()
    with torch.no_grad():
        ref = ((vae.decode(vae.encode(x * 2 - 1).latent_dist.mode()).sample + 1) / 2).clamp(0, 1)
    torch.testing.assert_close(ldm(strength=0.0).img2img(x, seed=1), ref, atol=1e-5, rtol=0)
    # a size that is not a multiple of 8 is cropped (never resampled), and the crop is noted
    odd = x[..., :61, :70]
    gen = ldm()
    out = gen.img2img(odd, seed=1)
    assert out.shape == (2, 3, 56, 64)
    assert any("cropped 70x61 -> 64x56" in n for n in gen.pop_notes())


def test_params_are_validated():
    with pytest.raises(ValueError, match="multiple of 8"):
        tiny_ldm.TinyLDM(size=60)
    with pytest.raises(ValueError):
        tiny_ldm.TinyLDM(strength=1.5)


def test_vae_mismatch_is_refused(quick_run, tmp_path):
    other = tmp_path / "other-vae"
    tiny_vae(seed=1).save_pretrained(other)
    gen = tiny_ldm.TinyLDM(weights=str(quick_run / "model"), vae=str(other))
    with pytest.raises(fzoo.WeightsError, match="were trained on the autoencoder tiny-vae"):
        gen.generate(1, seed=0)


def test_missing_bundled_weights_say_how_to_train(monkeypatch, tmp_path):
    monkeypatch.setattr(tiny_ldm, "bundled_weights_dir", lambda: tmp_path / "absent")
    with pytest.raises(fzoo.WeightsNotFoundError, match=r"training/train_tiny_ldm\.py --vae"):
        tiny_ldm.TinyLDM().fingerprint()


@pytest.mark.skipif(
    not (tiny_ldm.bundled_weights_dir() / "fzoo.json").exists(),
    reason="bundled tiny-ldm weights not in the package yet (train them: see docs/models/)",
)
def test_bundled_tiny_ldm_loads_offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    gen = fzoo.create_component("generator", "tiny-ldm", steps=10)
    x = gen.generate(2, seed=0)
    assert x.shape == (2, 3, 64, 64)
    assert float(x.min()) >= 0 and float(x.max()) <= 1
    assert float(x.std()) > 0.01  # not a flat image
    hashes = gen.weight_hashes()
    assert "ldm/unet/diffusion_pytorch_model.safetensors" in hashes
    assert "vae/diffusion_pytorch_model.safetensors" in hashes


def test_experiment_with_generated_and_img2img_classes(quick_run, vae_dir, tmp_path):
    gen = {"weights": str(quick_run / "model"), "vae": str(vae_dir), "steps": 3}
    exp = textwrap.dedent(
        f"""\
        name: generators
        seed: 1
        data:
          dataset:
            name: sample-photos
            params: {{crop: 64, crops_per_photo: 2, photos: [astronaut, coffee, chelsea]}}
          derive:
            - label: synthetic
              generator: {{name: tiny-ldm, params: {json.dumps(gen)}}}
              n: 6
            - label: img2img
              from: pristine
              generator: {{name: tiny-ldm, params: {json.dumps({**gen, "strength": 0.5})}}}
        split: {{test_size: 0.34}}
        pipelines:
          - name: dct-lr
            features: [{{name: dct-spectrum, params: {{size: 8}}}}]
            classifier: logistic-regression
        tasks:
          - {{name: ternary, type: multiclass}}
        """
    )
    path = tmp_path / "exp.yaml"
    path.write_text(exp)
    result = run_experiment(load_experiment(path), tmp_path / "out", progress=None)
    with open(tmp_path / "out" / "results.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert rows and rows[0]["pipeline"] == "dct-lr"
    assert result is not None


# -- diffusers-pipeline ---------------------------------------------------------------------


def _check_pipeline_generator(gen, side: int) -> None:
    a = gen.generate(2, seed=3)
    assert a.shape == (2, 3, side, side) and a.dtype == torch.float32
    assert float(a.min()) >= 0.0 and float(a.max()) <= 1.0
    assert torch.equal(a, gen.generate(2, seed=3))
    assert not torch.allclose(a, gen.generate(2, seed=4))


def test_diffusers_pipeline_unconditional(tmp_path):
    torch.manual_seed(0)
    unet = diffusers.UNet2DModel(
        sample_size=16,
        in_channels=3,
        out_channels=3,
        block_out_channels=(8, 16),
        layers_per_block=1,
        down_block_types=("DownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "UpBlock2D"),
        norm_num_groups=8,
        add_attention=False,
    )
    diffusers.DDIMPipeline(unet=unet, scheduler=diffusers.DDIMScheduler()).save_pretrained(
        tmp_path / "ddim"
    )
    gen = fzoo.create_component(
        "generator", "diffusers-pipeline", weights=str(tmp_path / "ddim"), steps=3
    )
    _check_pipeline_generator(gen, 16)
    assert not gen.pop_notes()
    sized = fzoo.create_component(
        "generator", "diffusers-pipeline", weights=str(tmp_path / "ddim"), steps=2, size=32
    )
    assert sized.generate(1, seed=0).shape == (1, 3, 16, 16)
    assert any("takes no size" in n for n in sized.pop_notes())


def _tiny_clip_tokenizer(tmp_path: Path):
    from transformers import CLIPTokenizer

    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for c in string.ascii_lowercase:
        vocab[c] = len(vocab)
    for c in string.ascii_lowercase:
        vocab[c + "</w>"] = len(vocab)
    merges = [("p", "h"), ("ph", "o"), ("pho", "t"), ("phot", "o</w>")]
    for a, b in merges:
        vocab[a + b] = len(vocab)
    if "vocab_file" in inspect.signature(CLIPTokenizer.__init__).parameters:  # transformers 4
        (tmp_path / "vocab.json").write_text(json.dumps(vocab))
        lines = ["#version: 0.2", *(f"{a} {b}" for a, b in merges)]
        (tmp_path / "merges.txt").write_text("\n".join(lines) + "\n")
        return CLIPTokenizer(
            str(tmp_path / "vocab.json"), str(tmp_path / "merges.txt"), model_max_length=16
        )
    return CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=16)


def test_diffusers_pipeline_text_to_image(tmp_path):
    transformers = pytest.importorskip(
        "transformers", reason="transformers is needed for a text-to-image pipeline"
    )
    torch.manual_seed(0)
    tokenizer = _tiny_clip_tokenizer(tmp_path)
    assert len(set(tokenizer("a photo").input_ids)) > 2  # the vocabulary was really loaded
    text_encoder = transformers.CLIPTextModel(
        transformers.CLIPTextConfig(
            vocab_size=128,
            hidden_size=32,
            intermediate_size=37,
            num_attention_heads=4,
            num_hidden_layers=2,
            max_position_embeddings=16,
            bos_token_id=0,
            eos_token_id=1,
            pad_token_id=1,
        )
    )
    unet = diffusers.UNet2DConditionModel(
        sample_size=8,
        in_channels=4,
        out_channels=4,
        block_out_channels=(16, 32),
        layers_per_block=1,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=32,
        attention_head_dim=8,
        norm_num_groups=8,
    )
    vae = diffusers.AutoencoderKL(
        block_out_channels=(8, 16),
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=8,
    )
    pipe = diffusers.StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=diffusers.DDIMScheduler(**tiny_ldm.scheduler_config()),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.save_pretrained(tmp_path / "sd")
    params = {"weights": str(tmp_path / "sd"), "steps": 2, "size": 16, "guidance_scale": 3.0}
    gen = fzoo.create_component("generator", "diffusers-pipeline", **params)
    _check_pipeline_generator(gen, 16)
    other = fzoo.create_component(
        "generator", "diffusers-pipeline", **params, prompt="a cat", negative_prompt="blur"
    )
    assert not torch.allclose(other.generate(1, seed=3), gen.generate(1, seed=3))
    assert "model_index.json" in gen.weight_hashes()
