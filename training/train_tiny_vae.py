"""Train ``fzoo-tiny-vae``: a small Stable-Diffusion-style KL autoencoder, on CPU, from pip photos.

The model is a diffusers :class:`~diffusers.AutoencoderKL`, the KL-regularised autoencoder of
Rombach et al. 2022, "High-Resolution Image Synthesis with Latent Diffusion Models" (LDM, CVPR
2022), in the configuration family of Stable Diffusion 1.x/2.x/XL: 8x spatial downsampling
(four encoder levels, three downsamplers) and 4 latent channels, or 16 latent channels as in the
SD3/FLUX.1 autoencoders (``--latent-channels 16``). It is made much narrower (default block widths
``(32, 64, 128, 128)``... see ``--blocks``), with one ResNet block per level and no mid-block
attention, so that it trains in about an hour on one CPU core.

Training data: the photographs shipped inside scikit-image, scikit-learn and matplotlib (see
``photos.py``), except the held-out ones (``photos.HOLDOUT``: coffee, china, grace_hopper), which
are never seen in training; the split is by photograph. Random crops with random horizontal flips
and random down-scaling (antialiased bilinear, the only resampling anywhere) give variety.

Loss: L1 + ``--mse`` x MSE on [-1, 1] images + ``--kl`` x KL(q(z|x) || N(0, I)) with the latent
sampled from the posterior (as in LDM); no perceptual or adversarial loss (no pretrained networks
are available offline). AdamW with linear warm-up and a cosine decay driven by wall-clock time,
so the schedule completes whatever the machine speed; the run stops after ``--minutes``.

Every ``--ckpt-every`` steps the script writes ``OUT/latest/`` (``save_pretrained``: config.json +
diffusion_pytorch_model.safetensors), appends a row to ``OUT/curve.csv`` (training-loss average,
PSNR on fixed crops of *training* photos, which selects ``OUT/best/``, and, for monitoring only,
the held-out PSNR) and rewrites ``OUT/train_info.json``. So the best checkpoint is usable even if
the process is stopped.

Run::

    python training/train_tiny_vae.py --out DIR --minutes 70
    python training/train_tiny_vae.py --out DIR --quick      # < 60 s smoke test
    python training/train_tiny_vae.py --calibrate DIR/best   # (re)compute scaling_factor

At the end of a run the latent ``scaling_factor`` of ``OUT/best`` is calibrated on training crops
(see :func:`calibrate_latent_scale`).

It imports the photo catalogue from the installed built-ins (``pip install -e .`` first).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import random
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))  # _common, when run by path
import _common  # noqa: E402

from fzoo_builtins.sd_vae.photos import (  # noqa: E402
    HOLDOUT,
    crop_to_multiple,
    holdout_photos,
    train_photos,
)

CURVE_FIELDS = [
    "step",
    "elapsed_s",
    "lr",
    "train_loss",
    "train_l1",
    "train_crops_psnr",
    "heldout_psnr_mean",
    *[f"heldout_psnr_{n}" for n in HOLDOUT],
]


@dataclass
class Config:
    """Everything that defines a run; written to ``train_info.json``."""

    out: str
    minutes: float = 70.0
    quick: bool = False
    latent_channels: int = 4
    threads: int = 1
    seed: int = 0
    blocks: tuple[int, ...] = (32, 64, 128, 128)
    layers_per_block: int = 1
    norm_groups: int = 16
    mid_attention: bool = False
    crop: int = 64
    batch: int = 16
    lr: float = 1.5e-3
    min_lr_frac: float = 0.02
    warmup_steps: int = 100
    weight_decay: float = 0.0
    mse: float = 0.1
    kl: float = 1e-6
    sample_posterior: bool = True
    logvar_init: float = -6.0
    min_scale: float = 0.5
    p_gray: float = 0.1
    p_channel_shuffle: float = 0.2
    p_native_scale: float = 0.5
    grad_clip: float = 1.0
    ckpt_every: int = 100
    max_steps: int = 0
    init_from: str | None = None
    heldout_max_side: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


def parse_args(argv: list[str] | None = None) -> Config:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, help="output directory (checkpoints, curve.csv)")
    p.add_argument("--minutes", type=float, default=70.0, help="wall-clock budget for training")
    p.add_argument("--quick", action="store_true", help="tiny model, < 60 s; for tests")
    p.add_argument("--latent-channels", type=int, default=4, choices=(4, 16))
    p.add_argument("--threads", type=int, default=1, help="torch.set_num_threads (default 1)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--blocks", default="32,64,128,128", help="block_out_channels, 4 levels")
    p.add_argument("--layers-per-block", type=int, default=1)
    p.add_argument("--norm-groups", type=int, default=16)
    p.add_argument("--mid-attention", action="store_true", help="keep the mid-block attention")
    p.add_argument("--crop", type=int, default=64)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--lr", type=float, default=1.5e-3)
    p.add_argument("--p-gray", type=float, default=0.1, help="share of grayscale-photo crops")
    p.add_argument("--p-channel-shuffle", type=float, default=0.2)
    p.add_argument("--warmup-steps", type=int, default=100)
    p.add_argument("--mse", type=float, default=0.1, help="weight of the MSE term (L1 is 1)")
    p.add_argument("--kl", type=float, default=1e-6, help="weight of the KL term")
    p.add_argument(
        "--no-sample-posterior",
        dest="sample_posterior",
        action="store_false",
        help="decode the posterior mode instead of a sample during training",
    )
    p.add_argument(
        "--logvar-init",
        type=float,
        default=-6.0,
        help="initial bias of the posterior log-variance (small noise at the start of training)",
    )
    p.add_argument("--ckpt-every", type=int, default=100, help="checkpoint + curve period (steps)")
    p.add_argument("--max-steps", type=int, default=0, help="stop after this many steps (0: none)")
    p.add_argument(
        "--init-from",
        help="warm start from a saved model with the same blocks and at most as many latent "
        "channels (function-preserving: its latents become the first channels, see "
        "widen_latents; with equal channels a plain copy, e.g. to continue a stopped run)",
    )
    a = p.parse_args(argv)
    cfg = _common.config_from(Config, a, blocks=tuple(int(c) for c in a.blocks.split(",")))
    if cfg.quick:  # a tiny model and a few steps: a smoke test for CI
        cfg.blocks = (8, 16, 16, 16)
        cfg.norm_groups = 8
        cfg.crop = 32
        cfg.batch = 4
        cfg.warmup_steps = 2
        cfg.ckpt_every = 5
        cfg.max_steps = cfg.max_steps or 10
        cfg.minutes = min(cfg.minutes, 0.5)
        cfg.heldout_max_side = 64
    if len(cfg.blocks) != 4:
        p.error("--blocks needs 4 widths (8x downsampling)")
    return cfg


def build_vae(cfg: Config) -> Any:
    """A narrow SD-style AutoencoderKL (8x downsampling, ``cfg.latent_channels`` latents)."""
    from diffusers import AutoencoderKL

    n = len(cfg.blocks)
    vae: Any = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * n,
        up_block_types=("UpDecoderBlock2D",) * n,
        block_out_channels=cfg.blocks,
        layers_per_block=cfg.layers_per_block,
        act_fn="silu",
        latent_channels=cfg.latent_channels,
        norm_num_groups=cfg.norm_groups,
        sample_size=256,
        mid_block_add_attention=cfg.mid_attention,
    )
    # Start with a small posterior variance: with the default init (log-variance ~ 0) the sampled
    # latent is dominated by unit noise and reconstruction learning stalls for many steps.
    with torch.no_grad():
        vae.quant_conv.bias[cfg.latent_channels :].fill_(cfg.logvar_init)
    return vae


@torch.no_grad()
def widen_latents(vae: Any, small: Any) -> None:
    """Initialise ``vae`` from ``small`` (same blocks, fewer latent channels), preserving function.

    Every layer of identical shape is copied. The latent layers are embedded: the small model's
    k latent channels become channels ``0..k-1`` of the c-channel latent (mean and log-variance
    halves alike); the new channels keep their fresh initialisation in the encoder, while the
    weights by which they reach the small model's channels (in ``quant_conv``,
    ``post_quant_conv``) and the decoder (``decoder.conv_in``) start at zero. So the widened
    model reconstructs exactly like the small one at step 0, and training teaches the extra
    channels the residual detail.
    """
    k, c = small.config.latent_channels, vae.config.latent_channels
    if k > c:
        raise ValueError(f"cannot narrow latents from {k} to {c}")
    src = small.state_dict()
    dst = vae.state_dict()
    # positions of the small model's (mean, logvar) channels inside the 2c-channel moments
    moments = torch.tensor([*range(k), *range(c, c + k)])
    for name, w in dst.items():
        v = src[name]
        if v.shape == w.shape:
            w.copy_(v)
        elif name.startswith("encoder.conv_out."):
            w[moments] = v
        elif name == "quant_conv.weight":
            w[moments] = 0.0
            w[moments[:, None], moments[None, :]] = v
        elif name == "quant_conv.bias":
            w[moments] = v
        elif name == "post_quant_conv.weight":
            w[:k] = 0.0
            w[:k, :k] = v
        elif name == "post_quant_conv.bias":
            w[:k] = v
        elif name == "decoder.conv_in.weight":
            w.zero_()
            w[:, :k] = v
        else:
            raise ValueError(f"{name}: cannot map {tuple(v.shape)} onto {tuple(w.shape)}")


def to_tensor(img: np.ndarray) -> torch.Tensor:
    """``(H, W, 3)`` uint8 -> ``(1, 3, H, W)`` float in [-1, 1]."""
    t = torch.from_numpy(np.array(img, dtype=np.uint8, copy=True)).permute(2, 0, 1).float()
    return (t / 127.5 - 1.0).unsqueeze(0)


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """[-1, 1] float -> 8-bit values (as float), after clamping."""
    return torch.round((x.clamp(-1, 1) + 1.0) * 127.5)


def psnr_uint8(a: torch.Tensor, b: torch.Tensor) -> float:
    """PSNR in dB between two tensors of 8-bit values."""
    return _common.psnr_from_mse(torch.mean((a.double() - b.double()) ** 2).item())


@torch.no_grad()
def round_trip(vae: Any, x: torch.Tensor) -> torch.Tensor:
    """``decode(encode(x).latent_dist.mode())`` for x in [-1, 1]."""
    z = vae.encode(x).latent_dist.mode()
    return vae.decode(z).sample


class CropSampler:
    """Random crops of the training photos: photo, scale, position, flip, channel order.

    Colour photos are drawn uniformly; the grayscale ones (replicated to RGB) together only with
    probability ``cfg.p_gray``, so that the model learns colour. With probability
    ``cfg.p_channel_shuffle`` the RGB channels of a crop are permuted (more colour variety from
    few photos).
    """

    def __init__(
        self, images: list[np.ndarray], cfg: Config, seed: int, gray: list[bool] | None = None
    ) -> None:
        self.images = [to_tensor(im)[0] for im in images]
        flags = gray if gray is not None else [False] * len(images)
        self.colour = [i for i, g in enumerate(flags) if not g]
        self.gray = [i for i, g in enumerate(flags) if g]
        self.cfg = cfg
        self.rng = random.Random(seed)

    def crop(self) -> torch.Tensor:
        cfg, rng = self.cfg, self.rng
        use_gray = self.gray and (not self.colour or rng.random() < cfg.p_gray)
        img = self.images[rng.choice(self.gray if use_gray else self.colour)]
        _, h, w = img.shape
        scale = 1.0
        if rng.random() >= cfg.p_native_scale:
            scale = rng.uniform(cfg.min_scale, 1.0)
        side = min(int(round(cfg.crop / scale)), h, w)
        top, left = rng.randrange(h - side + 1), rng.randrange(w - side + 1)
        patch = img[:, top : top + side, left : left + side]
        if side != cfg.crop:
            patch = F.interpolate(
                patch[None], size=(cfg.crop, cfg.crop), mode="bilinear", antialias=True
            )[0]
        if rng.random() < 0.5:
            patch = patch.flip(-1)
        if rng.random() < cfg.p_channel_shuffle:
            order = [0, 1, 2]
            rng.shuffle(order)
            patch = patch[order]
        return patch

    def batch(self, n: int) -> torch.Tensor:
        return torch.stack([self.crop() for _ in range(n)]).clamp_(-1, 1)


def lr_at(cfg: Config, step: int, frac_time: float) -> float:
    """Linear warm-up over steps, then cosine decay over the wall-clock budget."""
    return _common.lr_at(cfg.lr, cfg.warmup_steps, cfg.min_lr_frac, step, frac_time)


def save_checkpoint(vae: Any, dest: Path) -> None:
    """``save_pretrained`` into a temporary directory, then swap it in."""
    _common.swap_in(dest, lambda tmp: vae.save_pretrained(tmp, safe_serialization=True))


@torch.no_grad()
def calibrate_latent_scale(directory: Path, seed: int = 0, n_crops: int = 64) -> dict[str, float]:
    """Set ``scaling_factor`` (and for 16 channels ``shift_factor``) in a saved model's config.

    Statistics of the posterior mode over fixed 128x128 crops of the *training* photos.
    4-channel models follow the SD 1.x/2.x/XL convention (``z * scaling_factor``, scaling =
    1 / RMS); 16-channel models the SD3/FLUX one (``(z - shift_factor) * scaling_factor``,
    scaling = 1 / std). Only config.json is rewritten; the weights file is unchanged.
    """
    from diffusers import AutoencoderKL

    vae = AutoencoderKL.from_pretrained(str(directory), torch_dtype=torch.float32).eval()
    cfg = Config(out="", crop=128, p_native_scale=1.0, p_channel_shuffle=0.0)
    photos = train_photos()
    crops = CropSampler(
        [p.image for p in photos], cfg, seed=seed + 777, gray=[p.grayscale for p in photos]
    ).batch(n_crops)
    z = torch.cat([vae.encode(crops[i : i + 8]).latent_dist.mode() for i in range(0, n_crops, 8)])
    if vae.config.latent_channels >= 16:
        shift = float(z.mean())
        scale = 1.0 / float((z - shift).std())
        vae.register_to_config(scaling_factor=scale, shift_factor=shift)
        stats = {"scaling_factor": scale, "shift_factor": shift}
    else:
        scale = 1.0 / float(z.pow(2).mean().sqrt())
        vae.register_to_config(scaling_factor=scale)
        stats = {"scaling_factor": scale}
    cfg_path = Path(directory) / "config.json"
    conf = json.loads(cfg_path.read_text())
    conf.update(stats)
    cfg_path.write_text(json.dumps(conf, indent=2, sort_keys=True) + "\n")
    return stats


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["--calibrate"]:  # python train_tiny_vae.py --calibrate DIR
        torch.set_num_threads(1)
        print(calibrate_latent_scale(Path(args[1])))
        return 0
    cfg = parse_args(argv)
    torch.set_num_threads(max(1, cfg.threads))
    random.seed(cfg.seed)
    np.random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.time()
    budget_s = cfg.minutes * 60.0

    train = train_photos()
    held = holdout_photos()
    assert not {p.name for p in train} & set(HOLDOUT), "held-out photo in the training set"
    gray = [p.grayscale for p in train]
    sampler = CropSampler([p.image for p in train], cfg, seed=cfg.seed, gray=gray)
    # fixed crops of *training* photos: used to pick the best checkpoint (never the held-out set)
    mon_cfg = Config(out="", crop=max(cfg.crop, 64 if cfg.quick else 128), p_native_scale=1.0)
    mon_cfg.p_channel_shuffle = 0.0
    monitor = CropSampler([p.image for p in train], mon_cfg, seed=12345, gray=gray).batch(
        4 if cfg.quick else 16
    )
    held_x = []
    for p in held:
        im = crop_to_multiple(p.image, 8)
        if cfg.heldout_max_side:  # quick mode: a centre crop, never a resize
            h, w = im.shape[:2]
            ch, cw = min(h, cfg.heldout_max_side), min(w, cfg.heldout_max_side)
            top, left = (h - ch) // 2, (w - cw) // 2
            im = im[top : top + ch, left : left + cw]
        held_x.append(to_tensor(im))

    vae = build_vae(cfg)
    if cfg.init_from:
        from diffusers import AutoencoderKL

        small = AutoencoderKL.from_pretrained(cfg.init_from, torch_dtype=torch.float32)
        if tuple(small.config.block_out_channels) != tuple(cfg.blocks):
            raise SystemExit(f"--init-from {cfg.init_from}: blocks differ from --blocks")
        widen_latents(vae, small)
        del small
    n_params = sum(p.numel() for p in vae.parameters())
    print(f"params {n_params} ({n_params / 1e6:.2f} M), config {asdict(cfg)}", flush=True)
    opt = torch.optim.AdamW(
        vae.parameters(), lr=cfg.lr, betas=(0.9, 0.99), weight_decay=cfg.weight_decay
    )
    gen = torch.Generator().manual_seed(cfg.seed + 1)

    curve_path = out / "curve.csv"
    with curve_path.open("w", newline="") as fh:
        csv.writer(fh).writerow(CURVE_FIELDS)

    best = -1.0
    info: dict[str, Any] = {
        "model": "fzoo-tiny-vae" + ("-16ch" if cfg.latent_channels == 16 else ""),
        "config": asdict(cfg),
        "params": n_params,
        "train_photos": [p.name for p in train],
        "holdout_photos": list(HOLDOUT),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "command": " ".join(
            [Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])]
        ),
    }
    acc_loss = acc_l1 = 0.0
    acc_n = 0
    step = 0
    t_train0 = time.time()

    def evaluate_and_save(final: bool = False) -> None:
        nonlocal best, acc_loss, acc_l1, acc_n
        vae.eval()
        with torch.no_grad():
            mon_psnr = psnr_uint8(to_uint8(round_trip(vae, monitor)), to_uint8(monitor))
            held_psnr = [psnr_uint8(to_uint8(round_trip(vae, x)), to_uint8(x)) for x in held_x]
        vae.train()
        elapsed = time.time() - t_train0
        row = [
            step,
            f"{elapsed:.1f}",
            f"{lr_at(cfg, step, elapsed / budget_s):.6g}",
            f"{acc_loss / max(acc_n, 1):.6f}",
            f"{acc_l1 / max(acc_n, 1):.6f}",
            f"{mon_psnr:.3f}",
            f"{float(np.mean(held_psnr)):.3f}",
            *[f"{v:.3f}" for v in held_psnr],
        ]
        with curve_path.open("a", newline="") as fh:
            csv.writer(fh).writerow(row)
        acc_loss = acc_l1 = 0.0
        acc_n = 0
        save_checkpoint(vae, out / "latest")
        if mon_psnr > best:
            best = mon_psnr
            save_checkpoint(vae, out / "best")
            info["best"] = {"step": step, "train_crops_psnr": mon_psnr, "elapsed_s": elapsed}
        info.update(
            steps=step,
            train_wall_s=round(elapsed, 1),
            total_wall_s=round(time.time() - t_start, 1),
            finished=final,
            last_row=dict(zip(CURVE_FIELDS, row, strict=True)),
        )
        (out / "train_info.json").write_text(json.dumps(info, indent=2) + "\n")
        print(" ".join(f"{k}={v}" for k, v in zip(CURVE_FIELDS, row, strict=True)), flush=True)

    evaluate_and_save()
    vae.train()
    while True:
        elapsed = time.time() - t_train0
        if elapsed >= budget_s or (cfg.max_steps and step >= cfg.max_steps):
            break
        lr = lr_at(cfg, step, elapsed / budget_s)
        for g in opt.param_groups:
            g["lr"] = lr
        x = sampler.batch(cfg.batch)
        post = vae.encode(x).latent_dist
        if cfg.sample_posterior:
            z = post.mean + post.std * torch.randn(post.mean.shape, generator=gen)
        else:
            z = post.mode()
        rec = vae.decode(z).sample
        l1 = (rec - x).abs().mean()
        loss = l1 + cfg.mse * F.mse_loss(rec, x) + cfg.kl * post.kl().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip:
            torch.nn.utils.clip_grad_norm_(vae.parameters(), cfg.grad_clip)
        opt.step()
        step += 1
        acc_loss += loss.item()
        acc_l1 += l1.item()
        acc_n += 1
        if step % cfg.ckpt_every == 0:
            evaluate_and_save()
    if step % cfg.ckpt_every != 0 or step == 0:
        evaluate_and_save(final=True)
    else:
        info["finished"] = True
    info["latent_scale"] = calibrate_latent_scale(out / "best", seed=cfg.seed)
    (out / "train_info.json").write_text(json.dumps(info, indent=2) + "\n")
    print(f"done: {step} steps in {time.time() - t_train0:.0f} s; best {info['best']}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
