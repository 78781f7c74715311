"""Pieces shared by the training scripts in this folder (imported by path, not installed).

The scripts run as ``python training/<script>.py``, so Python puts this folder first on
``sys.path`` and ``import _common`` finds this file; tests that import a script by path add the
folder themselves.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import math
import os
import platform
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

C = TypeVar("C")


def config_from(cls: type[C], args: argparse.Namespace, **parsed: Any) -> C:
    """The dataclass ``cls`` filled from the parsed command line: every field that has an
    argument of the same name, then ``parsed`` (fields given in another form, e.g. a tuple
    parsed from ``"32,64"``)."""
    fields = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]
    values = {n: getattr(args, n) for n in fields if hasattr(args, n)}
    values.update(parsed)
    return cls(**values)


def add_config_args(
    parser: argparse.ArgumentParser,
    defaults: Any,
    skip: tuple[str, ...] = (),
    helps: dict[str, str] | None = None,
) -> None:
    """One ``--name-with-dashes`` option per field of the dataclass instance ``defaults`` (its
    value is the default, its type the option's type), except the fields in ``skip``. A
    ``bool`` field becomes a ``store_true`` flag (``type=bool`` would read "False" as true)."""
    helps = helps or {}
    for name, value in dataclasses.asdict(defaults).items():
        if name in skip:
            continue
        flag = f"--{name.replace('_', '-')}"
        if isinstance(value, bool):
            parser.add_argument(flag, action="store_true", default=value, help=helps.get(name))
        else:
            parser.add_argument(flag, type=type(value), default=value, help=helps.get(name))


__all__ = [
    "add_config_args",
    "config_from",
    "environment",
    "lr_at",
    "psnr_from_mse",
    "swap_in",
    "write_sums",
]


def lr_at(lr: float, warmup_steps: int, min_lr_frac: float, step: int, frac_time: float) -> float:
    """Linear warm-up over steps, then cosine decay from ``lr`` to ``lr * min_lr_frac`` over
    the fraction ``frac_time`` of the wall-clock budget (so a run completes its schedule
    whatever the machine speed)."""
    if step < warmup_steps:
        return lr * (step + 1) / warmup_steps
    f = min(max(frac_time, 0.0), 1.0)
    lo = lr * min_lr_frac
    return lo + 0.5 * (lr - lo) * (1.0 + math.cos(math.pi * f))


def psnr_from_mse(mse: float, peak: float = 255.0) -> float:
    """PSNR in dB for a mean squared error in units of ``peak`` (inf for a perfect copy)."""
    return float("inf") if mse == 0 else 10.0 * math.log10(peak**2 / mse)


def write_sums(folder: Path) -> None:
    """``SHA256SUMS`` of every file under ``folder`` (``<sha256>  <relative name>`` lines)."""
    from fzoo.weights import sha256_file

    files = sorted(q for q in folder.rglob("*") if q.is_file() and q.name != "SHA256SUMS")
    lines = [f"{sha256_file(q)}  {q.relative_to(folder).as_posix()}" for q in files]
    (folder / "SHA256SUMS").write_text("\n".join(lines) + "\n")


def swap_in(dest: Path, fill: Callable[[Path], None]) -> None:
    """Write a folder through ``fill(tmp)`` into ``dest.tmp``, then swap it in for ``dest``.

    A stopped process leaves either the old folder or the new one (plus a stray ``.tmp`` or
    ``.old``), never a half-written ``dest``.
    """
    tmp = dest.with_name(dest.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    fill(tmp)
    old = dest.with_name(dest.name + ".old")
    if dest.exists():
        if old.exists():
            shutil.rmtree(old)
        dest.rename(old)
    tmp.rename(dest)
    if old.exists():
        shutil.rmtree(old)


def environment(threads: int) -> dict[str, Any]:
    """Versions, machine and load average, for a run's ``train_info.json``."""
    import numpy as np
    import torch

    info: dict[str, Any] = {
        "torch": torch.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "processor": platform.processor(),
        "cpu_count": os.cpu_count(),
        "threads": threads,
    }
    try:
        import diffusers

        info["diffusers"] = diffusers.__version__
    except ImportError:
        pass
    with contextlib.suppress(OSError):  # not every platform has a load average
        info["loadavg_at_start"] = [round(v, 2) for v in os.getloadavg()]
    return info
