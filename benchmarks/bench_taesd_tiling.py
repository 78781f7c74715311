"""Laundering a camera-size photo with TAEF2 and ``tile_size``: wall time and peak memory.

    python benchmarks/bench_taesd_tiling.py                      # 4000x3000 (12 MP), tile 512
    python benchmarks/bench_taesd_tiling.py --size 2048x1536 --tile 256
    python benchmarks/bench_taesd_tiling.py --tile 0             # untiled (needs ~40 GB at 12 MP)

Makes one PNG of the requested size by mirror-tiling scikit-image's astronaut photo (a real
photo, 512x512), then runs ``fzoo launder --launderer taef2 --param weights=W --param
tile_size=T`` as a separate process with its output redirected (so the progress lines of
:mod:`fzoo.progress` are what a log shows) and reports the wall time, the child's peak RSS
(``getrusage(RUSAGE_CHILDREN).ru_maxrss``), the PSNR of the output against the input, and the
machine load (``os.getloadavg``) before and after, since other jobs share the CPUs.

TAEF2 is Bohan's tiny autoencoder for the FLUX.2 latent space (github.com/madebyollin/taesd,
MIT); the weights are read from ``../shared/weights/taef2`` (``--weights`` to change).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
WEIGHTS = REPO.parent / "shared" / "weights" / "taef2"


def big_photo(width: int, height: int) -> np.ndarray:
    """A real photo mirror-tiled to ``width`` x ``height`` (uint8 RGB)."""
    from skimage import data

    tile = data.astronaut()[..., :3]
    row = np.concatenate([tile, tile[:, ::-1]], axis=1)
    block = np.concatenate([row, row[::-1]], axis=0)
    reps = (-(-height // block.shape[0]), -(-width // block.shape[1]), 1)
    return np.ascontiguousarray(np.tile(block, reps)[:height, :width])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", default="4000x3000", help="WIDTHxHEIGHT (default 4000x3000)")
    ap.add_argument("--tile", type=int, default=512, help="tile_size; 0: untiled")
    ap.add_argument("--weights", default=str(WEIGHTS))
    ap.add_argument("--json", help="write the result here")
    ap.add_argument("--log", help="keep the child's stderr (progress lines) in this file")
    args = ap.parse_args()
    from PIL import Image

    w, h = (int(v) for v in args.size.lower().split("x"))
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "in", Path(tmp) / "out"
        log = Path(args.log) if args.log else Path(tmp) / "log.txt"
        src.mkdir()
        Image.fromarray(big_photo(w, h)).save(src / "photo.png")
        cmd = [sys.executable, "-m", "fzoo.cli", "launder", str(src), str(dst),
               "--launderer", "taef2", "--param", f"weights={args.weights}", "--json"]  # fmt: skip
        if args.tile:
            cmd += ["--param", f"tile_size={args.tile}"]
        load_before = os.getloadavg()
        start = time.perf_counter()
        with open(log, "w") as fh:
            rc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=fh, text=True, check=False)
        wall = time.perf_counter() - start
        load_after = os.getloadavg()
        peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        progress = [ln for ln in log.read_text().splitlines() if ln.startswith("[fzoo]")]
        summary = json.loads(rc.stdout) if rc.returncode == 0 else {}
    result = {
        "size": f"{w}x{h}",
        "megapixels": round(w * h / 1e6, 2),
        "tile_size": args.tile or None,
        "returncode": rc.returncode,
        "wall_s": round(wall, 1),
        "peak_rss_mb": round(peak_mb),
        "psnr_db": summary.get("psnr_db_mean"),
        "load_before": [round(v, 2) for v in load_before],
        "load_after": [round(v, 2) for v in load_after],
        "cpus": os.cpu_count(),
        "progress_lines": progress[-3:],  # a killed run: its last rate and ETA
    }
    print(json.dumps(result, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return rc.returncode


if __name__ == "__main__":
    raise SystemExit(main())
