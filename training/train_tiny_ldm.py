"""Train ``tiny-ldm``: a small latent diffusion UNet on an autoencoder's latents, on CPU.

The autoencoder is a diffusers ``AutoencoderKL`` folder (``fzoo-tiny-vae``: the bundled
``tiny-ldm``) or a TAESD-family one (``fzoo-tae-4ch``: the bundled ``tiny-ldm-tae4ch``), told
apart by the folder's layout or named by ``--vae-kind``; see
``fzoo_builtins.generators.autoencoders``.

Recipe (Rombach et al. 2022, "High-Resolution Image Synthesis with Latent Diffusion Models", at
toy scale): random crops (64 or 96 px, i.e. 8x8 or 12x12 latents for an 8x autoencoder) of the
*training* photographs of ``fzoo_builtins.sd_vae.photos`` (never ``photos.HOLDOUT``), with random
horizontal flips and, with probability 1 - ``p_native``, a random down-scale in
[``min_scale``, 1] (antialiased bilinear, as in the VAE's training) are encoded once by the
autoencoder (KL: posterior mode; TAESD: its deterministic encoder; ``--encode-dtype bfloat16``
runs that encoding under bf16 autocast, about half the CPU time) and cached. The latents are
standardised, ``(z - shift_factor) * scaling_factor`` with the mean and 1 / std of the cached
latents (SD's 0.18215 was 1 / std of its latents), and a diffusers
``UNet2DModel`` is trained with the DDPM noise-prediction (epsilon) loss of Ho et al. 2020 on
Stable Diffusion's scaled-linear schedule (1000 steps, betas 0.00085..0.012); samples use DDIM
(Song et al. 2021). AdamW with linear warm-up and a cosine decay driven by wall-clock time; an
EMA of the weights is what gets saved. The run stops after ``--minutes`` (cache building
included).

Every ``--ckpt-every`` steps the script appends a row to ``OUT/curve.csv`` (mean training loss
since the last row, and the EMA model's loss on a fixed set of latents, noises and timesteps) and
writes ``OUT/model/`` (``unet/``, ``scheduler/``, ``fzoo.json``, ``SHA256SUMS``), usable at once
(``fzoo.json`` records the autoencoder's kind, name and the sha256 of its weight files, and the
latent ``scaling_factor`` / ``shift_factor`` measured on the cached latents)::

    fzoo.create_component("generator", "tiny-ldm", weights="OUT/model", vae="VAE_DIR")

Commands::

    python training/train_tiny_ldm.py --vae DIR --out DIR --minutes 35
    python training/train_tiny_ldm.py --vae DIR --out DIR --quick   # < 60 s
    python training/train_tiny_ldm.py export OUT/model DEST [--fp32]
    python training/train_tiny_ldm.py card --weights DEST --run OUT --docs DIR [--name NAME]
    python training/train_tiny_ldm.py repin MODEL --vae DIR --why "..."

``export`` copies a model folder for bundling (UNet in float16 unless ``--fp32``) and writes its
SHA256SUMS; ``card`` draws the loss curve and the sample grid of the model card
(``DIR/NAME-loss.{csv,png}``, ``DIR/NAME-samples.png``; NAME defaults to ``tiny-ldm``).
``repin`` moves a trained model onto a new *decoder* of its autoencoder: the UNet was trained
on the encoder's latents only, so when the encoder's file is byte-identical (a decoder
fine-tuned with the encoder frozen: ``distill_tae_4ch.py --freeze-encoder``) the model stays
valid; ``fzoo.json`` gets the new decoder's sha256 and keeps the old one, with ``--why``, under
``vae.decoder_history``. A changed encoder is refused: that needs a retrain.
"""

from __future__ import annotations

import argparse
import copy
import csv
import json
import os
import platform
import random
import shutil
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))  # _common, when run by path
import _common  # noqa: E402

import fzoo  # noqa: E402
from fzoo_builtins.generators import autoencoders  # noqa: E402
from fzoo_builtins.generators.tiny_ldm import (  # noqa: E402
    FORMAT,
    FORMAT_VERSION,
    load_model,
    scheduler_config,
)

CURVE_FIELDS = ["step", "elapsed_s", "lr", "train_loss", "eval_loss_ema"]


@dataclass
class Config:
    """Everything that defines a run; written to ``train_info.json`` and ``fzoo.json``."""

    vae: str
    out: str
    vae_kind: str = "auto"
    encode_dtype: str = "float32"
    minutes: float = 35.0
    quick: bool = False
    threads: int = 1
    seed: int = 0
    blocks: tuple[int, ...] = (48, 96, 96)
    layers_per_block: int = 1
    attention: bool = True
    norm_groups: int = 16
    crops: tuple[int, ...] = (64, 96)
    n_latents: tuple[int, ...] = (6144, 2048)
    p_large: float = 0.2
    gray_frac: float = 0.2
    p_native: float = 0.5
    min_scale: float = 0.5
    batch: int = 64
    lr: float = 5e-4
    min_lr_frac: float = 0.1
    warmup_steps: int = 200
    weight_decay: float = 0.01
    ema: float = 0.999
    grad_clip: float = 1.0
    ckpt_every: int = 200
    max_steps: int = 0
    n_eval: int = 256


def parse_args(argv: list[str] | None = None) -> Config:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    p.add_argument(
        "--vae",
        required=True,
        help="autoencoder folder: diffusers AutoencoderKL (fzoo-tiny-vae) or TAESD family "
        "(fzoo-tae-4ch: *_encoder/*_decoder.safetensors)",
    )
    p.add_argument(
        "--vae-kind",
        choices=("auto", *autoencoders.KINDS),
        default="auto",
        help="autoencoder family (auto: from the folder's layout)",
    )
    p.add_argument(
        "--encode-dtype",
        choices=("float32", "bfloat16"),
        default="float32",
        help="dtype of the one-off encoding of the training crops (bfloat16: autocast, ~2x faster)",
    )
    p.add_argument("--out", required=True, help="output folder (model/, curve.csv, latents)")
    p.add_argument("--minutes", type=float, default=35.0, help="wall-clock budget of the run")
    p.add_argument("--quick", action="store_true", help="tiny UNet, a few steps: < 60 s, for tests")
    p.add_argument("--threads", type=int, default=1, help="torch.set_num_threads (default 1)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--blocks", default="48,96,96", help="UNet block_out_channels")
    p.add_argument("--no-attention", dest="attention", action="store_false")
    p.add_argument("--batch", type=int, default=64, help="batch of 8x8 latents")
    p.add_argument("--lr", type=float, default=5e-4)
    p.add_argument("--ema", type=float, default=0.999, help="EMA decay of the saved weights")
    p.add_argument("--n-latents", default="6144,2048", help="cached crops of 64 and 96 px")
    p.add_argument("--gray-frac", type=float, default=0.2, help="share of grayscale-photo crops")
    p.add_argument("--ckpt-every", type=int, default=200, help="checkpoint + curve period")
    p.add_argument("--max-steps", type=int, default=0, help="stop after this many steps (0: none)")
    a = p.parse_args(argv)
    cfg = _common.config_from(
        Config,
        a,
        blocks=tuple(int(c) for c in a.blocks.split(",")),
        n_latents=tuple(int(c) for c in a.n_latents.split(",")),
    )
    if cfg.quick:  # a tiny UNet and a few steps: a smoke test
        cfg.blocks = (16, 32)
        cfg.norm_groups = 8
        cfg.attention = False
        cfg.crops = (64,)
        cfg.n_latents = (24,)
        cfg.batch = 8
        cfg.warmup_steps = 2
        cfg.ckpt_every = 4
        cfg.max_steps = cfg.max_steps or 8
        cfg.minutes = min(cfg.minutes, 0.75)
        cfg.n_eval = 8
    if len(cfg.n_latents) != len(cfg.crops):
        p.error(f"--n-latents needs {len(cfg.crops)} counts (one per crop size {cfg.crops})")
    return cfg


def build_unet(cfg: Config, latent_channels: int, sample_size: int) -> Any:
    """A small UNet2DModel; self-attention only at the lowest resolution (and the mid block)."""
    from diffusers import UNet2DModel

    n = len(cfg.blocks)
    down = ["DownBlock2D"] * n
    up = ["UpBlock2D"] * n
    if cfg.attention:
        down[-1], up[0] = "AttnDownBlock2D", "AttnUpBlock2D"
    return UNet2DModel(
        sample_size=sample_size,
        in_channels=latent_channels,
        out_channels=latent_channels,
        block_out_channels=cfg.blocks,
        layers_per_block=cfg.layers_per_block,
        down_block_types=tuple(down),
        up_block_types=tuple(up),
        norm_num_groups=cfg.norm_groups,
        attention_head_dim=32,
        add_attention=cfg.attention,
    )


def load_vae(path: str, kind: str = "auto") -> tuple[autoencoders.Autoencoder, Path, dict]:
    """The autoencoder at ``path``, its folder and what ``fzoo.json`` records about it."""
    resolved = fzoo.resolve_weights(path, param="vae").path
    ident = autoencoders.identify(resolved, None if kind == "auto" else kind)
    ae = autoencoders.load(resolved, ident["kind"])
    return ae, resolved, ident


def _photo_tensor(img: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.array(img, dtype=np.uint8, copy=True)).permute(2, 0, 1).float()


def sample_crops(cfg: Config, size: int, n: int, seed: int) -> tuple[torch.Tensor, list[str]]:
    """``n`` random ``size`` x ``size`` training crops in [-1, 1] and the photo each came from."""
    from fzoo_builtins.sd_vae.photos import HOLDOUT, TRAIN_COLOUR, TRAIN_GRAY, load_photos

    assert not set(TRAIN_COLOUR + TRAIN_GRAY) & set(HOLDOUT), "held-out photo in training set"
    colour = [(p.name, _photo_tensor(p.image)) for p in load_photos(TRAIN_COLOUR)]
    gray = [(p.name, _photo_tensor(p.image)) for p in load_photos(TRAIN_GRAY)]
    rng = random.Random(seed)
    crops, names = [], []
    for _ in range(n):
        pool = gray if gray and rng.random() < cfg.gray_frac else colour
        name, img = pool[rng.randrange(len(pool))]
        _, h, w = img.shape
        scale = 1.0 if rng.random() < cfg.p_native else rng.uniform(cfg.min_scale, 1.0)
        side = min(int(round(size / scale)), h, w)
        top, left = rng.randrange(h - side + 1), rng.randrange(w - side + 1)
        patch = img[:, top : top + side, left : left + side]
        if side != size:
            patch = F.interpolate(patch[None], size=(size, size), mode="bilinear", antialias=True)[
                0
            ]
        if rng.random() < 0.5:
            patch = patch.flip(-1)
        crops.append((patch / 127.5 - 1.0).clamp(-1.0, 1.0))
        names.append(name)
    return torch.stack(crops), names


@torch.no_grad()
def encode_cache(
    cfg: Config, ae: autoencoders.Autoencoder, vae_sha: Any, out: Path
) -> dict[int, torch.Tensor]:
    """Encode the training crops once; reused from ``OUT/latents-*.pt``."""
    key = {
        "vae_sha256": vae_sha,
        "encode_dtype": cfg.encode_dtype,
        "crops": list(cfg.crops),
        "n": list(cfg.n_latents),
        "seed": cfg.seed,
        "gray_frac": cfg.gray_frac,
        "p_native": cfg.p_native,
        "min_scale": cfg.min_scale,
    }
    path = out / f"latents-{fzoo.stable_hash(key, 12)}.pt"
    if path.exists():
        saved = torch.load(path, weights_only=True)
        print(f"latent cache reused: {path}", flush=True)
        return {int(k): v for k, v in saved.items()}
    cache: dict[int, torch.Tensor] = {}
    for i, (size, n) in enumerate(zip(cfg.crops, cfg.n_latents, strict=True)):
        t0 = time.time()
        crops, _ = sample_crops(cfg, size, n, seed=cfg.seed * 1000 + i)
        cache[size] = torch.cat(
            [_encode(cfg, ae, (crops[j : j + 32] + 1.0) / 2.0) for j in range(0, n, 32)]
        )
        print(f"encoded {n} crops of {size} px in {time.time() - t0:.1f} s", flush=True)
    torch.save({str(k): v for k, v in cache.items()}, path)
    return cache


def _encode(cfg: Config, ae: autoencoders.Autoencoder, x01: torch.Tensor) -> torch.Tensor:
    if cfg.encode_dtype == "float32":
        return ae.encode(x01).float()
    with torch.autocast("cpu", dtype=getattr(torch, cfg.encode_dtype)):
        return ae.encode(x01).float()


def lr_at(cfg: Config, step: int, frac_time: float) -> float:
    """Linear warm-up over steps, then cosine decay over the wall-clock budget."""
    return _common.lr_at(cfg.lr, cfg.warmup_steps, cfg.min_lr_frac, step, frac_time)


write_sums = _common.write_sums


def save_model(unet: Any, index: dict[str, Any], dest: Path) -> None:
    """Write ``dest/{unet,scheduler,fzoo.json,SHA256SUMS}`` via a temporary folder."""
    from diffusers import DDIMScheduler

    def fill(tmp: Path) -> None:
        unet.save_pretrained(tmp / "unet", safe_serialization=True)
        DDIMScheduler(**scheduler_config()).save_pretrained(tmp / "scheduler")
        (tmp / "fzoo.json").write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")
        write_sums(tmp)

    _common.swap_in(dest, fill)


def train(cfg: Config) -> dict[str, Any]:
    from diffusers import DDPMScheduler

    t_start = time.time()
    budget_s = cfg.minutes * 60.0
    torch.set_num_threads(max(1, cfg.threads))
    random.seed(cfg.seed)
    np.random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)

    ae, vae_dir, ident = load_vae(cfg.vae, cfg.vae_kind)
    factor, channels = ae.factor, ae.channels
    cache = encode_cache(cfg, ae, ident["sha256"], out)
    del ae
    every = torch.cat([z.flatten() for z in cache.values()])
    shift = float(every.mean())
    scale = 1.0 / float((every - shift).std())
    per_channel = torch.cat([z.transpose(0, 1).flatten(1) for z in cache.values()], dim=1)
    print(f"latents: shift {shift:.4f}, scaling_factor {scale:.4f}, per-channel std "
          f"{[round(float(s), 3) for s in per_channel.std(dim=1)]}", flush=True)  # fmt: skip
    data = {size: (z - shift) * scale for size, z in cache.items()}
    small = min(cfg.crops)

    unet = build_unet(cfg, channels, small // factor)
    ema = copy.deepcopy(unet).eval().requires_grad_(False)
    n_params = sum(p.numel() for p in unet.parameters())
    print(f"UNet params {n_params} ({n_params / 1e6:.2f} M); config {asdict(cfg)}", flush=True)
    noise_sched = DDPMScheduler(
        **{k: v for k, v in scheduler_config().items() if k not in ("set_alpha_to_one",)}
    )
    n_train_t = noise_sched.config.num_train_timesteps
    opt = torch.optim.AdamW(
        unet.parameters(), lr=cfg.lr, betas=(0.9, 0.999), weight_decay=cfg.weight_decay
    )
    gen = torch.Generator().manual_seed(cfg.seed + 1)
    eval_gen = torch.Generator().manual_seed(cfg.seed + 2)
    z_eval = data[small][: cfg.n_eval]
    eval_noise = torch.randn(z_eval.shape, generator=eval_gen)
    eval_t = torch.randint(0, n_train_t, (z_eval.shape[0],), generator=eval_gen)
    batches = {size: max(1, cfg.batch * small * small // (size * size)) for size in cfg.crops}

    index: dict[str, Any] = {
        "_class_name": "TinyLDM",
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "unet": "unet",
        "scheduler": "scheduler",
        "vae": {"name": Path(vae_dir).name, **ident},
        "latent_channels": channels,
        "vae_factor": factor,
        "scaling_factor": scale,
        "shift_factor": shift,
        "sample_size": small,
        "prediction_type": "epsilon",
    }
    info: dict[str, Any] = {
        "model": "tiny-ldm",
        "config": asdict(cfg),
        "unet_params": n_params,
        "vae": {"path": str(vae_dir), **ident},
        "latents": {s: int(z.shape[0]) for s, z in cache.items()},
        "scaling_factor": scale,
        "shift_factor": shift,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "command": "python training/train_tiny_ldm.py "
        + " ".join(sys.argv[1:] if Path(sys.argv[0]).stem == "train_tiny_ldm" else []),
    }
    curve_path = out / "curve.csv"
    with curve_path.open("w", newline="") as fh:
        csv.writer(fh).writerow(CURVE_FIELDS)

    step = 0
    acc, acc_n = 0.0, 0
    t_train0 = time.time()
    cache_s = t_train0 - t_start
    info["cache_s"] = round(cache_s, 1)

    last_ckpt = -1

    def checkpoint(final: bool = False) -> None:
        nonlocal acc, acc_n, last_ckpt
        last_ckpt = step
        with torch.no_grad():
            noisy = noise_sched.add_noise(z_eval, eval_noise, eval_t)
            eval_loss = float(F.mse_loss(ema(noisy, eval_t).sample, eval_noise))
        elapsed = time.time() - t_start
        row = [
            step,
            f"{elapsed:.1f}",
            f"{lr_at(cfg, step, elapsed / budget_s):.6g}",
            f"{acc / max(acc_n, 1):.6f}" if acc_n else "",
            f"{eval_loss:.6f}",
        ]
        with curve_path.open("a", newline="") as fh:
            csv.writer(fh).writerow(row)
        acc, acc_n = 0.0, 0
        index["training"] = {"steps": step, "wall_s": round(elapsed, 1), "eval_loss": eval_loss}
        save_model(ema, index, out / "model")
        info.update(
            steps=step,
            total_wall_s=round(elapsed, 1),
            train_wall_s=round(time.time() - t_train0, 1),
            finished=final,
            last_row=dict(zip(CURVE_FIELDS, row, strict=True)),
        )
        (out / "train_info.json").write_text(json.dumps(info, indent=2) + "\n")
        print(" ".join(f"{k}={v}" for k, v in zip(CURVE_FIELDS, row, strict=True)), flush=True)

    checkpoint()
    unet.train()
    sizes = sorted(cfg.crops)
    while True:
        elapsed = time.time() - t_start
        if elapsed >= budget_s or (cfg.max_steps and step >= cfg.max_steps):
            break
        lr = lr_at(cfg, step, elapsed / budget_s)
        for group in opt.param_groups:
            group["lr"] = lr
        size = sizes[-1] if len(sizes) > 1 and random.random() < cfg.p_large else sizes[0]
        pool = data[size]
        idx = torch.randint(0, pool.shape[0], (batches[size],), generator=gen)
        z0 = pool[idx]
        noise = torch.randn(z0.shape, generator=gen)
        t = torch.randint(0, n_train_t, (z0.shape[0],), generator=gen)
        pred = unet(noise_sched.add_noise(z0, noise, t), t).sample
        loss = F.mse_loss(pred, noise)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip:
            torch.nn.utils.clip_grad_norm_(unet.parameters(), cfg.grad_clip)
        opt.step()
        step += 1
        decay = min(cfg.ema, (1.0 + step) / (10.0 + step))
        with torch.no_grad():
            for pe, pm in zip(ema.parameters(), unet.parameters(), strict=True):
                pe.lerp_(pm, 1.0 - decay)
        acc += loss.item()
        acc_n += 1
        if step % cfg.ckpt_every == 0:
            checkpoint()
    if step != last_ckpt or step == 0:
        checkpoint(final=True)
    else:
        info["finished"] = True
        (out / "train_info.json").write_text(json.dumps(info, indent=2) + "\n")
    print(f"done: {step} steps in {time.time() - t_start:.0f} s -> {out / 'model'}", flush=True)
    return info


def export(src: Path, dest: Path, fp16: bool = True) -> None:
    """Copy a trained model folder to ``dest`` (UNet weights in float16 unless ``fp16=False``),
    then write ``dest/SHA256SUMS``."""
    from diffusers import UNet2DModel

    index = json.loads((src / "fzoo.json").read_text())
    dtype = torch.float16 if fp16 else torch.float32
    unet = load_model(UNet2DModel, src / "unet", dtype=dtype)
    tmp = dest.with_name(dest.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    unet.save_pretrained(tmp / "unet", safe_serialization=True)
    shutil.copytree(src / "scheduler", tmp / "scheduler")
    index["unet_dtype"] = str(dtype).removeprefix("torch.")
    (tmp / "fzoo.json").write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")
    write_sums(tmp)
    for q in tmp.rglob("*"):
        q.chmod(0o755 if q.is_dir() else 0o644)
    if dest.exists():
        shutil.rmtree(dest)
    tmp.rename(dest)
    size = sum(q.stat().st_size for q in dest.rglob("*") if q.is_file())
    print(f"exported {src} -> {dest} ({size / 1e6:.2f} MB)")


def repin(model: Path, vae: str, why: str) -> dict[str, Any]:
    """Record the decoder of ``vae`` in ``model/fzoo.json`` when its encoder is the one the
    model was trained on (see the module docstring); rewrites ``model/SHA256SUMS``."""
    index = json.loads((model / "fzoo.json").read_text())
    kind, old = autoencoders.recorded(index)
    if set(old) != {"encoder", "decoder"}:
        raise SystemExit(
            f"{model}: its autoencoder ({kind}) keeps encoder and decoder in one file; "
            "only a TAESD-layout pair can take a new decoder"
        )
    resolved = fzoo.resolve_weights(vae, param="vae").path
    new = autoencoders.identify(resolved, kind)
    if new["sha256"]["encoder"] != old["encoder"]:
        raise SystemExit(
            f"{resolved}: its encoder ({new['sha256']['encoder'][:12]}...) is not the one "
            f"{model} was trained on ({old['encoder'][:12]}...): the latents differ, retrain"
        )
    if new["sha256"]["decoder"] == old["decoder"]:
        print(f"{model}: already on decoder {old['decoder'][:12]}...")
        return index
    history = list(index["vae"].get("decoder_history", []))
    history.append({"sha256": old["decoder"], "replaced": time.strftime("%Y-%m-%d"), "why": why})
    index["vae"]["sha256"] = dict(new["sha256"])
    index["vae"]["decoder_history"] = history
    (model / "fzoo.json").write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")
    write_sums(model)
    print(f"{model}: decoder {old['decoder'][:12]}... -> {new['sha256']['decoder'][:12]}...")
    return index


def _tiles(batch: torch.Tensor) -> list[np.ndarray]:
    return [np.round(im.permute(1, 2, 0).numpy() * 255).astype(np.uint8) for im in batch]


def card(
    weights: Path,
    run: Path,
    docs: Path,
    vae: str | None = None,
    steps: int = 25,
    name: str = "tiny-ldm",
) -> None:
    """Model-card assets: ``{name}-loss.{csv,png}`` and ``{name}-samples.png`` (16 samples from
    noise; 8 crops of the held-out photos with their autoencoder round trip and img2img at
    strength 0.5 and 0.75), all 64 x 64, shown enlarged x2 (nearest neighbour)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from PIL import Image, ImageDraw

    from fzoo_builtins.generators.tiny_ldm import TinyLDM
    from fzoo_builtins.sd_vae.photos import crop_to_multiple, holdout_photos

    docs.mkdir(parents=True, exist_ok=True)
    rows = list(csv.DictReader((run / "curve.csv").open()))
    shutil.copyfile(run / "curve.csv", docs / f"{name}-loss.csv")
    fig, ax = plt.subplots(figsize=(6, 3.2), dpi=110)
    tr = [(int(r["step"]), float(r["train_loss"])) for r in rows if r["train_loss"]]
    ev = [(int(r["step"]), float(r["eval_loss_ema"])) for r in rows]
    if tr:
        ax.plot(*zip(*tr, strict=True), label="train loss (mean since last point)")
    ax.plot(*zip(*ev, strict=True), label="EMA model, fixed eval latents")
    ax.set_xlabel("step")
    ax.set_ylabel("epsilon MSE")
    ax.set_ylim(0, max(0.6, min(1.2, max(v for _, v in ev[1:] or ev))))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(docs / f"{name}-loss.png")
    plt.close(fig)

    params: dict[str, Any] = {"weights": str(weights), "steps": steps}
    if vae is not None:
        params["vae"] = vae
    gen = TinyLDM(**params)
    samples = _tiles(gen.generate(16, seed=0))
    rng = np.random.default_rng(0)
    originals = []
    for k in range(8):
        img = crop_to_multiple(holdout_photos()[k % 3].image, 8)
        h, w = img.shape[:2]
        y, x = int(rng.integers(0, h - 64)), int(rng.integers(0, w - 64))
        originals.append(img[y : y + 64, x : x + 64])
    batch = torch.stack(
        [torch.from_numpy(o.copy()).permute(2, 0, 1).float() / 255 for o in originals]
    )
    strengths = (0.0, 0.5, 0.75)
    i2i = {s: _tiles(TinyLDM(**params, strength=s).img2img(batch, seed=0)) for s in strengths}

    z, pad, head = 2, 4, 16  # nearest-neighbour x2 for viewing only
    tile = 64 * z + pad
    x0 = 2 * tile + 24
    canvas = Image.new("RGB", (x0 + 4 * tile, head + 8 * tile), "white")
    draw = ImageDraw.Draw(canvas)
    draw.text((2, 2), f"16 from noise (DDIM {steps})", fill="black")
    for c, title in enumerate(("held-out crop", "s=0 (AE)", "img2img s=0.5", "img2img s=0.75")):
        draw.text((x0 + c * tile, 2), title, fill="black")

    def paste(arr: np.ndarray, x: int, y: int) -> None:
        im = Image.fromarray(arr).resize((64 * z, 64 * z), Image.Resampling.NEAREST)
        canvas.paste(im, (x, y))

    for k, arr in enumerate(samples):
        paste(arr, (k % 2) * tile, head + (k // 2) * tile)
    for k in range(8):
        for c, arr in enumerate((originals[k], *(i2i[s][k] for s in strengths))):
            paste(arr, x0 + c * tile, head + k * tile)
    canvas.save(docs / f"{name}-samples.png")
    print(f"wrote {docs}/{name}-loss.csv, {name}-loss.png, {name}-samples.png")


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["export"]:
        p = argparse.ArgumentParser(prog="train_tiny_ldm export")
        p.add_argument("src", type=Path)
        p.add_argument("dest", type=Path)
        p.add_argument("--fp32", action="store_true", help="keep float32 UNet weights")
        a = p.parse_args(args[1:])
        export(a.src, a.dest, fp16=not a.fp32)
        return 0
    if args[:1] == ["card"]:
        p = argparse.ArgumentParser(prog="train_tiny_ldm card")
        p.add_argument("--weights", type=Path, required=True)
        p.add_argument("--run", type=Path, required=True, help="training folder with curve.csv")
        p.add_argument("--docs", type=Path, default=Path("docs/models"))
        p.add_argument("--vae", default=None)
        p.add_argument("--name", default="tiny-ldm", help="file prefix of the card's figures")
        p.add_argument("--threads", type=int, default=1)
        a = p.parse_args(args[1:])
        torch.set_num_threads(a.threads)
        card(a.weights, a.run, a.docs, a.vae, name=a.name)
        return 0
    if args[:1] == ["repin"]:
        p = argparse.ArgumentParser(prog="train_tiny_ldm repin")
        p.add_argument("model", type=Path, help="a trained model folder (fzoo.json)")
        p.add_argument("--vae", required=True, help="the autoencoder with the new decoder")
        p.add_argument("--why", required=True, help="recorded in fzoo.json")
        a = p.parse_args(args[1:])
        repin(a.model, a.vae, a.why)
        return 0
    train(parse_args(args))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
