"""Held-out reconstruction PSNR of ``fzoo-tiny-vae`` (and of TAEF2 when its weights are present).

Protocol (the same for every autoencoder measured):

* the held-out photographs ``photos.HOLDOUT`` (coffee, china, grace_hopper), never seen in
  training, decoded exactly and centre-cropped (never resized) to a multiple of 8;
* a diffusers KL autoencoder (Rombach et al. 2022, LDM) gets the image scaled to [-1, 1] and
  is run as ``vae.decode(vae.encode(x).latent_dist.mode()).sample``; the output is clamped to
  [-1, 1];
* a TAESD-family tiny autoencoder (Bohan's TAESD; here TAEF2, the FLUX.2 one, read from
  ``../shared/weights/taef2/`` relative to the repository root when present) gets the image in
  [0, 1] (its native range), output clamped to [0, 1];
* the reconstruction is quantised to 8 bits and PSNR is computed against the 8-bit original over
  all pixels and channels.

Run::

    python training/eval_tiny_vae.py [--vae DIR ...] [--json OUT.json] [--markdown OUT.md]

This file deliberately does not import ``fzoo`` so it runs by path before installation.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from fzoo_builtins.sd_vae.photos import HOLDOUT, crop_to_multiple, load_photos  # noqa: E402
from fzoo_builtins.sd_vae.taesd_arch import TinyAutoencoder, load_taesd  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_VAE = REPO_ROOT / "plugins" / "fzoo_builtins" / "sd_vae" / "weights" / "fzoo-tiny-vae"
DEFAULT_TAEF2 = REPO_ROOT.parent / "shared" / "weights" / "taef2"


def psnr_uint8(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB between two uint8 images."""
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10.0 * math.log10(255.0**2 / mse)


@torch.no_grad()
def kl_round_trip(vae: Any, img: np.ndarray) -> np.ndarray:
    """uint8 (H, W, 3) -> uint8 reconstruction through a diffusers AutoencoderKL (mode)."""
    x = torch.from_numpy(np.array(img, dtype=np.float32)).permute(2, 0, 1)[None] / 127.5 - 1.0
    x = x.to(dtype=next(vae.parameters()).dtype)
    y = vae.decode(vae.encode(x).latent_dist.mode()).sample.float().clamp(-1, 1)
    return torch.round((y[0] + 1.0) * 127.5).permute(1, 2, 0).to(torch.uint8).numpy()


@torch.no_grad()
def taesd_round_trip(model: TinyAutoencoder, img: np.ndarray) -> np.ndarray:
    """uint8 (H, W, 3) -> uint8 reconstruction through a TAESD-style autoencoder ([0, 1])."""
    x = torch.from_numpy(np.array(img, dtype=np.float32)).permute(2, 0, 1)[None] / 255.0
    y = model.decode(model.encode(x)).clamp(0, 1)
    return torch.round(y[0] * 255.0).permute(1, 2, 0).to(torch.uint8).numpy()


def load_kl_vae(directory: str | Path) -> Any:
    """``AutoencoderKL.from_pretrained`` (offline, float32, eval mode)."""
    from diffusers import AutoencoderKL

    vae = AutoencoderKL.from_pretrained(str(directory), torch_dtype=torch.float32)
    return vae.eval()


def evaluate(
    vae_dirs: list[Path],
    taesd_dir: Path | None,
    names: tuple[str, ...] = HOLDOUT,
    save_dir: Path | None = None,
) -> dict[str, Any]:
    """PSNR per held-out photo for every model; returns a JSON-able dict."""
    photos = [(p.name, crop_to_multiple(p.image, 8)) for p in load_photos(names)]
    models: dict[str, tuple[str, Any]] = {}
    for d in vae_dirs:
        label = f"{d.parent.name}/{d.name}" if d.name in ("best", "latest") else d.name
        models[label] = ("kl", load_kl_vae(d))
    if taesd_dir is not None and taesd_dir.is_dir() and any(taesd_dir.glob("*_encoder.pth")):
        models[taesd_dir.name] = ("taesd", load_taesd(taesd_dir))
    result: dict[str, Any] = {
        "photos": {n: list(im.shape[:2]) for n, im in photos},
        "protocol": "centre crop to multiple of 8; mode latent; clamp; 8-bit; PSNR over RGB",
        "models": {},
    }
    for label, (kind, model) in models.items():
        per: dict[str, float] = {}
        t0 = time.time()
        for name, im in photos:
            rec = kl_round_trip(model, im) if kind == "kl" else taesd_round_trip(model, im)
            per[name] = psnr_uint8(rec, im)
            if save_dir is not None:
                from PIL import Image

                save_dir.mkdir(parents=True, exist_ok=True)
                Image.fromarray(rec).save(save_dir / f"{label}_{name}.png")
        n_params = sum(p.numel() for p in model.parameters())
        result["models"][label] = {
            "kind": kind,
            "params": n_params,
            "psnr": per,
            "mean_psnr": float(np.mean(list(per.values()))),
            "seconds": round(time.time() - t0, 2),
        }
    return result


def to_markdown(result: dict[str, Any]) -> str:
    """A table: one row per photo, one column per model, plus the mean."""
    labels = list(result["models"])
    names = list(result["photos"])
    lines = [
        "| photo (H x W) | " + " | ".join(labels) + " |",
        "|---|" + "---:|" * len(labels),
    ]
    for n in names:
        h, w = result["photos"][n]
        cells = [f"{result['models'][m]['psnr'][n]:.2f}" for m in labels]
        lines.append(f"| {n} ({h} x {w}) | " + " | ".join(cells) + " |")
    means = [f"**{result['models'][m]['mean_psnr']:.2f}**" for m in labels]
    lines.append("| **mean** | " + " | ".join(means) + " |")
    return "\n".join(lines) + "\n"


def plot_curves(curves: dict[str, tuple[Path, float]], png: Path) -> None:
    """Plot training curves (``curve.csv`` from ``train_tiny_vae``) into one PNG.

    ``curves`` maps a label to (CSV path, time offset in minutes), the offset placing a
    warm-started run after the run it started from. Left: PSNR on fixed crops of training
    photos (solid) and on the held-out photos (dashed, monitoring only) against training wall
    time; right: the training loss.
    """
    import csv

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    for i, (label, (path, offset)) in enumerate(curves.items()):
        with path.open() as fh:
            rows = list(csv.DictReader(fh))
        t = [offset + float(r["elapsed_s"]) / 60 for r in rows]
        color = f"C{i}"
        ax1.plot(
            t,
            [float(r["train_crops_psnr"]) for r in rows],
            color=color,
            label=f"{label}: train crops",
        )
        ax1.plot(
            t,
            [float(r["heldout_psnr_mean"]) for r in rows],
            color=color,
            ls="--",
            label=f"{label}: held-out mean",
        )
        tl = [(a, float(r["train_loss"])) for a, r in zip(t, rows, strict=True) if int(r["step"])]
        tl = [(a, v) for a, v in tl if v > 0]
        ax2.plot([a for a, _ in tl], [v for _, v in tl], color=color, label=label)
    ax1.set_xlabel("training wall time (min, 1 CPU thread)")
    ax1.set_ylabel("PSNR (dB, 8-bit)")
    ax1.grid(alpha=0.3)
    ax1.legend(fontsize=8)
    ax2.set_xlabel("training wall time (min, 1 CPU thread)")
    ax2.set_ylabel("training loss (L1 + 0.1 MSE + KL)")
    ax2.set_yscale("log")
    ax2.grid(alpha=0.3)
    ax2.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--vae",
        action="append",
        type=Path,
        help=f"diffusers AutoencoderKL directory (repeatable; default {DEFAULT_VAE})",
    )
    p.add_argument("--taesd", type=Path, default=DEFAULT_TAEF2, help="TAESD weights directory")
    p.add_argument("--no-taesd", action="store_true", help="skip the TAESD comparison")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", type=Path, help="write the result as JSON here")
    p.add_argument("--markdown", type=Path, help="write the table as Markdown here")
    p.add_argument("--save-recons", type=Path, help="write reconstructions (PNG) here")
    p.add_argument(
        "--curve",
        action="append",
        metavar="LABEL=CSV[@MINUTES]",
        help="only plot training curves (repeatable, optionally shifted by MINUTES) into "
        "--curve-png, no evaluation",
    )
    p.add_argument("--curve-png", type=Path, help="PNG written by --curve")
    a = p.parse_args(argv)
    if a.curve:
        if not a.curve_png:
            p.error("--curve needs --curve-png")
        curves: dict[str, tuple[Path, float]] = {}
        for c in a.curve:
            label, spec = c.split("=", 1)
            path, _, offset = spec.partition("@")
            curves[label] = (Path(path), float(offset or 0.0))
        plot_curves(curves, a.curve_png)
        return 0
    torch.set_num_threads(max(1, a.threads))
    vae_dirs = a.vae or [DEFAULT_VAE]
    res = evaluate(vae_dirs, None if a.no_taesd else a.taesd, save_dir=a.save_recons)
    table = to_markdown(res)
    print(table)
    if a.json:
        a.json.write_text(json.dumps(res, indent=2) + "\n")
    if a.markdown:
        a.markdown.write_text(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
