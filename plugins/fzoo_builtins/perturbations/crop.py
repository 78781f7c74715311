"""Square or proportional cropping, centred or at a random position."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal, Self

import numpy as np
from pydantic import Field, model_validator

import fzoo
from fzoo_builtins.perturbations._common import check_batch, scaled

if TYPE_CHECKING:
    import torch


class Crop(fzoo.Perturbation):
    """Cropping, a robustness condition of Frank et al. 2020 (ICML) and of Wang et al. 2020
    (CNNDetection, CVPR: 224 x 224 crops, random for training and centred for testing).

    Either ``size`` (a ``size x size`` square; the default 224) or ``fraction`` (each side
    scaled by ``fraction``, rounded half up, at least 1 px: ``fraction=0.5`` keeps a quarter of
    the area); giving ``fraction`` alone clears the default ``size``, giving both is an error.
    An image smaller than the crop raises ``ValueError``. ``position="center"`` takes the
    centred window (offset ``(H - h) // 2``); ``position="random"`` draws each image's top-left
    corner uniformly, in batch order, from ``rng`` (the same seed gives the same crops). H and
    W change; dtype and device are kept; no resampling.
    """

    name = "crop"
    description = "Square or proportional crop, centred or random (Wang et al. 2020 protocol)"
    version = "1"
    #: the output is a crop: the size check does not apply
    changes_size = True

    class Params(fzoo.Params):
        size: int | None = Field(
            224,
            ge=1,
            le=65_536,
            description="Side of a square crop in pixels (None when fraction is used).",
        )
        fraction: float | None = Field(
            None,
            gt=0,
            le=1,
            description="Crop each side to this fraction of the image instead of a fixed size.",
        )
        position: Literal["center", "random"] = Field(
            "center", description="Centred crop, or a uniformly random position drawn from rng."
        )

        @model_validator(mode="before")
        @classmethod
        def _fraction_replaces_size(cls, data: Any) -> Any:
            if isinstance(data, dict) and data.get("fraction") is not None and "size" not in data:
                data = {**data, "size": None}
            return data

        @model_validator(mode="after")
        def _exactly_one(self) -> Self:
            if (self.size is None) == (self.fraction is None):
                raise ValueError("give exactly one of 'size' and 'fraction'")
            return self

    params: Params

    def crop_size(self, h: int, w: int) -> tuple[int, int]:
        """The (height, width) of the crop for an ``h x w`` image."""
        p = self.params
        if p.size is not None:
            ch = cw = p.size
        else:
            assert p.fraction is not None
            ch, cw = scaled(h, p.fraction), scaled(w, p.fraction)
        if ch > h or cw > w:
            raise ValueError(f"{self.name}: cannot crop {cw}x{ch} from a {w}x{h} (WxH) image")
        return ch, cw

    def apply(self, batch: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
        import torch

        check_batch(batch, self.name)
        h, w = int(batch.shape[2]), int(batch.shape[3])
        ch, cw = self.crop_size(h, w)
        if self.params.position == "center":
            top, left = (h - ch) // 2, (w - cw) // 2
            return batch[:, :, top : top + ch, left : left + cw].clone()
        out = []
        for i in range(batch.shape[0]):
            top = int(rng.integers(0, h - ch + 1))
            left = int(rng.integers(0, w - cw + 1))
            out.append(batch[i, :, top : top + ch, left : left + cw])
        if not out:
            return batch.new_zeros((0, 3, ch, cw))
        return torch.stack(out).clone()
