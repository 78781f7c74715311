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
import eval_real_photos  # noqa: E402
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
    freeze_encoder: bool = False
    quick: bool = False


def parse_args(argv: list[str] | None = None) -> Config:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--out", required=True, help="output folder (model/, curve.csv, ...)")
    p.add_argument("--teacher", required=True, help="folder of the teacher (train_tae_4ch.py)")
    helps = {
        "freeze_encoder": "train the decoder only (latents unchanged: an LDM trained on them "
        "stays valid)",
        "quick": "tiny data and budget: a smoke test",
    }
    _common.add_config_args(p, Config(out=""), skip=("out", "teacher"), helps=helps)
    cfg = Config(**vars(p.parse_args(argv)))
    if cfg.quick:
        cfg.crop, cfg.sub_crop, cfg.n_crops, cfg.batch_a, cfg.batch_b = 64, 32, 24, 4, 2
        cfg.minutes_a, cfg.minutes_b, cfg.eval_every_s, cfg.warmup_steps = 0.2, 0.2, 5.0, 2
        cfg.minutes_a = 0.0 if cfg.freeze_encoder else cfg.minutes_a
    return cfg


def load_folder(folder: Path) -> TinyAutoencoder:
    """A TAESD-layout folder (teacher, or a student to continue), through the ``taesd``
    launderer's own loader (``eval_real_photos.load_tae``), frozen and in eval mode."""
    return eval_real_photos.load_tae(folder).eval().requires_grad_(False)


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
    repo_licence = (base.REPO_ROOT / "LICENSE").read_text()

    def fill(tmp: Path) -> None:
        base.save_taesd(student, tmp)
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
    if cfg.freeze_encoder:
        if not cfg.init:
            raise SystemExit("--freeze-encoder needs --init (a trained student to continue)")
        if cfg.minutes_a > 0:
            raise SystemExit("--freeze-encoder trains end to end only: pass --minutes-a 0")
        student.encoder.requires_grad_(False)
    log = base.CurveLog(
        out,
        info,
        student,
        x8[:16],
        base.heldout_pip(bcfg),
        after=lambda: export(student, out / "checkpoint", cfg),  # resumable: --init OUT/checkpoint
    )
    log("init", 0, 0.0, float("nan"))
    gen = torch.Generator().manual_seed(cfg.seed + 1)
    per_stage = torch.zeros(len(STAGES))

    def loss_a() -> torch.Tensor:
        """Every student stage regresses the teacher's activation, from the teacher's input."""
        nonlocal per_stage
        idx = torch.randint(len(x8), (cfg.batch_a,), generator=gen)
        x = base.to_float(sub_crops(x8[idx], cfg.sub_crop, gen))
        acts = teacher_activations(teacher, x)
        losses = []
        with base.autocast():
            for j, mod in enumerate(stage_modules(student)):
                pred = mod(acts[j]).float()
                tgt = acts[j + 1]
                losses.append(F.mse_loss(pred, tgt) / tgt.pow(2).mean().clamp_min(1e-6))
        per_stage += torch.tensor([float(v.detach()) for v in losses])
        return torch.stack(losses).sum()

    def print_stage_losses(k: int) -> None:
        rel = ", ".join(f"{v / k:.4f}" for v in per_stage)
        print(f"stage losses (relative MSE, mean so far): {rel}", flush=True)

    def loss_b() -> torch.Tensor:
        """End to end: pixels, spectrum, colour, latent range, and the teacher's output."""
        x = base.to_float(x8[torch.randint(len(x8), (cfg.batch_b,), generator=gen)])
        y_t = x  # the teacher's forward pass is skipped when its weight is 0
        if cfg.distill_weight > 0:
            with torch.no_grad(), base.autocast():
                y_t = teacher(x).float()
        with base.autocast():
            with torch.set_grad_enabled(not cfg.freeze_encoder):
                z = student.encoder(x)
            y = student.decoder(z).float()
        colour = (y.mean(dim=(2, 3)) - x.mean(dim=(2, 3))).abs().mean()
        return (
            (y - x).abs().mean()
            + F.mse_loss(y, x)
            + cfg.fft_weight * base.fft_l1(y, x)
            + cfg.colour_weight * colour
            + cfg.latent_weight * base.latent_penalty(z)
            + cfg.distill_weight * (y - y_t).abs().mean()
        )

    params = [q for q in student.parameters() if q.requires_grad]
    step = base.run_stage(
        params, "A", cfg.minutes_a, cfg.lr_a, cfg, loss_a, log, 0, on_eval=print_stage_losses
    )
    step = base.run_stage(params, "B", cfg.minutes_b, cfg.lr_b, cfg, loss_b, log, step)
    base.finish(student, x8, log, t0)
    export(student, out / "model", cfg)
    log.write_info()
    print(f"done in {info['total_seconds']} s; model in {out / 'model'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
