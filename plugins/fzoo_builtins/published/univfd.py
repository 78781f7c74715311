"""``univfd``: Ojha, Li & Lee, CVPR 2023, "Towards universal fake image detectors that generalize
across generative models" (a linear probe on frozen CLIP ViT-L/14 image features)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import Field

import fzoo
from fzoo_builtins.published._checkpoint import (
    CLIP_MEAN,
    CLIP_STD,
    PublishedDetector,
    center_crop,
    load_into,
    load_state_dict,
    normalize,
    sha256_file,
)

if TYPE_CHECKING:
    import torch

CROP = 224


def _build_univfd(backbone_dir: Path) -> Any:
    """The frozen CLIP image encoder (transformers layout) + ``fc`` = Linear(projection_dim, 1)."""
    import torch
    from torch import nn
    from transformers import CLIPVisionModelWithProjection

    class UnivFDNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.clip = CLIPVisionModelWithProjection.from_pretrained(
                str(backbone_dir), torch_dtype=torch.float32
            )
            self.fc = nn.Linear(int(self.clip.config.projection_dim), 1)

        def features(self, x: torch.Tensor) -> torch.Tensor:
            # CLIP's encode_image: projection of the layer-normed class token
            return self.clip(pixel_values=x).image_embeds

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(self.features(x))

    return UnivFDNet()


class UnivFD(PublishedDetector):
    """Ojha, Li & Lee, "Towards universal fake image detectors that generalize across generative
    models", CVPR 2023.

    Network: the frozen CLIP ViT-L/14 image encoder (``encode_image``: the projected,
    layer-normed class token, 768 values) and one trained linear layer ``fc`` (768 -> 1), the only
    thing the authors release (``pretrained_weights/fc_weights.pth``: ``weight`` [1, 768] and
    ``bias`` [1]). The CLIP backbone comes from its own source, ``backbone``: a hub id or a folder
    in the Hugging Face transformers layout (``openai/clip-vit-large-patch14``, the same OpenAI
    weights the authors load with the ``clip`` package). Protocol of their ``validate.py``: a
    224 x 224 centre crop without resizing, CLIP mean/std; score = the logit, > 0 = synthetic.
    An image smaller than 224 pixels is refused (torchvision's crop would pad it with zeros).
    ``output: embedding``: the 768 CLIP features (the authors' linear-probe input).
    """

    name = "univfd"
    description = "Ojha et al. CVPR 2023 UnivFD: CLIP ViT-L/14 + linear probe; score = logit"
    version = "1"
    weight_params = ("weights", "backbone")  # content hashes in the fingerprint, not paths
    paper = (
        'U. Ojha, Y. Li, Y. J. Lee, "Towards universal fake image detectors that generalize '
        'across generative models", CVPR 2023'
    )
    protocol = "224 centre crop (no resize), CLIP mean/std; score = logit of fc(CLIP features)"
    weights_filename = "fc_weights.pth"
    weights_url = (
        "https://github.com/WisconsinAIVision/UniversalFakeDetect "
        "(pretrained_weights/fc_weights.pth); backbone: https://huggingface.co/openai/"
        "clip-vit-large-patch14"
    )
    weights_licence = "MIT (fc_weights.pth, the repository's LICENSE); CLIP weights: MIT (OpenAI)"
    checkpoint_keys = ("model", "state_dict", "fc")
    embedding_dim = 768
    min_size = CROP

    class Params(PublishedDetector.Params):
        backbone: str = Field(
            "openai/clip-vit-large-patch14",
            description="CLIP ViT-L/14 image encoder: a hub id or a folder (transformers layout)",
        )

    params: Params

    def backbone_path(self) -> Path:
        """Where the CLIP backbone is on disk (hub cache or folder; no loading)."""
        if getattr(self, "_backbone", None) is None:
            self._backbone = fzoo.resolve_weights(self.params.backbone, param="backbone").path
        return self._backbone

    def weight_hashes(self) -> dict[str, str]:
        path = self.checkpoint_path()
        hashes = {f"{self.name}:{path.name}": sha256_file(path)}
        hashes.update(
            {f"backbone:{k}": v for k, v in fzoo.weight_hashes(self.backbone_path()).items()}
        )
        return hashes

    def build_network(self) -> torch.nn.Module:
        return _build_univfd(self.backbone_path())

    def load_weights(self, net: torch.nn.Module, path: Path) -> None:
        state = load_state_dict(
            path, detector=self.name, keys=self.checkpoint_keys, url=self.weights_url
        )
        load_into(net.fc, state, detector=self.name, path=path)

    def prepare(self, batch: torch.Tensor) -> torch.Tensor:
        return normalize(center_crop(batch, CROP), CLIP_MEAN, CLIP_STD)

    def score_batch(self, net: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
        return net(x)[:, 0]

    def embed_batch(self, net: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
        return net.features(x)  # type: ignore[operator]
