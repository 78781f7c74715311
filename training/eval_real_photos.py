"""Held-out reconstruction of real photos by several autoencoders: PSNR and colour shift.

Sets (never trained on by the bundled autoencoders):

* ``mate``: the photos of Debian's ``mate-backgrounds`` (fetched by ``debian_photos.py``;
  deduplicated), each cut to its central 256 x 256 pixels (never resized); crops that are flat
  (standard deviation below 2 levels: a single colour, where PSNR says nothing) are left out
  and listed. Files under ``nature/`` are camera photographs; the others are photos or renders
  made into wallpapers.
* ``pip``: the held-out pip photos (``photos.HOLDOUT``: coffee, china, grace_hopper), central
  256 x 256 crops.

Models: diffusers ``AutoencoderKL`` folders (``--kl``; images in [-1, 1], posterior mode) and
TAESD-layout folders (``--tae``; original ``*_encoder``/``*_decoder`` state dicts, images in
[0, 1]), all in float32. Each reconstruction is clamped, quantised to 8 bits and compared with
the 8-bit original: PSNR over all pixels and channels, and the colour shift, the mean over R, G
and B of ``|mean(reconstruction) - mean(original)|`` in 8-bit levels. Means are over photos.

Run::

    python training/eval_real_photos.py --json OUT.json --markdown OUT.md

(defaults: the bundled ``fzoo-tiny-vae``, ``fzoo-tae-4ch`` once built, and TAEF2 from
``../shared/weights/taef2`` when present).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402
import debian_photos  # noqa: E402

from fzoo_builtins.sd_vae import photos as pip_photos  # noqa: E402
from fzoo_builtins.sd_vae.taesd_arch import TinyAutoencoder  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[1]
WEIGHTS = REPO_ROOT / "plugins" / "fzoo_builtins" / "sd_vae" / "weights"
DEFAULT_TAEF2 = REPO_ROOT.parent / "shared" / "weights" / "taef2"
SIDE = 256
FLAT_STD = 2.0


def mate_crops(cache: Path) -> tuple[dict[str, np.ndarray], list[str]]:
    """Central 256 crops of the held-out Debian package; (crops by name, flat ones left out)."""
    crops: dict[str, np.ndarray] = {}
    flat: list[str] = []
    for p in debian_photos.photos(debian_photos.HELDOUT_PACKAGES, cache, min_side=SIDE):
        rel = Path(p.path)
        name = f"{rel.parent.name}/{rel.name}"
        crop = debian_photos.centre_crop(debian_photos.load_rgb(p.path), SIDE)
        if float(crop.std()) < FLAT_STD:
            flat.append(name)
        else:
            crops[name] = crop
    return dict(sorted(crops.items())), sorted(flat)


def pip_crops() -> dict[str, np.ndarray]:
    """Central 256 crops of the held-out pip photos."""
    return {p.name: debian_photos.centre_crop(p.image, SIDE) for p in pip_photos.holdout_photos()}


def load_tae(directory: Path) -> TinyAutoencoder:
    """A TAESD-layout model through the ``taesd`` launderer's own loader (float32)."""
    from fzoo_builtins.sd_vae.launderers import TAESDLaunderer

    launderer = TAESDLaunderer(weights=str(directory), device="cpu")
    model: TinyAutoencoder = launderer.model()
    return model


@torch.no_grad()
def round_trip(kind: str, model: Any, img: np.ndarray) -> np.ndarray:
    """uint8 (H, W, 3) -> uint8 reconstruction."""
    x = torch.from_numpy(np.array(img, dtype=np.float32)).permute(2, 0, 1)[None] / 255.0
    if kind == "kl":
        y = (model.decode(model.encode(x * 2 - 1).latent_dist.mode()).sample + 1) / 2
    else:
        y = model.decoder(model.encoder(x))
    y = torch.round(y.float().clamp(0, 1)[0] * 255.0)
    return y.permute(1, 2, 0).to(torch.uint8).numpy()


def metrics(rec: np.ndarray, ref: np.ndarray) -> tuple[float, float]:
    """(PSNR in dB, mean per-channel colour shift in 8-bit levels)."""
    a, b = rec.astype(np.float64), ref.astype(np.float64)
    psnr = _common.psnr_from_mse(float(np.mean((a - b) ** 2)))
    shift = float(np.mean(np.abs(a.mean(axis=(0, 1)) - b.mean(axis=(0, 1)))))
    return psnr, shift


def evaluate(models: dict[str, tuple[str, Any]], sets: dict[str, dict[str, np.ndarray]]) -> dict:
    """Per-photo PSNR and colour shift of every model on every set; JSON-able."""
    result: dict[str, Any] = {"sets": {}, "models": {}}
    for set_name, crops in sets.items():
        result["sets"][set_name] = list(crops)
    for label, (kind, model) in models.items():
        entry: dict[str, Any] = {
            "kind": kind,
            "params": sum(p.numel() for p in model.parameters()),
        }
        for set_name, crops in sets.items():
            t0 = time.time()
            per = {n: metrics(round_trip(kind, model, im), im) for n, im in crops.items()}
            psnrs = [v[0] for v in per.values()]
            shifts = [v[1] for v in per.values()]
            entry[set_name] = {
                "psnr": {n: round(v[0], 3) for n, v in per.items()},
                "colour_shift": {n: round(v[1], 3) for n, v in per.items()},
                "mean_psnr": round(float(np.mean(psnrs)), 3),
                "mean_colour_shift": round(float(np.mean(shifts)), 3),
                "seconds": round(time.time() - t0, 1),
            }
            nature = [n for n in per if n.startswith("nature/")]
            if nature:
                entry[set_name]["mean_psnr_nature"] = round(
                    float(np.mean([per[n][0] for n in nature])), 3
                )
                entry[set_name]["mean_colour_shift_nature"] = round(
                    float(np.mean([per[n][1] for n in nature])), 3
                )
        result["models"][label] = entry
    return result


def to_markdown(result: dict[str, Any]) -> str:
    """One table per set: a row per photo, ``PSNR / shift`` per model, then the means."""
    labels = list(result["models"])
    out: list[str] = []
    for set_name, names in result["sets"].items():
        out += [
            f"**{set_name}** (256 x 256 centre crops; PSNR dB / colour shift in 8-bit levels)",
            "",
            "| photo | " + " | ".join(labels) + " |",
            "|---|" + "---:|" * len(labels),
        ]
        for n in names:
            cells = [
                f"{result['models'][m][set_name]['psnr'][n]:.2f} / "
                f"{result['models'][m][set_name]['colour_shift'][n]:.2f}"
                for m in labels
            ]
            out.append(f"| {n} | " + " | ".join(cells) + " |")
        for key, title in (("", "mean"), ("_nature", "mean, nature/ only")):
            if f"mean_psnr{key}" not in result["models"][labels[0]][set_name]:
                continue
            cells = [
                f"**{result['models'][m][set_name][f'mean_psnr{key}']:.2f} / "
                f"{result['models'][m][set_name][f'mean_colour_shift{key}']:.2f}**"
                for m in labels
            ]
            out.append(f"| **{title}** | " + " | ".join(cells) + " |")
        out.append("")
    return "\n".join(out)


def plot_curve(curve: Path, png: Path) -> None:
    """Plot ``curve.csv`` of ``train_tae_4ch.py``: PSNR on training crops and on the held-out
    pip photos (monitoring only) against training wall time, stage boundaries marked."""
    import csv

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with curve.open() as fh:
        rows = list(csv.DictReader(fh))
    t = [float(r["elapsed_s"]) / 60 for r in rows]
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(t, [float(r["train_crops_psnr"]) for r in rows], "o-", label="16 training crops")
    ax.plot(t, [float(r["heldout_pip_psnr"]) for r in rows], "s--", label="held-out pip photos")
    for r0, r1, x in zip(rows, rows[1:], t[1:], strict=False):
        if r0["stage"] != r1["stage"] and r0["stage"] != "init":
            ax.axvline(x, color="grey", lw=0.8)
    ax.set_xlabel("training wall time (min, 2 shared CPU cores)")
    ax.set_ylabel("PSNR (dB, 8-bit)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(png, dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--kl", action="append", type=Path, help="AutoencoderKL folder (repeatable)")
    p.add_argument("--no-kl", action="store_true", help="no AutoencoderKL (not the default)")
    p.add_argument("--tae", action="append", type=Path, help="TAESD-layout folder (repeatable)")
    p.add_argument("--cache", type=Path, default=debian_photos.DEFAULT_CACHE)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json", type=Path)
    p.add_argument("--markdown", type=Path)
    p.add_argument("--curve", nargs=2, type=Path, metavar=("CSV", "PNG"), help="only plot")
    a = p.parse_args(argv)
    if a.curve:
        plot_curve(*a.curve)
        return 0
    torch.set_num_threads(max(1, a.threads))
    kl = [] if a.no_kl else (a.kl or [WEIGHTS / "fzoo-tiny-vae"])
    tae = a.tae if a.tae is not None else [WEIGHTS / "fzoo-tae-4ch", DEFAULT_TAEF2]
    models: dict[str, tuple[str, Any]] = {}
    for d in kl:
        from diffusers import AutoencoderKL

        models[d.name] = ("kl", AutoencoderKL.from_pretrained(str(d)).eval())
    for d in tae:
        if d.exists():
            models[d.name] = ("tae", load_tae(d))
        else:
            print(f"skipped {d}: not found")
    mate, flat = mate_crops(a.cache)
    res = evaluate(models, {"mate-backgrounds": mate, "pip-holdout": pip_crops()})
    res["flat_crops_left_out"] = flat
    res["protocol"] = __doc__.split("\n\n")[1:4] if __doc__ else []
    table = to_markdown(res)
    print(table)
    if a.json:
        a.json.write_text(json.dumps(res, indent=1) + "\n")
    if a.markdown:
        a.markdown.write_text(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
