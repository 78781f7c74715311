"""``camera-id-cnn``: a learned camera-model feature extractor (Bondi et al. 2017 patch CNN)."""

from __future__ import annotations

import contextlib
import io
import json
import math
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from PIL import Image
from pydantic import Field, field_validator

import fzoo

if TYPE_CHECKING:
    import torch

    from fzoo_builtins.camera_id.bondi import BondiNet

# The values of fzoo_builtins.camera_id.bondi (which imports torch, so it is imported only when a
# network is built; tests/test_startup.py checks that the two agree).
#: side of the patches the paper's network is built for
PATCH = 64
#: width of the embedding (the paper's FC 128)
EMBED_DIM = 128
STATE_FORMAT = 1
#: Pillow filters the resize augmentation draws from (one per sample)
RESIZE_FILTERS = (
    Image.Resampling.BILINEAR,
    Image.Resampling.BICUBIC,
    Image.Resampling.LANCZOS,
)
#: default ranges of the augmentations (tuned on a validation split of the training photos)
JPEG_QUALITY = (80, 100)
RESIZE_SCALE = (0.75, 1.25)
#: patches used to re-estimate the batch-norm statistics after training
RECALIBRATE = 4096


@contextlib.contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Run a block with ``torch.set_num_threads(n)`` (unchanged when ``n`` is None)."""
    import torch

    if n is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def tile_positions(size: int, patch: int, align: int) -> list[int]:
    """Top-left offsets of the tiles along one side: ``ceil(size / patch)`` tiles spread evenly
    over ``[0, size - patch]`` and rounded down to multiples of ``align`` (non-overlapping when
    ``size`` is a multiple of ``patch``; overlapping a little otherwise, so the side is covered
    up to ``align - 1`` px)."""
    if size < patch:
        raise ValueError(f"image side {size} px is smaller than the {patch} px patch")
    n = math.ceil(size / patch)
    raw = np.linspace(0, size - patch, n) if n > 1 else np.zeros(1)
    return sorted({int(v) // align * align for v in raw})


def grid_positions(
    h: int, w: int, patch: int, align: int, max_patches: int | None
) -> list[tuple[int, int]]:
    """Tile positions ``(y, x)`` of an image, row-major; at most ``max_patches`` of them, evenly
    spaced in that order when there are more."""
    pos = [(y, x) for y in tile_positions(h, patch, align) for x in tile_positions(w, patch, align)]
    if max_patches is not None and len(pos) > max_patches:
        keep = np.unique(np.round(np.linspace(0, len(pos) - 1, max_patches)).astype(int))
        pos = [pos[k] for k in keep]
    return pos


def to_uint8(img: torch.Tensor) -> np.ndarray:
    """One ``[1, 3, H, W]`` (or ``[3, H, W]``) float tensor in [0, 1] -> HWC uint8."""
    arr = img.detach().cpu().float().numpy()
    if arr.ndim == 4:
        if arr.shape[0] != 1:
            raise ValueError(f"fit expects 1-image batches, got {tuple(arr.shape)}")
        arr = arr[0]
    if arr.ndim != 3 or arr.shape[0] != 3:
        raise ValueError(f"expected an RGB image [3, H, W], got {tuple(arr.shape)}")
    return np.ascontiguousarray(fzoo.to_uint8(arr).transpose(1, 2, 0))


def jpeg_u8(img: np.ndarray, quality: int, subsampling: int) -> np.ndarray:
    """JPEG round trip of an HWC uint8 image with Pillow (libjpeg, standard tables)."""
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="JPEG", quality=quality, subsampling=subsampling)
    buf.seek(0)
    with Image.open(buf) as decoded:
        return np.asarray(decoded.convert("RGB"))


class PatchSampler:
    """Random training patches with optional JPEG / resize augmentation (all from one RNG).

    Per sample: an image and a position (multiples of ``align``); with ``resize`` on and
    probability ``prob``, a crop of side ``ceil(patch / s) + 2`` (capped by the image) is resized
    by ``s ~ U(resize_scale)`` with a random Pillow filter (bilinear, bicubic, Lanczos) and a
    random ``patch`` crop of the result is kept; with ``jpeg`` on and probability ``prob``, the
    patch is JPEG-compressed at quality ``U{jpeg_quality}``, chroma 4:2:0 or 4:4:4 (Pillow),
    and decoded.
    """

    def __init__(
        self,
        images: Sequence[np.ndarray],
        patch: int,
        align: int,
        augment: Sequence[str],
        prob: float,
        rng: np.random.Generator,
        jpeg_quality: tuple[int, int] = JPEG_QUALITY,
        resize_scale: tuple[float, float] = RESIZE_SCALE,
    ) -> None:
        self.images = images
        self.patch = patch
        self.align = align
        self.augment = set(augment)
        self.prob = prob
        self.rng = rng
        self.jpeg_quality = jpeg_quality
        self.resize_scale = resize_scale

    def _crop(self, img: np.ndarray, side: int, align: int) -> np.ndarray:
        h, w = img.shape[:2]
        y = int(self.rng.integers(0, (h - side) // align + 1)) * align
        x = int(self.rng.integers(0, (w - side) // align + 1)) * align
        return img[y : y + side, x : x + side]

    def sample(self, index: int) -> np.ndarray:
        img, p, rng = self.images[index], self.patch, self.rng
        if "resize" in self.augment and rng.random() < self.prob:
            s = float(rng.uniform(*self.resize_scale))
            side = min(math.ceil(p / s) + 2, *img.shape[:2])
            crop = self._crop(img, side, 1)
            new = max(p, round(side * s))
            resample = RESIZE_FILTERS[int(rng.integers(len(RESIZE_FILTERS)))]
            out = np.asarray(Image.fromarray(crop).resize((new, new), resample=resample))
            patch = self._crop(out, p, 1)
        else:
            patch = self._crop(img, p, self.align)
        if "jpeg" in self.augment and rng.random() < self.prob:
            quality = int(rng.integers(self.jpeg_quality[0], self.jpeg_quality[1] + 1))
            patch = jpeg_u8(np.ascontiguousarray(patch), quality, int(rng.choice([0, 2])))
        return np.ascontiguousarray(patch)

    def epoch(self, per_image: int) -> tuple[np.ndarray, np.ndarray]:
        """``per_image`` patches of every image, shuffled: (uint8 ``[N, P, P, 3]``, image index)."""
        order = np.repeat(np.arange(len(self.images)), per_image)
        order = order[self.rng.permutation(len(order))]
        return np.stack([self.sample(int(i)) for i in order]), order


class CameraIdCNN(fzoo.FeatureExtractor):
    """Camera-model identification CNN of Bondi et al. 2017 (IEEE SPL), learned on the train split.

    **Network** (:mod:`fzoo_builtins.camera_id.bondi`): 64 x 64 RGB patches, conv 4x4x32 -> pool
    -> conv 5x5x48 -> pool -> conv 5x5x64 -> pool -> conv 5x5x128 -> FC 128 -> ReLU -> FC n,
    optionally behind the constrained 5 x 5 prediction-error layer of Bayar & Stamm (2016, 2018).
    Deviations from the paper, each a parameter: ``batch_norm`` after every convolution
    (default on: steadier and faster training in the few epochs a CPU allows), and
    ``remove_patch_mean`` (default on): each patch's per-channel mean is subtracted instead of
    a fixed 0.5. Brightness and colour vary per render (auto-exposure, AWB), not per camera, and
    a network trained on a few dozen scenes otherwise memorises them (validation accuracy on
    held-out training photos rose from about 0.6 to 0.85 with it).

    **Training** (``fit``; the runner passes the train split only, with ``fit_target`` labels,
    images of the ``fit_on`` labels): every epoch draws ``patches_per_image`` random patches per
    image at offsets that are multiples of ``align`` (8 keeps the JPEG block grid and the 2 x 2
    CFA phase, traces a camera leaves); ``augment`` adds random resize (scale ``resize_scale``)
    and JPEG (quality ``jpeg_quality``) to a patch with probability ``augment_prob`` each,
    decided by the seeded RNG (a camera-ID network that fails on a benign JPEG is no fair
    instrument for measuring laundering). The default ranges, JPEG 80-100 and resize 0.75-1.25,
    are milder than 70-100 / 0.5-1.5, which destroy most traces and cost clean accuracy on a
    small training set. Cross-entropy, Adam with cosine learning-rate decay (the paper used SGD;
    Adam converges in the few epochs a CPU allows), all seeded by ``seed``
    (``torch.manual_seed`` inside a forked RNG, numpy ``default_rng``). Images smaller than the
    patch are left out of training with a note.

    **Extraction**: each image is tiled with ``patch`` px tiles (non-overlapping when its side is
    a multiple of the patch, else ``ceil(side / patch)`` evenly spaced tiles per side, aligned
    to ``align``), at most ``max_patches`` evenly spaced ones; patch outputs are fused per
    image. ``output``: ``logits`` (``[B, n_classes]``, columns in the sorted order of the
    training classes), ``probabilities`` (softmax of the fused logits) or ``embedding`` (mean of
    the patches' FC-128 features, ``[B, 128]``). ``fusion``: ``mean_logit`` (Bondi's soft
    fusion) or ``majority`` (the paper's majority vote over patches: the output is then the vote
    fractions, for both ``logits`` and ``probabilities``, ties broken by the mean logit).
    Images smaller than the patch raise ``ValueError`` (the runner skips them).

    State (no pickle): ``model.safetensors`` + ``camera_id.json`` (classes and architecture).
    Use with the ``argmax-logits`` classifier to classify camera labels.
    """

    name = "camera-id-cnn"
    description = "Bondi et al. 2017 camera-model patch CNN (learned; logits/embedding)"
    version = "1"
    requires_fit = True

    class Params(fzoo.Params):
        fit_target: Literal["label", "camera"] = Field(
            "camera", description="record field the network learns to predict"
        )
        fit_on: list[str] | None = Field(
            ["pristine"],
            description="train only on images with these labels (null: all training images)",
        )
        patch: int = Field(PATCH, ge=PATCH, le=1024, description="patch side in px (the paper: 64)")
        patches_per_image: int = Field(
            16, ge=1, le=10_000, description="random training patches per image per epoch"
        )
        epochs: int = Field(16, ge=1, le=10_000, description="training epochs")
        lr: float = Field(3e-3, gt=0, le=10, description="Adam learning rate (cosine decay to 0)")
        weight_decay: float = Field(0.0, ge=0, le=10, description="Adam weight decay")
        batch_size: int = Field(64, ge=1, le=65_536, description="patches per optimiser step")
        constrained_first_layer: bool = Field(
            False, description="Bayar & Stamm constrained 5x5 prediction-error first layer"
        )
        constrained_filters: int = Field(
            3, ge=1, le=256, description="kernels of the constrained layer (Bayar & Stamm: 3)"
        )
        batch_norm: bool = Field(
            True, description="batch norm after each convolution (not in the paper; steadier)"
        )
        augment: list[Literal["jpeg", "resize"]] = Field(
            ["jpeg", "resize"],
            description="training augmentations: random JPEG (jpeg_quality), resize (resize_scale)",
        )
        jpeg_quality: tuple[int, int] = Field(
            JPEG_QUALITY, description="range of the JPEG augmentation's quality (inclusive)"
        )
        resize_scale: tuple[float, float] = Field(
            RESIZE_SCALE, description="range of the resize augmentation's scale factor"
        )
        augment_prob: float = Field(
            0.5, ge=0, le=1, description="probability of each augmentation per training patch"
        )
        remove_patch_mean: bool = Field(
            True,
            description="subtract each patch's per-channel mean (else 0.5): brightness and "
            "colour vary per image, not per camera",
        )
        align: int = Field(
            8, ge=1, le=1024, description="training and tiling offsets are multiples of this (px)"
        )
        output: Literal["logits", "embedding", "probabilities"] = Field(
            "logits", description="what extract returns per image"
        )
        fusion: Literal["mean_logit", "majority"] = Field(
            "mean_logit", description="image-level fusion of the patch predictions"
        )
        max_patches: int | None = Field(
            64,
            ge=1,
            le=1_000_000,
            description="at most this many tiles per image at extraction (null: all)",
        )
        seed: int = Field(
            0,
            ge=0,
            le=2**32 - 1,
            description="seed of initialisation, patch sampling, augmentation",
        )
        threads: int | None = Field(
            None,
            ge=1,
            le=1024,
            description="torch CPU threads during fit/extract (null: unchanged)",
        )

        @field_validator("augment")
        @classmethod
        def _unique(cls, v: list[str]) -> list[str]:
            return sorted(set(v))

        @field_validator("jpeg_quality")
        @classmethod
        def _quality_range(cls, v: tuple[int, int]) -> tuple[int, int]:
            if not 1 <= v[0] <= v[1] <= 100:
                raise ValueError("jpeg_quality must be [low, high] with 1 <= low <= high <= 100")
            return v

        @field_validator("resize_scale")
        @classmethod
        def _scale_range(cls, v: tuple[float, float]) -> tuple[float, float]:
            if not 0 < v[0] <= v[1] <= 16:
                raise ValueError("resize_scale must be [low, high] with 0 < low <= high <= 16")
            return v

    params: Params

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self.net: BondiNet | None = None
        self.classes_: list[str] = []
        self.history_: list[float] = []

    # ------------------------------------------------------------------ network
    def _build(self, n_classes: int) -> BondiNet:
        from fzoo_builtins.camera_id.bondi import BondiNet

        p = self.params
        return BondiNet(
            n_classes,
            constrained=p.constrained_first_layer,
            constrained_filters=p.constrained_filters,
            batch_norm=p.batch_norm,
        )

    def _prep(self, patches: torch.Tensor) -> torch.Tensor:
        """Float patches ``[N, 3, P, P]`` in [0, 1] -> network input: ``x - 0.5``, or ``x`` minus
        each patch's per-channel mean with ``remove_patch_mean``."""
        if self.params.remove_patch_mean:
            return patches - patches.mean(dim=(2, 3), keepdim=True)
        return patches - 0.5

    @staticmethod
    def _from_u8(patches_u8: np.ndarray) -> torch.Tensor:
        import torch

        return torch.from_numpy(patches_u8).permute(0, 3, 1, 2).float() / 255.0

    # ------------------------------------------------------------------ fit
    def fit(self, batches: Iterable[torch.Tensor], labels: Sequence[str]) -> CameraIdCNN:
        import torch

        p = self.params
        images, ys, small = [], [], 0
        for img, label in zip(batches, labels, strict=True):
            u8 = to_uint8(img)
            if min(u8.shape[:2]) < p.patch:
                small += 1
                continue
            images.append(u8)
            ys.append(str(label))
        if small:
            self.note(f"{small} training image(s) smaller than {p.patch} px left out")
        classes = sorted(set(ys))
        if len(classes) < 2:
            raise ValueError(
                f"{self.name}: needs at least two classes to learn, got {classes} "
                f"(fit_target={p.fit_target!r}, fit_on={p.fit_on})"
            )
        y_img = np.array([classes.index(v) for v in ys])
        rng = np.random.default_rng(p.seed)
        sampler = PatchSampler(
            images,
            p.patch,
            p.align,
            p.augment,
            p.augment_prob,
            rng,
            p.jpeg_quality,
            p.resize_scale,
        )
        steps_per_epoch = math.ceil(len(images) * p.patches_per_image / p.batch_size)
        with torch_threads(p.threads), torch.random.fork_rng(devices=[]):
            torch.manual_seed(p.seed)
            net = self._build(len(classes))
            opt = torch.optim.Adam(net.parameters(), lr=p.lr, weight_decay=p.weight_decay)
            sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, p.epochs * steps_per_epoch)
            loss_fn = torch.nn.CrossEntropyLoss()
            self.history_ = []
            net.train()
            from fzoo.progress import Progress

            # a bar on a terminal, a line every ~10 s (with epoch and loss) when redirected
            bar = Progress(f"fit {self.name}", p.epochs * steps_per_epoch, "step")
            for epoch in range(p.epochs):
                patches, idx = sampler.epoch(p.patches_per_image)
                targets = torch.from_numpy(y_img[idx])
                total = 0.0
                for s in range(0, len(idx), p.batch_size):
                    x = self._prep(self._from_u8(patches[s : s + p.batch_size]))
                    logits, _ = net(x)
                    loss = loss_fn(logits, targets[s : s + p.batch_size])
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                    sched.step()
                    net.project()
                    total += float(loss.detach()) * len(x)
                    bar.update(1, epoch=f"{epoch + 1}/{p.epochs}", loss=float(loss.detach()))
                self.history_.append(total / len(idx))
            bar.close()
            if p.batch_norm:
                self._recalibrate(net, patches)
            net.eval()
        self.net = net
        self.classes_ = classes
        return self

    def _recalibrate(self, net: BondiNet, patches: np.ndarray) -> None:
        """Batch-norm statistics of the final weights: the exact mean and variance over the
        last epoch's patches (at most ``RECALIBRATE`` of them), not the running average of
        the changing network (which lags behind after short training)."""
        import torch

        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.reset_running_stats()
                m.momentum = None  # cumulative average
        net.train()
        with torch.no_grad():
            for s in range(0, min(len(patches), RECALIBRATE), self.params.batch_size):
                net(self._prep(self._from_u8(patches[s : s + self.params.batch_size])))

    # ------------------------------------------------------------------ extract
    def patch_outputs(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits ``[P, n]`` and embeddings ``[P, 128]`` of one image's tiles (``[3, H, W]``)."""
        import torch

        net = self._require_net()
        p = self.params
        _, h, w = image.shape
        pos = grid_positions(int(h), int(w), p.patch, p.align, p.max_patches)
        x = torch.stack([image[:, y : y + p.patch, x : x + p.patch] for y, x in pos]).float()
        with torch.no_grad():
            logits, emb = net(self._prep(x))
        return logits, emb

    def extract(self, batch: torch.Tensor) -> np.ndarray:
        import torch

        self._require_net()
        p = self.params
        if batch.dim() != 4 or batch.shape[1] != 3:
            raise ValueError(f"{self.name}: expected [B, 3, H, W], got {tuple(batch.shape)}")
        n = len(self.classes_)
        dim = EMBED_DIM if p.output == "embedding" else n
        out = np.zeros((batch.shape[0], dim), dtype=np.float32)
        with torch_threads(p.threads):
            for i in range(batch.shape[0]):
                logits, emb = self.patch_outputs(batch[i].detach().cpu())
                if p.output == "embedding":
                    out[i] = emb.mean(0).numpy()
                    continue
                mean_logit = logits.mean(0)
                if p.fusion == "majority":
                    votes = torch.bincount(logits.argmax(1), minlength=n).double()
                    votes += 1e-6 * torch.softmax(mean_logit.double(), 0)  # tie-break
                    out[i] = (votes / votes.sum()).numpy()
                elif p.output == "probabilities":
                    out[i] = torch.softmax(mean_logit, 0).numpy()
                else:
                    out[i] = mean_logit.numpy()
        return out

    def _require_net(self) -> BondiNet:
        if self.net is None:
            raise RuntimeError(f"{self.name} is not fitted: call fit or load_state first")
        return self.net

    # ------------------------------------------------------------------ state
    def save_state(self, directory: Path) -> None:
        from safetensors.torch import save_file

        net = self._require_net()
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
        save_file(state, str(d / "model.safetensors"))
        p = self.params
        meta = {
            "format": STATE_FORMAT,
            "component": self.name,
            "classes": self.classes_,
            "architecture": {
                "n_classes": len(self.classes_),
                "constrained": p.constrained_first_layer,
                "constrained_filters": p.constrained_filters,
                "batch_norm": p.batch_norm,
                "patch": p.patch,
            },
            "train_loss": [round(v, 6) for v in self.history_],
        }
        (d / "camera_id.json").write_text(json.dumps(meta, indent=2), encoding="utf-8")

    def load_state(self, directory: Path) -> None:
        from safetensors.torch import load_file

        from fzoo_builtins.camera_id.bondi import BondiNet

        d = Path(directory)
        meta = json.loads((d / "camera_id.json").read_text(encoding="utf-8"))
        if meta.get("format") != STATE_FORMAT:
            raise ValueError(f"{d}: unsupported camera_id state format {meta.get('format')}")
        arch = meta["architecture"]
        net = BondiNet(
            arch["n_classes"],
            constrained=arch["constrained"],
            constrained_filters=arch["constrained_filters"],
            batch_norm=arch["batch_norm"],
        )
        net.load_state_dict(load_file(str(d / "model.safetensors")))
        net.eval()
        self.net = net
        self.classes_ = list(meta["classes"])
        self.history_ = list(meta.get("train_loss", []))
