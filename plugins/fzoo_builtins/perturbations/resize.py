"""Rescaling (Pillow resampling on 8-bit images), optionally back to the original size."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import numpy as np
from PIL import Image
from pydantic import Field

import fzoo
from fzoo_builtins.perturbations._common import (
    check_batch,
    from_uint8_images,
    scaled,
    to_uint8_images,
)

if TYPE_CHECKING:
    import torch

FILTERS = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
}


class Resize(fzoo.Perturbation):
    """Rescaling by ``scale``, a robustness condition of Mandelli et al. 2024 (WIFS: Resize-0.5,
    Resize-2, and DownUp-4 = ``scale=0.25, restore=True``) and Corvi et al. 2023 (ICASSP).

    Implementation: each image is rounded and clipped to 8 bits and resized with Pillow's
    ``Image.resize`` (``nearest``, ``bilinear``, ``bicubic`` or ``lanczos``; Pillow widens the
    filter support when downscaling, i.e. it antialiases, as tools that produce real resized
    images do); the result is 8-bit quantised. The new size is ``H * scale`` by ``W * scale``,
    rounded half up and at least 1 px, so H and W change. With ``restore=True`` the image is
    resized back to its original H x W with the same filter (a down-up or up-down round trip),
    so the output size equals the input size. Dtype and device are kept; ``rng`` is not used.
    """

    name = "resize"
    description = "Rescale by a factor with Pillow, optionally back (Mandelli et al. 2024 list)"
    version = "1"
    #: the output is smaller or larger (unless ``restore``): the size check does not apply
    changes_size = True

    class Params(fzoo.Params):
        scale: float = Field(
            0.5, gt=0, le=16, description="Scale factor applied to both sides (0 < scale <= 16)."
        )
        interpolation: Literal["bilinear", "bicubic", "lanczos", "nearest"] = Field(
            "bilinear", description="Pillow resampling filter."
        )
        restore: bool = Field(
            False, description="Resize back to the original size afterwards (down-up round trip)."
        )

    params: Params

    def apply(self, batch: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
        check_batch(batch, self.name)
        p = self.params
        h, w = int(batch.shape[2]), int(batch.shape[3])
        new_w, new_h = scaled(w, p.scale), scaled(h, p.scale)
        resample = FILTERS[p.interpolation]
        out = []
        for img in to_uint8_images(batch):
            pil = Image.fromarray(img).resize((new_w, new_h), resample=resample)
            if p.restore:
                pil = pil.resize((w, h), resample=resample)
            out.append(np.asarray(pil))
        if not out:
            size = (h, w) if p.restore else (new_h, new_w)
            return batch.new_zeros((0, 3, *size))
        return from_uint8_images(out, batch)
