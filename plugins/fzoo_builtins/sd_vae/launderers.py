"""Autoencoder round-trip launderers: Stable Diffusion VAEs (``sd-vae``) and TAESD (``taesd``).

Image laundering (Mandelli et al., "When Synthetic Traces Hide Real Content: Analysis of Stable
Diffusion Image Laundering", WIFS 2024) passes a real photograph through the autoencoder of a
latent diffusion model, ``x' = D(E(x))`` (img2img at strength 0): the result looks like the
photo but carries the generator's traces. The autoencoders are the KL-regularised VAEs of Rombach
et al., "High-Resolution Image Synthesis with Latent Diffusion Models" (LDM, CVPR 2022), as
shipped with Stable Diffusion 1.x/2.x/XL/3 and FLUX.1 (diffusers ``AutoencoderKL``), and Ollin
Boer Bohan's distilled tiny autoencoders TAESD/TAESDXL/TAESD3/TAEF1/TAEF2 (github.com/madebyollin
/taesd, MIT), either as diffusers ``AutoencoderTiny`` folders or in their original
``*_encoder.pth`` / ``*_decoder.pth`` layout.

Both launderers share the same image handling: float32 RGB NCHW batches in [0, 1]; sides that are
not a multiple of the autoencoder's downsampling factor (8) are cropped (top-left anchored, as
``fzoo.fit_to_multiple``) or edge-padded and cropped back (``multiple_mode``), never resampled,
and every such change is reported with ``note()``. ``VaeImageProcessor`` is never used (it
resizes). Outputs are clamped to [0, 1] and returned as float32.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

import fzoo

if TYPE_CHECKING:
    import torch
    from torch import nn

PIXEL_BUDGET = 256 * 256
"""Automatic batching (``batch_size: null``): images per forward pass = this // (H * W)."""

SINGLE_FILE_SUFFIXES = (".safetensors", ".ckpt", ".pt", ".pth", ".bin")

# TAESD family, original layout: latent channels and whether the blocks next to the latent have
# the "midblock GroupNorm" pre-mixer (only TAEF2, for the FLUX.2 latent space).
TAESD_VARIANTS: dict[str, tuple[int, bool]] = {
    "taesd": (4, False),  # SD 1.x / 2.x
    "taesdxl": (4, False),  # SDXL
    "taesd3": (16, False),  # SD3
    "taef1": (16, False),  # FLUX.1
    "taef2": (32, True),  # FLUX.2
}

Dtype = Literal["float32", "bfloat16"]
MultipleMode = Literal["crop", "pad"]

_DTYPE_HELP = (
    "float32 (default; with batch_size 1 bit-identical to a plain diffusers loop) or bfloat16 "
    "(torch.autocast: convolutions in bf16; on this project's AVX512-BF16 CPU 2.2x less CPU "
    "time per 64x64 image and 43 dB PSNR against float32 for an SD-architecture VAE)."
)
_MULTIPLE_HELP = (
    "Sides not a multiple of the downsampling factor (8): 'crop' (top-left anchored, the "
    "output is smaller) or 'pad' (edge replication, laundered, cropped back to the input "
    "size). Never resampled; reported in the notes."
)
_TILE_HELP = (
    "Tile images with a side larger than this (pixels, multiple of 32): overlapped tiles "
    "(25% overlap, linear blending of the seams, as diffusers' VAE tiling), so memory is "
    "bounded by the tile, not the image; results differ slightly near seams. null: never tile."
)
TAESD_URL = "https://github.com/madebyollin/taesd/raw/main"
"""Where Bohan's original TAESD-family state dicts are published (MIT)."""

_BATCH_HELP = (
    "Images per forward pass. null: automatic, as many as fit in 256x256 pixels (16 at 64x64, "
    "1 at 256x256 and above). Batched float32 convolutions can differ from unbatched ones in "
    "the last float bits (oneDNN picks kernels per batch size), which moves a few 8-bit values "
    "by one level; batch_size 1 is bit-exact with a one-image-at-a-time loop."
)


def _torch_dtype(name: str) -> torch.dtype:
    import torch

    return torch.bfloat16 if name == "bfloat16" else torch.float32


def _device(name: str) -> torch.device:
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


class _RoundTrip(fzoo.Launderer):
    """Shared machinery: weights resolution, lazy model, crop/pad, batching, dtype, iterations.

    Subclasses implement :meth:`_load` (returns the model and its downsampling factor) and
    :meth:`_roundtrip` (one ``D(E(x))`` of a chunk in [0, 1]).
    """

    multiple = 8
    weight_params = ("weights", "config")  # their content hashes are in the fingerprint

    class Params(fzoo.Params):
        weights: str
        subfolder: str | None = None
        dtype: Dtype = "float32"
        iterations: int = Field(1, ge=1, le=100)
        multiple_mode: MultipleMode = "crop"
        batch_size: int | None = Field(None, ge=1, le=4096)
        device: str = "auto"

    params: Params

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self._lock = threading.Lock()
        self._resolved: fzoo.ResolvedWeights | None = None
        self._model: Any = None
        self._factor = self.multiple

    # ------------------------------------------------------------------ weights
    def weights_path(self) -> Path:
        """Where the weights are on disk (resolves a hub id from the local cache; no loading)."""
        if self._resolved is None:
            self._resolved = fzoo.resolve_weights(self.params.weights, param="weights")
        path = self._resolved.path
        if self.params.subfolder:
            path = path / self.params.subfolder
            if not path.exists():
                raise fzoo.WeightsNotFoundError(
                    f"weights {self.params.weights!r}: no subfolder {self.params.subfolder!r} "
                    f"in {self._resolved.path}"
                )
        return path

    def weight_hashes(self) -> dict[str, str]:
        """sha256 of the weight and config files (memoised by size and mtime; no model load)."""
        return fzoo.weight_hashes(self.weights_path())

    def model(self) -> Any:
        """The autoencoder, loaded on first use and kept for the life of this instance."""
        with self._lock:
            if self._model is None:
                path = self.weights_path()
                if path.is_dir() and (path / "SHA256SUMS").exists():
                    fzoo.verify_sums(path)  # bundled weights: refuse tampered files
                model, factor = self._load(path)
                model.to(_device(self.params.device)).eval().requires_grad_(False)
                if self._channels_last:
                    import torch

                    model.to(memory_format=torch.channels_last)
                self._model, self._factor = model, factor
            return self._model

    @property
    def _channels_last(self) -> bool:
        """bf16 runs NHWC (oneDNN's bf16 convolutions are ~9% faster so); fp32 stays NCHW, the
        layout of a plain diffusers loop, so that its results are bit-identical to it."""
        return self.params.dtype == "bfloat16"

    def _load(self, path: Path) -> tuple[nn.Module, int]:
        raise NotImplementedError

    # ------------------------------------------------------------------ laundering
    def launder(self, batch: torch.Tensor) -> torch.Tensor:
        """``D(E(x))`` applied ``iterations`` times; same size (``pad``) or cropped (``crop``)."""
        import torch
        import torch.nn.functional as F

        if batch.ndim != 4 or batch.shape[1] != 3:
            raise ValueError(
                f"{self.name}: expected an N x 3 x H x W batch, got {tuple(batch.shape)}"
            )
        model = self.model()
        device = next(model.parameters()).device
        m = self._factor
        n, _, h, w = batch.shape
        x = batch.to(device=device, dtype=torch.float32)
        nh, nw = h, w
        if h % m or w % m:
            if self.params.multiple_mode == "crop":
                nh, nw = (h // m) * m, (w // m) * m
                if nh == 0 or nw == 0:
                    raise ValueError(
                        f"{w}x{h} image is smaller than the multiple {m}; cannot crop "
                        "(use multiple_mode: pad)"
                    )
                x = x[:, :, :nh, :nw]
                self.note(f"cropped {w}x{h} -> {nw}x{nh} (multiple of {m})")
            else:
                ph, pw = -(-h // m) * m, -(-w // m) * m
                x = F.pad(x, (0, pw - w, 0, ph - h), mode="replicate")
                self.note(
                    f"padded {w}x{h} -> {pw}x{ph} (edge, multiple of {m}), cropped back to {w}x{h}"
                )
        if n == 0:
            return x.float().cpu()
        step, workers = self._plan(n, x.shape[2] * x.shape[3], device)
        fmt = torch.channels_last if self._channels_last else torch.contiguous_format

        def run(start: int) -> torch.Tensor:
            # no_grad, not inference_mode: the latter ran the SD VAE about 9% slower on this CPU
            with torch.no_grad():  # thread-local: entered in each worker
                chunk = x[start : start + step]
                states = self._chunk_state(chunk)
                for _ in range(self.params.iterations):
                    # decoders may return NHWC strides; a layout change changes the kernels
                    chunk = self._roundtrip(model, chunk.contiguous(memory_format=fmt), states)
                return chunk

        starts = range(0, n, step)
        if workers > 1:
            from concurrent.futures import ThreadPoolExecutor

            threads = torch.get_num_threads()
            torch.set_num_threads(1)
            try:
                with ThreadPoolExecutor(workers, thread_name_prefix=self.name) as pool:
                    outs = list(pool.map(run, starts))
            finally:
                torch.set_num_threads(threads)
        else:
            outs = [run(start) for start in starts]
        y = torch.cat(outs)[:, :, :nh, :nw].float().contiguous()
        return y.to(batch.device)

    def _plan(self, n: int, pixels: int, device: torch.device) -> tuple[int, int]:
        """``(images per forward pass, parallel workers)`` for ``n`` images of ``pixels`` each.

        An explicit ``batch_size`` is used as is, sequentially. Automatic batching groups small
        images up to :data:`PIXEL_BUDGET` pixels per pass and, on a CPU, spreads the passes over
        the intra-op threads: one pass per thread, each single-threaded (no OpenMP barriers
        between small operations, which cost most when the cores are shared). Images of 256x256
        pixels and more go one at a time with all threads, exactly as a plain diffusers loop.
        """
        import torch

        if self.params.batch_size is not None:
            return self.params.batch_size, 1
        step = max(1, PIXEL_BUDGET // pixels)
        threads = torch.get_num_threads()
        if step == 1 or n < 2 or threads < 2 or device.type != "cpu":
            return step, 1
        step = min(step, -(-n // threads))
        return step, min(threads, -(-n // step))

    def _chunk_state(self, chunk: torch.Tensor) -> Any:
        """Per-chunk state kept across iterations (e.g. the sampling generators)."""
        return None

    def _autocast(self, device: torch.device) -> Any:
        import contextlib

        import torch

        if self.params.dtype == "float32":
            return contextlib.nullcontext()
        return torch.autocast(device.type, dtype=_torch_dtype(self.params.dtype))

    def _roundtrip(self, model: Any, x: torch.Tensor, state: Any) -> torch.Tensor:
        raise NotImplementedError


class SDVAELaunderer(_RoundTrip):
    """Round trip through a diffusers ``AutoencoderKL``: Stable Diffusion's VAE (LDM).

    The KL autoencoder of Rombach et al. 2022 (LDM, CVPR), with the 4-channel latents of SD
    1.x/2.x/XL or the 16-channel latents of SD3 and FLUX.1 (no ``quant_conv``), used as an image
    launderer as in Mandelli et al., WIFS 2024: ``x' = D(E(2x - 1))``, mapped back by
    ``(x' + 1) / 2`` and clamped to [0, 1]. The latent is the posterior mode (deterministic), or
    a sample ``mean + std * eps`` with ``eps`` drawn per image from a generator seeded with
    ``seed`` (so a batch gives the same result as images laundered one at a time).

    :meth:`encode` returns diffusion-space latents ``(z - shift_factor) * scaling_factor``
    (``scaling_factor``/``shift_factor`` from the model config: SD1/2 0.18215, SDXL 0.13025,
    SD3 1.5305/0.0609, FLUX 0.3611/0.1159) and :meth:`decode` inverts that,
    ``D(z / scaling_factor + shift_factor)``. :meth:`launder` decodes the unscaled latent
    directly: scaling and unscaling is an identity in exact arithmetic, but in float32 it
    perturbs the last bit of some latents and would make outputs differ by one 8-bit level
    from the plain diffusers round trip in a few pixels.

    Images larger than ``tile_size`` go through diffusers' overlapped tiling (tiles of
    ``tile_size`` pixels, 25% overlap, linear blending), which bounds memory but changes the
    result slightly near tile seams. ``iterations`` repeats the round trip (clamped to [0, 1]
    in between, no 8-bit quantisation).
    """

    name = "sd-vae"
    description = (
        "Stable Diffusion VAE round trip D(E(x)) with any diffusers AutoencoderKL "
        "(Rombach et al. 2022; laundering: Mandelli et al. 2024)"
    )
    version = "1"

    class Params(fzoo.Params):
        weights: str = Field(
            ...,
            description="diffusers AutoencoderKL: hub id org/name[@rev][#subfolder], a local "
            "folder (config.json + weights), or a single .safetensors/.ckpt file (needs config).",
        )
        subfolder: str | None = Field(
            None, description="Folder inside weights holding the VAE (e.g. 'vae' of a pipeline)."
        )
        config: str | None = Field(
            None,
            description="For single-file weights: folder or hub id with the VAE's config.json "
            "(diffusers from_single_file(config=...); required, no network lookup).",
        )
        sample: bool = Field(
            False, description="Sample the latent posterior instead of taking its mode."
        )
        seed: int = Field(
            0,
            ge=0,
            le=2**32 - 1,
            description="Seed of the per-image latent noise when sample=true.",
        )
        dtype: Dtype = Field("float32", description=_DTYPE_HELP)
        iterations: int = Field(1, ge=1, le=100, description="Number of repeated round trips.")
        multiple_mode: MultipleMode = Field("crop", description=_MULTIPLE_HELP)
        tile_size: int | None = Field(
            None, ge=64, le=16_384, multiple_of=32, description=_TILE_HELP
        )
        batch_size: int | None = Field(None, ge=1, le=4096, description=_BATCH_HELP)
        device: str = Field("auto", description="'auto' (CUDA if available), 'cpu', 'cuda:0'...")

    params: Params  # type: ignore[assignment]

    def weights_path(self) -> Path:
        path = super().weights_path()
        if path.is_file() and path.suffix not in SINGLE_FILE_SUFFIXES:
            raise fzoo.WeightsError(
                f"{path}: not a checkpoint ({', '.join(SINGLE_FILE_SUFFIXES)}) nor a folder"
            )
        return path

    def config_path(self) -> Path | None:
        if self.params.config is None:
            return None
        return fzoo.resolve_weights(self.params.config, param="config").path

    def weight_hashes(self) -> dict[str, str]:
        hashes = super().weight_hashes()
        cfg = self.config_path()
        if cfg is not None:
            hashes.update({f"config:{k}": v for k, v in fzoo.weight_hashes(cfg).items()})
        return hashes

    def _load(self, path: Path) -> tuple[nn.Module, int]:
        from diffusers import AutoencoderKL

        if path.is_file():
            cfg = self.config_path()
            if cfg is None:
                raise fzoo.WeightsError(
                    f"{path} is a single checkpoint file: set params.config to a folder (or hub "
                    "id in the local cache) holding the VAE's config.json, e.g. "
                    "config: stabilityai/sd-vae-ft-mse"
                )
            if cfg.is_file():
                cfg = cfg.parent
            vae = AutoencoderKL.from_single_file(str(path), config=str(cfg), local_files_only=True)
        else:
            config = path / "config.json"
            if not config.exists():
                hint = " (a pipeline folder? set subfolder: vae)" if (path / "vae").is_dir() else ""
                raise fzoo.WeightsError(
                    f"{path}: no config.json; expected a diffusers AutoencoderKL folder{hint}"
                )
            cls = json.loads(config.read_text()).get("_class_name")
            if cls not in (None, "AutoencoderKL"):
                raise fzoo.WeightsError(
                    f"{path} holds a {cls}, not an AutoencoderKL"
                    + (" (use the taesd launderer)" if cls == "AutoencoderTiny" else "")
                )
            vae = AutoencoderKL.from_pretrained(str(path), local_files_only=True)
        factor = 2 ** (len(vae.config.block_out_channels) - 1)
        if self.params.tile_size is not None:
            vae.enable_tiling()
            vae.tile_sample_min_size = self.params.tile_size
            vae.tile_latent_min_size = self.params.tile_size // factor
        return vae, factor

    # ------------------------------------------------------------------ latents
    def _shift_scale(self) -> tuple[float, float]:
        """``(shift_factor, scaling_factor)`` of the model config (0 and 1 when absent)."""
        cfg = self.model().config
        scale = cfg.get("scaling_factor", 1.0)
        shift = cfg.get("shift_factor", None)
        return float(0.0 if shift is None else shift), float(1.0 if scale is None else scale)

    def encode(self, batch: torch.Tensor) -> torch.Tensor:
        """Images in [0, 1] (sides multiples of 8) -> diffusion-space latents (posterior mode,
        or a sample when ``sample`` is set), ``(z - shift_factor) * scaling_factor``."""
        import torch

        vae = self.model()
        device = next(vae.parameters()).device
        x = batch.to(device=device, dtype=torch.float32)
        with torch.no_grad(), self._autocast(device):
            z = self._latent(vae, x, self._chunk_state(x))
            shift, scale = self._shift_scale()
            return ((z - shift) * scale).float()

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Diffusion-space latents -> images in [0, 1]: ``D(z / scaling_factor + shift_factor)``."""
        import torch

        vae = self.model()
        device = next(vae.parameters()).device
        shift, scale = self._shift_scale()
        with torch.no_grad(), self._autocast(device):
            z = latents.to(device=device, dtype=torch.float32) / scale + shift
            y = vae.decode(z).sample
            return ((y.float() + 1) / 2).clamp(0, 1)

    def _chunk_state(self, chunk: torch.Tensor) -> Any:
        import torch

        if not self.params.sample:
            return None
        return [torch.Generator().manual_seed(self.params.seed) for _ in range(chunk.shape[0])]

    def _latent(self, vae: Any, x: torch.Tensor, gens: Any) -> torch.Tensor:
        import torch

        dist = vae.encode(x * 2 - 1).latent_dist
        if gens is None:
            return dist.mode()
        mean, std = dist.mean, dist.std
        eps = torch.cat([torch.randn(mean.shape[1:], generator=g)[None] for g in gens])
        return mean + std * eps.to(device=mean.device, dtype=mean.dtype)

    def _roundtrip(self, model: Any, x: torch.Tensor, state: Any) -> torch.Tensor:
        with self._autocast(x.device):
            y = model.decode(self._latent(model, x, state)).sample
        return ((y.float() + 1) / 2).clamp(0, 1)


class TAESDLaunderer(_RoundTrip):
    """Round trip through a tiny autoencoder of the TAESD family (Bohan, github.com/madebyollin/
    taesd, MIT): TAESD (SD 1.x/2.x), TAESDXL, TAESD3, TAEF1 (FLUX.1), TAEF2 (FLUX.2).

    TAESD is distilled to share the latent space of a Stable Diffusion VAE (the KL autoencoder of
    Rombach et al. 2022, LDM) at a fraction of its cost; used as a launderer it stands for the
    cheap previews of a generation pipeline (laundering: Mandelli et al., WIFS 2024). Two
    layouts load:

    * a diffusers ``AutoencoderKL``-style folder of an ``AutoencoderTiny`` (config.json +
      weights; the hub repos madebyollin/taesd, taesdxl, taesd3, taef1): images are given in
      [-1, 1] as diffusers expects, the latent is ``encode(...).latents``;
    * the original layout, ``{name}_encoder.pth`` and ``{name}_decoder.pth`` (or
      ``.safetensors``) state dicts, loaded with ``torch.load(weights_only=True)`` into the
      architecture of ``taesd_arch.py``: images in [0, 1], the decoder's ``3 tanh(z/3)`` latent
      clamp, output clamped to [0, 1]. The latent width (4, 16, 32) and TAEF2's midblock
      GroupNorm are read from the state dicts (``variant: auto``) or checked against
      ``variant``.

    The latents stay in the model's own scale (``scaling_factor`` 1 for the TAESD family).
    ``tile_size`` tiles large images exactly as ``sd-vae`` does (diffusers' overlapped tiling,
    :mod:`fzoo_builtins.sd_vae.tiling`), so memory is bounded for camera-size photos.
    :meth:`provenance` records the variant actually loaded beside the weights' sha256.
    """

    name = "taesd"
    description = (
        "TAESD-family tiny autoencoder round trip (Bohan's TAESD/TAESDXL/TAESD3/TAEF1/TAEF2; "
        "LDM latent spaces, Rombach et al. 2022)"
    )
    version = "1"

    class Params(fzoo.Params):
        weights: str = Field(
            "madebyollin/taesd",
            description="AutoencoderTiny hub id/folder, or a folder/file with the original "
            "*_encoder.pth and *_decoder.pth (or .safetensors) state dicts.",
        )
        subfolder: str | None = Field(None, description="Folder inside weights.")
        variant: Literal["auto", "taesd", "taesdxl", "taesd3", "taef1", "taef2"] = Field(
            "auto",
            description="Which member (latent channels 4/4/16/16/32; taef2 has the midblock "
            "GroupNorm). auto: read from the weights; otherwise checked against them, and used "
            "to pick {variant}_encoder.pth in a folder holding several.",
        )
        dtype: Dtype = Field("float32", description=_DTYPE_HELP)
        iterations: int = Field(1, ge=1, le=100, description="Number of repeated round trips.")
        multiple_mode: MultipleMode = Field("crop", description=_MULTIPLE_HELP)
        tile_size: int | None = Field(
            None, ge=64, le=16_384, multiple_of=32, description=_TILE_HELP
        )
        batch_size: int | None = Field(None, ge=1, le=4096, description=_BATCH_HELP)
        device: str = Field("auto", description="'auto' (CUDA if available), 'cpu', 'cuda:0'...")

    params: Params  # type: ignore[assignment]

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self._layout = ""

    def weights_path(self) -> Path:
        try:
            return super().weights_path()
        except fzoo.WeightsNotFoundError as exc:
            from fzoo.weights import parse_hub_ref

            text, v = self.params.weights, self.params.variant
            build = _BUILD_COMMANDS.get(Path(text).name)
            if build is not None:  # a bundled model: how to rebuild its folder
                raise fzoo.WeightsNotFoundError(f"{exc}\n{build.format(folder=text)}") from None
            if v == "auto" or (parse_hub_ref(text) and not text.startswith((".", "/", "~"))):
                raise  # a hub id: the error already says how to download it
            raise fzoo.WeightsNotFoundError(f"{exc}\n{_fetch_hint(v, text)}") from None

    # ------------------------------------------------------------------ loading
    def original_files(self, path: Path) -> tuple[Path, Path]:
        """The (encoder, decoder) state-dict files of the original layout at ``path``.

        With a ``variant``, only ``{variant}_encoder`` / ``{variant}_decoder`` (``.safetensors``
        or ``.pth``) are accepted: another model in the folder is never used in their place
        (TAESD and TAESDXL, or TAESD3 and TAEF1, have the same latent width, so a swap would go
        unnoticed). ``variant: auto`` takes the folder's only pair. Errors name the files
        expected and the ones found.
        """
        exts = (".safetensors", ".pth")
        variant = self.params.variant
        if path.is_file():
            stem = path.name
            for part in ("_encoder", "_decoder"):
                for ext in exts:
                    if stem.endswith(part + ext):
                        prefix = stem[: -len(part + ext)]
                        enc = path.with_name(f"{prefix}_encoder{ext}")
                        dec = path.with_name(f"{prefix}_decoder{ext}")
                        if variant != "auto" and prefix in TAESD_VARIANTS and prefix != variant:
                            raise fzoo.WeightsError(
                                f"{path} is a {prefix} file but variant is {variant!r}: "
                                f"expected {variant}_encoder{ext} and {variant}_decoder{ext}"
                                f"\n{_fetch_hint(variant, str(path.parent))}"
                            )
                        missing = [f.name for f in (enc, dec) if not f.is_file()]
                        if missing:
                            raise fzoo.WeightsError(
                                f"{path}: the pair {enc.name} + {dec.name} is incomplete "
                                f"(missing {', '.join(missing)})"
                            )
                        return enc, dec
            raise fzoo.WeightsError(f"{path}: expected a *_encoder.pth or *_decoder.pth file")
        found: dict[str, Path] = {}
        for ext in reversed(exts):  # .safetensors wins over .pth for the same prefix
            for f in sorted(path.glob(f"*_encoder{ext}")):
                prefix = f.name[: -len(f"_encoder{ext}")]
                if (path / f"{prefix}_decoder{ext}").exists():
                    found[prefix] = f
        if variant != "auto":
            if variant not in found:
                raise fzoo.WeightsError(
                    f"{path}: variant {variant!r} needs {variant}_encoder.pth and "
                    f"{variant}_decoder.pth (or .safetensors); found "
                    f"{_listing(path)}. Another model is never used in their place."
                    f"\n{_fetch_hint(variant, str(path))}"
                )
            enc = found[variant]
        elif len(found) == 1:
            enc = next(iter(found.values()))
        elif not found:
            raise fzoo.WeightsError(
                f"{path}: neither a diffusers AutoencoderTiny folder (config.json) nor the "
                "original TAESD layout ({name}_encoder.pth + {name}_decoder.pth); found "
                f"{_listing(path)}"
            )
        else:
            raise fzoo.WeightsError(
                f"{path} holds several TAESD models ({', '.join(sorted(found))}); choose one "
                "with params.variant or point weights at its *_encoder.pth"
            )
        suffix = enc.suffix
        return enc, enc.with_name(enc.name.replace(f"_encoder{suffix}", f"_decoder{suffix}"))

    def resolved_variant(self) -> str:
        """The model actually used: the prefix of the original files (``taef2``), or for a
        diffusers folder the requested variant (``auto``: ``AutoencoderTiny-<n>ch``)."""
        path = self.weights_path()
        if path.is_dir() and (path / "config.json").exists():
            if self.params.variant != "auto":
                return self.params.variant
            try:
                cfg = json.loads((path / "config.json").read_text())
                return f"AutoencoderTiny-{int(cfg.get('latent_channels', 4))}ch"
            except (OSError, ValueError, TypeError):
                return "AutoencoderTiny"
        enc, _ = self.original_files(path)
        return enc.name[: -len("_encoder" + enc.suffix)]

    def provenance(self) -> dict[str, Any]:
        return {**super().provenance(), "variant": self.resolved_variant()}

    def weight_hashes(self) -> dict[str, str]:
        path = self.weights_path()
        if path.is_dir() and (path / "config.json").exists():
            return fzoo.weight_hashes(path)
        hashes: dict[str, str] = {}
        for f in self.original_files(path):
            hashes.update(fzoo.weight_hashes(f))
        return hashes

    def _check_variant(self, channels: int, gn: bool, where: Path) -> None:
        v = self.params.variant
        if v != "auto" and TAESD_VARIANTS[v] != (channels, gn):
            want_c, want_gn = TAESD_VARIANTS[v]
            raise fzoo.WeightsError(
                f"{where}: variant {v!r} expects {want_c} latent channels"
                f"{' with' if want_gn else ' without'} midblock GroupNorm, the weights have "
                f"{channels}{' with' if gn else ' without'} it"
            )

    def _load(self, path: Path) -> tuple[nn.Module, int]:
        if path.is_dir() and (path / "config.json").exists():
            from diffusers import AutoencoderTiny

            cls = json.loads((path / "config.json").read_text()).get("_class_name")
            if cls not in (None, "AutoencoderTiny"):
                raise fzoo.WeightsError(
                    f"{path} holds a {cls}, not an AutoencoderTiny"
                    + (" (use the sd-vae launderer)" if cls == "AutoencoderKL" else "")
                )
            tiny = AutoencoderTiny.from_pretrained(str(path), local_files_only=True)
            self._check_variant(int(tiny.config.latent_channels), False, path)
            self._layout = "diffusers"
            return tiny, 2 ** (len(tiny.config.encoder_block_out_channels) - 1)
        enc_file, dec_file = self.original_files(path)
        enc, dec = _load_state_dict(enc_file), _load_state_dict(dec_file)
        from fzoo_builtins.sd_vae.taesd_arch import TinyAutoencoder

        last = max(int(k.split(".")[0]) for k in enc)
        channels = int(enc[f"{last}.weight"].shape[0])
        gn = any(".pool." in k for k in enc)
        self._check_variant(channels, gn, enc_file)
        model = TinyAutoencoder(channels, use_midblock_gn=gn)
        try:
            model.encoder.load_state_dict(enc, strict=True)
            model.decoder.load_state_dict(dec, strict=True)
        except RuntimeError as exc:
            raise fzoo.WeightsError(
                f"{enc_file}: not a TAESD-family state dict ({str(exc).splitlines()[0]})"
            ) from None
        self._layout = "original"
        return model, 8

    def _roundtrip(self, model: Any, x: torch.Tensor, state: Any) -> torch.Tensor:
        from fzoo_builtins.sd_vae.tiling import tiled_roundtrip

        if self._layout == "diffusers":

            def encode(t: torch.Tensor) -> torch.Tensor:
                return model.encode(t * 2 - 1).latents

            def decode(z: torch.Tensor) -> torch.Tensor:
                return (model.decode(z).sample.float() + 1) / 2

        else:
            encode, decode = model.encoder, model.decoder
        with self._autocast(x.device):
            tile = self.params.tile_size
            if tile is None:
                y = decode(encode(x))
            else:
                y = tiled_roundtrip(encode, decode, x, tile, self._factor)
        return y.float().clamp(0, 1)


def _listing(folder: Path) -> str:
    """The TAESD-looking files of ``folder`` for an error message (or 'no *_encoder/_decoder
    files')."""
    try:
        names = sorted(
            f.name
            for f in folder.iterdir()
            if f.name.endswith(
                ("_encoder.pth", "_decoder.pth", "_encoder.safetensors", "_decoder.safetensors")
            )  # fmt: skip
        )
    except OSError as exc:
        return f"nothing (cannot list: {exc.strerror})"
    return ", ".join(names) if names else "no *_encoder/*_decoder files"


#: Bundled autoencoders whose folder can be rebuilt from a source checkout: how.
_BUILD_COMMANDS: dict[str, str] = {
    "fzoo-tae-4ch": (
        "  fzoo-tae-4ch ships inside fzoo_builtins (reinstall fzoo if its folder is gone), or\n"
        "  rebuild it from a source checkout (a teacher built on TAEF2, a student distilled from\n"
        "  it, then its decoder fine-tuned with the encoder frozen; TAEF2's files in\n"
        "  ../shared/weights/taef2; about 140 min on 2 CPU cores; see\n"
        "  docs/models/fzoo-tae-4ch.md):\n"
        "    python training/debian_photos.py\n"
        "    python training/train_tae_4ch.py --out .train-logs/fzoo-tae-4ch --n-crops 2048 "
        "--minutes-a 26 --minutes-b 22\n"
        "    python training/distill_tae_4ch.py --teacher .train-logs/fzoo-tae-4ch/model "
        "--out .train-logs/distill --minutes-a 24 --minutes-b 16\n"
        "    python training/distill_tae_4ch.py --teacher .train-logs/fzoo-tae-4ch/model "
        "--out .train-logs/stageC --init .train-logs/distill/model --freeze-encoder "
        "--minutes-a 0 --minutes-b 40 --lr-b 5e-5 --distill-weight 0.25 --colour-weight 4 "
        "--seed 1 --eval-every-s 300\n"
        "    mkdir -p {folder} && cp .train-logs/stageC/model/* {folder}/"
    ),
}


def _fetch_hint(variant: str, folder: str) -> str:
    """The commands that fetch a variant's original files into ``folder``."""
    return (
        f"  Fetch {variant} (Bohan, MIT) on a machine with network access:\n"
        f"    mkdir -p {folder} && cd {folder} && curl -LO {TAESD_URL}/{variant}_encoder.pth "
        f"-LO {TAESD_URL}/{variant}_decoder.pth\n"
        f"  then: --param weights={folder} (YAML: params: {{weights: {folder}}})"
    )


def _load_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """A state dict from ``.safetensors`` or ``.pth`` (``weights_only=True``: no pickle code)."""
    import torch

    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return dict(load_file(str(path)))
    loaded = torch.load(str(path), map_location="cpu", weights_only=True)
    if (
        isinstance(loaded, dict)
        and "state_dict" in loaded
        and isinstance(loaded["state_dict"], dict)
    ):
        loaded = loaded["state_dict"]
    if not isinstance(loaded, dict):
        raise fzoo.WeightsError(f"{path}: expected a state dict, got {type(loaded).__name__}")
    return dict(loaded)
