"""JPEG compression (Pillow, in memory)."""

from __future__ import annotations

import io
from typing import TYPE_CHECKING, Literal

import numpy as np
from PIL import Image
from pydantic import Field

import fzoo
from fzoo_builtins.perturbations._common import check_batch, from_uint8_images, to_uint8_images

if TYPE_CHECKING:
    import torch


class JPEG(fzoo.Perturbation):
    """JPEG re-compression, the standard robustness condition of Wang et al. 2020 (CNNDetection,
    CVPR) and of the post-processing list of Mandelli et al. 2024 (WIFS: JPEG-70, JPEG-80).

    Each image is rounded and clipped to 8 bits, encoded with Pillow's libjpeg at ``quality``
    with the given chroma ``subsampling`` (baseline, standard IJG tables, no optimisation),
    decoded in memory and scaled back to [0, 1]. The output is thus 8-bit quantised; size, dtype
    and device are kept. Deterministic: ``rng`` is not used.
    """

    name = "jpeg"
    description = "JPEG compression at a given quality (Pillow; Wang et al. 2020 protocol)"
    version = "1"

    class Params(fzoo.Params):
        quality: int = Field(75, ge=1, le=100, description="JPEG quality factor, 1 (worst)..100.")
        subsampling: Literal["4:2:0", "4:4:4"] = Field(
            "4:2:0", description="Chroma subsampling: '4:2:0' (the common default) or '4:4:4'."
        )

    params: Params

    def apply(self, batch: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
        check_batch(batch, self.name)
        out = []
        for img in to_uint8_images(batch):
            buf = io.BytesIO()
            Image.fromarray(img).save(
                buf, format="JPEG", quality=self.params.quality, subsampling=self.params.subsampling
            )
            buf.seek(0)
            with Image.open(buf) as decoded:
                out.append(np.asarray(decoded.convert("RGB")))
        return from_uint8_images(out, batch)
