"""Autoencoder reconstruction error (AEROBLADE, Ricker et al. CVPR 2024; Mandelli et al. 2024)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from pydantic import Field, field_validator

import fzoo

if TYPE_CHECKING:
    import torch

Stat = Literal["mean", "std", "p50", "p90", "p99", "max"]
DEFAULT_STATS: tuple[Stat, ...] = ("mean", "std", "p50", "p90", "p99")


# --------------------------------------------------------------------------- shared helpers


def check_batch(batch: torch.Tensor, name: str) -> torch.Tensor:
    """The batch as float32 NCHW with 3 channels, or ``ValueError``."""
    if batch.ndim != 4 or batch.shape[1] != 3:
        raise ValueError(f"{name}: expected an RGB batch [B, 3, H, W], got {tuple(batch.shape)}")
    return batch.float()


def error_map(x: torch.Tensor, y: torch.Tensor, distance: str) -> torch.Tensor:
    """Per-pixel distance of two NCHW batches averaged over channels: ``[B, h, w]``.

    ``l1`` is ``mean_c |x - y|``, ``l2`` is ``mean_c (x - y)^2``. When the sides differ (a
    launderer that cropped to a multiple of its block size) the top-left ``h x w`` overlap is
    compared, which is exactly the region a top-left crop keeps.
    """
    h, w = min(x.shape[-2], y.shape[-2]), min(x.shape[-1], y.shape[-1])
    d = x[..., :h, :w] - y[..., :h, :w].to(x.device, x.dtype)
    return d.abs().mean(1) if distance == "l1" else d.square().mean(1)


def quantiles(flat: torch.Tensor, qs: Sequence[float]) -> torch.Tensor:
    """Row-wise quantiles ``[B, len(qs)]`` with linear interpolation (numpy's default).

    Written with a sort instead of ``torch.quantile``, which refuses inputs above 16 M elements.
    """
    import torch

    s = flat.sort(dim=1).values
    n = s.shape[1]
    pos = torch.tensor([q * (n - 1) for q in qs], dtype=torch.float64)
    lo = pos.floor().long()
    hi = pos.ceil().long()
    frac = (pos - lo.double()).to(s.dtype)
    return s[:, lo] + (s[:, hi] - s[:, lo]) * frac


def pool_map(maps: torch.Tensor, stats: Sequence[str], grid: int) -> torch.Tensor:
    """Global statistics then ``grid x grid`` cell means (row-major) of ``[B, H, W]`` maps.

    ``std`` is the population standard deviation; ``pNN`` the NN-th percentile; the grid cells are
    those of ``adaptive_avg_pool2d`` (equal as possible, overlapping only when a side < grid).
    """
    import torch
    import torch.nn.functional as F

    flat = maps.flatten(1)
    cols: list[torch.Tensor] = []
    pct = {s: float(s[1:]) / 100.0 for s in stats if s.startswith("p")}
    q = quantiles(flat, list(pct.values())) if pct else None
    for s in stats:
        if s == "mean":
            cols.append(flat.mean(1, keepdim=True))
        elif s == "std":
            cols.append(flat.std(1, unbiased=False, keepdim=True))
        elif s == "max":
            cols.append(flat.amax(1, keepdim=True))
        else:
            assert q is not None
            cols.append(q[:, list(pct).index(s)].unsqueeze(1))
    if grid > 0:
        cols.append(F.adaptive_avg_pool2d(maps.unsqueeze(1), grid).flatten(1))
    if not cols:
        return maps.new_zeros((maps.shape[0], 0))
    return torch.cat(cols, dim=1)


def pooled_names(prefix: str, stats: Sequence[str], grid: int) -> list[str]:
    """Names of the columns of :func:`pool_map`."""
    names = [f"{prefix}{s}" for s in stats]
    names += [f"{prefix}grid[{r},{c}]" for r in range(grid) for c in range(grid)]
    return names


def unique_stats(value: list[str]) -> list[str]:
    if len(set(value)) != len(value):
        raise ValueError(f"repeated statistics in {value}")
    return value


# --------------------------------------------------------------------------- the extractor


class LaundererSpec(fzoo.Params):
    """A launderer by registered name or preset, with parameter overrides."""

    name: str = Field(..., description="Registered launderer name or launderer preset.")
    params: dict[str, Any] = Field(
        default_factory=dict, description="Parameters of the launderer (override a preset's)."
    )


class ReconError(fzoo.FeatureExtractor):
    """Reconstruction error through autoencoders: AEROBLADE (Ricker et al., CVPR 2024).

    AEROBLADE scores an image by ``Delta(x) = d(x, D(E(x)))`` and takes the minimum over several
    autoencoders (an image made by a latent diffusion model is nearly a fixed point of its own
    AE). Mandelli et al. (WIFS 2024) read laundering ``x' = D(E(x))`` the same way: a laundered
    image passes through the AE again with a small error. Here ``D(E(.))`` is any registered
    launderer (``launderers``), applied ``iterations`` times: ``y_k = L(y_{k-1})``, ``y_0 = x``,
    each output clamped to [0, 1]; the error map is ``e = mean_c |x - y_k|`` (``distance: l1``)
    or ``mean_c (x - y_k)^2`` (``l2``), in [0, 1] pixel units. AEROBLADE's LPIPS distance is not
    used (it needs VGG weights). A launderer that crops to a multiple of its block size is
    compared on the top-left overlap (the region ``fzoo.fit_to_multiple`` keeps); one that pads
    returns the input size.

    Output ``[B, A * (S + g*g) + 1]`` float32, for ``A`` launderers (in the given order),
    ``S = len(stats)`` and ``g = grid``: for each launderer ``a``, the ``S`` global statistics of
    its error map in the order of ``stats`` (``mean``, population ``std``, percentiles ``p50``,
    ``p90``, ``p99``, ``max``), then the ``g x g`` cell means of the map, row-major; the last
    column is the ``aggregate`` (AEROBLADE: ``min``) over launderers of the global mean error.
    ``feature_names()`` lists the columns. The cache identity includes every launderer's
    fingerprint (class, version, parameters, weights).
    """

    name = "recon-error"
    description = "Autoencoder round-trip error maps, pooled; min over AEs (AEROBLADE, CVPR 2024)"
    version = "1"
    weight_params = ("launderers",)  # each launderer's fingerprint stands for its spec

    class Params(fzoo.Params):
        launderers: list[LaundererSpec] = Field(
            ...,
            min_length=1,
            description=(
                "Autoencoders as launderers: names/presets, or {name, params} mappings "
                "(e.g. [fzoo-tiny-vae, {name: sd-vae, params: {weights: ...}}])."
            ),
        )
        iterations: int = Field(
            1, ge=1, le=100, description="Round trips before comparing with x (AEROBLADE uses 1)."
        )
        distance: Literal["l1", "l2"] = Field(
            "l1", description="Per-pixel distance, averaged over RGB: l1 |d| or l2 d^2."
        )
        aggregate: Literal["min", "mean", "max"] = Field(
            "min", description="How the last column combines the launderers' mean errors."
        )
        grid: int = Field(4, ge=0, le=64, description="Spatial pooling grid g x g (0: none).")
        stats: list[Stat] = Field(
            default_factory=lambda: list(DEFAULT_STATS),
            description="Global statistics of each error map: mean, std, p50, p90, p99, max.",
        )

        @field_validator("launderers", mode="before")
        @classmethod
        def _names_to_specs(cls, value: Any) -> Any:
            if isinstance(value, str):
                value = [value]
            if isinstance(value, list):
                return [{"name": v} if isinstance(v, str) else v for v in value]
            return value

        @field_validator("stats")
        @classmethod
        def _unique_stats(cls, value: list[str]) -> list[str]:
            return unique_stats(value)

    params: Params

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self._built: list[fzoo.Launderer] | None = None

    # ------------------------------------------------------------------ sub-components
    def launderers(self) -> list[fzoo.Launderer]:
        """The launderers, built on first use with ``fzoo.create_component``."""
        if self._built is None:
            built = []
            for spec in self.params.launderers:
                comp = fzoo.create_component("launderer", spec.name, **spec.params)
                if not isinstance(comp, fzoo.Launderer):  # pragma: no cover - registry checks
                    raise TypeError(f"{spec.name!r} is not a launderer")
                built.append(comp)
            self._built = built
        return self._built

    def weight_hashes(self) -> dict[str, str]:
        """Every launderer's fingerprint: a changed VAE (weights or params) changes the key."""
        return {
            f"launderers[{i}]:{spec.name}": lau.fingerprint()
            for i, (spec, lau) in enumerate(
                zip(self.params.launderers, self.launderers(), strict=True)
            )
        }

    def feature_names(self) -> list[str]:
        """One name per output column (the layout of the class docstring)."""
        p = self.params
        names: list[str] = []
        for i, spec in enumerate(p.launderers):
            names += pooled_names(f"{i}:{spec.name}.", p.stats, p.grid)
        return [*names, f"{p.aggregate}.mean"]

    @property
    def dim(self) -> int:
        p = self.params
        return len(p.launderers) * (len(p.stats) + p.grid * p.grid) + 1

    # ------------------------------------------------------------------ extraction
    def error_maps(self, batch: torch.Tensor) -> list[torch.Tensor]:
        """One ``[B, h, w]`` error map per launderer."""
        import torch

        x = check_batch(batch, self.name)
        maps = []
        with torch.no_grad():
            for i, lau in enumerate(self.launderers()):
                y = x
                for _ in range(self.params.iterations):
                    y = lau.launder(y)
                    if y.ndim != 4 or y.shape[:2] != x.shape[:2]:
                        raise ValueError(
                            f"{self.name}: launderer {lau.name!r} returned {tuple(y.shape)} for "
                            f"{tuple(x.shape)}"
                        )
                    y = y.float().clamp(0.0, 1.0)
                for n in lau.pop_notes():
                    self.note(f"launderers[{i}] {lau.name}: {n}")
                if y.shape[-2:] != x.shape[-2:]:
                    h, w = min(x.shape[-2], y.shape[-2]), min(x.shape[-1], y.shape[-1])
                    self.note(
                        f"launderers[{i}] {lau.name}: returned {y.shape[-1]}x{y.shape[-2]} for "
                        f"{x.shape[-1]}x{x.shape[-2]}; compared the top-left {w}x{h} region"
                    )
                maps.append(error_map(x, y, self.params.distance))
        return maps

    def extract(self, batch: torch.Tensor) -> np.ndarray:
        import torch

        p = self.params
        x = check_batch(batch, self.name)
        if x.shape[0] == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        maps = self.error_maps(x)
        cols = [pool_map(m, p.stats, p.grid) for m in maps]
        means = torch.stack([m.flatten(1).mean(1) for m in maps], dim=1)
        if p.aggregate == "min":
            agg = means.amin(1)
        elif p.aggregate == "max":
            agg = means.amax(1)
        else:
            agg = means.mean(1)
        out = torch.cat([*cols, agg.unsqueeze(1)], dim=1)
        return out.detach().cpu().numpy().astype(np.float32)
