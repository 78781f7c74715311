"""``diffusers-pipeline``: fully synthetic images from any diffusers text-to-image or
unconditional pipeline, by hub id or folder.

Text-to-image pipelines (Stable Diffusion 1.x/2.x/XL/3, FLUX, PixArt, ...: those whose
``__call__`` takes a ``prompt``) get ``prompt`` and, where accepted, ``negative_prompt``,
``guidance_scale`` and ``height``/``width``; unconditional ones (``DDPMPipeline``,
``DDIMPipeline``, ...) get none of these and generate at their UNet's native size. Latent
diffusion (Rombach et al. 2022) pipelines decode through their own VAE, which leaves the decoder
traces that laundering detectors look for; DDPM (Ho et al. 2020) and DDIM (Song et al. 2021)
pipelines sample in pixel space. The safety checker is disabled by default: replacing flagged
images by black frames would put a content label into the data.
"""

from __future__ import annotations

import inspect
import threading
import warnings
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from pydantic import Field, field_validator

import fzoo
from fzoo_builtins.generators.tiny_ldm import image_seeds

if TYPE_CHECKING:
    import torch


def to_batch(images: Any) -> torch.Tensor:
    """A pipeline's ``images`` (ndarray NHWC/NCHW, tensor, or list of PIL images) as a float32
    NCHW tensor in [0, 1]."""
    import torch

    if isinstance(images, list | tuple):
        images = np.stack([np.asarray(im) for im in images])
        if images.dtype == np.uint8:
            images = images.astype(np.float32) / 255.0
    if isinstance(images, np.ndarray):
        arr = images.astype(np.float32, copy=False)
        if arr.ndim == 3:  # grayscale NHW
            arr = arr[..., None]
        if arr.shape[-1] in (1, 3, 4) and arr.shape[1] not in (1, 3, 4):
            arr = arr.transpose(0, 3, 1, 2)
        t = torch.from_numpy(np.ascontiguousarray(arr))
    else:
        t = images.detach().float().cpu()
    if t.shape[1] == 1:
        t = t.repeat(1, 3, 1, 1)
    elif t.shape[1] == 4:
        t = t[:, :3]
    return t.clamp(0.0, 1.0).contiguous()


class DiffusersPipeline(fzoo.Generator):
    """Any diffusers ``DiffusionPipeline`` (text-to-image or unconditional) as a generator.

    Loaded with ``DiffusionPipeline.from_pretrained(folder, local_files_only=True)`` after
    ``fzoo.resolve_weights``; one ``torch.Generator`` per image, so image ``i`` of
    ``generate(n, seed)`` depends only on ``(seed, i)`` (up to batched-kernel rounding).
    """

    name = "diffusers-pipeline"
    description = "Any diffusers text-to-image or unconditional pipeline (hub id or folder)"
    version = "1"

    class Params(fzoo.Params):
        weights: str = Field(description="diffusers pipeline: hub id or folder (model_index.json)")
        prompt: str = Field("a photo", description="prompt for text-to-image pipelines")
        negative_prompt: str | None = Field(None, description="negative prompt, where accepted")
        steps: int = Field(25, ge=1, le=1000, description="num_inference_steps")
        guidance_scale: float | None = Field(
            None,
            ge=0,
            le=100,
            description="classifier-free guidance scale (None: the pipeline's default)",
        )
        size: int | None = Field(
            None,
            ge=8,
            le=8192,
            description="height = width in pixels, a multiple of 8 (None: the pipeline's "
            "default; ignored by pipelines that take no height/width)",
        )
        dtype: Literal["float32", "float16", "bfloat16"] = Field(
            "float32", description="torch dtype of the pipeline's weights"
        )
        batch_size: int = Field(4, ge=1, le=1024, description="images per pipeline call")
        device: str = Field("cpu", description="torch device")
        safety_checker: bool = Field(
            False, description="keep the pipeline's safety checker (it blacks out images)"
        )

        @field_validator("size")
        @classmethod
        def _multiple_of_8(cls, value: int | None) -> int | None:
            if value is not None and value % 8:
                raise ValueError(f"size must be a multiple of 8 (got {value})")
            return value

    params: Params

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self._lock = threading.Lock()
        self._pipe: Any = None
        self._path: Any = None

    def _resolved(self) -> Any:
        if self._path is None:
            self._path = fzoo.resolve_weights(self.params.weights, param="weights").path
        return self._path

    def weight_hashes(self) -> dict[str, str]:
        return fzoo.weight_hashes(self._resolved())

    def pipeline(self) -> Any:
        """The loaded diffusers pipeline (loaded once)."""
        with self._lock:
            if self._pipe is None:
                import torch
                from diffusers import DiffusionPipeline

                kwargs: dict[str, Any] = {
                    "local_files_only": True,
                    "torch_dtype": getattr(torch, self.params.dtype),
                }
                path = self._resolved()
                index = path / "model_index.json"
                if (
                    not self.params.safety_checker
                    and index.exists()
                    and ('"safety_checker"' in index.read_text())
                ):
                    kwargs.update(safety_checker=None, requires_safety_checker=False)
                with warnings.catch_warnings():  # torch_dtype: every version; new ones warn
                    warnings.filterwarnings("ignore", ".*torch_dtype.*", FutureWarning)
                    pipe = DiffusionPipeline.from_pretrained(str(path), **kwargs)
                pipe.to(self.params.device)
                pipe.set_progress_bar_config(disable=True)
                self._pipe = pipe
            return self._pipe

    def generate(self, n: int, seed: int) -> torch.Tensor:
        import torch

        p = self.params
        pipe = self.pipeline()
        accepted = set(inspect.signature(pipe.__call__).parameters)
        seeds = image_seeds(seed, n)
        out = []
        for start in range(0, n, p.batch_size):
            chunk = seeds[start : start + p.batch_size]
            k = len(chunk)
            kwargs: dict[str, Any] = {
                "generator": [torch.Generator().manual_seed(s) for s in chunk],
                "num_inference_steps": p.steps,
                "output_type": "np",
            }
            if "prompt" in accepted:
                kwargs["prompt"] = [p.prompt] * k
                if p.negative_prompt is not None and "negative_prompt" in accepted:
                    kwargs["negative_prompt"] = [p.negative_prompt] * k
            elif "batch_size" in accepted:
                kwargs["batch_size"] = k
            if p.guidance_scale is not None and "guidance_scale" in accepted:
                kwargs["guidance_scale"] = p.guidance_scale
            if p.size is not None and {"height", "width"} <= accepted:
                kwargs.update(height=p.size, width=p.size)
            with torch.inference_mode():
                result = pipe(**kwargs)
            images = to_batch(result.images if hasattr(result, "images") else result[0])
            if images.shape[0] != k:
                raise RuntimeError(
                    f"{self.name}: asked for {k} images, the pipeline gave {len(images)}"
                )
            out.append(images)
        batch = torch.cat(out)
        if p.size is not None and tuple(batch.shape[-2:]) != (p.size, p.size):
            self.note(
                f"{type(pipe).__name__} takes no size; generated {batch.shape[-1]}x"
                f"{batch.shape[-2]} instead of {p.size}x{p.size}"
            )
        return batch
