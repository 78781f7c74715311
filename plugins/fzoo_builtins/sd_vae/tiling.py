"""Overlapped tiling of an autoencoder round trip, with diffusers' seam handling.

A convolutional autoencoder's activations grow with the image: TAESD's 64 feature channels at
full resolution take 256 bytes per pixel in float32, several GB for a camera photo. Tiling
bounds that by the tile size. This is the scheme of diffusers' ``AutoencoderKL`` tiling
(``_tiled_encode`` / ``tiled_decode``, used by the ``sd-vae`` launderer through
``enable_tiling()``), written once for any encoder/decoder pair so that ``taesd`` handles
seams exactly as ``sd-vae`` does:

* tiles of ``tile`` pixels start every ``tile * (1 - overlap)`` pixels (``overlap`` 0.25);
* each tile is mapped on its own; the outputs overlap by ``overlap`` of the output tile;
* the overlap is blended linearly, first with the tile above (``blend_v``), then with the tile
  to the left (``blend_h``), and each tile keeps its top-left ``tile_out * (1 - overlap)``;
* encoding is tiled in image space, decoding in latent space (tile ``tile // factor``).

Results differ from an untiled round trip only near tile seams (the receptive field of the
network is cut there); :func:`tiled_map` with the same tile sizes as diffusers is bit-identical
to diffusers' functions (``tests/test_sd_vae.py``). Memory: the input, the output, two rows of
tile outputs and one tile's activations.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

OVERLAP = 0.25
"""Fraction of a tile shared with its neighbour (diffusers' ``tile_overlap_factor``)."""


def blend_v(a: torch.Tensor, b: torch.Tensor, extent: int) -> torch.Tensor:
    """Blend the bottom ``extent`` rows of ``a`` into the top rows of ``b`` (in place)."""
    extent = min(a.shape[2], b.shape[2], extent)
    for y in range(extent):
        b[:, :, y, :] = a[:, :, -extent + y, :] * (1 - y / extent) + b[:, :, y, :] * (y / extent)
    return b


def blend_h(a: torch.Tensor, b: torch.Tensor, extent: int) -> torch.Tensor:
    """Blend the right ``extent`` columns of ``a`` into the left columns of ``b`` (in place)."""
    extent = min(a.shape[3], b.shape[3], extent)
    for x in range(extent):
        b[:, :, :, x] = a[:, :, :, -extent + x] * (1 - x / extent) + b[:, :, :, x] * (x / extent)
    return b


def tiled_map(
    fn: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    tile_in: int,
    tile_out: int,
    overlap: float = OVERLAP,
    on_tile: Callable[[], None] | None = None,
) -> torch.Tensor:
    """``fn`` applied to overlapping ``tile_in`` tiles of ``x`` (NCHW), blended into one tensor.

    ``fn`` maps a ``tile_in`` tile to a ``tile_out`` tile (an encoder: ``tile_out = tile_in //
    8``; a decoder: ``tile_in * 8``). Exactly diffusers' ``AutoencoderKL._tiled_encode`` /
    ``tiled_decode`` loop (see the module docstring). ``on_tile`` is called after each tile.
    """
    import torch

    stride = int(tile_in * (1 - overlap))
    extent = int(tile_out * overlap)
    limit = tile_out - extent
    above: list[torch.Tensor] = []
    out_rows = []
    for i in range(0, x.shape[2], stride):  # one row of tiles at a time: memory ~ 2 rows
        row = []
        for j in range(0, x.shape[3], stride):
            row.append(fn(x[:, :, i : i + tile_in, j : j + tile_in]))
            if on_tile is not None:
                on_tile()
        kept = []
        for j, tile in enumerate(row):
            if above:
                tile = blend_v(above[j], tile, extent)
            if j > 0:
                tile = blend_h(row[j - 1], tile, extent)
            kept.append(tile[:, :, :limit, :limit])
        out_rows.append(torch.cat(kept, dim=3))
        above = row
    return torch.cat(out_rows, dim=2)


def tiled_roundtrip(
    encode: Callable[[torch.Tensor], torch.Tensor],
    decode: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    tile: int,
    factor: int,
) -> torch.Tensor:
    """``decode(encode(x))`` with overlapped tiles of ``tile`` image pixels (``tile // factor``
    latent pixels), each stage tiled only when ``x`` (resp. the latent) exceeds one tile, as
    diffusers' ``AutoencoderKL`` decides it."""
    from fzoo.progress import Progress

    latent_tile = tile // factor
    h, w = x.shape[-2:]
    enc = h > tile or w > tile
    dec = -(-h // factor) > latent_tile or -(-w // factor) > latent_tile
    n = _count(h, w, tile) * enc + _count(-(-h // factor), -(-w // factor), latent_tile) * dec
    # one camera photo can take minutes: its tiles are the progress (a line every ~10 s)
    with Progress(f"tiles of a {w}x{h} image", n, "tile", enabled=n > 1) as bar:
        z = tiled_map(encode, x, tile, latent_tile, on_tile=bar.update) if enc else encode(x)
        if z.shape[-1] > latent_tile or z.shape[-2] > latent_tile:
            return tiled_map(decode, z, latent_tile, tile, on_tile=bar.update)
        return decode(z)


def _count(h: int, w: int, tile: int, overlap: float = OVERLAP) -> int:
    """How many tiles :func:`tiled_map` maps for an ``h`` x ``w`` input."""
    stride = int(tile * (1 - overlap))
    return -(-h // stride) * -(-w // stride)
