"""``cnndetection``: Wang et al., CVPR 2020, "CNN-generated images are surprisingly easy to spot...
for now" (the "CNNSpot" ResNet-50 trained on ProGAN images with blur/JPEG augmentation)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import Field

from fzoo_builtins.published._checkpoint import PublishedDetector, center_crop

if TYPE_CHECKING:
    import torch


class CNNDetection(PublishedDetector):
    """Wang, Wang, Zhang, Owens & Efros, "CNN-generated images are surprisingly easy to spot...
    for now", CVPR 2020.

    Network: torchvision's ResNet-50 with a 2048 -> 1 ``fc`` (the authors' ``resnet50(
    num_classes=1)``, same parameter names). Released checkpoints (``blur_jpg_prob0.5.pth``,
    ``blur_jpg_prob0.1.pth``) are ``{'model': state_dict}``. Protocol of their ``demo.py`` /
    ``demo_dir.py``: the whole image by default, or a ``crop`` x ``crop`` centre crop (the paper's
    tables use 224), then ImageNet mean/std; the score is the logit, > 0 = synthetic
    (probability = sigmoid(logit)). ``output: embedding`` gives the 2048 pooled features.
    An image smaller than ``crop`` is refused (torchvision would pad it with zeros).
    """

    name = "cnndetection"
    description = "Wang et al. CVPR 2020 ResNet-50 (CNNSpot), released weights; score = logit"
    version = "1"
    paper = (
        'S.-Y. Wang, O. Wang, R. Zhang, A. Owens, A. A. Efros, "CNN-generated images are '
        'surprisingly easy to spot... for now", CVPR 2020'
    )
    protocol = (
        "whole image (or centre crop `crop`), ImageNet mean/std; score = logit, > 0 synthetic"
    )
    weights_filename = "blur_jpg_prob0.5.pth"
    weights_url = (
        "https://github.com/PeterWang512/CNNDetection (weights/download_weights.sh: "
        "https://www.dropbox.com/s/2g2jagq2jn1fd0i/blur_jpg_prob0.5.pth?dl=0)"
    )
    weights_licence = "CC BY-NC-SA 4.0 (the repository's LICENSE.txt)"
    embedding_dim = 2048

    class Params(PublishedDetector.Params):
        crop: int | None = Field(
            None,
            ge=1,
            le=8192,
            description="centre crop size before the network (None: whole image)",
        )

    params: Params

    def smallest_side(self) -> int:
        return self.params.crop or 1

    def build_network(self) -> torch.nn.Module:
        from torchvision.models import resnet50

        return resnet50(weights=None, num_classes=1)

    def prepare(self, batch: torch.Tensor) -> torch.Tensor:
        if self.params.crop is not None:
            batch = center_crop(batch, self.params.crop)
        return super().prepare(batch)

    def _features(self, net: Any, x: torch.Tensor) -> torch.Tensor:
        import torch

        for name in ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4"):
            x = getattr(net, name)(x)
        return torch.flatten(net.avgpool(x), 1)

    def score_batch(self, net: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
        fc: Any = net.fc
        return fc(self._features(net, x))[:, 0]

    def embed_batch(self, net: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
        return self._features(net, x)
