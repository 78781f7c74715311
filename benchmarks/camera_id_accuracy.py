"""Camera-model identification accuracy of ``camera-id-cnn`` on ``virtual-cameras``.

    nice -n 10 python benchmarks/camera_id_accuracy.py               # defaults, aug and no aug
    python benchmarks/camera_id_accuracy.py --epochs 2 --configs aug  # quicker
    python benchmarks/camera_id_accuracy.py --json results.json

Trains the Bondi et al. 2017 patch CNN (``camera-id-cnn``) on the full default ``virtual-cameras``
dataset (every bundled photo, every camera) and reports the image-level accuracy (mean-logit and
majority fusion of the 64 px tiles) on held-out photos: pristine, after JPEG 90 and after resize
0.9 (the built-in ``jpeg`` and ``resize`` perturbations, built with ``fzoo.create_component``),
with and without the JPEG/resize training augmentation, plus wall times. The split is by photo
(``source``: every tile of a photo, through every camera, on one side), seeded by ``--seed``,
``--test-size`` of the photos held out, as the runner's split does; nothing is tuned on them.

Wall times depend on the machine's load: the script prints the load average before and after.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

import numpy as np
import torch

import fzoo
from fzoo_builtins.camera_id.extractor import CameraIdCNN

CONDITIONS = {
    "pristine": None,
    "jpeg90": ("jpeg", {"quality": 90}),
    "resize0.9": ("resize", {"scale": 0.9}),
}
CONFIGS = {"aug": ["jpeg", "resize"], "noaug": []}


def load_data(seed: int) -> tuple[list[torch.Tensor], list[str], list[str]]:
    ds = fzoo.create_component("dataset", "virtual-cameras", seed=seed)
    images, cameras, photos = [], [], []
    for rec in ds.records():
        images.append(fzoo.to_tensor(fzoo.decode_bytes(rec.data or b"").pixels))
        cameras.append(str(rec.camera))
        photos.append(rec.source)
    return images, cameras, photos


def split_photos(photos: list[str], test_size: float, seed: int) -> set[str]:
    names = sorted(set(photos))
    order = np.random.default_rng(seed).permutation(len(names))
    n_test = min(max(round(test_size * len(names)), 1), len(names) - 1)
    return {names[i] for i in order[:n_test]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--epochs", type=int, default=None, help="default: the component's (16)")
    ap.add_argument("--patches-per-image", type=int, default=None, help="default: the component's")
    ap.add_argument("--lr", type=float, default=None, help="default: the component's")
    ap.add_argument("--constrained", action="store_true", help="Bayar-Stamm first layer")
    ap.add_argument("--configs", default="aug,noaug", help="comma list of: aug, noaug")
    ap.add_argument("--seed", type=int, default=0, help="split and training seed")
    ap.add_argument("--test-size", type=float, default=0.3)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--json", default=None, help="write the raw results here")
    args = ap.parse_args(argv)

    load0 = os.getloadavg()
    t0 = time.time()
    images, cameras, photos = load_data(0)
    test_photos = split_photos(photos, args.test_size, args.seed)
    tr = [i for i, p in enumerate(photos) if p not in test_photos]
    te = [i for i, p in enumerate(photos) if p in test_photos]
    print(
        f"virtual-cameras: {len(images)} images, {len(set(cameras))} cameras, "
        f"{len(set(photos))} photos; train {len(tr)} images, test {len(te)} images of photos "
        f"{sorted(test_photos)} (data {time.time() - t0:.1f} s, load avg {load0[0]:.1f})",
        flush=True,
    )
    test_sets = {}
    for cond, spec in CONDITIONS.items():
        imgs = [images[i] for i in te]
        if spec is not None:
            pert = fzoo.create_component("perturbation", spec[0], **spec[1])
            imgs = [pert.apply(x, np.random.default_rng(0)) for x in imgs]
        test_sets[cond] = imgs
    y_test = np.asarray([cameras[i] for i in te])

    results = []
    for config in args.configs.split(","):
        params: dict = {
            "augment": CONFIGS[config],
            "constrained_first_layer": args.constrained,
            "seed": args.seed,
            "threads": args.threads,
        }
        for key in ("epochs", "patches_per_image", "lr"):
            if getattr(args, key) is not None:
                params[key] = getattr(args, key)
        ext = CameraIdCNN(**params)
        t = time.time()
        ext.fit((images[i] for i in tr), [cameras[i] for i in tr])
        fit_s = time.time() - t
        row = {"config": config, "params": ext.get_params(), "fit_s": round(fit_s, 1)}
        row["train_loss"] = [round(v, 4) for v in ext.history_]
        t = time.time()
        for cond, imgs in test_sets.items():
            for fusion in ("mean_logit", "majority"):
                scorer = CameraIdCNN(**{**ext.get_params(), "fusion": fusion})
                scorer.net, scorer.classes_ = ext.net, ext.classes_
                scores = np.concatenate([scorer.extract(x) for x in imgs])
                pred = np.asarray(ext.classes_)[scores.argmax(1)]
                row[f"{cond}/{fusion}"] = round(float((pred == y_test).mean()), 4)
        row["eval_s"] = round(time.time() - t, 1)
        results.append(row)
        print(json.dumps({k: v for k, v in row.items() if k != "params"}), flush=True)

    load1 = os.getloadavg()
    print(
        f"\nload average before {load0[0]:.1f}, after {load1[0]:.1f} "
        f"({os.cpu_count()} CPUs, torch threads {torch.get_num_threads()}, "
        f"{platform.processor() or platform.machine()})\n"
    )
    head = "| config | epochs | pristine | JPEG 90 | resize 0.9 | fit s | eval s |"
    print(head + "\n|---|---|---|---|---|---|---|")
    for r in results:
        cells = [f"{r[f'{c}/mean_logit']:.3f} ({r[f'{c}/majority']:.3f})" for c in CONDITIONS]
        epochs = r["params"]["epochs"]
        print(f"| {r['config']} | {epochs} | {' | '.join(cells)} | {r['fit_s']} | {r['eval_s']} |")
    print("\naccuracy: mean-logit fusion (majority vote in brackets); chance 1/6")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"results": results, "test_photos": sorted(test_photos)}, fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
