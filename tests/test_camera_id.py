"""The camera_id plugin: Bondi patch CNN, constrained layer, fusion, state, runs, timm backbones."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

import fzoo
from fzoo.plugin_manager import get_registry
from fzoo_builtins.camera_id.bondi import BondiNet, ConstrainedConv2d
from fzoo_builtins.camera_id.classifier import ArgmaxLogits
from fzoo_builtins.camera_id.extractor import CameraIdCNN, grid_positions
from fzoo_builtins.virtual_cameras import VirtualCameras

#: two cameras that differ a lot (soft noisy lens + strong JPEG vs sharp clean 4:4:4)
PAIR = ["action-cam", "mirrorless"]
TRAIN_PHOTOS = ["astronaut", "coffee", "rocket", "motorcycle_left"]
TEST_PHOTOS = ["china", "flower", "grace_hopper"]
#: tiny training: verified to give accuracy 1.0 on the 12 test images for seeds 0-4
TINY = {
    "epochs": 4,
    "patches_per_image": 8,
    "batch_size": 16,
    "lr": 1e-3,
    "augment": [],
    "threads": 1,
}


def tensor(record: fzoo.Record) -> torch.Tensor:
    return fzoo.to_tensor(fzoo.decode_bytes(record.data or b"").pixels)


@pytest.fixture(scope="module")
def pair_data() -> tuple[list[torch.Tensor], list[str], list[torch.Tensor], list[str]]:
    """96 px tiles of two cameras; train and test photos are disjoint."""

    def load(photos: list[str]) -> tuple[list[torch.Tensor], list[str]]:
        recs = list(
            VirtualCameras(cameras=PAIR, photos=photos, scene_size=96, tiles_per_photo=2).records()
        )
        return [tensor(r) for r in recs], [str(r.camera) for r in recs]

    return (*load(TRAIN_PHOTOS), *load(TEST_PHOTOS))


@pytest.fixture(scope="module")
def constrained_cnn(pair_data) -> CameraIdCNN:
    x_tr, y_tr, _, _ = pair_data
    ext = CameraIdCNN(
        constrained_first_layer=True, epochs=1, patches_per_image=4, batch_size=16, threads=1
    )
    return ext.fit(iter(x_tr), y_tr)


def test_registered():
    reg = get_registry()
    for name in ("camera-id-cnn", "timm-embedding", "timm-finetune"):
        assert name in reg.names("feature_extractor")
    assert "argmax-logits" in reg.names("classifier")
    assert reg.get("feature_extractor", "camera-id-cnn").requires_fit
    assert not reg.get("feature_extractor", "timm-embedding").requires_fit
    assert reg.get("feature_extractor", "timm-finetune").requires_fit


def test_bondi_architecture_shapes():
    for constrained in (False, True):
        net = BondiNet(5, constrained=constrained, batch_norm=False).eval()
        logits, emb = net(torch.zeros(2, 3, 64, 64))
        assert logits.shape == (2, 5) and emb.shape == (2, 128)
        assert net.features(torch.zeros(1, 3, 64, 64)).shape == (1, 128, 1, 1)  # as in the paper
    convs = [m for m in BondiNet(3).features if isinstance(m, torch.nn.Conv2d)]
    assert [(c.out_channels, c.kernel_size[0]) for c in convs] == [
        (32, 4),
        (48, 5),
        (64, 5),
        (128, 5),
    ]


def test_constraint_projection():
    layer = ConstrainedConv2d(3, 3)
    assert layer.violation() < 1e-5
    with torch.no_grad():
        layer.weight.add_(torch.randn_like(layer.weight))
    assert layer.violation() > 1e-2
    layer.project()
    w = layer.weight
    assert torch.allclose(w[:, :, 2, 2], torch.full((3, 3), -1.0))
    assert torch.allclose(w.sum(dim=(2, 3)) - w[:, :, 2, 2], torch.ones(3, 3), atol=1e-5)


def test_cnn_separates_two_cameras(pair_data, seed=0):
    x_tr, y_tr, x_te, y_te = pair_data
    ext = CameraIdCNN(seed=seed, **TINY).fit(iter(x_tr), y_tr)
    assert ext.classes_ == sorted(PAIR)
    logits = np.concatenate([ext.extract(x) for x in x_te])
    pred = np.asarray(ext.classes_)[logits.argmax(1)]
    acc = float((pred == np.asarray(y_te)).mean())
    assert acc >= 0.75, acc  # chance is 0.5


def test_constrained_layer_holds_after_training(constrained_cnn):
    layer = constrained_cnn.net.constrained
    assert layer is not None and layer.violation() < 1e-5
    w = layer.weight.detach()
    assert torch.allclose(w[:, :, 2, 2], torch.full(w.shape[:2], -1.0), atol=1e-5)
    assert torch.allclose(w.sum(dim=(2, 3)) - w[:, :, 2, 2], torch.ones(w.shape[:2]), atol=1e-5)


def test_training_is_deterministic_per_seed(constrained_cnn, pair_data):
    x_tr, y_tr, x_te, _ = pair_data
    again = CameraIdCNN(**constrained_cnn.get_params()).fit(iter(x_tr), y_tr)
    x = torch.cat(x_te[:2])
    np.testing.assert_array_equal(again.extract(x), constrained_cnn.extract(x))


def test_save_load_gives_identical_features(constrained_cnn, pair_data, tmp_path):
    x = torch.cat(pair_data[2][:3])
    constrained_cnn.save_state(tmp_path)
    assert {p.name for p in tmp_path.iterdir()} == {"model.safetensors", "camera_id.json"}
    again = CameraIdCNN(**constrained_cnn.get_params())
    again.load_state(tmp_path)
    assert again.classes_ == constrained_cnn.classes_
    np.testing.assert_array_equal(again.extract(x), constrained_cnn.extract(x))


def test_fusion_and_output_shapes(constrained_cnn, tmp_path):
    constrained_cnn.save_state(tmp_path)
    x = torch.rand(2, 3, 130, 200)
    shapes = {}
    for output in ("logits", "probabilities", "embedding"):
        for fusion in ("mean_logit", "majority"):
            ext = CameraIdCNN(
                **{**constrained_cnn.get_params(), "output": output, "fusion": fusion}
            )
            ext.load_state(tmp_path)
            out = ext.extract(x)
            shapes[output, fusion] = out.shape
            if output == "probabilities" or (output == "logits" and fusion == "majority"):
                np.testing.assert_allclose(out.sum(1), 1.0, atol=1e-5)
            if fusion == "majority" and output != "embedding":
                n = len(grid_positions(130, 200, 64, 8, 64))
                assert n == 3 * 4
                np.testing.assert_allclose(np.round(out * n), out * n, atol=1e-3)  # vote fractions
    assert shapes["embedding", "mean_logit"] == shapes["embedding", "majority"] == (2, 128)
    assert all(s == (2, 2) for k, s in shapes.items() if k[0] != "embedding")
    with pytest.raises(ValueError, match="smaller than"):
        ext.extract(torch.rand(1, 3, 40, 80))


def test_grid_positions():
    assert grid_positions(128, 128, 64, 8, None) == [(0, 0), (0, 64), (64, 0), (64, 64)]
    assert grid_positions(115, 64, 64, 8, None) == [(0, 0), (48, 0)]  # covers 115 px (to 112)
    assert len(grid_positions(1024, 1024, 64, 8, 10)) == 10


def test_argmax_logits():
    clf = ArgmaxLogits()
    X = np.array([[2.0, 0.0, -1.0], [0.0, 3.0, 0.0]])
    clf.fit(X, ["b", "c", "a"])
    assert list(clf.classes_) == ["a", "b", "c"]
    proba = clf.predict_proba(X)
    np.testing.assert_allclose(proba.sum(1), 1.0)
    assert list(clf.predict(X)) == ["a", "b"]
    with pytest.raises(ValueError, match="one logit per class"):
        clf.fit(X[:, :2], ["b", "c", "a"])
    votes = ArgmaxLogits(inputs="probabilities").fit(np.array([[0.25, 0.75]]), ["x", "y"])
    np.testing.assert_allclose(votes.predict_proba(np.array([[0.25, 0.75]])), [[0.25, 0.75]])


EXPERIMENT = """\
name: camera-id-test
seed: 0
data:
  dataset:
    name: virtual-cameras
    params:
      cameras: [action-cam, mirrorless, phone-a]
      photos: [astronaut, coffee, rocket, china, flower]
      scene_size: 128
      tiles_per_photo: 1
  derive:
    - {label: laundered, from: pristine, perturbations: [downup-half]}
split: {test_size: 0.4}
conditions:
  - name: clean
pipelines:
  - name: cnn
    features:
      - name: camera-id-cnn
        params: {epochs: 1, patches_per_image: 4, batch_size: 32, max_patches: 4, threads: 1}
    classifier: argmax-logits
tasks:
  - {name: camera-id, type: multiclass, target: camera, train_on: [pristine], test_on: [pristine]}
  - {name: laundered-id, type: multiclass, target: camera, train_on: [pristine],
     test_on: [laundered]}
"""


def test_end_to_end_run_and_detect(tmp_path, capsys):
    from fzoo.cli import main
    from fzoo.config import load_experiment
    from fzoo.experiment import run_experiment

    path = tmp_path / "exp.yaml"
    path.write_text(EXPERIMENT)
    result = run_experiment(load_experiment(path), tmp_path / "out", progress=None)
    assert not result.errors, result.errors
    rows = {r["task"]: r for r in result.rows}
    assert set(rows) == {"camera-id", "laundered-id"}
    for row in rows.values():
        assert "error" not in row and row["n_test"] > 0 and 0.0 <= row["accuracy"] <= 1.0
    laundered = {p["label"] for p in result.predictions if p["task"] == "laundered-id"}
    assert laundered == {"laundered"}

    pipe = tmp_path / "out" / "pipelines" / "cnn--camera-id"
    state = pipe / "extractors" / "0"
    assert (state / "model.safetensors").exists() and (state / "camera_id.json").exists()
    classes = json.loads((state / "camera_id.json").read_text())["classes"]
    assert classes == ["action-cam", "mirrorless", "phone-a"]

    rec = next(iter(VirtualCameras(cameras=["phone-a"], photos=["flower"]).records()))
    img = tmp_path / "probe.png"
    Image.fromarray(np.round(fzoo.decode_bytes(rec.data).pixels * 255).astype(np.uint8)).save(img)
    capsys.readouterr()
    assert main(["detect", "--pipeline", str(pipe), str(img)]) == 0
    line = json.loads(capsys.readouterr().out.splitlines()[0])
    assert set(line["probabilities"]) == set(classes)
    assert abs(sum(line["probabilities"].values()) - 1) < 1e-6


# --------------------------------------------------------------------------- timm


def test_timm_embedding_random_init_is_deterministic_per_seed():
    from fzoo_builtins.camera_id.timm_embed import TimmEmbedding

    x = torch.rand(2, 3, 70, 64)  # centre-cropped to 64 x 64
    a = TimmEmbedding(model="resnet18", seed=1, threads=1)
    fa = a.extract(x)
    assert fa.shape == (2, 512) and fa.dtype == np.float32
    assert any("centre-cropped" in n for n in a.pop_notes())
    np.testing.assert_array_equal(fa, TimmEmbedding(model="resnet18", seed=1).extract(x))
    assert not np.allclose(fa, TimmEmbedding(model="resnet18", seed=2).extract(x))
    staged = TimmEmbedding(model="resnet18", seed=1, stages=[1, 4], pool="max", in_chans=1)
    assert staged.extract(x).shape == (2, 64 + 512)
    assert a.fingerprint() != TimmEmbedding(model="resnet18", seed=2).fingerprint()


def test_timm_unknown_model_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown timm model"):
        fzoo.create_component("feature_extractor", "timm-embedding", model="resnet-does-not-exist")


def test_timm_pretrained_offline_fails_fast_with_the_command(monkeypatch):
    import timm

    from fzoo_builtins.camera_id.timm_embed import TimmEmbedding

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    cfg = timm.models.get_pretrained_cfg("resnet18")
    if not getattr(cfg, "hf_hub_id", None):
        pytest.skip("timm does not route resnet18's weights through the hub")
    try:
        from huggingface_hub import try_to_load_from_cache

        if isinstance(try_to_load_from_cache(cfg.hf_hub_id, "model.safetensors"), str):
            pytest.skip(f"{cfg.hf_hub_id} is in the local Hugging Face cache")
    except ImportError:
        pass
    ext = TimmEmbedding(model="resnet18", pretrained=True)
    with pytest.raises(fzoo.WeightsNotFoundError) as info:
        ext.fingerprint()
    message = str(info.value)
    assert "hf download timm/resnet18" in message and "pretrained:" in message


def test_timm_finetune_learns_saves_and_reloads(pair_data, tmp_path):
    from fzoo_builtins.camera_id.timm_embed import TimmFinetune

    x_tr, y_tr, x_te, _ = pair_data
    ext = TimmFinetune(
        model="resnet18", crop=64, crops_per_image=2, epochs=1, train_last_stage=True, threads=1
    )
    ext.fit(iter(x_tr[:8]), y_tr[:8])
    assert ext.classes_ == sorted(set(y_tr[:8]))
    x = torch.cat(x_te[:2])
    feats = ext.extract(x)
    assert feats.shape == (2, len(ext.classes_))
    ext.save_state(tmp_path)
    again = TimmFinetune(**ext.get_params())
    again.load_state(tmp_path)
    np.testing.assert_allclose(again.extract(x), feats, rtol=1e-5, atol=1e-5)


def test_pipeline_yaml_documents_itself():
    # the params of every component validate and carry descriptions (what `fzoo list` shows)
    for name in ("camera-id-cnn", "timm-embedding", "timm-finetune"):
        schema = get_registry().get("feature_extractor", name).params_schema()
        assert all("description" in v for v in schema["properties"].values()), name


def test_timm_pretrained_from_a_local_safetensors_file(tmp_path):
    import timm
    from safetensors.torch import save_file

    from fzoo_builtins.camera_id.timm_embed import TimmEmbedding

    torch.manual_seed(5)
    model = timm.create_model("resnet18", pretrained=False)
    save_file(model.state_dict(), str(tmp_path / "r18.safetensors"))
    x = torch.rand(1, 3, 64, 64)
    from_file = TimmEmbedding(model="resnet18", pretrained=str(tmp_path / "r18.safetensors"))
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    with torch.no_grad():
        want = model.eval().forward_head(model.forward_features((x - mean) / std), True)
    np.testing.assert_allclose(from_file.extract(x), want.numpy(), atol=1e-5)
    assert set(from_file.weight_hashes()) == {"r18.safetensors"}
    gray = TimmEmbedding(model="resnet18", pretrained=str(tmp_path), in_chans=1)  # folder
    assert gray.extract(x).shape == (1, 512)
