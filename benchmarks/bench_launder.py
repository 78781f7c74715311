"""Laundering throughput: ``fzoo launder --launderer sd-vae`` against the naive diffusers loop.

    python benchmarks/bench_launder.py          # sizes 64, 256, 512: ~10 min on 2 idle cores
    python benchmarks/bench_launder.py --quick  # smoke run: few images, 64 and 256
    python benchmarks/bench_launder.py --sizes 256 --n 256=3 --impls naive,fzoo --repeat 2

Builds a randomly initialised ``AutoencoderKL`` with Stable Diffusion's architecture
(``block_out_channels (128, 256, 512, 512)``, ``layers_per_block 2``, 4 latent channels: 83.7 M
parameters, the same FLOPs as the SD 1.x/2.x/XL VAEs; random weights are fine for timing) and
saves it to a temporary folder; writes N PNG crops of scikit-image photos per size; then times,
side by side in this run and as whole processes (interpreter start, imports, model load, image
I/O included; wall clock), ``benchmarks/naive_launder.py`` (one image at a time, fp32) and
``fzoo launder`` (default fp32, and ``dtype=bfloat16``).

Reported per size and implementation: images/s; achieved GFLOP/s = images x FLOPs of one round
trip / wall time, the FLOPs counted by ``torch.utils.flop_counter.FlopCounterMode`` on one round
trip (on the meta device: no compute); the fraction of this CPU's peak, measured in the same
run with a large matrix product (fp32 for fp32 rows, bf16 for bf16 rows); the ratio of images/s
to the naive loop; and, against the naive loop's 8-bit outputs, how many 8-bit values differ
(fp32) or the PSNR (bf16). Whole-process GFLOP/s include start-up, so they understate the
kernels' rate for small N. ``--repeat R`` runs the implementations R times, interleaved in
alternating order, and keeps each one's fastest run; the CPU seconds (user + system of the
child) are less sensitive to other jobs than the wall time. The peak is measured at the start
and at the end of the run; the higher value is the reference.

The machine must be otherwise idle for absolute numbers; ratios measured side by side are
meaningful under steady background load. ``--json FILE`` writes the raw results.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402

HERE = Path(__file__).resolve().parent
SD_VAE_CONFIG = {
    "block_out_channels": (128, 256, 512, 512),
    "layers_per_block": 2,
    "latent_channels": 4,
    "down_block_types": 4 * ("DownEncoderBlock2D",),
    "up_block_types": 4 * ("UpDecoderBlock2D",),
    "sample_size": 512,
    "scaling_factor": 0.18215,
}
FULL_N = {64: 96, 256: 6, 512: 3}
QUICK_N = {64: 16, 256: 1}
PHOTOS = (
    "astronaut",
    "immunohistochemistry",
    "hubble_deep_field",
    "retina",
    "coffee",
    "chelsea",
    "rocket",
)


def build_vae(folder: Path) -> int:
    """Randomly initialised SD-architecture VAE saved to ``folder``; returns its parameter count."""
    import torch
    from diffusers import AutoencoderKL

    torch.manual_seed(0)
    vae = AutoencoderKL(**SD_VAE_CONFIG).eval()
    vae.save_pretrained(folder)
    return sum(p.numel() for p in vae.parameters())


def round_trip_flops(size: int) -> int:
    """FLOPs of one encode + decode of a size x size image (FlopCounterMode on the meta device)."""
    import torch
    from diffusers import AutoencoderKL
    from torch.utils.flop_counter import FlopCounterMode

    with torch.device("meta"):
        vae = AutoencoderKL(**SD_VAE_CONFIG).eval()
    x = torch.empty(1, 3, size, size, device="meta")
    counter = FlopCounterMode(display=False)
    with torch.inference_mode(), counter:
        vae.decode(vae.encode(x * 2 - 1).latent_dist.mode())
    return int(counter.get_total_flops())


def matmul_peak(dtype_name: str, n: int = 2048, seconds: float = 3.0) -> float:
    """Best GFLOP/s of an n x n x n matrix product in ``dtype`` (all intra-op threads)."""
    import torch

    dtype = torch.bfloat16 if dtype_name == "bfloat16" else torch.float32
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    torch.mm(a, b)
    best, start = 0.0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        t = time.perf_counter()
        torch.mm(a, b)
        best = max(best, 2 * n**3 / (time.perf_counter() - t) / 1e9)
    return best


def write_images(folder: Path, size: int, n: int) -> None:
    """``n`` size x size crops of scikit-image photos (distinct positions), saved as PNG."""
    from PIL import Image
    from skimage import data

    folder.mkdir(parents=True, exist_ok=True)
    photos = [getattr(data, p)() for p in PHOTOS]
    photos = [p[..., :3] if p.ndim == 3 else np.repeat(p[..., None], 3, 2) for p in photos]
    photos = [p for p in photos if min(p.shape[:2]) >= size]
    rng = np.random.default_rng(size)
    for i in range(n):
        img = photos[i % len(photos)]
        y = int(rng.integers(0, img.shape[0] - size + 1))
        x = int(rng.integers(0, img.shape[1] - size + 1))
        Image.fromarray(np.ascontiguousarray(img[y : y + size, x : x + size])).save(
            folder / f"{i:04d}.png"
        )


def fzoo_cmd() -> list[str]:
    exe = Path(sys.executable).with_name("fzoo")
    if exe.exists():
        return [str(exe)]
    return [sys.executable, "-m", "fzoo.cli"]


def timed(cmd: list[str]) -> tuple[float, float]:
    """Wall-clock seconds and CPU seconds (user + system) of a child process."""
    import resource

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def load_pngs(folder: Path) -> dict[str, np.ndarray]:
    from PIL import Image

    return {p.name: np.asarray(Image.open(p)) for p in sorted(folder.glob("*.png"))}


def compare(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> dict[str, float]:
    """8-bit differences and PSNR of b against a over all images."""
    assert a.keys() == b.keys(), "different outputs"
    diff = np.concatenate([(a[k].astype(np.int16) - b[k].astype(np.int16)).ravel() for k in a])
    mse = float(np.mean((diff / 255.0) ** 2))
    return {
        "values_differing": int(np.count_nonzero(diff)),
        "values": int(diff.size),
        "max_abs_diff": int(np.abs(diff).max()) if diff.size else 0,
        "psnr_db": math.inf if mse == 0 else 10 * math.log10(1 / mse),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke run (few images)")
    parser.add_argument("--sizes", default=None, help="comma-separated sizes (default 64,256,512)")
    parser.add_argument("--n", action="append", default=[], metavar="SIZE=N",
                        help="images per size, e.g. --n 64=200")  # fmt: skip
    parser.add_argument("--impls", default="naive,fzoo,fzoo-bf16",
                        help="which of naive, fzoo, fzoo-bf16 to run")  # fmt: skip
    parser.add_argument("--bf16-sizes", default="64,256", help="sizes that also run fzoo-bf16")
    parser.add_argument("--repeat", type=int, default=1, help="interleaved runs; fastest counts")
    parser.add_argument("--json", default=None, help="write raw results to this file")
    parser.add_argument("--keep", default=None, help="work folder to keep (default: temporary)")
    args = parser.parse_args()

    counts = dict(QUICK_N if args.quick else FULL_N)
    if args.sizes:
        sizes = [int(s) for s in args.sizes.split(",")]
        counts = {s: counts.get(s, FULL_N.get(s, 4)) for s in sizes}
    for item in args.n:
        size, n = item.split("=")
        counts[int(size)] = int(n)
    impls = args.impls.split(",")
    bf16_sizes = {int(s) for s in args.bf16_sizes.split(",") if s}

    import torch

    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="fzoo-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    conditions = {
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "load_average_start": os.getloadavg(),
        "python": platform.python_version(),
    }
    try:
        cpu_model = next(
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        )
        conditions["cpu"] = cpu_model
    except (OSError, StopIteration):
        pass
    print(f"# fzoo launder benchmark ({'quick' if args.quick else 'full'})", flush=True)
    print(f"work folder: {work}", flush=True)
    vae_dir = work / "sd-vae-random"
    if not (vae_dir / "config.json").exists():
        n_params = build_vae(vae_dir)
        print(f"built random SD-architecture VAE: {n_params / 1e6:.1f} M parameters", flush=True)
    peaks = {d: matmul_peak(d) for d in ("float32", "bfloat16")}
    print(f"matmul peak: fp32 {peaks['float32']:.0f} GFLOP/s, bf16 {peaks['bfloat16']:.0f}",
          flush=True)  # fmt: skip

    results: list[dict] = []
    for size, n in counts.items():
        flops = round_trip_flops(size)
        in_dir = work / f"in-{size}"
        if not in_dir.is_dir() or len(list(in_dir.glob("*.png"))) != n:
            shutil.rmtree(in_dir, ignore_errors=True)
            write_images(in_dir, size, n)
        runs: dict[str, Path] = {}
        plans = [
            ("naive", [sys.executable, str(HERE / "naive_launder.py"), str(vae_dir)], "float32"),
            (
                "fzoo",
                [
                    *fzoo_cmd(),
                    "launder",
                    "--quiet",
                    "--launderer",
                    "sd-vae",
                    "--param",
                    f"weights={vae_dir}",
                ],
                "float32",
            ),  # fmt: skip
            (
                "fzoo-bf16",
                [
                    *fzoo_cmd(),
                    "launder",
                    "--quiet",
                    "--launderer",
                    "sd-vae",
                    "--param",
                    f"weights={vae_dir}",
                    "--param",
                    "dtype=bfloat16",
                ],
                "bfloat16",
            ),  # fmt: skip
        ]
        chosen = [
            (impl, cmd, dtype)
            for impl, cmd, dtype in plans
            if impl in impls and (impl != "fzoo-bf16" or size in bf16_sizes)
        ]
        best: dict[str, tuple[float, float]] = {}
        for rep in range(args.repeat):  # interleaved, alternating order; the fastest run counts
            for impl, cmd, _ in chosen if rep % 2 == 0 else chosen[::-1]:
                out_dir = work / f"out-{size}-{impl}"
                shutil.rmtree(out_dir, ignore_errors=True)
                wall, cpu = timed([*cmd, str(in_dir), str(out_dir)])
                runs[impl] = out_dir
                print(f"  {size}x{size} {impl:<9} n={n:<4} {wall:7.1f} s wall {cpu:7.1f} s CPU  "
                      f"{n / wall:7.3f} img/s", flush=True)  # fmt: skip
                if impl not in best or wall < best[impl][0]:
                    best[impl] = (wall, cpu)
        for impl, _, dtype in chosen:
            wall, cpu = best[impl]
            gflops = n * flops / wall / 1e9
            results.append(
                {
                    "size": size,
                    "impl": impl,
                    "n": n,
                    "wall_s": wall,
                    "cpu_s": cpu,
                    "images_per_s": n / wall,
                    "gflop_per_image": flops / 1e9,
                    "gflop_s": gflops,
                    "peak_fraction": gflops / peaks[dtype],
                    "dtype": dtype,
                }
            )
        if "naive" in runs:
            base = load_pngs(runs["naive"])
            naive_rate = next(r for r in results if r["size"] == size and r["impl"] == "naive")[
                "images_per_s"
            ]
            for row in results:
                if row["size"] != size:
                    continue
                row["ratio_vs_naive"] = row["images_per_s"] / naive_rate
                if row["impl"] != "naive":
                    row["vs_naive"] = compare(base, load_pngs(runs[row["impl"]]))
        if "fzoo" in runs and "fzoo-bf16" in runs:
            bf = next(r for r in results if r["size"] == size and r["impl"] == "fzoo-bf16")
            bf["psnr_vs_fp32_db"] = compare(load_pngs(runs["fzoo"]), load_pngs(runs["fzoo-bf16"]))[
                "psnr_db"
            ]
    conditions["load_average_end"] = os.getloadavg()
    end_peaks = {d: matmul_peak(d) for d in ("float32", "bfloat16")}
    conditions["matmul_peaks_start_end"] = {d: (peaks[d], end_peaks[d]) for d in peaks}
    for r in results:  # the higher of the two peak measurements is the reference
        r["peak_fraction"] = r["gflop_s"] / max(peaks[r["dtype"]], end_peaks[r["dtype"]])
    peaks = {d: max(peaks[d], end_peaks[d]) for d in peaks}

    print()
    print(f"CPU: {conditions['cpu']}, {conditions['cores']} cores, torch "
          f"{conditions['torch']} ({conditions['torch_threads']} threads); load average "
          f"{', '.join(f'{v:.1f}' for v in conditions['load_average_start'])} at start, "
          f"{', '.join(f'{v:.1f}' for v in conditions['load_average_end'])} at end. "
          f"Matmul peak (higher of start/end) fp32 {peaks['float32']:.0f} GFLOP/s, bf16 "
          f"{peaks['bfloat16']:.0f} GFLOP/s. Whole processes, wall clock, fastest of "
          f"{args.repeat} interleaved run(s).")  # fmt: skip
    print()
    print("| size | impl | images | wall s | CPU s | images/s | GFLOP/img | GFLOP/s | of peak "
          "| vs naive | 8-bit values differing from naive | PSNR vs fp32 |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        vs = r.get("vs_naive")
        differing = (
            "-"
            if vs is None
            else f"{vs['values_differing']} of {vs['values']} (max {vs['max_abs_diff']})"
        )
        psnr = r.get("psnr_vs_fp32_db")
        print(
            f"| {r['size']} | {r['impl']} | {r['n']} | {r['wall_s']:.1f} | {r['cpu_s']:.1f} | "
            f"{r['images_per_s']:.3f} | {r['gflop_per_image']:.1f} | {r['gflop_s']:.1f} | "
            f"{100 * r['peak_fraction']:.0f}% ({'bf16' if r['dtype'] == 'bfloat16' else 'fp32'}) | "
            f"{r.get('ratio_vs_naive', float('nan')):.2f}x | {differing} | "
            f"{'-' if psnr is None else f'{psnr:.1f} dB'} |"
        )
    if args.json:
        Path(args.json).write_text(
            json.dumps({"conditions": conditions, "peaks": peaks, "results": results}, indent=2)
        )
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
