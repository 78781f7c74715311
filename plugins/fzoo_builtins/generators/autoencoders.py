"""The autoencoder a ``tiny-ldm`` works in: a diffusers ``AutoencoderKL`` or a TAESD-family one.

A latent diffusion model (Rombach et al. 2022) is trained on the latents of one autoencoder and
its samples are decoded by that same decoder, which is what leaves the decoder's traces in its
images. ``tiny-ldm`` supports two families, told apart by the folder's layout:

* ``autoencoder-kl``: a diffusers ``AutoencoderKL`` folder (``config.json`` +
  ``diffusion_pytorch_model.safetensors``), e.g. the bundled ``fzoo-tiny-vae``. Images go in as
  ``2 x - 1``; the latent is the posterior mode; the decoder's output is mapped back to [0, 1].
* ``taesd``: a tiny autoencoder of Bohan's TAESD family (github.com/madebyollin/taesd, MIT) in
  its original ``{name}_encoder`` / ``{name}_decoder`` layout (``.safetensors`` or ``.pth``), or
  a diffusers ``AutoencoderTiny`` folder, e.g. the ``fzoo-tae-4ch`` autoencoder. It is loaded by
  the ``taesd`` launderer (:class:`fzoo_builtins.sd_vae.TAESDLaunderer`), so a TAESD-family
  ``tiny-ldm`` decodes through exactly the network that launders: images in [0, 1], the
  deterministic encoder output as the latent (unscaled), the decoder output clamped to [0, 1].

:func:`identify` names an autoencoder by the sha256 of its weight files per role (``weights``
for a KL folder; ``encoder`` and ``decoder`` for the TAESD layout), which a ``tiny-ldm`` records
in its ``fzoo.json`` and checks before loading.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import fzoo

if TYPE_CHECKING:
    import torch

KL_WEIGHTS_FILE = "diffusion_pytorch_model.safetensors"

AutoencoderKind = Literal["autoencoder-kl", "taesd"]
KINDS: tuple[str, ...] = ("autoencoder-kl", "taesd")


def load_model(cls: Any, path: Path, dtype: torch.dtype | None = None) -> Any:
    """``cls.from_pretrained(path, local_files_only=True)`` in ``dtype`` (default float32), in
    eval mode."""
    import torch

    with warnings.catch_warnings():  # torch_dtype: every diffusers version; new ones warn
        warnings.filterwarnings("ignore", ".*torch_dtype.*", FutureWarning)
        model = cls.from_pretrained(
            str(path), local_files_only=True, torch_dtype=dtype or torch.float32
        )
    return model.eval()


def folder_kind(folder: Path) -> AutoencoderKind:
    """``autoencoder-kl`` for a diffusers ``AutoencoderKL`` folder, ``taesd`` for the TAESD
    original layout or an ``AutoencoderTiny`` folder; anything else raises
    :class:`fzoo.WeightsError` naming what was found."""
    config = folder / "config.json"
    if folder.is_dir() and config.is_file():
        try:
            cls = json.loads(config.read_text()).get("_class_name")
        except (OSError, ValueError, AttributeError) as exc:
            raise fzoo.WeightsError(f"{config}: not a readable diffusers config ({exc})") from None
        if cls == "AutoencoderKL":
            return "autoencoder-kl"
        if cls == "AutoencoderTiny":
            return "taesd"
        raise fzoo.WeightsError(
            f"{config}: a {cls}, not an autoencoder tiny-ldm can use (AutoencoderKL, "
            "AutoencoderTiny or the TAESD *_encoder/*_decoder layout)"
        )
    if folder.is_file() or any(folder.glob("*_encoder.*")):
        return "taesd"
    raise fzoo.WeightsError(
        f"{folder} is not an autoencoder folder: expected a diffusers AutoencoderKL folder "
        "(config.json + diffusion_pytorch_model.safetensors) or a TAESD-family one "
        "({name}_encoder.safetensors + {name}_decoder.safetensors)"
    )


def _taesd(folder: Path, device: str = "cpu") -> Any:
    """The ``taesd`` launderer on ``folder`` (it finds, checks and loads the pair)."""
    from fzoo_builtins.sd_vae.launderers import TAESDLaunderer

    return TAESDLaunderer(weights=str(folder), device=device)


def identify(folder: Path, kind: str | None = None) -> dict[str, Any]:
    """What ``fzoo.json`` records about an autoencoder: its ``kind``, the weight file of each
    role and their sha256 (``{"weights": ...}`` for a KL folder; ``{"encoder": ..., "decoder":
    ...}`` for the TAESD original layout; every weight file for an ``AutoencoderTiny`` folder).
    No model is loaded."""
    kind = kind or folder_kind(folder)
    if kind == "autoencoder-kl":
        hashes = fzoo.weight_hashes(folder)
        if KL_WEIGHTS_FILE not in hashes:
            raise fzoo.WeightsError(f"{folder}: no {KL_WEIGHTS_FILE} (an AutoencoderKL folder)")
        return {
            "kind": kind,
            "files": {"weights": KL_WEIGHTS_FILE},
            "sha256": {"weights": hashes[KL_WEIGHTS_FILE]},
        }
    if kind != "taesd":
        raise fzoo.WeightsError(f"unknown autoencoder kind {kind!r}; expected one of {KINDS}")
    lau = _taesd(folder)
    path = lau.weights_path()
    if path.is_dir() and (path / "config.json").exists():  # diffusers AutoencoderTiny
        hashes = {k: v for k, v in fzoo.weight_hashes(path).items() if k != "config.json"}
        return {"kind": kind, "files": {k: k for k in hashes}, "sha256": hashes}
    enc, dec = lau.original_files(path)
    return {
        "kind": kind,
        "files": {"encoder": enc.name, "decoder": dec.name},
        "sha256": {"encoder": _file_sha256(enc), "decoder": _file_sha256(dec)},
    }


def _file_sha256(path: Path) -> str:
    hashes = fzoo.weight_hashes(path)  # one file: {name: sha256}, cached by size and mtime
    if len(hashes) != 1:
        raise fzoo.WeightsError(f"{path}: not a weight file")
    return next(iter(hashes.values()))


def recorded(index: dict[str, Any]) -> tuple[str, dict[str, str]]:
    """The autoencoder kind and ``{role: sha256}`` a ``fzoo.json`` records. The first
    ``tiny-ldm`` format wrote ``{"name", "file", "sha256": "<hex>"}`` for its AutoencoderKL;
    that reads as ``("autoencoder-kl", {"weights": hex})``."""
    vae = index.get("vae") or {}
    kind = str(vae.get("kind", "autoencoder-kl"))
    sha = vae.get("sha256")
    if isinstance(sha, str):
        return kind, {"weights": sha}
    return kind, dict(sha or {})


@dataclass
class Autoencoder:
    """A loaded autoencoder with one interface: ``encode`` takes images in [0, 1] to latents,
    ``decode`` latents to images in [0, 1] (float32, clamped)."""

    kind: str
    model: Any
    factor: int
    channels: int
    layout: str = ""

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Latents of ``x`` (``[B, 3, H, W]`` in [0, 1]): KL posterior mode, TAESD encoder."""
        if self.kind == "autoencoder-kl":
            return self.model.encode(x * 2.0 - 1.0).latent_dist.mode()
        if self.layout == "diffusers":
            return self.model.encode(x * 2.0 - 1.0).latents
        return self.model.encoder(x)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Images in [0, 1] from (unscaled) latents."""
        if self.kind == "autoencoder-kl" or self.layout == "diffusers":
            x = (self.model.decode(z).sample.float() + 1.0) / 2.0
        else:
            x = self.model.decoder(z).float()
        return x.clamp_(0.0, 1.0)


def load(folder: Path, kind: str | None = None, device: str = "cpu") -> Autoencoder:
    """Load the autoencoder at ``folder`` (float32, eval mode, on ``device``). A folder with
    ``SHA256SUMS`` (a bundled one) is checked against it first."""
    kind = kind or folder_kind(folder)
    if kind == "autoencoder-kl":
        from diffusers import AutoencoderKL

        if (folder / "SHA256SUMS").exists():
            fzoo.verify_sums(folder)
        vae = load_model(AutoencoderKL, folder).to(device)
        factor = 2 ** (len(vae.config.block_out_channels) - 1)
        return Autoencoder(kind, vae, factor, int(vae.config.latent_channels))
    from fzoo_builtins.sd_vae.taesd_arch import TinyAutoencoder

    model = _taesd(folder, device).model()  # checks SHA256SUMS, loads either layout
    if isinstance(model, TinyAutoencoder):
        return Autoencoder("taesd", model, 8, int(model.latent_channels), "original")
    factor = 2 ** (len(model.config.encoder_block_out_channels) - 1)  # AutoencoderTiny
    return Autoencoder("taesd", model, factor, int(model.config.latent_channels), "diffusers")
