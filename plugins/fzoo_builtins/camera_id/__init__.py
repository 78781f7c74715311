"""Camera-model identification: the Bondi et al. 2017 patch CNN and timm backbones.

Components: ``camera-id-cnn`` (learned feature extractor: logits, probabilities or embeddings
of a patch CNN, Bondi et al. 2017, optional Bayar & Stamm constrained layer), ``argmax-logits``
(classifier reading those logits as class scores), ``timm-embedding`` (frozen timm backbone)
and ``timm-finetune`` (learned: a timm backbone fine-tuned on the train split).
"""

from __future__ import annotations

from typing import Any

from fzoo import hookimpl
from fzoo_builtins.camera_id.classifier import ArgmaxLogits
from fzoo_builtins.camera_id.extractor import CameraIdCNN
from fzoo_builtins.camera_id.timm_embed import TimmEmbedding, TimmFinetune

__all__ = ["ArgmaxLogits", "CameraIdCNN", "TimmEmbedding", "TimmFinetune"]


@hookimpl
def fzoo_register_feature_extractors(register: Any) -> None:
    register(CameraIdCNN)
    register(TimmEmbedding)
    register(TimmFinetune)


@hookimpl
def fzoo_register_classifiers(register: Any) -> None:
    register(ArgmaxLogits)
