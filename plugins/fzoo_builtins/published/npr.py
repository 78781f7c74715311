"""``npr``: Tan et al., CVPR 2024, "Rethinking the up-sampling operations in CNN-based generative
network for generalizable deepfake detection" (neighbouring pixel relationships, NPR)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fzoo_builtins.published._checkpoint import PublishedDetector

if TYPE_CHECKING:
    import torch


def _build_npr_resnet() -> Any:
    """The authors' truncated ResNet-50 (conv1 3x3/2, max-pool, layer1, layer2, fc1 512 -> 1)."""
    import torch
    from torch import nn
    from torchvision.models import resnet50

    class NPRResNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            base = resnet50(weights=None)
            self.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=2, padding=1, bias=False)
            self.bn1 = base.bn1
            self.relu = base.relu
            self.maxpool = base.maxpool
            self.layer1 = base.layer1
            self.layer2 = base.layer2
            self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
            self.fc1 = nn.Linear(512, 1)

        def features(self, x: torch.Tensor) -> torch.Tensor:
            import torch.nn.functional as F

            down = F.interpolate(x, scale_factor=0.5, mode="nearest", recompute_scale_factor=True)
            up = F.interpolate(down, scale_factor=2.0, mode="nearest", recompute_scale_factor=True)
            residual = x - up  # the NPR: each pixel minus its 2x2 block's top-left neighbour
            y = self.maxpool(self.relu(self.bn1(self.conv1(residual * (2.0 / 3.0)))))
            y = self.layer2(self.layer1(y))
            return torch.flatten(self.avgpool(y), 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc1(self.features(x))

    return NPRResNet()


class NPR(PublishedDetector):
    """Tan, Zhao, Wei, Gu, Liu & Wei, "Rethinking the up-sampling operations in CNN-based
    generative network for generalizable deepfake detection", CVPR 2024.

    Input: the whole image, ImageNet mean/std (their test loader with ``no_resize``/``no_crop``,
    the setting of their AIGCDetectBenchmark results). The network sees the neighbouring-pixel
    residual ``x - up(down(x))`` with nearest-neighbour down- and up-sampling by 2, scaled by 2/3,
    through a truncated ResNet-50: a 3x3 stride-2 first convolution, batch norm, ReLU, max-pool,
    ``layer1``, ``layer2``, global average pool and ``fc1`` (512 -> 1). Score = that logit,
    > 0 = synthetic. An odd side loses its last row/column first, as the authors' README
    prescribes (the network needs even sides); this is noted in the results.
    Checkpoints: a bare state dict (``NPR.pth``) or ``{'model': ...}``. ``output: embedding``:
    the 512 pooled features.
    """

    name = "npr"
    description = "Tan et al. CVPR 2024 NPR residual ResNet, released weights; score = logit"
    version = "1"
    paper = (
        'C. Tan, Y. Zhao, S. Wei, G. Gu, P. Liu, Y. Wei, "Rethinking the up-sampling operations '
        'in CNN-based generative network for generalizable deepfake detection", CVPR 2024'
    )
    protocol = (
        "whole image (odd sides cropped by one pixel), ImageNet mean/std; NPR residual "
        "x - up(down(x)) (nearest, factor 2); score = logit"
    )
    weights_filename = "NPR.pth"
    weights_url = (
        "https://github.com/chuangchuangtan/NPR-DeepfakeDetection (NPR.pth in the repository "
        "root; also model_epoch_last_3090.pth, the ProGAN-4class checkpoint)"
    )
    weights_licence = "no licence stated in the repository"
    embedding_dim = 512
    min_size = 2

    def build_network(self) -> torch.nn.Module:
        return _build_npr_resnet()

    def prepare(self, batch: torch.Tensor) -> torch.Tensor:
        h, w = int(batch.shape[-2]), int(batch.shape[-1])
        if h % 2 or w % 2:
            self.note(
                f"{w}x{h} image cropped to {w - w % 2}x{h - h % 2} (even sides, as the NPR "
                "authors' README prescribes)"
            )
            batch = batch[..., : h - h % 2, : w - w % 2]
        return super().prepare(batch)

    def score_batch(self, net: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
        return net(x)[:, 0]

    def embed_batch(self, net: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
        return net.features(x)  # type: ignore[operator]
