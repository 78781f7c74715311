"""Throughput of the published detectors (``fzoo_builtins.published``) at 256 x 256 here.

    python benchmarks/bench_detectors.py                 # every detector, fp32 and bf16
    python benchmarks/bench_detectors.py --quick         # fewer images; Mandelli with 100 patches
    python benchmarks/bench_detectors.py --only mandelli2024-synthetic --json out.json

Every detector runs from a checkpoint with random weights written in its authors' layout
(``torch.save({key: state_dict})``; timing does not depend on the values). ``univfd`` needs a
CLIP ViT-L/14 backbone folder and is left out unless ``--univfd FOLDER`` names one.

Whole-image detectors (cnndetection, grag2021, npr, univfd): ``batched`` = one ``extract`` call
on N images with ``batch_size`` N; ``one-at-a-time`` = N calls of one image (``batch_size`` 1),
what a loop over files does. The Mandelli detectors score an image from ``patches`` (800) random
96 x 96 crops, so their unit of batching is the patch: ``chunk`` = patches per forward pass
(``batch_size``); chunk 1 is the one-patch-at-a-time loop, chunk 800 the authors' single
forward pass of all 800 patches. ``mandelli2024-laundered`` has the same network and protocol as
``mandelli2024-synthetic`` and is not timed twice.

Reported: images/s, GFLOP per image (``torch.utils.flop_counter.FlopCounterMode``; for Mandelli
one patch counted, times ``patches``), achieved GFLOP/s and its fraction of this CPU's matmul
peak in the same dtype (a 2048^3 ``torch.mm``, measured at start and end of the run, best kept).
bf16 runs the whole network in bfloat16 (``dtype: bfloat16``). One warm-up call first; the
fastest of ``--repeat`` runs counts. Other processes on the machine lower every figure: the
load average at start and end is printed.
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
from bench_launder import matmul_peak  # noqa: E402

SIZE = 256


def photos(n: int, size: int = SIZE) -> torch.Tensor:
    """``n`` size x size crops of scikit-image photos, a float batch in [0, 1]."""
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


def detector_classes() -> list[type]:
    """Every published detector class registered now (``fzoo_builtins.published``)."""
    from fzoo.plugin_manager import get_registry
    from fzoo_builtins.published import PublishedDetector

    reg = get_registry()
    names = sorted(n for n in reg.names("feature_extractor"))
    out = []
    for name in names:
        cls = reg.get("feature_extractor", name)
        if isinstance(cls, type) and issubclass(cls, PublishedDetector):
            out.append(cls)
    return out


def random_checkpoint(cls: type, folder: Path, extra: dict[str, Any]) -> Path:
    """A checkpoint of ``cls``'s network with random weights, in its released layout."""
    det = cls(**extra)
    net = det.build_network()
    path = folder / cls.weights_filename
    state = net.fc.state_dict() if cls.name == "univfd" else net.state_dict()
    torch.save({cls.checkpoint_keys[0]: state}, path)
    return path


def timed(fn: Callable[[], Any], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def count_flops(det: Any, x: torch.Tensor) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        det.extract(x)
    return int(counter.get_total_flops())


def bench_whole_image(
    cls: type, ckpt: Path, extra: dict[str, Any], n: int, repeat: int
) -> list[dict[str, Any]]:
    x = photos(n)
    rows = []
    flops = count_flops(cls(weights=str(ckpt), batch_size=1, **extra), x[:1])
    for dtype in ("float32", "bfloat16"):
        batched = cls(weights=str(ckpt), batch_size=n, dtype=dtype, **extra)
        single = cls(weights=str(ckpt), batch_size=1, dtype=dtype, **extra)
        batched.extract(x[:1])
        single.extract(x[:1])

        def run_single(det: Any = single) -> None:
            for i in range(n):
                det.extract(x[i : i + 1])

        best = {"batched": float("inf"), "one-at-a-time": float("inf")}
        for _ in range(repeat):  # interleaved
            best["batched"] = min(best["batched"], timed(lambda d=batched: d.extract(x), 1))
            best["one-at-a-time"] = min(best["one-at-a-time"], timed(run_single, 1))
        for mode, seconds in best.items():
            rows.append(
                {
                    "detector": cls.name,
                    "dtype": dtype,
                    "mode": mode,
                    "batch": n if mode == "batched" else 1,
                    "images": n,
                    "seconds": seconds,
                    "flops": flops,
                }
            )
            print(json.dumps(rows[-1]), flush=True)
    return rows


def bench_mandelli(
    cls: type, ckpt: Path, n: int, patches: int, chunks: list[int], repeat: int
) -> list[dict[str, Any]]:
    x = photos(n)
    top_m = min(600, patches)
    one = cls(weights=str(ckpt), patches=1, top_m=1, batch_size=1)
    flops = count_flops(one, x[:1]) * patches
    rows = []
    for dtype in ("float32", "bfloat16"):
        for chunk in chunks:
            det = cls(
                weights=str(ckpt), patches=patches, top_m=top_m, batch_size=chunk, dtype=dtype
            )
            warm = cls(
                weights=str(ckpt), patches=min(chunk, patches), top_m=1, batch_size=chunk,
                dtype=dtype,
            )  # fmt: skip
            warm._net = det.network()  # share the loaded network; warm up this chunk shape
            warm.extract(x[:1])
            seconds = timed(lambda d=det: d.extract(x), repeat)
            rows.append(
                {
                    "detector": f"{cls.name} ({patches} patches)",
                    "dtype": dtype,
                    "mode": f"chunk {chunk}",
                    "batch": chunk,
                    "images": n,
                    "seconds": seconds,
                    "flops": flops,
                }
            )
            print(json.dumps(rows[-1]), flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer images; Mandelli 100 patches")
    ap.add_argument("--repeat", type=int, default=1, help="runs per setting; fastest counts")
    ap.add_argument("--only", nargs="*", default=None, help="detector names to run")
    ap.add_argument("--univfd", default=None, help="a CLIP ViT-L/14 folder (transformers)")
    ap.add_argument("--patches", type=int, default=None, help="Mandelli patches per image")
    ap.add_argument(
        "--chunks", default="1,16,64,800", help="Mandelli patches per forward pass to compare"
    )
    ap.add_argument("--json", default=None, help="write the raw results here")
    args = ap.parse_args(argv)

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    load0 = os.getloadavg()
    peak = {d: matmul_peak(d) for d in ("float32", "bfloat16")}
    n_whole = 2 if args.quick else 8
    patches = args.patches or (100 if args.quick else 800)
    chunks = sorted({min(int(c), patches) for c in args.chunks.split(",")})
    rows: list[dict[str, Any]] = []
    skipped: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        for cls in detector_classes():
            if args.only is not None and cls.name not in args.only:
                continue
            if cls.name == "mandelli2024-laundered" and args.only is None:
                continue  # same network and protocol as mandelli2024-synthetic
            extra: dict[str, Any] = {}
            if cls.name == "univfd":
                if not args.univfd:
                    skipped.append("univfd (needs --univfd FOLDER: a CLIP ViT-L/14 backbone)")
                    continue
                extra = {"backbone": args.univfd}
            folder = Path(tmp) / cls.name
            folder.mkdir()
            ckpt = random_checkpoint(cls, folder, extra)
            if cls.name.startswith("mandelli"):
                rows += bench_mandelli(cls, ckpt, 1, patches, chunks, args.repeat)
            else:
                n = 2 if cls.name == "grag2021" else n_whole
                rows += bench_whole_image(cls, ckpt, extra, n, args.repeat)
    for d in peak:
        peak[d] = max(peak[d], matmul_peak(d))
    load1 = os.getloadavg()

    print(
        f"\nCPU: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch "
        f"{torch.__version__} ({torch.get_num_threads()} threads); load average "
        f"{load0[0]:.1f} at start, {load1[0]:.1f} at end; matmul peak fp32 "
        f"{peak['float32']:.0f} GFLOP/s, bf16 {peak['bfloat16']:.0f} GFLOP/s; {SIZE}x{SIZE} "
        f"images.{' Skipped: ' + '; '.join(skipped) if skipped else ''}\n"
    )
    cols = ("detector", "dtype", "mode", "batch", "images", "s", "images/s", "GFLOP/img")
    print("| " + " | ".join((*cols, "GFLOP/s", "of peak")) + " |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        rate = r["images"] / r["seconds"]
        gflop = r["flops"] / 1e9
        print(
            f"| {r['detector']} | {r['dtype']} | {r['mode']} | {r['batch']} | {r['images']} | "
            f"{r['seconds']:.2f} | {rate:.3f} | {gflop:.1f} | {rate * gflop:.1f} | "
            f"{rate * gflop / peak[r['dtype']]:.1%} |"
        )
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"rows": rows, "peak_gflops": peak, "load": [load0, load1]}, fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
