"""Shared machinery of the published detectors: checkpoints, weights resolution, the base class.

Every published detector loads a checkpoint released by its authors. This module turns
``params.weights`` (a file, a folder holding the released file, or a hub id) into a file with
:func:`resolve_checkpoint`, reads it with ``torch.load(..., weights_only=True)`` only
(:func:`load_state_dict`: a pickle that needs code is refused), and loads it strictly into the
network (:func:`load_into`: a checkpoint of another architecture gets one error naming the missing
and unexpected keys). :class:`PublishedDetector` is the base class: lazy model loading, batching,
device and dtype, ``output: score | embedding`` and the checkpoint's sha256 in the fingerprint.

No torch import at module level: ``fzoo list`` must stay fast.
"""

from __future__ import annotations

import os
import pickle
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import numpy as np
from pydantic import Field

import fzoo
from fzoo.weights import WeightsNotFoundError, parse_hub_ref
from fzoo.weights import file_sha256 as _file_sha256

if TYPE_CHECKING:
    import torch

__all__ = [
    "CheckpointError",
    "PublishedDetector",
    "load_into",
    "load_state_dict",
    "resolve_checkpoint",
    "sha256_file",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


class CheckpointError(ValueError):
    """A checkpoint that cannot be used by a detector; the message says why and what to do."""


# --------------------------------------------------------------------------- files and hashes
def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of a file: ``fzoo.weights.file_sha256`` (cached by resolved path, size and
    mtime, in memory and in the fzoo cache dir, so a checkpoint is hashed once)."""
    return _file_sha256(path)


def _missing_message(weights: str, *, detector: str, filename: str, url: str, why: str) -> str:
    return (
        f"{detector}: checkpoint not found: {why}.\n"
        f"  The detector expects its authors' released file {filename!r}; they publish it at\n"
        f"    {url}\n"
        f"  Download it, then point fzoo at it:\n"
        f"    fzoo detect --detector {detector} --param weights=/path/to/{filename} IMAGE...\n"
        f"  or, in a YAML experiment:\n"
        f"    {{name: {detector}, params: {{weights: /path/to/{filename}}}}}\n"
        f"  (a folder that contains {filename!r}, or a hub id org/name holding it, works too)."
    )


def resolve_checkpoint(weights: str, *, detector: str, filename: str, url: str) -> Path:
    """``params.weights`` -> the checkpoint file (a file, a folder holding ``filename``, a hub id).

    Raises :class:`fzoo.WeightsNotFoundError` at once (no download retries offline) with the
    expected file name, where its authors publish it, and the parameter line to change.
    """
    local = Path(weights).expanduser()
    if local.suffix in (".pth", ".pt", ".bin", ".ckpt", ".safetensors") and not local.exists():
        # a file name, never a hub id: fail now rather than ask the hub about "dir/file.pth"
        raise WeightsNotFoundError(
            _missing_message(
                weights,
                detector=detector,
                filename=filename,
                url=url,
                why=f"no such file {str(local)!r}",
            )
        )
    try:
        resolved = fzoo.resolve_weights(weights, param="weights")
    except WeightsNotFoundError as exc:
        text = str(exc)
        why = (
            f"{weights!r} is not a file or folder on this machine"
            if parse_hub_ref(weights) is None or weights.startswith((".", "/", "~"))
            else f"hub id {weights!r} could not be used ({text.splitlines()[0]})"
        )
        hub_hint = ""
        if local.suffix and not local.exists():
            why = f"no such file {str(local)!r}"
        elif why.startswith("hub id"):
            hub_hint = "\n" + "\n".join(text.splitlines()[1:])
        raise WeightsNotFoundError(
            _missing_message(weights, detector=detector, filename=filename, url=url, why=why)
            + hub_hint
        ) from None
    path = resolved.path
    if path.is_file():
        return path
    direct = path / filename
    if direct.is_file():
        return direct
    # the file itself, or one or two folders down (a weights zip unpacked, a hub snapshot)
    found = sorted(
        p for pattern in (f"*/{filename}", f"*/*/{filename}") for p in path.glob(pattern)
        if p.is_file()
    )  # fmt: skip
    if len(found) == 1:
        return found[0]
    if len(found) > 1:
        listing = ", ".join(str(p.relative_to(path)) for p in found[:6])
        raise WeightsNotFoundError(
            f"{detector}: the folder {str(path)!r} holds {len(found)} files named {filename!r} "
            f"({listing}); say which one: --param weights={found[0]} (YAML: params: "
            f"{{weights: {found[0]}}})"
        )
    raise WeightsNotFoundError(
        _missing_message(
            weights,
            detector=detector,
            filename=filename,
            url=url,
            why=f"the folder {str(path)!r} holds no file named {filename!r}",
        )
    )


# --------------------------------------------------------------------------- loading
def load_state_dict(
    path: Path,
    *,
    detector: str,
    keys: tuple[str, ...] = ("model", "net", "state_dict"),
    url: str,
) -> dict[str, torch.Tensor]:
    """Read a released checkpoint safely and return its tensors, keyed as the network expects.

    ``torch.load(path, map_location="cpu", weights_only=True)``: a pickle that needs code to
    load is refused with :class:`CheckpointError`. If the object is a dict holding one of ``keys``
    (first present wins) whose value is a dict, that is the state dict; ``module.`` prefixes
    (``DataParallel``) are stripped; non-tensor entries are dropped.
    """
    import torch

    path = Path(path)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise CheckpointError(
            f"{detector}: refused to load {path}: the file is a pickle that needs code to load "
            f"({_unpickling_reason(exc)}). fzoo loads checkpoints with weights_only=True only "
            f"and never runs code from a weight file; a released checkpoint holds tensors only. "
            f"Get the authors' file from {url}, or re-save yours as "
            f"torch.save({{'model': model.state_dict()}}, path)."
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError) as exc:
        raise CheckpointError(
            f"{detector}: cannot read {path} as a torch checkpoint ({type(exc).__name__}: "
            f"{str(exc)[:300]}). Expected the authors' file from {url}."
        ) from None
    if isinstance(obj, dict):
        for key in keys:
            inner = obj.get(key)
            if isinstance(inner, dict):
                obj = inner
                break
    if not isinstance(obj, dict):
        raise CheckpointError(
            f"{detector}: {path} holds a {type(obj).__name__}, not a state dict (a mapping from "
            f"parameter names to tensors, possibly under one of the keys {list(keys)}). "
            f"Is this a checkpoint of {detector}? Expected the authors' file from {url}."
        )
    state: dict[str, torch.Tensor] = {}
    for name, value in obj.items():
        if not isinstance(value, torch.Tensor):
            continue
        key = str(name)
        while key.startswith("module."):
            key = key[len("module.") :]
        state[key] = value
    if not state:
        raise CheckpointError(
            f"{detector}: {path} holds no tensors (keys: {sorted(map(str, obj))[:8]}). "
            f"Is this a checkpoint of {detector}? Expected the authors' file from {url}."
        )
    return state


def _unpickling_reason(exc: BaseException) -> str:
    """The informative line of torch's weights-only error (the object it refused), shortened."""
    text = str(exc).replace("\x1b[1m", "").replace("\x1b[0m", "")
    for line in text.splitlines():
        line = line.strip()
        if "Unsupported global" in line or "WeightsUnpickler error" in line:
            return line.split(" was not an allowed global")[0][:200]
    return (text.strip().splitlines() or [type(exc).__name__])[0][:200]


def load_into(module: torch.nn.Module, state: dict[str, Any], *, detector: str, path: Path) -> None:
    """Load ``state`` into ``module`` strictly; a key or shape mismatch -> :class:`CheckpointError`.

    The error names the detector, the file, the first 5 missing and first 5 unexpected keys and
    the first 5 shape mismatches.
    """
    expected = module.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    shapes = [
        f"{k}: file {tuple(state[k].shape)} vs network {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and tuple(state[k].shape) != tuple(v.shape)
    ]
    if missing or unexpected or shapes:
        parts = [f"{detector}: the checkpoint {path} does not fit the {detector} network."]
        if missing:
            parts.append(f"  missing keys ({len(missing)}): {', '.join(missing[:5])}")
        if unexpected:
            parts.append(f"  unexpected keys ({len(unexpected)}): {', '.join(unexpected[:5])}")
        if shapes:
            parts.append(f"  shape mismatches ({len(shapes)}): {'; '.join(shapes[:5])}")
        parts.append(f"  Is this a checkpoint of {detector}?")
        raise CheckpointError("\n".join(parts))
    module.load_state_dict(state, strict=True)


def _device(name: str) -> torch.device:
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


# --------------------------------------------------------------------------- the base class
class PublishedDetector(fzoo.FeatureExtractor):
    """Base of the detectors published with released weights (one subclass per paper).

    Subclasses set the class attributes below, implement :meth:`build_network` (an untrained
    network of the authors' architecture), :meth:`score_batch` (the published decision
    statistic, one value per image, > 0 = synthetic) and :meth:`embed_batch` (the penultimate
    features), and may override :meth:`prepare` (the input protocol: crop, normalisation) and
    :meth:`load_weights` (when the checkpoint covers only part of the network).

    ``extract`` returns ``[B, 1]`` (``output: score``) or ``[B, embedding_dim]``
    (``output: embedding``). The network is loaded on first use; the checkpoint's sha256 is part
    of the fingerprint (so of every cached feature and saved pipeline) and of the results.
    """

    published: ClassVar[bool] = True
    paper: ClassVar[str] = ""
    protocol: ClassVar[str] = ""
    weights_url: ClassVar[str] = ""
    weights_licence: ClassVar[str] = ""
    weights_filename: ClassVar[str] = ""
    checkpoint_keys: ClassVar[tuple[str, ...]] = ("model", "net", "state_dict")
    embedding_dim: ClassVar[int] = 0
    min_size: ClassVar[int] = 1
    labels: ClassVar[tuple[str, str]] = ("real", "synthetic")  # score <= 0, score > 0

    class Params(fzoo.Params):
        weights: str = Field(
            "",
            description="the released checkpoint: a file, a folder holding it, or a hub id "
            "(empty: the released file's name, in the current folder)",
        )
        output: Literal["score", "embedding"] = Field(
            "score",
            description="score: one column, the published decision statistic (> 0 = synthetic); "
            "embedding: the penultimate features",
        )
        batch_size: int = Field(16, ge=1, le=4096, description="images per forward pass")
        device: str = Field(
            "cpu",
            pattern=r"^(cpu|auto|mps|cuda(:[0-9]{1,2})?)$",
            description="torch device: cpu, cuda, cuda:1, mps, auto",
        )
        dtype: Literal["float32", "bfloat16"] = Field(
            "float32", description="compute dtype of the network"
        )

    params: Params

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self._lock = threading.Lock()
        self._net: Any = None
        self._checkpoint: Path | None = None

    # ------------------------------------------------------------------ weights
    @property
    def weights_reference(self) -> str:
        """``params.weights``, or the released file's name when empty (looked up in the cwd)."""
        return self.params.weights or self.weights_filename

    def checkpoint_path(self) -> Path:
        """The checkpoint file on disk (resolved once; no loading)."""
        if self._checkpoint is None:
            self._checkpoint = resolve_checkpoint(
                self.weights_reference,
                detector=self.name,
                filename=self.weights_filename,
                url=self.weights_url,
            )
        return self._checkpoint

    def weight_hashes(self) -> dict[str, str]:
        """``{"<detector>:<file name>": sha256}`` of the checkpoint (memoised; no model load)."""
        path = self.checkpoint_path()
        return {f"{self.name}:{path.name}": sha256_file(path)}

    def load_weights(self, net: torch.nn.Module, path: Path) -> None:
        """Read the checkpoint and load it strictly into ``net`` (override for partial ones)."""
        state = load_state_dict(
            path, detector=self.name, keys=self.checkpoint_keys, url=self.weights_url
        )
        load_into(net, state, detector=self.name, path=path)

    # ------------------------------------------------------------------ model
    def build_network(self) -> torch.nn.Module:
        """An untrained network of the authors' architecture (keys as in their checkpoints)."""
        raise NotImplementedError

    def network(self) -> torch.nn.Module:
        """The network with the released weights, loaded on first use and kept."""
        with self._lock:
            if self._net is None:
                import torch

                path = self.checkpoint_path()
                net = self.build_network()
                self.load_weights(net, path)
                dtype = torch.bfloat16 if self.params.dtype == "bfloat16" else torch.float32
                net.to(device=_device(self.params.device), dtype=dtype).eval().requires_grad_(False)
                self._net = net
                self.note(
                    f"loaded checkpoint {path.name} (sha256 {sha256_file(path)}) "
                    f"on {self.params.device}, {self.params.dtype}"
                )
            return self._net

    # ------------------------------------------------------------------ protocol
    def smallest_side(self) -> int:
        """The smallest image side the protocol accepts (``min_size`` unless a param sets it)."""
        return self.min_size

    def check_size(self, batch: torch.Tensor) -> None:
        """Raise (never resample) when the images are smaller than the protocol needs."""
        h, w = int(batch.shape[-2]), int(batch.shape[-1])
        need = self.smallest_side()
        if min(h, w) < need:
            raise ValueError(
                f"{self.name}: image of {w}x{h} pixels is smaller than the {need} "
                f"pixels the published protocol needs ({self.protocol}); fzoo does not resample "
                "it silently. Upscale or skip such images yourself."
            )

    def prepare(self, batch: torch.Tensor) -> torch.Tensor:
        """The input protocol applied to a [0, 1] batch; the default is ImageNet mean/std."""
        return normalize(batch, IMAGENET_MEAN, IMAGENET_STD)

    def score_batch(self, net: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
        """The published decision statistic of each prepared image: ``[B]``, > 0 = synthetic."""
        raise NotImplementedError

    def embed_batch(self, net: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
        """The penultimate features of each prepared image: ``[B, embedding_dim]``."""
        raise NotImplementedError

    def extract(self, batch: torch.Tensor) -> np.ndarray:
        import torch

        if batch.ndim != 4 or batch.shape[1] != 3:
            raise ValueError(
                f"{self.name}: expected a [B, 3, H, W] batch, got {tuple(batch.shape)}"
            )
        self.check_size(batch)
        net = self.network()
        param = next(net.parameters())
        outs: list[np.ndarray] = []
        with torch.no_grad():
            for chunk in batch.split(self.params.batch_size):
                x = self.prepare(chunk.to(device=param.device, dtype=torch.float32))
                x = x.to(param.dtype)
                if self.params.output == "score":
                    y = self.score_batch(net, x).reshape(-1, 1)
                else:
                    y = self.embed_batch(net, x).reshape(x.shape[0], -1)
                outs.append(y.float().cpu().numpy())
        return np.concatenate(outs, axis=0).astype(np.float32)

    @classmethod
    def describe(cls) -> dict[str, str]:
        """What ``fzoo list detectors`` and the docs show for this detector."""
        return {
            "name": cls.name,
            "paper": cls.paper,
            "protocol": cls.protocol,
            "weights_file": cls.weights_filename,
            "weights_url": cls.weights_url,
            "weights_licence": cls.weights_licence,
        }


def normalize(batch: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> torch.Tensor:
    """``(batch - mean) / std`` per channel, for a ``[B, 3, H, W]`` batch."""
    import torch

    m = torch.tensor(mean, dtype=batch.dtype, device=batch.device).view(1, -1, 1, 1)
    s = torch.tensor(std, dtype=batch.dtype, device=batch.device).view(1, -1, 1, 1)
    return (batch - m) / s


def center_crop(batch: torch.Tensor, size: int) -> torch.Tensor:
    """The central ``size`` x ``size`` window (torchvision's rounding); images must be >= size."""
    h, w = int(batch.shape[-2]), int(batch.shape[-1])
    top = int(round((h - size) / 2.0))
    left = int(round((w - size) / 2.0))
    return batch[..., top : top + size, left : left + size]
