"""Train ``fzoo-tae-4ch``: a 4-channel, 8x tiny autoencoder derived from TAEF2, on 2 CPU cores.

The architecture is Bohan's TAESD (github.com/madebyollin/taesd, MIT) with TAEF2's midblock
GroupNorm (``fzoo_builtins.sd_vae.taesd_arch``), with the latent layout of Stable Diffusion
1.x/2.x/XL: 4 channels at 1/8 resolution. Everything is initialised from the pretrained TAEF2
(``../shared/weights/taef2``, 32 latent channels; MIT). Only the parts next to the latent are
trained, so that training touches 1/8-resolution tensors only and fits on two shared CPU cores:

* frozen: the encoder up to its 1/8-resolution features (``encoder[:11]``) and the decoder after
  its three midblocks (``decoder[6:]``, the three upsampling stages);
* trained: the encoder's three midblocks and latent conv (``encoder[11:]``, 64 -> 4 channels) and
  the decoder's latent conv and three midblocks (``decoder[:6]``, 4 -> 64 channels).

The two latent convs start from a PCA of TAEF2's 32-channel latents on the training crops
(``z4 = P^T (z32 - mean)``, ``z32 ~ mean + P z4``). Training has two stages:

A. feature distillation, all at 1/8 resolution: the student's decoder features after the
   midblocks are matched (MSE) to TAEF2's on the same crops (the frozen encoder prefix is run
   once per crop and cached);
B. pixel loss through the frozen decoder tail: ``L1 + MSE + 0.1 * |FFT| L1`` between the
   reconstruction and the crop, plus an L1 penalty on the per-channel mean (colour shift).

Both stages add a penalty on latents beyond +-2 (``LATENT_LIMIT``): the decoder's
``3 tanh(z / 3)`` clamp flattens larger values, which a first pilot showed as washed-out
saturated colours (a 45-level shift on a green photo).

Data: random crops (native resolution with probability ``--p-native``, else downscaled by a
factor in [1, 4] with Pillow's antialiased Lanczos ``resize``, horizontal flips, RGB channels
permuted with probability ``--p-channel-shuffle``) from the
photos of Debian's wallpaper packages ``debian_photos.TRAIN_PACKAGES`` and from the training
photos inside pip packages (``fzoo_builtins.sd_vae.photos``, not its ``HOLDOUT``).
``mate-backgrounds`` (``debian_photos.HELDOUT_PACKAGES``) is never trained on: the script
refuses it. Training PSNR on fixed training crops and, for monitoring only, the held-out pip
photos go to ``OUT/curve.csv``; the final model (no selection on held-out data) goes to
``OUT/model/`` in the original TAESD layout (``fzoo-tae-4ch_encoder.safetensors`` +
``_decoder.safetensors`` + ``SHA256SUMS`` + the MIT ``LICENSE``), loadable by the ``taesd``
launderer.

Run::

    python training/train_tae_4ch.py --out DIR --minutes-a 15 --minutes-b 25
    python training/train_tae_4ch.py --out DIR --quick        # smoke test, about a minute
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from PIL import Image  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402
import debian_photos  # noqa: E402

from fzoo_builtins.sd_vae import photos as pip_photos  # noqa: E402
from fzoo_builtins.sd_vae.taesd_arch import TinyAutoencoder, load_taesd  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_TAEF2 = REPO_ROOT.parent / "shared" / "weights" / "taef2"
NAME = "fzoo-tae-4ch"
ENC_SPLIT = 11  # encoder[:11] frozen (to 1/8 resolution), encoder[11:] trained
DEC_SPLIT = 6  # decoder[:6] trained (latent conv + midblocks), decoder[6:] frozen
LATENT_STD = 0.7  # initial standard deviation of each latent channel
LATENT_LIMIT = 2.0  # |z| beyond this is penalised (the decoder clamps with 3 tanh(z / 3))
CURVE_FIELDS = [
    "stage",
    "step",
    "elapsed_s",
    "lr",
    "train_loss",
    "train_crops_psnr",
    "heldout_pip_psnr",
    "heldout_pip_colour_shift",
]


@dataclass
class Config:
    """Everything that defines a run (written to ``train_info.json``)."""

    out: str
    taef2: str = str(DEFAULT_TAEF2)
    cache: str = str(debian_photos.DEFAULT_CACHE)
    threads: int = 2
    seed: int = 0
    latent_channels: int = 4
    crop: int = 128
    n_crops: int = 1536
    p_native: float = 0.5
    max_downscale: float = 4.0
    minutes_a: float = 15.0
    minutes_b: float = 25.0
    batch_a: int = 32
    batch_b: int = 6
    lr_a: float = 1e-3
    lr_b: float = 2e-4
    warmup_steps: int = 20
    min_lr_frac: float = 0.05
    fft_weight: float = 0.1
    colour_weight: float = 1.0
    latent_weight: float = 1.0
    p_channel_shuffle: float = 0.3
    eval_every_s: float = 180.0
    quick: bool = False


def parse_args(argv: list[str] | None = None) -> Config:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--out", required=True, help="output folder (model/, curve.csv, ...)")
    _common.add_config_args(
        p, Config(out=""), skip=("out",), helps={"quick": "tiny data and budget: a smoke test"}
    )
    cfg = Config(**vars(p.parse_args(argv)))
    if cfg.quick:
        cfg.crop, cfg.n_crops, cfg.batch_a, cfg.batch_b = 64, 24, 8, 2
        cfg.minutes_a, cfg.minutes_b, cfg.eval_every_s, cfg.warmup_steps = 0.2, 0.2, 5.0, 2
    return cfg


# ---------------------------------------------------------------------------------- data
def training_images(cfg: Config) -> list[tuple[str, Any]]:
    """(name, loader) of every training photo; loaders decode on demand (photos are large)."""
    for pkg in debian_photos.TRAIN_PACKAGES:
        if pkg in debian_photos.HELDOUT_PACKAGES:
            raise SystemExit(f"{pkg} is reserved for held-out evaluation")
    wall = debian_photos.photos(debian_photos.TRAIN_PACKAGES, Path(cfg.cache), min_side=cfg.crop)
    out: list[tuple[str, Any]] = [
        (f"{w.package}:{Path(w.path).name}", lambda w=w: debian_photos.load_rgb(w.path))
        for w in wall
    ]
    names = pip_photos.TRAIN_COLOUR + pip_photos.TRAIN_GRAY
    out += [(f"pip:{n}", lambda n=n: pip_photos.load_photo(n).image) for n in names]
    if cfg.quick:
        out = out[:: max(1, len(out) // 6)]
    return out


def random_crop(img: np.ndarray, cfg: Config, rng: random.Random) -> np.ndarray:
    """A ``crop`` x ``crop`` patch: native pixels, or a region downscaled (antialiased)."""
    h, w = img.shape[:2]
    scale = 1.0
    if rng.random() >= cfg.p_native:
        scale = rng.uniform(1.0, cfg.max_downscale)
    side = min(int(round(cfg.crop * scale)), h, w)
    top, left = rng.randrange(h - side + 1), rng.randrange(w - side + 1)
    patch = img[top : top + side, left : left + side]
    if side != cfg.crop:
        pil = Image.fromarray(patch).resize((cfg.crop, cfg.crop), Image.Resampling.LANCZOS)
        patch = np.asarray(pil)
    if rng.random() < 0.5:
        patch = patch[:, ::-1]
    if rng.random() < cfg.p_channel_shuffle:  # more hues (saturated ones) from few photos
        order = [0, 1, 2]
        rng.shuffle(order)
        patch = patch[:, :, order]
    return np.ascontiguousarray(patch)


def sample_crops(cfg: Config) -> tuple[torch.Tensor, list[str]]:
    """``n_crops`` uint8 crops (N, 3, crop, crop), spread evenly over the training photos."""
    rng = random.Random(cfg.seed)
    images = training_images(cfg)
    per = [cfg.n_crops // len(images)] * len(images)
    for i in rng.sample(range(len(images)), cfg.n_crops - sum(per)):
        per[i] += 1
    crops: list[np.ndarray] = []
    for (_, load), k in zip(images, per, strict=True):
        if k == 0:
            continue
        img = load()
        if min(img.shape[:2]) < cfg.crop:
            continue
        crops += [random_crop(img, cfg, rng) for _ in range(k)]
    order = list(range(len(crops)))
    rng.shuffle(order)
    x = torch.from_numpy(np.stack([crops[i] for i in order])).permute(0, 3, 1, 2).contiguous()
    return x, [n for n, _ in images]


def to_float(x8: torch.Tensor) -> torch.Tensor:
    return x8.float() / 255.0


# ---------------------------------------------------------------------------------- model
def pca_init(teacher: TinyAutoencoder, z32: torch.Tensor, k: int) -> TinyAutoencoder:
    """A ``k``-channel student whose latent convs project onto the top-``k`` principal
    components of the teacher's latents ``z32`` (N, 32, h, w), ``z4 = P^T (z32 - mean)`` and
    ``z32 ~ mean + Q z4`` (``P``, ``Q`` the components scaled to and from unit-``LATENT_STD``
    channels); every other weight copied."""
    v = z32.permute(0, 2, 3, 1).reshape(-1, z32.shape[1]).double()
    mu = v.mean(0)
    evals, evecs = torch.linalg.eigh(torch.cov((v - mu).T))
    order = evals.argsort(descending=True)[:k]
    # scaled so that each latent channel has standard deviation LATENT_STD: well inside the
    # decoder's 3 tanh(z / 3) clamp, where a larger channel would lose its extremes (colour)
    p = (evecs[:, order] / evals[order].clamp_min(1e-12).sqrt() * LATENT_STD).float()
    q = (evecs[:, order] * evals[order].clamp_min(1e-12).sqrt() / LATENT_STD).float()
    mu = mu.float()
    enc = teacher.encoder.state_dict()
    dec = teacher.decoder.state_dict()
    last = max(int(n.split(".")[0]) for n in enc)
    w, b = enc[f"{last}.weight"], enc[f"{last}.bias"]
    enc[f"{last}.weight"] = torch.einsum("ck,cihw->kihw", p, w)
    enc[f"{last}.bias"] = p.T @ (b - mu)
    wd, bd = dec["1.weight"], dec["1.bias"]
    dec["1.weight"] = torch.einsum("ochw,ck->okhw", wd, q)
    dec["1.bias"] = bd + wd.sum(dim=(2, 3)) @ mu
    gn = any(".pool." in n for n in enc)
    student = TinyAutoencoder(k, use_midblock_gn=gn)
    student.encoder.load_state_dict(enc, strict=True)
    student.decoder.load_state_dict(dec, strict=True)
    return student


def trainable(student: TinyAutoencoder) -> list[torch.nn.Parameter]:
    """Parameters next to the latent (the rest is frozen)."""
    for prm in student.parameters():
        prm.requires_grad_(False)
    params = [*student.encoder[ENC_SPLIT:].parameters(), *student.decoder[:DEC_SPLIT].parameters()]
    for prm in params:
        prm.requires_grad_(True)
    return params


def student_features(
    student: TinyAutoencoder, feats: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """(decoder features after the midblocks, latent), from cached encoder-prefix features."""
    z = student.encoder[ENC_SPLIT:](feats)
    return student.decoder[:DEC_SPLIT](z), z


def latent_penalty(z: torch.Tensor) -> torch.Tensor:
    """Mean squared excess of ``|z|`` over :data:`LATENT_LIMIT` (keeps latents off the clamp)."""
    return F.relu(z.float().abs() - LATENT_LIMIT).pow(2).mean()


def autocast() -> Any:
    """bf16 autocast on the CPU: on this project's AVX512-BF16 CPU a training step of the
    1/8-resolution blocks ran 25x faster than in float32 (0.2 s against 5 s, batch 32)."""
    return torch.autocast("cpu", dtype=torch.bfloat16)


@torch.no_grad()
def batched(fn: Any, x: torch.Tensor, n: int = 16) -> torch.Tensor:
    """``fn`` over chunks of ``x`` in bf16 autocast; float32 result."""
    with autocast():
        return torch.cat([fn(x[i : i + n]).float() for i in range(0, len(x), n)])


@torch.no_grad()
def recon_metrics(model: TinyAutoencoder, x8: torch.Tensor) -> tuple[float, float]:
    """(mean PSNR over images, mean per-channel colour shift in 8-bit levels), 8-bit output."""
    psnrs, shifts = [], []
    for i in range(len(x8)):
        x = x8[i : i + 1].float()
        with autocast():  # monitoring only; the evaluation script runs float32
            y = torch.round(model(x / 255.0).float().clamp(0, 1) * 255.0)
        psnrs.append(_common.psnr_from_mse(float(((y - x) ** 2).mean())))
        shifts.append(float((y.mean(dim=(2, 3)) - x.mean(dim=(2, 3))).abs().mean()))
    return float(np.mean(psnrs)), float(np.mean(shifts))


def heldout_pip(cfg: Config) -> torch.Tensor:
    """Centre crops (256, or ``crop`` in quick mode) of the held-out pip photos, uint8 NCHW."""
    side = cfg.crop if cfg.quick else 256
    ims = [debian_photos.centre_crop(p.image, side) for p in pip_photos.holdout_photos()]
    return torch.from_numpy(np.stack(ims)).permute(0, 3, 1, 2).contiguous()


def fft_l1(y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """L1 between amplitude spectra (log1p), a frequency term against blur."""
    fy = torch.fft.rfft2(y, norm="ortho").abs()
    fx = torch.fft.rfft2(x, norm="ortho").abs()
    return (torch.log1p(fy) - torch.log1p(fx)).abs().mean()


def save_taesd(model: TinyAutoencoder, folder: Path) -> None:
    """``{NAME}_encoder.safetensors`` and ``{NAME}_decoder.safetensors`` (TAESD layout)."""
    from safetensors.torch import save_file

    for part in ("encoder", "decoder"):
        sd = {k: v.detach().contiguous() for k, v in getattr(model, part).state_dict().items()}
        save_file(sd, str(folder / f"{NAME}_{part}.safetensors"))


def export(student: TinyAutoencoder, dest: Path, teacher_dir: Path) -> None:
    """Original TAESD layout (safetensors) + LICENSE + SHA256SUMS, swapped in atomically."""

    def fill(tmp: Path) -> None:
        save_taesd(student, tmp)
        licence = teacher_dir / "LICENSE"
        text = licence.read_text() if licence.exists() else ""
        (tmp / "LICENSE").write_text(
            f"{NAME} is derived from TAEF2 by Ollin Boer Bohan (github.com/madebyollin/taesd),\n"
            "fine-tuned by the fzoo project (training/train_tae_4ch.py). TAEF2's licence:\n\n"
            + text
        )
        _common.write_sums(tmp)

    _common.swap_in(dest, fill)


# ---------------------------------------------------------------------------------- loop
class CurveLog:
    """The monitoring curve of a run. Each call measures ``model`` on fixed training crops
    (``mon8``) and on the held-out pip photos (``held8``), appends a row to ``OUT/curve.csv``,
    rewrites ``OUT/train_info.json`` (``info``) and prints the row; then calls ``after``."""

    def __init__(
        self,
        out: Path,
        info: dict[str, Any],
        model: TinyAutoencoder,
        mon8: torch.Tensor,
        held8: torch.Tensor,
        after: Callable[[], None] | None = None,
    ) -> None:
        self.out, self.info, self.model = out, info, model
        self.mon8, self.held8, self.after = mon8, held8, after
        self.path = out / "curve.csv"
        with self.path.open("w", newline="") as fh:
            csv.writer(fh).writerow(CURVE_FIELDS)
        self.start = time.time()

    def write_info(self) -> None:
        (self.out / "train_info.json").write_text(json.dumps(self.info, indent=1) + "\n")

    def __call__(self, stage: str, step: int, lr: float, loss: float) -> None:
        self.model.eval()
        tr = recon_metrics(self.model, self.mon8)[0]
        hp, hc = recon_metrics(self.model, self.held8)
        self.model.train()
        row = [stage, step, round(time.time() - self.start, 1), f"{lr:.3g}", f"{loss:.5g}",
               f"{tr:.3f}", f"{hp:.3f}", f"{hc:.3f}"]  # fmt: skip
        with self.path.open("a", newline="") as fh:
            csv.writer(fh).writerow(row)
        self.info["last"] = dict(zip(CURVE_FIELDS, row, strict=True))
        self.info["loadavg"] = [round(v, 2) for v in os.getloadavg()]
        if self.after is not None:
            self.after()
        self.write_info()
        print(" ".join(f"{k}={v}" for k, v in zip(CURVE_FIELDS, row, strict=True)), flush=True)


def run_stage(
    params: list[torch.nn.Parameter],
    stage: str,
    minutes: float,
    lr0: float,
    cfg: Any,
    step_loss: Callable[[], torch.Tensor],
    log: CurveLog,
    step: int,
    on_eval: Callable[[int], None] | None = None,
) -> int:
    """One training stage: AdamW on ``params`` for ``minutes`` of wall clock, the learning rate
    of :func:`_common.lr_at` (``cfg.warmup_steps``, ``cfg.min_lr_frac``), ``step_loss()`` for
    each step's loss, a curve row every ``cfg.eval_every_s`` seconds (after ``on_eval(k)``, k
    the steps of this stage) and at the end. Returns the global step count."""
    if minutes <= 0:
        return step
    opt = torch.optim.AdamW(params, lr=lr0, betas=(0.9, 0.99), weight_decay=0.0)
    budget, ts = minutes * 60.0, time.time()
    last_eval = ts
    acc, n_acc, k = 0.0, 0, 0
    lr = lr0
    log.model.train()
    while time.time() - ts < budget:
        lr = _common.lr_at(lr0, cfg.warmup_steps, cfg.min_lr_frac, k, (time.time() - ts) / budget)
        for g in opt.param_groups:
            g["lr"] = lr
        loss = step_loss()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        acc, n_acc, k, step = acc + float(loss.detach()), n_acc + 1, k + 1, step + 1
        if time.time() - last_eval >= cfg.eval_every_s:
            if on_eval is not None:
                on_eval(k)
            log(stage, step, lr, acc / n_acc)
            acc, n_acc, last_eval = 0.0, 0, time.time()
    log(stage, step, lr, acc / max(n_acc, 1))
    log.info[f"stage_{stage}"] = {"steps": k, "seconds": round(time.time() - ts, 1)}
    return step


def finish(model: TinyAutoencoder, x8: torch.Tensor, log: CurveLog, t0: float) -> None:
    """Latent statistics, times and load average into ``train_info.json`` (the model is
    exported by the caller before ``log.write_info()``)."""
    model.eval()
    with torch.no_grad():
        z = batched(model.encoder, to_float(x8[:64]))
    log.info["latent_stats"] = {"mean": float(z.mean()), "std": float(z.std()),
                                "abs_max": float(z.abs().max())}  # fmt: skip
    log.info["train_seconds"] = round(time.time() - log.start, 1)
    log.info["total_seconds"] = round(time.time() - t0, 1)
    log.info["loadavg_at_end"] = [round(v, 2) for v in os.getloadavg()]


# ---------------------------------------------------------------------------------- training
def main(argv: list[str] | None = None) -> int:
    cfg = parse_args(argv)
    torch.set_num_threads(max(1, cfg.threads))
    torch.manual_seed(cfg.seed)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    info: dict[str, Any] = {
        "model": NAME,
        "config": asdict(cfg),
        "command": " ".join(["python training/train_tae_4ch.py", *(argv or sys.argv[1:])]),
        "environment": _common.environment(cfg.threads),
    }
    t0 = time.time()
    x8, names = sample_crops(cfg)
    info["train_photos"] = names
    print(f"{len(x8)} crops of {cfg.crop} from {len(names)} photos in {time.time() - t0:.0f} s")

    teacher = load_taesd(cfg.taef2).requires_grad_(False)
    t1 = time.time()
    feats = batched(teacher.encoder[:ENC_SPLIT], to_float(x8))
    z32 = batched(teacher.encoder[ENC_SPLIT:], feats)
    target = batched(teacher.decoder[:DEC_SPLIT], z32)
    print(f"teacher features cached in {time.time() - t1:.0f} s", flush=True)
    student = pca_init(teacher, z32, cfg.latent_channels)
    del z32
    params = trainable(student)
    info["params"] = sum(p.numel() for p in student.parameters())
    info["params_trained"] = sum(p.numel() for p in params)
    # fixed training crops (x8[:16]): the training-side PSNR of the curve
    log = CurveLog(out, info, student, x8[:16], heldout_pip(cfg))
    log("init", 0, 0.0, float("nan"))
    gen = torch.Generator().manual_seed(cfg.seed + 1)

    def step_loss(stage: str, batch: int) -> torch.Tensor:
        idx = torch.randint(len(x8), (batch,), generator=gen)
        with autocast():
            h, z = student_features(student, feats[idx])
            if stage == "B":
                y = student.decoder[DEC_SPLIT:](h).float()
        if stage == "A":
            return F.mse_loss(h.float(), target[idx]) + cfg.latent_weight * latent_penalty(z)
        x = to_float(x8[idx])
        colour = (y.mean(dim=(2, 3)) - x.mean(dim=(2, 3))).abs().mean()
        return (
            (y - x).abs().mean()
            + F.mse_loss(y, x)
            + cfg.fft_weight * fft_l1(y, x)
            + cfg.colour_weight * colour
            + cfg.latent_weight * latent_penalty(z)
        )

    step = 0
    for stage, minutes, lr0, batch in (
        ("A", cfg.minutes_a, cfg.lr_a, cfg.batch_a),
        ("B", cfg.minutes_b, cfg.lr_b, cfg.batch_b),
    ):
        step = run_stage(
            params, stage, minutes, lr0, cfg, lambda s=stage, b=batch: step_loss(s, b), log, step
        )
    finish(student, x8, log, t0)
    export(student, out / "model", Path(cfg.taef2))
    log.write_info()
    print(f"done in {info['total_seconds']} s; model in {out / 'model'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
