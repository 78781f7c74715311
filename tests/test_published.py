"""Published detectors: fzoo's score equals the authors' reference forward pass.

For every detector the test builds the reference network the way the authors' code does
(torchvision's ``resnet50(num_classes=1)`` for CNNDetection, the ResNet-50 "nodown" and NPR
variants from their papers' descriptions, a tiny transformers CLIP for UnivFD), randomises its
weights and BatchNorm running statistics, saves them in the official checkpoint layout and
compares fzoo's score on real photos (scikit-image) with the reference, preprocessed with the
authors' torchvision transforms on the PIL image, to 1e-4 (relative). Then the bad inputs: wrong
architecture, pickles that need code, missing weights, images too small; the command line and
the ``published-score`` classifier.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from skimage import data as skdata

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
import torchvision.transforms as T  # noqa: E402
from torch import nn  # noqa: E402
from torchvision.models import resnet50  # noqa: E402

import fzoo  # noqa: E402
from fzoo.cli import main  # noqa: E402
from fzoo_builtins.published import (  # noqa: E402
    NPR,
    CheckpointError,
    CNNDetection,
    Grag2021,
    PublishedScore,
    UnivFD,
)
from fzoo_builtins.published._checkpoint import load_state_dict  # noqa: E402

IMAGENET = T.Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225])
CLIP = T.Normalize(
    mean=(0.48145466, 0.4578275, 0.40821073), std=(0.26862954, 0.26130258, 0.27577711)
)


# --------------------------------------------------------------------------- helpers
def randomise(net: nn.Module, seed: int) -> nn.Module:
    """Random weights everywhere, and random BatchNorm running statistics (eval mode uses them)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.copy_(0.5 + torch.rand(m.weight.shape, generator=g))
                m.bias.copy_(0.1 * torch.randn(m.bias.shape, generator=g))
                m.running_mean.copy_(0.1 * torch.randn(m.running_mean.shape, generator=g))
                m.running_var.copy_(0.5 + torch.rand(m.running_var.shape, generator=g))
            elif isinstance(m, nn.Conv2d | nn.Linear):
                fan_in = m.weight[0].numel()
                m.weight.copy_(torch.randn(m.weight.shape, generator=g) * (2.0 / fan_in) ** 0.5)
                if m.bias is not None:
                    m.bias.copy_(0.1 * torch.randn(m.bias.shape, generator=g))
    return net.eval()


def photo(name: str, top: int, left: int, h: int, w: int) -> np.ndarray:
    return np.ascontiguousarray(getattr(skdata, name)()[top : top + h, left : left + w, :3])


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Real photo crops as PNG files (64 x 64, plus odd and non-square sizes)."""
    root = tmp_path_factory.mktemp("photos")
    crops = {
        "astronaut": photo("astronaut", 60, 180, 64, 64),
        "chelsea": photo("chelsea", 40, 100, 64, 64),
        "coffee": photo("coffee", 100, 200, 64, 64),
        "rocket-odd": photo("rocket", 100, 200, 45, 51),
        "astronaut-big": photo("astronaut", 50, 120, 232, 240),
    }
    out = {}
    for name, arr in crops.items():
        out[name] = root / f"{name}.png"
        Image.fromarray(arr).save(out[name])
    return out


def reference_input(path: Path, *transforms: Any) -> torch.Tensor:
    """The authors' preprocessing: PIL RGB image -> torchvision transforms -> [1, 3, H, W]."""
    return T.Compose([*transforms])(Image.open(path).convert("RGB")).unsqueeze(0)


def fzoo_score(detector: fzoo.FeatureExtractor, path: Path) -> float:
    x = fzoo.to_tensor(fzoo.load_image(path).pixels)
    out = detector.extract(x)
    assert out.shape == (1, 1) and out.dtype == np.float32
    return float(out[0, 0])


def assert_close(got: float, want: float) -> None:
    assert abs(want) > 1e-3, f"reference score {want} too close to 0 for a relative check"
    assert abs(got - want) <= 1e-4 * abs(want), (got, want)


# --------------------------------------------------------------------------- cnndetection
@pytest.fixture(scope="module")
def cnn_ckpt(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, nn.Module]:
    ref = randomise(resnet50(num_classes=1), seed=1)  # CNNDetection's resnet50(num_classes=1)
    path = tmp_path_factory.mktemp("cnn") / "blur_jpg_prob0.5.pth"
    torch.save({"model": ref.state_dict()}, path)  # the released layout
    return path, ref


def test_cnndetection_matches_reference(cnn_ckpt, photos) -> None:
    path, ref = cnn_ckpt
    det = CNNDetection(weights=str(path))
    for name in ("astronaut", "chelsea", "rocket-odd"):
        with torch.no_grad():
            want = float(ref(reference_input(photos[name], T.ToTensor(), IMAGENET))[0, 0])
        assert_close(fzoo_score(det, photos[name]), want)
    # the paper's 224 protocol, here a 40 centre crop of 51 x 45 (torchvision's rounding)
    det40 = CNNDetection(weights=str(path), crop=40)
    with torch.no_grad():
        x = reference_input(photos["rocket-odd"], T.CenterCrop(40), T.ToTensor(), IMAGENET)
        want = float(ref(x)[0, 0])
    assert_close(fzoo_score(det40, photos["rocket-odd"]), want)
    # an image smaller than the crop is refused, not padded
    with pytest.raises(ValueError, match="smaller than the 40"):
        det40.extract(torch.rand(1, 3, 36, 64))


def test_cnndetection_embedding_batch_and_hash(cnn_ckpt, photos) -> None:
    path, ref = cnn_ckpt
    det = CNNDetection(weights=str(path), output="embedding", batch_size=2)
    batch = torch.cat([fzoo.to_tensor(fzoo.load_image(photos[n]).pixels) for n in
                       ("astronaut", "chelsea", "coffee")])  # fmt: skip
    emb = det.extract(batch)
    assert emb.shape == (3, 2048)
    scores = CNNDetection(weights=str(path)).extract(batch)[:, 0]
    with torch.no_grad():
        want = ref.fc(torch.from_numpy(emb))[:, 0].numpy()
    np.testing.assert_allclose(scores, want, rtol=1e-4, atol=1e-5)
    # the checkpoint's sha256 is in the fingerprint and the notes of the results
    hashes = det.weight_hashes()
    assert hashes == {f"cnndetection:{path.name}": fzoo.weights.sha256_file(path)}
    assert any("sha256" in n for n in det.pop_notes())
    assert det.fingerprint() != CNNDetection(weights=str(path), output="score").fingerprint()


def test_folder_with_the_released_file_is_accepted(cnn_ckpt, photos) -> None:
    path, _ = cnn_ckpt
    by_file = fzoo_score(CNNDetection(weights=str(path)), photos["coffee"])
    assert fzoo_score(CNNDetection(weights=str(path.parent)), photos["coffee"]) == by_file


def test_bfloat16_is_close(cnn_ckpt, photos) -> None:
    path, _ = cnn_ckpt
    fp32 = fzoo_score(CNNDetection(weights=str(path)), photos["chelsea"])
    bf16 = fzoo_score(CNNDetection(weights=str(path), dtype="bfloat16"), photos["chelsea"])
    assert abs(bf16 - fp32) <= 0.1 * abs(fp32) + 0.1


# --------------------------------------------------------------------------- grag2021
def resnet50_nodown() -> nn.Module:
    """Gragnaniello et al.'s ResNet-50 "nodown": stride 1 in conv1 and in the max-pool."""
    net = resnet50(num_classes=1)
    net.conv1.stride = (1, 1)
    net.maxpool.stride = 1
    return net


def test_grag2021_matches_reference_with_and_without_module_prefix(tmp_path, photos) -> None:
    ref = randomise(resnet50_nodown(), seed=2)
    plain, prefixed = tmp_path / "plain.pth", tmp_path / "model_epoch_best.pth"
    torch.save({"model": ref.state_dict()}, plain)
    torch.save({"model": {f"module.{k}": v for k, v in ref.state_dict().items()}}, prefixed)
    for name in ("astronaut", "rocket-odd"):
        with torch.no_grad():  # ICME 2021 protocol: global average pool, then the linear layer
            want = float(ref(reference_input(photos[name], T.ToTensor(), IMAGENET))[0, 0])
        assert_close(fzoo_score(Grag2021(weights=str(plain)), photos[name]), want)
        assert_close(fzoo_score(Grag2021(weights=str(prefixed)), photos[name]), want)
    emb = Grag2021(weights=str(plain), output="embedding").extract(torch.rand(1, 3, 24, 24))
    assert emb.shape == (1, 2048)

    # tiling: icme2021, with the 1536/1024 limits scaled down to 40/32 for the test
    x = reference_input(photos["rocket-odd"], T.ToTensor(), IMAGENET)  # 51 x 45: 4 unequal tiles
    logits, areas = [], []
    with torch.no_grad():  # GANimageDetection's apply(): tile logits averaged by tile area
        for top in range(0, x.shape[-2], 32):
            for left in range(0, x.shape[-1], 32):
                tile = x[..., top : top + 32, left : left + 32]
                logits.append(float(ref(tile)[0, 0]))
                areas.append(tile.shape[-2] * tile.shape[-1])
    want = float(np.mean(np.asarray(logits) * np.asarray(areas)) / np.mean(areas))
    det = Grag2021(weights=str(plain), tiling="icme2021")
    det.tile_limit, det.tile_size = 40, 32
    assert_close(fzoo_score(det, photos["rocket-odd"]), want)
    assert abs(want - fzoo_score(Grag2021(weights=str(plain)), photos["rocket-odd"])) > 1e-3


# --------------------------------------------------------------------------- npr
class NPRReference(nn.Module):
    """Tan et al.'s network from the paper: NPR residual, truncated ResNet-50, fc1 512 -> 1."""

    def __init__(self) -> None:
        super().__init__()
        base = resnet50()
        self.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=2, padding=1, bias=False)
        self.bn1, self.relu, self.maxpool = base.bn1, base.relu, base.maxpool
        self.layer1, self.layer2 = base.layer1, base.layer2
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Linear(512, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        x = x[..., : h - h % 2, : w - w % 2]  # the README's fix for odd sizes
        half = nn.functional.interpolate(x, scale_factor=0.5, mode="nearest")
        npr = x - nn.functional.interpolate(half, scale_factor=2.0, mode="nearest")
        y = self.maxpool(self.relu(self.bn1(self.conv1(npr * 2.0 / 3.0))))
        return self.fc1(torch.flatten(self.avgpool(self.layer2(self.layer1(y))), 1))


def test_npr_matches_reference(tmp_path, photos) -> None:
    ref = randomise(NPRReference(), seed=3)
    bare, wrapped = tmp_path / "NPR.pth", tmp_path / "wrapped.pth"
    torch.save(ref.state_dict(), bare)  # NPR.pth is a bare state dict
    torch.save({"model": ref.state_dict()}, wrapped)
    for name in ("astronaut", "coffee", "rocket-odd"):
        with torch.no_grad():
            want = float(ref(reference_input(photos[name], T.ToTensor(), IMAGENET))[0, 0])
        assert_close(fzoo_score(NPR(weights=str(bare)), photos[name]), want)
    det = NPR(weights=str(wrapped))
    with torch.no_grad():
        want = float(ref(reference_input(photos["rocket-odd"], T.ToTensor(), IMAGENET))[0, 0])
    assert_close(fzoo_score(det, photos["rocket-odd"]), want)
    assert any("cropped to 50x44" in n for n in det.pop_notes())
    assert NPR(weights=str(bare), output="embedding").extract(torch.rand(2, 3, 32, 32)).shape == (
        2,
        512,
    )


# --------------------------------------------------------------------------- univfd
@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, nn.Module, nn.Module]:
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    torch.manual_seed(4)
    config = CLIPVisionConfig(
        image_size=224,
        patch_size=32,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        projection_dim=16,
        hidden_act="quick_gelu",
    )
    clip = CLIPVisionModelWithProjection(config).eval()
    root = tmp_path_factory.mktemp("univfd")
    clip.save_pretrained(root / "clip")
    fc = nn.Linear(16, 1)
    torch.save(fc.state_dict(), root / "fc_weights.pth")  # {'weight': [1, D], 'bias': [1]}
    return root / "fc_weights.pth", root / "clip", clip, fc


def test_univfd_matches_reference(tiny_clip, photos) -> None:
    fc_path, clip_dir, clip, fc = tiny_clip
    x = reference_input(photos["astronaut-big"], T.CenterCrop(224), T.ToTensor(), CLIP)
    with torch.no_grad():
        feats = clip(pixel_values=x).image_embeds
        want = float(fc(feats)[0, 0])
    det = UnivFD(weights=str(fc_path), backbone=str(clip_dir))
    assert_close(fzoo_score(det, photos["astronaut-big"]), want)
    assert any(k.startswith("backbone:") for k in det.weight_hashes())
    emb = UnivFD(weights=str(fc_path), backbone=str(clip_dir), output="embedding")
    np.testing.assert_allclose(
        emb.extract(fzoo.to_tensor(fzoo.load_image(photos["astronaut-big"]).pixels)),
        feats.numpy(),
        rtol=1e-4,
        atol=1e-5,
    )
    with pytest.raises(ValueError, match="smaller than the 224"):
        det.extract(torch.rand(1, 3, 64, 64))


# --------------------------------------------------------------------------- bad checkpoints
class NotATensor:
    """A custom class: a checkpoint holding one needs code to unpickle."""

    def __init__(self) -> None:
        self.payload = [1, 2, 3]


def test_wrong_architecture_names_keys_and_detector(tmp_path, cnn_ckpt) -> None:
    path, _ = cnn_ckpt
    with pytest.raises(CheckpointError) as err:
        NPR(weights=str(path)).extract(torch.rand(1, 3, 32, 32))
    text = str(err.value)
    assert "npr" in text and str(path) in text and "Is this a checkpoint of npr?" in text
    assert "missing keys" in text and "fc1.weight" in text
    assert "unexpected keys" in text and "layer3.0.conv1.weight" in text
    assert "shape mismatches" in text and "conv1.weight" in text


def test_pickle_needing_code_is_refused(tmp_path) -> None:
    path = tmp_path / "evil.pth"
    torch.save({"model": {"fc.weight": torch.zeros(1, 2048)}, "meta": NotATensor()}, path)
    with pytest.raises(CheckpointError, match="pickle that needs code") as err:
        load_state_dict(path, detector="cnndetection", url="https://example.org")
    assert "NotATensor" in str(err.value)
    with pytest.raises(CheckpointError, match="refused"):
        CNNDetection(weights=str(path)).extract(torch.rand(1, 3, 16, 16))


def test_missing_weights_fail_fast_with_url_and_param_line(tmp_path) -> None:
    for weights in (str(tmp_path / "blur_jpg_prob0.5.pth"), "someone/cnndetection-weights"):
        start = time.perf_counter()
        with pytest.raises(fzoo.WeightsNotFoundError) as err:
            CNNDetection(weights=weights).weight_hashes()
        assert time.perf_counter() - start < 2.0
        text = str(err.value)
        assert "blur_jpg_prob0.5.pth" in text and "github.com/PeterWang512/CNNDetection" in text
        assert "--param weights=" in text and "params: {weights:" in text
        assert ("hf download someone/cnndetection-weights" in text) == (weights[0] != "/")
    for variant in ("Grag2021_latent", "Grag2021_progan"):  # the layout of the GRIP weights zip
        (tmp_path / "zip" / variant).mkdir(parents=True)
        (tmp_path / "zip" / variant / "model_epoch_best.pth").write_bytes(b"")
    with pytest.raises(fzoo.WeightsNotFoundError, match="holds 2 files .* say which one"):
        Grag2021(weights=str(tmp_path / "zip")).weight_hashes()
    found = Grag2021(weights=str(tmp_path / "zip" / "Grag2021_latent")).checkpoint_path()
    assert found == tmp_path / "zip" / "Grag2021_latent" / "model_epoch_best.pth"
    (tmp_path / "empty").mkdir()
    with pytest.raises(fzoo.WeightsNotFoundError, match="holds no file named 'NPR.pth'"):
        NPR(weights=str(tmp_path / "empty")).weight_hashes()


# --------------------------------------------------------------------------- command line
def test_detect_cli_json_and_table(cnn_ckpt, photos, tmp_path, capsys) -> None:
    path, ref = cnn_ckpt
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not an image")
    images = [photos["astronaut"], bad, photos["chelsea"]]
    args = ["detect", "--detector", "cnndetection", "--param", f"weights={path}"]
    assert main([*args, "--json", *map(str, images)]) == 1  # one image skipped
    captured = capsys.readouterr()
    rows = json.loads(captured.out)
    assert [r["path"] for r in rows] == [str(photos["astronaut"]), str(photos["chelsea"])]
    for r in rows:
        with torch.no_grad():
            want = float(ref(reference_input(Path(r["path"]), T.ToTensor(), IMAGENET))[0, 0])
        assert_close(r["score"], want)
        assert abs(r["probability"] - 1 / (1 + np.exp(-r["score"]))) < 1e-9
        assert r["predicted"] == ("synthetic" if r["score"] > 0 else "real")
    assert "broken.png" in captured.err

    assert main([*args, str(photos["coffee"])]) == 0
    table = capsys.readouterr().out
    assert "score" in table and "coffee.png" in table and "1 scored with cnndetection" in table

    assert main(["detect", "--detector", "cnndetection", "--param",
                 f"weights={tmp_path / 'none.pth'}", str(photos["coffee"])]) == 2  # fmt: skip
    assert "PeterWang512/CNNDetection" in capsys.readouterr().err
    assert main(["detect", "--detector", "fft-spectrum", str(photos["coffee"])]) == 2
    assert "not a published detector" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["detect", str(photos["coffee"])])  # --pipeline or --detector is required


def test_list_detectors(capsys) -> None:
    assert main(["list", "detectors", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)["detectors"]}
    assert {"cnndetection", "grag2021", "npr", "univfd"} <= set(rows)
    assert "CVPR 2020" in rows["cnndetection"]["paper"]
    assert rows["univfd"]["weights_file"] == "fc_weights.pth"
    assert main(["list", "detectors"]) == 0
    text = capsys.readouterr().out
    assert "grag2021" in text and "weights url:" in text and "protocol:" in text


# --------------------------------------------------------------------------- classifier
def test_published_score_classifier(tmp_path) -> None:
    X = np.array([[-2.0], [0.5], [3.0]])
    clf = PublishedScore().fit(X, ["not-synthetic", "synthetic", "synthetic"])
    p = clf.predict_proba(X)
    np.testing.assert_allclose(p[:, 1], 1 / (1 + np.exp(-X[:, 0])))
    assert list(clf.predict(X)) == ["not-synthetic", "synthetic", "synthetic"]
    # the positive class is the one that is not "not-...", wherever it sorts
    clf2 = PublishedScore().fit(X, ["laundered", "not-laundered", "laundered"])
    assert list(clf2.classes_) == ["laundered", "not-laundered"]
    np.testing.assert_allclose(clf2.predict_proba(X)[:, 0], 1 / (1 + np.exp(-X[:, 0])))
    clf2.save_state(tmp_path)
    assert json.loads((tmp_path / "published_score.json").read_text())["positive"] == "laundered"
    again = PublishedScore()
    again.load_state(tmp_path)
    np.testing.assert_array_equal(again.predict_proba(X), clf2.predict_proba(X))
    with pytest.raises(ValueError, match="binary"):
        PublishedScore().fit(X, ["a", "b", "c"])
    with pytest.raises(ValueError, match="column 3"):
        PublishedScore(column=3).fit(X, ["a", "b", "a"])


# --------------------------------------------------------------------------- the YAML example
def test_example_runs_with_random_checkpoints(tmp_path, capsys) -> None:
    """docs/examples/published-detectors.yaml validates and runs (weights set with --set)."""
    example = Path(__file__).resolve().parent.parent / "docs/examples/published-detectors.yaml"
    cnn, grag = tmp_path / "blur_jpg_prob0.5.pth", tmp_path / "model_epoch_best.pth"
    torch.save({"model": randomise(resnet50(num_classes=1), seed=5).state_dict()}, cnn)
    nodown = randomise(resnet50_nodown(), seed=6).state_dict()
    torch.save({"model": {f"module.{k}": v for k, v in nodown.items()}}, grag)
    sets = [
        f"pipelines.cnndetection.features.0.params.weights={cnn}",
        f"pipelines.cnndetection+dct.features.0.params.weights={cnn}",
        f"pipelines.grag2021.features.0.params.weights={grag}",
        f"pipelines.grag2021-calibrated.features.0.params.weights={grag}",
        "data.dataset.params.crops_per_photo=1",
        "data.derive.synthetic.n=6",
    ]
    args = [str(example), *[a for s in sets for a in ("--set", s)]]
    assert main(["validate", *args]) == 0
    out = tmp_path / "out"
    assert main(["run", *args, "--out", str(out), "--quiet"]) == 0
    capsys.readouterr()
    results = json.loads((out / "results.json").read_text())
    rows = results["rows"]
    assert {r["pipeline"] for r in rows} == {
        "cnndetection",
        "grag2021",
        "grag2021-calibrated",
        "cnndetection+dct",
        "dct",
    }
    assert {r["condition"] for r in rows} == {"clean", "jpeg-80", "resize-half"}
    assert not results["errors"]
    text = json.dumps(results["notes"])
    assert fzoo.weights.sha256_file(cnn) in text and fzoo.weights.sha256_file(grag) in text

    # the saved pipeline (cnndetection + published-score) scores a new image as the detector does
    img = tmp_path / "astronaut.png"
    Image.fromarray(photo("astronaut", 0, 0, 64, 64)).save(img)
    pipe = out / "pipelines" / "cnndetection--real-vs-synthetic"
    assert main(["detect", "--pipeline", str(pipe), str(img)]) == 0
    record = json.loads(capsys.readouterr().out)
    score = fzoo_score(CNNDetection(weights=str(cnn)), img)
    p_synthetic = 1 / (1 + np.exp(-np.clip(np.float64(score), -500, 500)))
    assert abs(record["probabilities"]["synthetic"] - p_synthetic) < 1e-5
    assert record["predicted"] == ("synthetic" if score > 0 else "not-synthetic")


def test_detector_modules_do_not_import_torch() -> None:
    import subprocess
    import sys

    code = (
        "import sys, fzoo_builtins.published as p; "
        "print(sorted(m for m in ('torch', 'torchvision', 'transformers') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
