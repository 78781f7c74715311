"""Throughput of the reconstruction features: ``recon-error`` and ``dire`` against naive loops.

    python benchmarks/bench_recon.py                  # recon-error at 64 and 256, dire at 64
    python benchmarks/bench_recon.py --quick          # a few images each
    python benchmarks/bench_recon.py --json out.json

``recon-error`` runs on a randomly initialised ``AutoencoderKL`` with Stable Diffusion's
architecture (83.7 M parameters, the FLOPs of the SD 1.x/2.x/XL VAEs; random weights are fine for
timing), as ``benchmarks/bench_launder.py`` builds it. Its naive loop is what a researcher writes
for AEROBLADE's distance: one image at a time, fp32, ``y = vae.decode(vae.encode(x).latent_dist
.mode()).sample`` then ``|x - y|.mean()``. ``dire`` runs on the bundled ``tiny-ldm`` (latent DDIM,
20 steps, through ``fzoo-tiny-vae``); its naive loop is the same extractor called on one image at
a time. Both sides run in this process, interleaved, after one warm-up call each; the fastest of
``--repeat`` runs counts.

Reported: images/s, GFLOP per image (``torch.utils.flop_counter.FlopCounterMode``: on the meta
device for the VAE round trip; on one real image for DIRE, whose DDIM loop is data-independent in
cost), achieved GFLOP/s, the fraction of this CPU's fp32 matmul peak measured in the same run, and
the ratio to the naive loop. The machine must be otherwise idle for absolute numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_launder import build_vae, matmul_peak, round_trip_flops  # noqa: E402

import fzoo  # noqa: E402


def photos(size: int, n: int) -> torch.Tensor:
    """``n`` size x size crops of scikit-image photos as a float batch in [0, 1]."""
    from skimage import data

    imgs = [data.astronaut(), data.coffee(), data.chelsea(), data.rocket()]
    rng = np.random.default_rng(size)
    out = []
    for i in range(n):
        img = imgs[i % len(imgs)]
        y = int(rng.integers(0, img.shape[0] - size + 1))
        x = int(rng.integers(0, img.shape[1] - size + 1))
        out.append(img[y : y + size, x : x + size, :3])
    return torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2).float() / 255.0


def timed(fn: Callable[[], Any], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def bench_recon_error(vae_dir: Path, size: int, n: int, repeat: int) -> dict[str, Any]:
    from diffusers import AutoencoderKL

    x = photos(size, n)
    ext = fzoo.create_component(
        "feature_extractor",
        "recon-error",
        launderers=[{"name": "sd-vae", "params": {"weights": str(vae_dir)}}],
    )
    vae = AutoencoderKL.from_pretrained(vae_dir).eval()

    def naive() -> None:
        with torch.no_grad():
            for i in range(n):
                xi = x[i : i + 1] * 2 - 1
                y = vae.decode(vae.encode(xi).latent_dist.mode()).sample
                float(((y.clamp(-1, 1) + 1) / 2 - x[i : i + 1]).abs().mean())

    def batched() -> None:
        ext.extract(x)

    ext.extract(x[:1])  # warm-up: load weights
    naive_s, fzoo_s = float("inf"), float("inf")
    for _ in range(repeat):
        naive_s = min(naive_s, timed(naive, 1))
        fzoo_s = min(fzoo_s, timed(batched, 1))
    return {
        "feature": "recon-error",
        "size": size,
        "images": n,
        "flops": round_trip_flops(size),
        "naive_s": naive_s,
        "fzoo_s": fzoo_s,
    }


def dire_flops(ext: Any, size: int) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        ext.extract(photos(size, 1))
    return int(counter.get_total_flops())


def bench_dire(size: int, n: int, repeat: int) -> dict[str, Any]:
    from fzoo_builtins.generators.tiny_ldm import bundled_vae_dir, bundled_weights_dir

    x = photos(size, n)
    ext = fzoo.create_component(
        "feature_extractor",
        "dire",
        unet=str(bundled_weights_dir()),
        subfolder="unet",
        vae_weights=str(bundled_vae_dir()),
    )
    ext.extract(x[:1])  # warm-up: load weights

    def naive() -> None:
        for i in range(n):
            ext.extract(x[i : i + 1])

    def batched() -> None:
        ext.extract(x)

    naive_s, fzoo_s = float("inf"), float("inf")
    for _ in range(repeat):
        naive_s = min(naive_s, timed(naive, 1))
        fzoo_s = min(fzoo_s, timed(batched, 1))
    return {
        "feature": "dire (tiny-ldm, 20 steps)",
        "size": size,
        "images": n,
        "flops": dire_flops(ext, size),
        "naive_s": naive_s,
        "fzoo_s": fzoo_s,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="a few images each")
    ap.add_argument("--repeat", type=int, default=2, help="interleaved runs; fastest counts")
    ap.add_argument("--json", default=None, help="write the raw results here")
    args = ap.parse_args(argv)

    load0 = os.getloadavg()
    peak0 = matmul_peak("float32")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        vae_dir = Path(tmp) / "sd-vae-random"
        build_vae(vae_dir)
        for size, n in ((64, 4), (256, 2)) if args.quick else ((64, 32), (256, 4)):
            rows.append(bench_recon_error(vae_dir, size, n, args.repeat))
            print(json.dumps(rows[-1]), flush=True)
    rows.append(bench_dire(64, 4 if args.quick else 32, args.repeat))
    print(json.dumps(rows[-1]), flush=True)
    peak = max(peak0, matmul_peak("float32"))
    load1 = os.getloadavg()

    print(
        f"\nCPU: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch "
        f"{torch.__version__} ({torch.get_num_threads()} threads); load average "
        f"{load0[0]:.1f} at start, {load1[0]:.1f} at end; fp32 matmul peak {peak:.0f} GFLOP/s. "
        "In-process, fastest of interleaved runs.\n"
    )
    cols = ("feature", "size", "images", "impl", "s", "images/s", "GFLOP/img", "GFLOP/s")
    print("| " + " | ".join((*cols, "of peak", "vs naive")) + " |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        gflop = r["flops"] / 1e9
        for impl, key in (("naive", "naive_s"), ("fzoo", "fzoo_s")):
            rate = r["images"] / r[key]
            achieved = rate * gflop
            ratio = r["naive_s"] / r[key]
            print(
                f"| {r['feature']} | {r['size']} | {r['images']} | {impl} | {r[key]:.1f} | "
                f"{rate:.2f} | {gflop:.1f} | {achieved:.0f} | {achieved / peak:.0%} | "
                f"{ratio:.2f}x |"
            )
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"rows": rows, "peak_gflops": peak}, fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
