"""A TAESD-style tiny autoencoder, matching the state-dict layout of Bohan's TAESD family.

TAESD ("Tiny AutoEncoder for Stable Diffusion") by Ollin Boer Bohan (github.com/madebyollin/taesd,
MIT licence) is a small distilled autoencoder that shares the latent space of a Stable Diffusion
VAE (the KL autoencoder of Rombach et al. 2022, LDM). This module re-implements its architecture
(``taesd.py`` in that repository) so that its released ``*_encoder.pth`` / ``*_decoder.pth``
state dicts, e.g. TAEF2 for the FLUX.2 latent space, load with ``torch.load(weights_only=True)``
and ``load_state_dict(strict=True)``:

* ``Encoder``: conv(3, 64), Block, [stride-2 conv (no bias), Block x3] x3, conv(64, latent).
* ``Decoder``: 3*tanh(x/3), conv(latent, 64), ReLU, Block x3, [Upsample x2, conv (no bias),
  Block x3] x2, Upsample x2, conv (no bias), Block, conv(64, 3).
* ``Block``: conv-ReLU-conv-ReLU-conv added to an identity skip, then ReLU; with
  ``use_midblock_gn`` (TAEF2's lowest-resolution blocks) ``x + pool(x)`` is applied first, with
  ``pool`` = conv1x1(n, 4n, no bias)-GroupNorm(4, 4n)-ReLU-conv1x1(4n, n, no bias).

Images are in [0, 1] (no [-1, 1] scaling); the decoder output is clamped to [0, 1] by
:meth:`TinyAutoencoder.decode`.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

__all__ = ["Block", "TinyAutoencoder", "load_taesd", "taesd_decoder", "taesd_encoder"]


def _conv(n_in: int, n_out: int, **kwargs: object) -> nn.Conv2d:
    return nn.Conv2d(n_in, n_out, 3, padding=1, **kwargs)  # type: ignore[arg-type]


class _Clamp(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(x / 3) * 3


class Block(nn.Module):
    """TAESD residual block (optionally with the "midblock GN" pre-mixer of TAEF2)."""

    def __init__(self, n_in: int, n_out: int, use_midblock_gn: bool = False) -> None:
        super().__init__()
        self.conv = nn.Sequential(
            _conv(n_in, n_out), nn.ReLU(), _conv(n_out, n_out), nn.ReLU(), _conv(n_out, n_out)
        )
        self.skip: nn.Module = (
            nn.Conv2d(n_in, n_out, 1, bias=False) if n_in != n_out else nn.Identity()
        )
        self.fuse = nn.ReLU()
        self.pool: nn.Module | None = None
        if use_midblock_gn:
            n_gn = n_in * 4
            self.pool = nn.Sequential(
                nn.Conv2d(n_in, n_gn, 1, bias=False),
                nn.GroupNorm(4, n_gn),
                nn.ReLU(inplace=True),
                nn.Conv2d(n_gn, n_in, 1, bias=False),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pool is not None:
            x = x + self.pool(x)
        return self.fuse(self.conv(x) + self.skip(x))


def taesd_encoder(latent_channels: int = 4, use_midblock_gn: bool = False) -> nn.Sequential:
    """TAESD encoder (8x downsampling); ``use_midblock_gn`` on the last three blocks (TAEF2)."""
    gn = use_midblock_gn
    return nn.Sequential(
        _conv(3, 64),
        Block(64, 64),
        _conv(64, 64, stride=2, bias=False),
        Block(64, 64),
        Block(64, 64),
        Block(64, 64),
        _conv(64, 64, stride=2, bias=False),
        Block(64, 64),
        Block(64, 64),
        Block(64, 64),
        _conv(64, 64, stride=2, bias=False),
        Block(64, 64, gn),
        Block(64, 64, gn),
        Block(64, 64, gn),
        _conv(64, latent_channels),
    )


def taesd_decoder(latent_channels: int = 4, use_midblock_gn: bool = False) -> nn.Sequential:
    """TAESD decoder (8x upsampling); ``use_midblock_gn`` on the first three blocks (TAEF2)."""
    gn = use_midblock_gn
    return nn.Sequential(
        _Clamp(),
        _conv(latent_channels, 64),
        nn.ReLU(),
        Block(64, 64, gn),
        Block(64, 64, gn),
        Block(64, 64, gn),
        nn.Upsample(scale_factor=2),
        _conv(64, 64, bias=False),
        Block(64, 64),
        Block(64, 64),
        Block(64, 64),
        nn.Upsample(scale_factor=2),
        _conv(64, 64, bias=False),
        Block(64, 64),
        Block(64, 64),
        Block(64, 64),
        nn.Upsample(scale_factor=2),
        _conv(64, 64, bias=False),
        Block(64, 64),
        _conv(64, 3),
    )


class TinyAutoencoder(nn.Module):
    """Encoder + decoder pair; images in [0, 1], latents unscaled (as TAESD produces them)."""

    def __init__(self, latent_channels: int = 4, use_midblock_gn: bool = False) -> None:
        super().__init__()
        self.latent_channels = latent_channels
        self.encoder = taesd_encoder(latent_channels, use_midblock_gn)
        self.decoder = taesd_decoder(latent_channels, use_midblock_gn)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z).clamp(0, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))


def load_taesd(directory: str | Path, prefix: str | None = None) -> TinyAutoencoder:
    """Load ``{prefix}_encoder.pth`` and ``{prefix}_decoder.pth`` from ``directory``.

    The latent width and the presence of the midblock GroupNorm are read off the state dicts;
    ``prefix`` defaults to the single ``*_encoder.pth`` found in ``directory``.
    """
    d = Path(directory)
    if prefix is None:
        found = sorted(d.glob("*_encoder.pth"))
        if len(found) != 1:
            raise FileNotFoundError(f"expected one *_encoder.pth in {d}, found {found}")
        prefix = found[0].name[: -len("_encoder.pth")]
    enc = torch.load(d / f"{prefix}_encoder.pth", map_location="cpu", weights_only=True)
    dec = torch.load(d / f"{prefix}_decoder.pth", map_location="cpu", weights_only=True)
    last = max(int(k.split(".")[0]) for k in enc)
    latent_channels = int(enc[f"{last}.weight"].shape[0])
    gn = any(".pool." in k for k in enc)
    model = TinyAutoencoder(latent_channels, use_midblock_gn=gn)
    model.encoder.load_state_dict(enc, strict=True)
    model.decoder.load_state_dict(dec, strict=True)
    return model.eval()
