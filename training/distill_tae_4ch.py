"""Train the shipped ``fzoo-tae-4ch`` from scratch, by distillation, on 2 CPU cores.

Every weight of the student starts from a random initialisation (``torch.manual_seed``) and is
trained by this script; no tensor is copied from any other model. The teacher is a 4-channel
autoencoder of the same TAESD architecture (``fzoo_builtins.sd_vae.taesd_arch``) built by
``training/train_tae_4ch.py`` from the pretrained TAEF2 (MIT): it keeps TAEF2's full-resolution
layers, which fzoo does not redistribute, so it is a teacher only and is never shipped.

Two phases:

A. **Stage-wise distillation.** The architecture is cut at its resolution changes (encoder:
   full, 1/2, 1/4, 1/8 resolution + latent conv; decoder: 1/8, 1/4, 1/2, full). Each student
   stage gets the teacher's activation at its input and is trained to produce the teacher's
   activation at its output (MSE divided by the mean square of the target), all stages in one
   step. Every stage is then a small regression problem with a dense target, which is what
   makes training from scratch fit on two CPU cores; it runs on 64 x 64 sub-crops, since the
   stages are convolutional and need no large context.
B. **End to end.** The whole student on 128 x 128 crops, pixel loss against the photo
   (``L1 + MSE + 0.1 |FFT| L1 + colour``, as in ``train_tae_4ch.py``) plus ``--distill-weight``
   times the L1 distance to the teacher's reconstruction, and the latent penalty beyond +-2.

Data (crops, augmentation, the held-out rule: ``mate-backgrounds`` and the pip ``HOLDOUT``
photos are never trained on) and the monitoring curve are those of ``train_tae_4ch.py``. The
model goes to ``OUT/model/`` in the original TAESD layout, loadable by the ``taesd`` launderer.

Run::

    python training/train_tae_4ch.py --out .train-logs/tae-4ch-teacher ...   # the teacher
    python training/distill_tae_4ch.py --teacher .train-logs/tae-4ch-teacher/model \\
        --out .train-logs/fzoo-tae-4ch --minutes-a 30 --minutes-b 20
    python training/distill_tae_4ch.py --teacher DIR --out /tmp/d --quick   # smoke test
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
# read by libgomp when torch loads: on shared cores, spinning OpenMP threads waited for a
# descheduled peer (a first run spent 84% of its CPU samples in libgomp, 4x slower steps)
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402
import debian_photos  # noqa: E402
import train_tae_4ch as base  # noqa: E402

from fzoo_builtins.sd_vae.taesd_arch import TinyAutoencoder  # noqa: E402

NAME = base.NAME
#: where the architecture is cut: (part, start, stop) of ``nn.Sequential`` indices
STAGES: tuple[tuple[str, int, int], ...] = (
    ("encoder", 0, 2),  # conv + block, full resolution
    ("encoder", 2, 6),  # 1/2
    ("encoder", 6, 10),  # 1/4
    ("encoder", 10, 15),  # 1/8 + latent conv
    ("decoder", 0, 6),  # clamp, latent conv, 3 blocks at 1/8
    ("decoder", 6, 11),  # 1/4
    ("decoder", 11, 16),  # 1/2
    ("decoder", 16, 20),  # full resolution + RGB conv
)
CURVE_FIELDS = base.CURVE_FIELDS


@dataclass
class Config:
    """Everything that defines a run (written to ``train_info.json``)."""

    out: str
    teacher: str = ""
    init: str = ""
    cache: str = str(debian_photos.DEFAULT_CACHE)
    threads: int = 2
    seed: int = 0
    crop: int = 128
    sub_crop: int = 64
    n_crops: int = 2048
    p_native: float = 0.5
    max_downscale: float = 4.0
    p_channel_shuffle: float = 0.3
    minutes_a: float = 30.0
    minutes_b: float = 20.0
    batch_a: int = 16
    batch_b: int = 6
    lr_a: float = 2e-3
    lr_b: float = 2e-4
    warmup_steps: int = 50
    min_lr_frac: float = 0.05
    fft_weight: float = 0.1
    colour_weight: float = 1.0
    latent_weight: float = 1.0
    distill_weight: float = 1.0
    eval_every_s: float = 240.0
    quick: bool = False


def parse_args(argv: list[str] | None = None) -> Config:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    defaults = Config(out="")
    p.add_argument("--out", required=True, help="output folder (model/, curve.csv, ...)")
    p.add_argument("--teacher", required=True, help="folder of the teacher (train_tae_4ch.py)")
    for name, value in asdict(defaults).items():
        if name in ("out", "teacher", "quick"):
            continue
        p.add_argument(f"--{name.replace('_', '-')}", type=type(value), default=value)
    p.add_argument("--quick", action="store_true", help="tiny data and budget: a smoke test")
    cfg = Config(**vars(p.parse_args(argv)))
    if cfg.quick:
        cfg.crop, cfg.sub_crop, cfg.n_crops, cfg.batch_a, cfg.batch_b = 64, 32, 24, 4, 2
        cfg.minutes_a, cfg.minutes_b, cfg.eval_every_s, cfg.warmup_steps = 0.2, 0.2, 5.0, 2
    return cfg


def load_folder(folder: Path) -> TinyAutoencoder:
    """A TAESD-layout safetensors pair (``*_encoder.safetensors``, ``*_decoder.safetensors``)."""
    from safetensors.torch import load_file

    enc_files = sorted(folder.glob("*_encoder.safetensors"))
    if len(enc_files) != 1:
        raise SystemExit(f"expected one *_encoder.safetensors in {folder}, found {enc_files}")
    enc = load_file(str(enc_files[0]))
    dec = load_file(str(enc_files[0]).replace("_encoder.", "_decoder."))
    last = max(int(k.split(".")[0]) for k in enc)
    model = TinyAutoencoder(int(enc[f"{last}.weight"].shape[0]), any(".pool." in k for k in enc))
    model.encoder.load_state_dict(enc, strict=True)
    model.decoder.load_state_dict(dec, strict=True)
    return model.eval().requires_grad_(False)


def stage_modules(model: TinyAutoencoder) -> list[torch.nn.Sequential]:
    return [getattr(model, part)[a:b] for part, a, b in STAGES]


@torch.no_grad()
def teacher_activations(teacher: TinyAutoencoder, x: torch.Tensor) -> list[torch.Tensor]:
    """The input and every stage output of the teacher on ``x`` (bf16 autocast, float32)."""
    acts = [x]
    with base.autocast():
        for mod in stage_modules(teacher):
            acts.append(mod(acts[-1]).float())
    return acts


def sub_crops(x8: torch.Tensor, side: int, gen: torch.Generator) -> torch.Tensor:
    """One random ``side`` x ``side`` window of each crop, at offsets that are multiples of 8."""
    n, _, h, w = x8.shape
    out = torch.empty((n, 3, side, side), dtype=x8.dtype)
    ys = torch.randint(0, (h - side) // 8 + 1, (n,), generator=gen) * 8
    xs = torch.randint(0, (w - side) // 8 + 1, (n,), generator=gen) * 8
    for i in range(n):
        out[i] = x8[i, :, ys[i] : ys[i] + side, xs[i] : xs[i] + side]
    return out


def export(student: TinyAutoencoder, dest: Path, cfg: Config) -> None:
    """Original TAESD layout (safetensors) + LICENSE + SHA256SUMS, swapped in atomically."""
    from safetensors.torch import save_file

    repo_licence = (base.REPO_ROOT / "LICENSE").read_text()

    def fill(tmp: Path) -> None:
        for part in ("encoder", "decoder"):
            sd = {
                k: v.detach().contiguous() for k, v in getattr(student, part).state_dict().items()
            }
            save_file(sd, str(tmp / f"{NAME}_{part}.safetensors"))
        (tmp / "LICENSE").write_text(
            f"{NAME}: weights trained from a random initialisation by the fzoo project\n"
            "(training/distill_tae_4ch.py), distilled from a teacher built on TAEF2 by Ollin\n"
            "Boer Bohan (github.com/madebyollin/taesd, MIT); architecture after TAESD (MIT).\n"
            "See docs/models/fzoo-tae-4ch.md.\n\n" + repo_licence
        )
        _common.write_sums(tmp)

    _common.swap_in(dest, fill)


def main(argv: list[str] | None = None) -> int:
    cfg = parse_args(argv)
    torch.set_num_threads(max(1, cfg.threads))
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    info: dict[str, Any] = {
        "model": NAME,
        "config": asdict(cfg),
        "command": " ".join(["python training/distill_tae_4ch.py", *(argv or sys.argv[1:])]),
        "environment": _common.environment(cfg.threads),
    }
    teacher = load_folder(Path(cfg.teacher))
    info["teacher_sha256"] = {
        q.name: q.read_text() for q in [Path(cfg.teacher) / "SHA256SUMS"] if q.exists()
    }
    t0 = time.time()
    bcfg = base.Config(
        out=cfg.out, cache=cfg.cache, seed=cfg.seed, crop=cfg.crop, n_crops=cfg.n_crops,
        p_native=cfg.p_native, max_downscale=cfg.max_downscale,
        p_channel_shuffle=cfg.p_channel_shuffle, quick=cfg.quick,
    )  # fmt: skip
    x8, names = base.sample_crops(bcfg)
    info["train_photos"] = names
    print(f"{len(x8)} crops of {cfg.crop} from {len(names)} photos in {time.time() - t0:.0f} s")

    torch.manual_seed(cfg.seed)  # the student's random initialisation
    student = TinyAutoencoder(teacher.latent_channels, use_midblock_gn=True)
    if cfg.init:  # continue from an earlier student of this script (never another model)
        student.load_state_dict(load_folder(Path(cfg.init)).state_dict())
        student.requires_grad_(True)
    info["params"] = sum(p.numel() for p in student.parameters())
    held8 = base.heldout_pip(bcfg)
    mon8 = x8[:16]
    curve_path = out / "curve.csv"
    with curve_path.open("w", newline="") as fh:
        csv.writer(fh).writerow(CURVE_FIELDS)
    t_train = time.time()

    def log(stage: str, step: int, lr: float, loss: float) -> None:
        student.eval()
        tr = base.recon_metrics(student, mon8)[0]
        hp, hc = base.recon_metrics(student, held8)
        student.train()
        row = [stage, step, round(time.time() - t_train, 1), f"{lr:.3g}", f"{loss:.5g}",
               f"{tr:.3f}", f"{hp:.3f}", f"{hc:.3f}"]  # fmt: skip
        with curve_path.open("a", newline="") as fh:
            csv.writer(fh).writerow(row)
        info["last"] = dict(zip(CURVE_FIELDS, row, strict=True))
        export(student, out / "checkpoint", cfg)  # resumable with --init OUT/checkpoint
        info["loadavg"] = [round(v, 2) for v in os.getloadavg()]
        (out / "train_info.json").write_text(json.dumps(info, indent=1) + "\n")
        print(" ".join(f"{k}={v}" for k, v in zip(CURVE_FIELDS, row, strict=True)), flush=True)

    log("init", 0, 0.0, float("nan"))
    gen = torch.Generator().manual_seed(cfg.seed + 1)
    params = list(student.parameters())
    step = 0
    for stage, minutes, lr0, batch in (
        ("A", cfg.minutes_a, cfg.lr_a, cfg.batch_a),
        ("B", cfg.minutes_b, cfg.lr_b, cfg.batch_b),
    ):
        opt = torch.optim.AdamW(params, lr=lr0, betas=(0.9, 0.99), weight_decay=0.0)
        budget, ts = minutes * 60.0, time.time()
        last_eval = ts
        acc, n_acc, k = 0.0, 0, 0
        per_stage = torch.zeros(len(STAGES))
        student.train()
        lr = lr0
        while time.time() - ts < budget:
            lr = _common.lr_at(
                lr0, cfg.warmup_steps, cfg.min_lr_frac, k, (time.time() - ts) / budget
            )
            for g in opt.param_groups:
                g["lr"] = lr
            idx = torch.randint(len(x8), (batch,), generator=gen)
            if stage == "A":
                x = base.to_float(sub_crops(x8[idx], cfg.sub_crop, gen))
                acts = teacher_activations(teacher, x)
                losses = []
                with base.autocast():
                    for j, mod in enumerate(stage_modules(student)):
                        pred = mod(acts[j]).float()
                        tgt = acts[j + 1]
                        losses.append(F.mse_loss(pred, tgt) / tgt.pow(2).mean().clamp_min(1e-6))
                per_stage += torch.tensor([float(v.detach()) for v in losses])
                loss = torch.stack(losses).sum()
            else:
                x = base.to_float(x8[idx])
                with torch.no_grad(), base.autocast():
                    y_t = teacher(x).float()
                with base.autocast():
                    z = student.encoder(x)
                    y = student.decoder(z).float()
                colour = (y.mean(dim=(2, 3)) - x.mean(dim=(2, 3))).abs().mean()
                loss = (
                    (y - x).abs().mean()
                    + F.mse_loss(y, x)
                    + cfg.fft_weight * base.fft_l1(y, x)
                    + cfg.colour_weight * colour
                    + cfg.latent_weight * base.latent_penalty(z)
                    + cfg.distill_weight * (y - y_t).abs().mean()
                )
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            acc, n_acc, k, step = acc + float(loss.detach()), n_acc + 1, k + 1, step + 1
            if time.time() - last_eval >= cfg.eval_every_s:
                if stage == "A":
                    rel = ", ".join(f"{v / k:.4f}" for v in per_stage)
                    print(f"stage losses (relative MSE, mean so far): {rel}", flush=True)
                log(stage, step, lr, acc / n_acc)
                acc, n_acc, last_eval = 0.0, 0, time.time()
        log(stage, step, lr, acc / max(n_acc, 1))
        info[f"stage_{stage}"] = {"steps": k, "seconds": round(time.time() - ts, 1)}
    student.eval()
    with torch.no_grad():
        z = base.batched(student.encoder, base.to_float(x8[:64]))
    info["latent_stats"] = {"mean": float(z.mean()), "std": float(z.std()),
                            "abs_max": float(z.abs().max())}  # fmt: skip
    info["train_seconds"] = round(time.time() - t_train, 1)
    info["total_seconds"] = round(time.time() - t0, 1)
    info["loadavg_at_end"] = [round(v, 2) for v in os.getloadavg()]
    export(student, out / "model", cfg)
    (out / "train_info.json").write_text(json.dumps(info, indent=1) + "\n")
    print(f"done in {info['total_seconds']} s; model in {out / 'model'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
