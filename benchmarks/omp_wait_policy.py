"""OpenMP's wait policy on a shared 2-core machine: torch step times, ACTIVE (default) vs PASSIVE.

torch's CPU kernels run on OpenMP threads; between parallel regions the GNU runtime lets idle
threads spin (``OMP_WAIT_POLICY`` unset or ``ACTIVE``) before sleeping. When another process
holds one of the cores, a spinning thread waits for a peer the scheduler has descheduled, and a
step can take several times longer (a tae-4ch training run spent 84% of its profile samples in
``libgomp``). ``PASSIVE`` makes waiting threads sleep at once.

This script measures, in fresh subprocesses (the policy is read once, when torch loads), the
same workload with each policy, on an idle machine and beside ``--busy N`` processes that spin
on the CPU (a stand-in for a second job), and prints a Markdown table of median step times
and their ratio. The workload: fine-tuning steps of an EfficientNet-Lite0-sized network
(timm ``efficientnet_lite0``, random weights, 64 px patches, batch 64, channels-last, as the
study's Mandelli detectors) and forward passes of the TAESD-architecture autoencoder at 256 px.

    .venv/bin/python benchmarks/omp_wait_policy.py --threads 2 --busy 0 1
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import statistics
import subprocess
import sys
import time

WORKER = r"""
import json, statistics, sys, time
import torch
torch.set_num_threads(int(sys.argv[1]))
steps = int(sys.argv[2])
import timm
from fzoo_builtins.sd_vae.taesd_arch import TinyAutoencoder
torch.manual_seed(0)
net = timm.create_model("efficientnet_lite0", pretrained=False, num_classes=1)
net = net.to(memory_format=torch.channels_last).train()
opt = torch.optim.AdamW(net.parameters(), lr=1e-4)
x = torch.rand(64, 3, 64, 64).to(memory_format=torch.channels_last)
y = torch.rand(64, 1)
ae = TinyAutoencoder(4, True).eval()
img = torch.rand(2, 3, 256, 256)
out = {"train": [], "autoencoder": []}
for i in range(steps + 2):
    t = time.perf_counter()
    loss = torch.nn.functional.binary_cross_entropy_with_logits(net(x), y)
    opt.zero_grad(); loss.backward(); opt.step()
    if i >= 2:
        out["train"].append(time.perf_counter() - t)
    t = time.perf_counter()
    with torch.no_grad():
        ae(img)
    if i >= 2:
        out["autoencoder"].append(time.perf_counter() - t)
print(json.dumps({k: statistics.median(v) for k, v in out.items()}))
"""


def spin(stop_at: float) -> None:
    """Keep one core busy until ``stop_at`` (a stand-in for another job on the machine)."""
    n = 0
    while time.time() < stop_at:
        n += 1


def run(policy: str | None, threads: int, steps: int, busy: int) -> dict[str, float]:
    """Median seconds per train step / autoencoder pass, in a fresh interpreter."""
    env = dict(os.environ)
    env.pop("OMP_WAIT_POLICY", None)
    env.pop("OMP_NUM_THREADS", None)
    if policy is not None:
        env["OMP_WAIT_POLICY"] = policy
    spinners = [
        multiprocessing.Process(target=spin, args=(time.time() + 600,)) for _ in range(busy)
    ]
    for p in spinners:
        p.start()
    try:
        proc = subprocess.run(
            [sys.executable, "-c", WORKER, str(threads), str(steps)],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
    finally:
        for p in spinners:
            p.terminate()
            p.join()
    result: dict[str, float] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=2, help="torch threads of the workload")
    ap.add_argument("--steps", type=int, default=15, help="measured steps per run")
    ap.add_argument("--busy", type=int, nargs="+", default=[0, 1], help="spinning processes")
    ap.add_argument("--repeats", type=int, default=1, help="alternating runs per cell")
    args = ap.parse_args(argv)
    load = os.getloadavg()
    rows = []
    for busy in args.busy:
        cells: dict[str, list[dict[str, float]]] = {"ACTIVE": [], "PASSIVE": []}
        for _ in range(args.repeats):
            for policy in cells:  # alternate, so drift in the machine's load hits both
                cells[policy].append(run(policy, args.threads, args.steps, busy))
        med = {
            p: {k: statistics.median(r[k] for r in runs) for k in runs[0]}
            for p, runs in cells.items()
        }
        rows.append((busy, med))
    print(
        "| busy processes | train step ACTIVE | PASSIVE | ratio | autoencoder ACTIVE | PASSIVE "
        "| ratio |\n|---|---:|---:|---:|---:|---:|---:|"
    )
    for busy, med in rows:
        a, p = med["ACTIVE"], med["PASSIVE"]
        print(
            f"| {busy} | {a['train']:.3f} s | {p['train']:.3f} s | {a['train'] / p['train']:.2f} "
            f"| {a['autoencoder']:.3f} s | {p['autoencoder']:.3f} s "
            f"| {a['autoencoder'] / p['autoencoder']:.2f} |"
        )
    end = os.getloadavg()
    print(
        f"\n{args.threads} torch threads, {args.steps} steps per run, {args.repeats} run(s) per "
        f"cell; ratio = ACTIVE / PASSIVE (above 1: PASSIVE is faster). Load average "
        f"{load[0]:.2f} at start, {end[0]:.2f} at end."
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
