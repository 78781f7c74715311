"""The baseline: the laundering loop a researcher writes with diffusers, one image at a time.

    python benchmarks/naive_launder.py VAE_DIR IN_DIR OUT_DIR

Loads the ``AutoencoderKL`` in float32, then for every PNG of ``IN_DIR``: decode with Pillow,
``x = 2 * img - 1`` as a contiguous 1x3xHxW tensor (what torchvision's ``to_tensor`` gives),
``vae.decode(vae.encode(x).latent_dist.mode())`` under ``torch.no_grad()``, ``(y + 1) / 2``
clamped to [0, 1], rounded to 8 bits and saved as PNG. No batching, no overlap of I/O and
compute, no reduced precision. Deliberately independent of fzoo.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from diffusers import AutoencoderKL  # noqa: E402
from PIL import Image  # noqa: E402


def main(vae_dir: str, in_dir: str, out_dir: str) -> None:
    vae = AutoencoderKL.from_pretrained(vae_dir).eval()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for path in sorted(Path(in_dir).glob("*.png")):
        img = np.asarray(Image.open(path).convert("RGB")).astype(np.float32) / 255.0
        x = torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1)))[None]
        with torch.no_grad():
            y = vae.decode(vae.encode(x * 2 - 1).latent_dist.mode()).sample
        y = ((y + 1) / 2).clamp(0, 1)
        arr = y[0].permute(1, 2, 0).numpy()
        Image.fromarray(np.clip(np.round(arr * 255.0), 0, 255).astype(np.uint8)).save(
            out / path.name
        )


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    main(*sys.argv[1:])
