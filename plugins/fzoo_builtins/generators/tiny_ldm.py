"""``tiny-ldm``: a small latent diffusion model on the latents of a bundled autoencoder.

The model follows the recipe of Stable Diffusion at toy scale: a denoising UNet (diffusers
:class:`~diffusers.UNet2DModel`, no text conditioning) trained with the DDPM noise-prediction
(epsilon) objective of Ho et al. 2020 ("Denoising Diffusion Probabilistic Models", NeurIPS) on the
latents of an autoencoder, as in Rombach et al. 2022 ("High-Resolution Image Synthesis with
Latent Diffusion Models", CVPR); it is sampled with the deterministic DDIM sampler of Song et al.
2021 ("Denoising Diffusion Implicit Models", ICLR) and decoded by the same autoencoder, so its
fully synthetic images carry the autoencoder's decoder traces exactly like SD images carry the SD
VAE's. Two models are bundled: ``tiny-ldm`` (the component's default weights) on the KL
autoencoder ``fzoo-tiny-vae``, and the preset ``tiny-ldm-tae4ch`` on the TAESD-architecture
``fzoo-tae-4ch``, the study's launderer, so that its synthetic images decode through the very
decoder that launders (the hard case of Mandelli et al. 2024). Which autoencoder a model works in
(a diffusers ``AutoencoderKL`` or a TAESD-family one) is read from its ``fzoo.json``
(:mod:`fzoo_builtins.generators.autoencoders`).

img2img re-synthesises a real image as SD's img2img does: the image is encoded (KL: posterior
mode; TAESD: the deterministic encoder), scaled, noised with the DDIM schedule to the timestep
reached after ``int(strength * steps)`` of the ``steps`` sampling steps counted from the end,
denoised for those remaining steps and decoded.
Mandelli et al. 2024 ("When Synthetic Traces Hide Real Content: Analysis of Stable Diffusion Image
Laundering", WIFS) call this the real image "hidden in the noise" of the seed: with strength >=
0.5 the content statistics stay those of real photographs, so content alone does not separate
fully synthetic from laundered images. ``strength=0`` is the plain autoencoder round trip
(``D(E(x))``, laundering); ``strength=1`` runs every step, starting from the image noised to the
first sampling timestep (961 of 1000 with 25 steps, where the SD schedule keeps sqrt(alpha_bar) =
0.085 of the signal, so even this is not quite pure noise, as in diffusers).

Weights folder layout (``fzoo.json`` plays the role of diffusers' ``model_index.json``)::

    unet/        UNet2DModel.save_pretrained (config.json + diffusion_pytorch_model.safetensors)
    scheduler/   DDIMScheduler config (scheduler_config.json)
    fzoo.json    format, the autoencoder it was trained on (kind, name, sha256 of its weight
                 files), latent scaling_factor/shift_factor
    SHA256SUMS   checked for the bundled copy

Any multiple of 8 works as a size: when the latent's sides are not multiples of the UNet's own
downsampling factor, the latent is edge-padded for each UNet call and the noise prediction cropped
back (pixels are never resampled).

The latent fed to the UNet is ``(z - shift_factor) * scaling_factor`` with ``z`` the autoencoder's
latent; both numbers are measured on the training latents (mean and 1 / std, as SD's 0.18215 was).
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
from pydantic import Field, field_validator

import fzoo
from fzoo_builtins.generators.autoencoders import KL_WEIGHTS_FILE, identify, load_model, recorded

if TYPE_CHECKING:
    import torch

    from fzoo_builtins.generators.autoencoders import Autoencoder

FORMAT = "fzoo-tiny-ldm"
FORMAT_VERSION = 2  # 2: fzoo.json's "vae" has a kind and per-role sha256 (1 read as KL)
VAE_WEIGHTS_FILE = KL_WEIGHTS_FILE

#: The bundled models: name -> the autoencoder (bundled under sd_vae/weights) it was trained on.
BUNDLED: dict[str, str] = {"tiny-ldm": "fzoo-tiny-vae", "tiny-ldm-tae4ch": "fzoo-tae-4ch"}


def train_command(name: str = "tiny-ldm") -> str:
    """The commands that train the bundled model ``name`` (from the repository root) and install
    it."""
    vae = BUNDLED.get(name, "fzoo-tiny-vae")
    extra = " --encode-dtype bfloat16" if vae == "fzoo-tae-4ch" else ""
    return (
        "python training/train_tiny_ldm.py "
        f"--vae plugins/fzoo_builtins/sd_vae/weights/{vae} "
        f"--out .train-logs/{name} --minutes 35{extra}\n"
        f"    python training/train_tiny_ldm.py export .train-logs/{name}/model "
        f"plugins/fzoo_builtins/generators/weights/{name}"
    )


#: The command that trains the default bundled weights (run from the repository root).
TRAIN_COMMAND = train_command("tiny-ldm")


def bundled_weights_dir(name: str = "tiny-ldm") -> Path:
    """Where the bundled weights of ``name`` (``tiny-ldm``, ``tiny-ldm-tae4ch``) live inside the
    installed package."""
    return Path(__file__).resolve().parent / "weights" / name


def bundled_vae_dir(name: str = "fzoo-tiny-vae") -> Path:
    """Where the bundled autoencoder ``name`` lives inside the installed package."""
    return Path(__file__).resolve().parents[1] / "sd_vae" / "weights" / name


def image_seeds(seed: int, n: int) -> list[int]:
    """One independent 63-bit seed per image: image ``i`` of ``generate(n, seed)`` depends only on
    ``(seed, i)``, so neither ``n`` nor ``batch_size`` changes it."""
    mask = 2**63 - 1
    states = (np.random.SeedSequence([int(seed) & mask, i]) for i in range(n))
    return [int(s.generate_state(1, np.uint64)[0]) & mask for s in states]


def scheduler_config() -> dict[str, Any]:
    """The noise schedule of Stable Diffusion 1.x/2.x (scaled-linear betas 0.00085..0.012, 1000
    steps) with SD's DDIM settings; used both for training (``add_noise``) and for sampling."""
    return {
        "num_train_timesteps": 1000,
        "beta_start": 0.00085,
        "beta_end": 0.012,
        "beta_schedule": "scaled_linear",
        "clip_sample": False,
        "set_alpha_to_one": False,
        "steps_offset": 1,
        "prediction_type": "epsilon",
        "timestep_spacing": "leading",
    }


def read_model_index(folder: Path) -> dict[str, Any]:
    """Read and check ``fzoo.json`` of a tiny-ldm weights folder."""
    path = folder / "fzoo.json"
    if not path.exists():
        raise fzoo.WeightsNotFoundError(
            f"{folder} is not a tiny-ldm weights folder: fzoo.json is missing (expected unet/, "
            "scheduler/ and fzoo.json, as written by train_tiny_ldm)"
        )
    index = json.loads(path.read_text())
    if index.get("format") != FORMAT:
        raise fzoo.WeightsError(f"{path}: format {index.get('format')!r}, expected {FORMAT!r}")
    version = index.get("format_version", 1)
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise fzoo.WeightsError(
            f"{path}: format_version {version!r}; this fzoo reads up to {FORMAT_VERSION} "
            "(a newer fzoo wrote it: upgrade fzoo)"
        )
    return index


class _Loaded:
    """The models of one :class:`TinyLDM` instance, loaded once."""

    def __init__(self, ldm_dir: Path, vae_dir: Path, index: dict[str, Any], device: str) -> None:
        from diffusers import DDIMScheduler, UNet2DModel

        from fzoo_builtins.generators import autoencoders

        # float32 whatever the stored dtype (the bundled UNet is stored in float16)
        self.unet = load_model(UNet2DModel, ldm_dir / index.get("unet", "unet")).to(device)
        kind, _ = recorded(index)
        self.ae: Autoencoder = autoencoders.load(vae_dir, kind, device)
        self.scheduler_config = dict(
            DDIMScheduler.load_config(str(ldm_dir / index.get("scheduler", "scheduler")))
        )
        self.scale = float(index["scaling_factor"])
        self.shift = float(index.get("shift_factor") or 0.0)
        self.factor = self.ae.factor
        self.channels = self.ae.channels
        self.unet_factor = 2 ** (len(self.unet.config.block_out_channels) - 1)
        if int(self.unet.config.in_channels) != self.channels:
            raise fzoo.WeightsError(
                f"tiny-ldm UNet takes {self.unet.config.in_channels} latent channels but the "
                f"autoencoder {vae_dir} has {self.channels}"
            )

    def scheduler(self, steps: int) -> Any:
        from diffusers import DDIMScheduler

        sched = DDIMScheduler.from_config(self.scheduler_config)
        sched.set_timesteps(steps)
        return sched


class TinyLDM(fzoo.Generator):
    """Small latent diffusion model (UNet2DModel + DDIM) decoding through the autoencoder it was
    trained on (bundled: ``fzoo-tiny-vae``; preset ``tiny-ldm-tae4ch``: ``fzoo-tae-4ch``).

    Rombach et al. 2022 (LDM), Ho et al. 2020 (DDPM training objective), Song et al. 2021 (DDIM
    sampling); img2img at ``strength`` as in SD, the "image hidden in noise" of Mandelli et al.
    2024. Output: float32 RGB in [0, 1], ``size`` x ``size`` from noise; img2img keeps the input
    size, cropped (top-left anchored, never resampled) to a multiple of 8 when needed.
    Deterministic per seed (one ``torch.Generator`` per image).
    """

    name = "tiny-ldm"
    description = (
        "Bundled tiny latent diffusion model (UNet2DModel + DDIM on the latents of a bundled "
        "autoencoder, fzoo-tiny-vae by default); generation from noise and img2img at a strength"
    )
    version = "1"
    supports_img2img: ClassVar[bool] = True
    #: img2img crops (top-left) to the VAE factor, a multiple of 8 (fzoo's size contract)
    multiple: ClassVar[int] = 8
    weight_params = ("weights", "vae")  # content hashes in the fingerprint, not paths

    class Params(fzoo.Params):
        weights: str | None = Field(
            None,
            description="tiny-ldm weights: a folder or hub id with unet/, scheduler/, fzoo.json "
            "(default: the bundled tiny-ldm, on fzoo-tiny-vae)",
        )
        vae: str | None = Field(
            None,
            description="autoencoder folder or hub id (diffusers AutoencoderKL, or TAESD "
            "family); must be the one the weights were trained on (sha256 checked; default: the "
            "bundled autoencoder their fzoo.json names)",
        )
        size: int = Field(
            64, ge=8, le=4096, description="side of generated images, a multiple of 8"
        )
        steps: int = Field(25, ge=1, le=1000, description="DDIM sampling steps")
        eta: float = Field(0.0, ge=0.0, le=1.0, description="DDIM eta (0: deterministic DDIM)")
        strength: float = Field(
            0.6,
            ge=0.0,
            le=1.0,
            description="img2img strength: 0 = autoencoder round trip, 1 = every step from the "
            "noised image; int(strength * steps) steps are run",
        )
        batch_size: int = Field(8, ge=1, le=1024, description="images per forward pass")
        device: str = Field("cpu", description="torch device")

        @field_validator("size")
        @classmethod
        def _multiple_of_8(cls, value: int) -> int:
            if value % 8:
                raise ValueError(f"size must be a multiple of 8 (got {value})")
            return value

    params: Params

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self._lock = threading.Lock()
        self._loaded: _Loaded | None = None
        self._dirs: tuple[Path, Path, dict[str, Any]] | None = None

    # -- weights ---------------------------------------------------------------------------
    def _resolve(self) -> tuple[Path, Path, dict[str, Any]]:
        if self._dirs is not None:
            return self._dirs
        p = self.params
        if p.weights is None:
            ldm_dir = bundled_weights_dir()
            if not (ldm_dir / "fzoo.json").exists():
                raise fzoo.WeightsNotFoundError(
                    f"the bundled tiny-ldm weights are missing ({ldm_dir}). Train them from the "
                    f"repository root (needs the bundled fzoo-tiny-vae) with:\n    {TRAIN_COMMAND}"
                    "\n  or pass params: {weights: <folder or hub id>}"
                )
            fzoo.verify_sums(ldm_dir)
        else:
            ldm_dir = _bundled_or_resolved(p.weights)
        index = read_model_index(ldm_dir)
        kind, expected = recorded(index)
        vae_dir = self._vae_dir(index) if p.vae is None else None
        if vae_dir is None:
            vae_dir = fzoo.resolve_weights(str(p.vae), param="vae").path
        got = identify(vae_dir, kind)["sha256"]
        if expected and got != expected:
            name = (index.get("vae") or {}).get("name", "?")
            raise fzoo.WeightsError(
                f"tiny-ldm weights {ldm_dir} were trained on the autoencoder {name} ({kind}; "
                f"sha256 {_show(expected)}), but the autoencoder {vae_dir} has {_show(got)}. "
                f"Pass the matching vae, or retrain:\n    {train_command(ldm_dir.name)}"
            )
        self._dirs = (ldm_dir, vae_dir, index)
        return self._dirs

    @staticmethod
    def _vae_dir(index: dict[str, Any]) -> Path:
        """The bundled autoencoder named by ``fzoo.json`` (a missing one says how to get it)."""
        name = str((index.get("vae") or {}).get("name") or "fzoo-tiny-vae")
        if Path(name).name != name or name in (".", ".."):
            raise fzoo.WeightsError(f"fzoo.json names the autoencoder {name!r}: not a folder name")
        vae_dir = bundled_vae_dir(name)
        if not vae_dir.is_dir() or not any(vae_dir.iterdir()):
            message = (
                f"the bundled autoencoder {name} is missing ({vae_dir}). Build it (see "
                "plugins/fzoo_builtins/sd_vae and docs/models/), or pass params: {vae: <folder "
                "or hub id of the autoencoder these weights were trained on>}"
            )
            if recorded(index)[0] == "taesd":  # the taesd launderer knows how to build its own
                from fzoo_builtins.sd_vae.launderers import TAESDLaunderer

                try:
                    TAESDLaunderer(weights=str(vae_dir)).weights_path()
                except fzoo.WeightsNotFoundError as exc:
                    message += f"\n{exc}"
            raise fzoo.WeightsNotFoundError(message)
        if (vae_dir / "SHA256SUMS").exists():
            fzoo.verify_sums(vae_dir)
        return vae_dir

    def weight_hashes(self) -> dict[str, str]:
        ldm_dir, vae_dir, _ = self._resolve()
        hashes = {f"ldm/{k}": v for k, v in fzoo.weight_hashes(ldm_dir).items()}
        hashes.update({f"vae/{k}": v for k, v in fzoo.weight_hashes(vae_dir).items()})
        return hashes

    def _models(self) -> _Loaded:
        with self._lock:
            if self._loaded is None:
                ldm_dir, vae_dir, index = self._resolve()
                self._loaded = _Loaded(ldm_dir, vae_dir, index, self.params.device)
            return self._loaded

    # -- sampling --------------------------------------------------------------------------
    def _denoise(
        self,
        m: _Loaded,
        latents: torch.Tensor,
        sched: Any,
        timesteps: torch.Tensor,
        gens: list[torch.Generator],
    ) -> torch.Tensor:
        import torch.nn.functional as F

        h, w = latents.shape[-2:]
        ph, pw = -h % m.unet_factor, -w % m.unet_factor
        for t in timesteps:
            if ph or pw:  # the UNet needs sides divisible by its downsampling: pad, then crop
                padded = F.pad(latents, (0, pw, 0, ph), mode="replicate")
                eps = m.unet(padded, t).sample[..., :h, :w]
            else:
                eps = m.unet(latents, t).sample
            latents = sched.step(
                eps, t, latents, eta=self.params.eta, generator=gens if self.params.eta else None
            ).prev_sample
        return latents

    def _decode(self, m: _Loaded, latents: torch.Tensor, scaled: bool = True) -> torch.Tensor:
        z = latents / m.scale + m.shift if scaled else latents
        return m.ae.decode(z).cpu()

    def _noise(self, m: _Loaded, shape: tuple[int, ...], gens: list[Any]) -> torch.Tensor:
        import torch

        noise = torch.stack([torch.randn(shape, generator=g) for g in gens])
        return noise.to(self.params.device)

    def generate(self, n: int, seed: int) -> torch.Tensor:
        import torch

        p = self.params
        m = self._models()
        side = p.size // m.factor
        if side * m.factor != p.size:
            raise ValueError(f"size {p.size} is not a multiple of the VAE factor {m.factor}")
        seeds = image_seeds(seed, n)
        out = []
        with torch.inference_mode():
            for start in range(0, n, p.batch_size):
                gens = [
                    torch.Generator().manual_seed(s) for s in seeds[start : start + p.batch_size]
                ]
                sched = m.scheduler(p.steps)
                latents = self._noise(m, (m.channels, side, side), gens) * sched.init_noise_sigma
                latents = self._denoise(m, latents, sched, sched.timesteps, gens)
                out.append(self._decode(m, latents))
        return torch.cat(out) if out else torch.zeros(0, 3, p.size, p.size)

    def img2img(self, batch: torch.Tensor, seed: int) -> torch.Tensor:
        import torch

        p = self.params
        m = self._models()
        if batch.ndim != 4 or batch.shape[1] != 3:
            raise ValueError(
                f"{self.name}: expected a [B, 3, H, W] batch, got {tuple(batch.shape)}"
            )
        h, w = batch.shape[-2:]
        nh, nw = h - h % m.factor, w - w % m.factor
        if nh == 0 or nw == 0:
            raise ValueError(f"{self.name}: {w}x{h} image is smaller than {m.factor} pixels")
        if (nh, nw) != (h, w):
            batch = batch[..., :nh, :nw]
            self.note(f"cropped {w}x{h} -> {nw}x{nh} (multiple of {m.factor}, top-left anchored)")
        seeds = image_seeds(seed, batch.shape[0])
        n_steps = min(int(p.strength * p.steps), p.steps)
        out = []
        with torch.inference_mode():
            for start in range(0, batch.shape[0], p.batch_size):
                x = batch[start : start + p.batch_size].to(p.device, torch.float32)
                z = m.ae.encode(x)
                if n_steps == 0:  # strength 0: the autoencoder round trip D(E(x))
                    out.append(self._decode(m, z, scaled=False))
                    continue
                gens = [
                    torch.Generator().manual_seed(s) for s in seeds[start : start + p.batch_size]
                ]
                sched = m.scheduler(p.steps)
                timesteps = sched.timesteps[p.steps - n_steps :]
                z0 = (z - m.shift) * m.scale
                noise = self._noise(m, tuple(z0.shape[1:]), gens)
                t0 = timesteps[:1].repeat(z0.shape[0])
                latents = sched.add_noise(z0, noise, t0)
                latents = self._denoise(m, latents, sched, timesteps, gens)
                out.append(self._decode(m, latents))
        return torch.cat(out)


def _bundled_or_resolved(weights: str) -> Path:
    """``weights`` resolved; a bundled model's folder that is missing says how to train it."""
    path = Path(weights)
    for name in BUNDLED:
        if path == bundled_weights_dir(name) and not (path / "fzoo.json").exists():
            raise fzoo.WeightsNotFoundError(
                f"the bundled {name} weights are missing ({path}). Train them from the "
                f"repository root (needs the bundled {BUNDLED[name]}) with:\n    "
                f"{train_command(name)}"
            )
    path = fzoo.resolve_weights(weights, param="weights").path
    if (path / "SHA256SUMS").exists() and path.parent == bundled_weights_dir().parent:
        fzoo.verify_sums(path)  # bundled weights: refuse tampered files
    return path


def _show(hashes: dict[str, str]) -> str:
    return ", ".join(f"{role} {sha[:12]}…" for role, sha in sorted(hashes.items()))
