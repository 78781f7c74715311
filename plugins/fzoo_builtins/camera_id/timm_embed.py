"""timm backbones as feature extractors: ``timm-embedding`` (frozen), ``timm-finetune`` (learned).

Wightman, "PyTorch Image Models" (timm, https://github.com/huggingface/pytorch-image-models,
doi:10.5281/zenodo.4414861). Any architecture ``timm.create_model`` knows, by name. Weights:

- ``pretrained: false``: random initialisation under ``torch.manual_seed(seed)`` (deterministic
  per seed, timm and torch version; the versions enter the fingerprint);
- ``pretrained: true``: timm's default weights for the name (its ``pretrained_cfg``), fetched
  only through ``fzoo.resolve_weights`` from the Hugging Face hub id timm lists (the local cache
  first; offline, a ``WeightsNotFoundError`` with the ``hf download`` command to run); models
  whose weights timm hosts only at a URL raise an error naming the URL;
- ``pretrained: "<file | folder | org/name>"``: those weights (``.safetensors``, or a torch file
  loaded with ``weights_only=True``; a folder's ``model.safetensors`` /
  ``pytorch_model.bin``).

timm adapts the first convolution to ``in_chans`` (1: the BT.601 luma of the RGB image) and
drops the ImageNet head. Images are never resized: each is centre-cropped to ``input_size``
(reflect-padded when smaller) or, without ``input_size``, centre-cropped to a multiple of 32 px
per side (the total stride of most backbones; a note says so); sides under 32 px raise
``ValueError``. Pixels are normalised with the model's ``pretrained_cfg`` mean and std.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import numpy as np
from pydantic import Field, field_validator

import fzoo
from fzoo.known_names import known_names
from fzoo_builtins.camera_id.extractor import torch_threads

if TYPE_CHECKING:
    import torch

MULTIPLE = 32
STATE_FORMAT = 1
_LUMA = (0.299, 0.587, 0.114)
_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin", "open_clip_pytorch_model.bin")


def _timm_architectures() -> list[str]:
    """Every architecture name ``timm.is_model`` accepts (deprecated aliases included)."""
    import timm
    from timm.models import _registry

    names = getattr(_registry, "_model_entrypoints", None)
    return sorted(names) if isinstance(names, dict) else timm.list_models()


def _validate_model_name(name: str) -> str:
    if ":" in name:
        raise ValueError(
            f"model {name!r}: give the timm architecture name (e.g. 'resnet18' or "
            "'resnet18.a1_in1k') and the weights in 'pretrained' (a hub id, file or folder)"
        )
    arch = name.split(".", 1)[0]
    if arch in known_names("timm", "architectures", _timm_architectures):
        return name  # known to this timm version: no need to import timm (and torch) to check
    import timm

    if not timm.is_model(arch):
        close = timm.list_models(f"*{arch}*")[:5]
        hint = f"; similar: {', '.join(close)}" if close else ""
        raise ValueError(f"unknown timm model {name!r}{hint}")
    return name


def _weight_file(path: Path) -> Path:
    """The checkpoint inside a resolved weights path (a file, or a folder holding one)."""
    if path.is_file():
        return path
    for name in _WEIGHT_FILES:
        if (path / name).is_file():
            return path / name
    found = sorted(path.glob("*.safetensors")) + sorted(path.glob("*.pth"))
    if len(found) == 1:
        return found[0]
    raise fzoo.WeightsNotFoundError(
        f"{path}: no model.safetensors / pytorch_model.bin, and not exactly one *.safetensors or "
        f"*.pth file ({len(found)} found); point 'pretrained' at the checkpoint file"
    )


class _TimmBase(fzoo.FeatureExtractor):
    """Shared machinery: weights resolution, model creation, preprocessing, pooling."""

    version = "1"
    weight_params = ("pretrained",)  # a checkpoint path: its content hash in the fingerprint

    class Params(fzoo.Params):
        model: str = Field("resnet18", description="timm model name, e.g. resnet18")
        pretrained: bool | str = Field(
            False,
            description="false: random init (seeded); true: timm's default weights via the hub "
            "(fzoo.resolve_weights); or a local file / folder / hub id of weights",
        )
        in_chans: Literal[1, 3] = Field(3, description="3: RGB; 1: the BT.601 luma")
        pool: Literal["avg", "max"] = Field("avg", description="global pooling of feature maps")
        input_size: int | None = Field(
            None,
            ge=MULTIPLE,
            le=8192,
            description="centre-crop (or reflect-pad) every image to this square size; null: "
            "centre-crop each side to a multiple of 32 (never resized)",
        )
        normalize: bool = Field(True, description="normalise with the model's mean and std")
        seed: int = Field(
            0, ge=0, le=2**32 - 1, description="seed of the random initialisation (and training)"
        )
        threads: int | None = Field(
            None, ge=1, le=1024, description="torch CPU threads (null: unchanged)"
        )

        @field_validator("model")
        @classmethod
        def _model_exists(cls, v: str) -> str:
            return _validate_model_name(v)

    params: Params

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self._weights: Path | None = None
        self._model: Any = None

    # ------------------------------------------------------------------ weights
    def weights_file(self) -> Path | None:
        """The checkpoint file of ``pretrained`` (None for random init); resolved once."""
        p = self.params
        if p.pretrained is False:
            return None
        if self._weights is None:
            if p.pretrained is True:
                import timm

                cfg = timm.models.get_pretrained_cfg(p.model)
                hub_id = getattr(cfg, "hf_hub_id", None) if cfg is not None else None
                if not hub_id:
                    url = getattr(cfg, "url", None) if cfg is not None else None
                    where = f"at {url}" if url else "nowhere timm knows"
                    raise fzoo.WeightsNotFoundError(
                        f"timm model {p.model!r}: its default weights are {where}, not on the "
                        "Hugging Face hub; download them and set pretrained: /path/to/file"
                    )
                resolved = fzoo.resolve_weights(hub_id, param="pretrained")
                filename = getattr(cfg, "hf_hub_filename", None)
                path = resolved.path / filename if filename else resolved.path
            else:
                path = fzoo.resolve_weights(p.pretrained, param="pretrained").path
            self._weights = _weight_file(path)
        return self._weights

    def weight_hashes(self) -> dict[str, str]:
        """sha256 of the checkpoint; for random init, the versions that define the init."""
        path = self.weights_file()
        if path is None:
            import timm
            import torch

            return {"random-init": f"timm {timm.__version__}, torch {torch.__version__}"}
        return fzoo.weight_hashes(path)

    # ------------------------------------------------------------------ model
    def _create(self, **kwargs: Any) -> Any:
        import timm
        import torch

        p = self.params
        file = self.weights_file()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(p.seed)
            if file is None:
                model = timm.create_model(p.model, pretrained=False, in_chans=p.in_chans, **kwargs)
            else:
                model = timm.create_model(
                    p.model,
                    pretrained=True,
                    pretrained_cfg_overlay={"file": str(file), "source": "timm"},
                    in_chans=p.in_chans,
                    **kwargs,
                )
        return model.eval()

    def _backbone_kwargs(self) -> dict[str, Any]:
        return {"num_classes": 0, "global_pool": self.params.pool}

    def _norm_stats(self, model: Any) -> tuple[list[float], list[float]]:
        cfg = getattr(model, "pretrained_cfg", None) or {}
        mean = list(cfg.get("mean", (0.485, 0.456, 0.406)))
        std = list(cfg.get("std", (0.229, 0.224, 0.225)))
        if self.params.in_chans == 1:
            mean, std = [float(np.mean(mean))], [float(np.mean(std))]
        return mean, std

    def prepare(self, batch: torch.Tensor) -> torch.Tensor:
        """Crop (or pad) to the input size, convert channels, normalise: what the model sees."""
        import torch

        if batch.dim() != 4 or batch.shape[1] != 3:
            raise ValueError(f"{self.name}: expected [B, 3, H, W], got {tuple(batch.shape)}")
        x = batch.detach().cpu().float()
        p = self.params
        h, w = int(x.shape[2]), int(x.shape[3])
        if p.input_size is not None:
            th = tw = p.input_size
            pad_h, pad_w = max(0, th - h), max(0, tw - w)
            if pad_h or pad_w:
                if pad_h >= h or pad_w >= w:
                    raise ValueError(
                        f"{self.name}: a {w}x{h} image is too small to reflect-pad to "
                        f"{p.input_size} px (pad less than the image side)"
                    )
                x = torch.nn.functional.pad(
                    x, (pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2), "reflect"
                )
                self.note(f"reflect-padded {w}x{h} to {p.input_size} px")
                h, w = int(x.shape[2]), int(x.shape[3])
        else:
            if min(h, w) < MULTIPLE:
                raise ValueError(f"{self.name}: a {w}x{h} image is smaller than {MULTIPLE} px")
            th, tw = h // MULTIPLE * MULTIPLE, w // MULTIPLE * MULTIPLE
            if (th, tw) != (h, w):
                self.note(f"centre-cropped {w}x{h} to {tw}x{th} (a multiple of {MULTIPLE} px)")
        y0, x0 = (h - th) // 2, (w - tw) // 2
        x = x[:, :, y0 : y0 + th, x0 : x0 + tw]
        if p.in_chans == 1:
            luma = torch.tensor(_LUMA, dtype=x.dtype).view(1, 3, 1, 1)
            x = (x * luma).sum(dim=1, keepdim=True)
        if p.normalize:
            mean, std = self._norm_stats(self._require_model())
            x = (x - torch.tensor(mean).view(1, -1, 1, 1)) / torch.tensor(std).view(1, -1, 1, 1)
        return x.contiguous()

    def note(self, message: str) -> None:
        """Record a note once per distinct message (not once per batch)."""
        seen = self.__dict__.setdefault("_noted", set())
        if message not in seen:
            seen.add(message)
            super().note(message)

    def _require_model(self) -> Any:
        if self._model is None:
            self._model = self._create(**self._backbone_kwargs())
        return self._model


class TimmEmbedding(_TimmBase):
    """Frozen timm backbone (Wightman, timm) as a feature extractor: a pooled embedding.

    ``stages: null``: the model's own global pooling (``pool``) of its last feature map,
    ``[B, num_features]``. ``stages: [i, ...]``: timm's ``features_only`` maps of those stages
    (``out_indices``), each globally pooled and concatenated in the given order (early stages
    keep the high-frequency traces forensics needs). Nothing is learned (``requires_fit`` is
    False): with ``pretrained: false`` the features are those of a seeded random network, a
    baseline; see the module docstring for weights, cropping and normalisation.
    """

    name = "timm-embedding"
    description = "Frozen timm backbone embedding (any timm model; Wightman, timm)"

    class Params(_TimmBase.Params):
        stages: list[Annotated[int, Field(ge=0, le=16)]] | None = Field(
            None,
            description="pool and concatenate these features_only stages (null: final embedding)",
        )

    params: Params

    def _backbone_kwargs(self) -> dict[str, Any]:
        if self.params.stages is None:
            return super()._backbone_kwargs()
        return {"features_only": True, "out_indices": tuple(self.params.stages)}

    def extract(self, batch: torch.Tensor) -> np.ndarray:
        import torch

        p = self.params
        with torch_threads(p.threads), torch.no_grad():
            model = self._require_model()
            x = self.prepare(batch)
            if x.shape[0] == 0:
                return np.zeros((0, 0), dtype=np.float32)
            out = model(x)
            if p.stages is not None:
                pooled = [
                    m.amax(dim=(2, 3)) if p.pool == "max" else m.mean(dim=(2, 3)) for m in out
                ]
                out = torch.cat(pooled, dim=1)
        return out.float().numpy()


class TimmFinetune(_TimmBase):
    """A timm backbone (Wightman, timm) fine-tuned on the train split: learned extractor.

    ``fit``: a linear head on the pooled embedding (and, with ``train_last_stage``, the
    backbone's last stage, timm's ``feature_info[-1]``) is trained with cross-entropy on
    ``crops_per_image`` random ``crop`` px crops (offsets multiples of 8) of every training
    image per epoch, Adam, cosine decay, seeded; the rest of the backbone stays frozen in eval
    mode. ``output``: ``logits`` (columns in the sorted order of the training classes, for
    ``argmax-logits``), ``probabilities`` or ``embedding`` (the pooled features). The state is
    the whole model in ``model.safetensors`` + ``timm_finetune.json`` (no pickle).
    """

    name = "timm-finetune"
    description = "timm backbone + linear head fine-tuned on the train split (learned)"
    requires_fit = True

    class Params(_TimmBase.Params):
        fit_target: Literal["label", "camera"] = Field(
            "label", description="record field the head learns to predict"
        )
        fit_on: list[str] | None = Field(
            None, description="train only on images with these labels (null: all)"
        )
        train_last_stage: bool = Field(
            False, description="also fine-tune the backbone's last stage"
        )
        crop: int = Field(
            64, ge=MULTIPLE, le=8192, description="side of the random training crops (px)"
        )
        crops_per_image: int = Field(
            8, ge=1, le=10_000, description="training crops per image per epoch"
        )
        epochs: int = Field(3, ge=1, le=10_000, description="training epochs")
        lr: float = Field(1e-3, gt=0, le=10, description="Adam learning rate (cosine decay)")
        batch_size: int = Field(32, ge=1, le=65_536, description="crops per optimiser step")
        output: Literal["logits", "embedding", "probabilities"] = Field(
            "logits", description="what extract returns"
        )

    params: Params

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self.classes_: list[str] = []
        self.head: Any = None

    def _trainable_prefix(self, model: Any) -> str | None:
        info = getattr(model, "feature_info", None)
        if not self.params.train_last_stage or not info:
            return None
        module = info[-1]["module"] if isinstance(info, list) else info.module_name()[-1]
        return str(module)

    def fit(self, batches: Iterable[torch.Tensor], labels: Sequence[str]) -> TimmFinetune:
        import torch

        p = self.params
        images, ys = [], []
        for img, label in zip(batches, labels, strict=True):
            x = img.detach().cpu().float()
            if x.dim() == 3:
                x = x[None]
            if min(x.shape[2:]) < p.crop:
                continue
            images.append(x[0])
            ys.append(str(label))
        classes = sorted(set(ys))
        if len(classes) < 2:
            raise ValueError(
                f"{self.name}: needs at least two classes with images >= {p.crop} px, got "
                f"{classes} (fit_target={p.fit_target!r}, fit_on={p.fit_on})"
            )
        y = torch.tensor([classes.index(v) for v in ys])
        rng = np.random.default_rng(p.seed)
        with torch_threads(p.threads), torch.random.fork_rng(devices=[]):
            model = self._require_model()
            torch.manual_seed(p.seed)
            head = torch.nn.Linear(model.num_features, len(classes))
            prefix = self._trainable_prefix(model)
            for name, param in model.named_parameters():
                param.requires_grad = prefix is not None and name.startswith(prefix + ".")
            params = [q for q in model.parameters() if q.requires_grad] + list(head.parameters())
            opt = torch.optim.Adam(params, lr=p.lr)
            n = len(images) * p.crops_per_image
            steps = p.epochs * math.ceil(n / p.batch_size)
            sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
            stage = model.get_submodule(prefix) if prefix else None
            for _ in range(p.epochs):
                order = np.repeat(np.arange(len(images)), p.crops_per_image)[rng.permutation(n)]
                for s in range(0, n, p.batch_size):
                    crops = []
                    for i in order[s : s + p.batch_size]:
                        img = images[int(i)]
                        h, w = int(img.shape[1]), int(img.shape[2])
                        y0 = int(rng.integers(0, (h - p.crop) // 8 + 1)) * 8
                        x0 = int(rng.integers(0, (w - p.crop) // 8 + 1)) * 8
                        crops.append(img[:, y0 : y0 + p.crop, x0 : x0 + p.crop])
                    x = self.prepare(torch.stack(crops))
                    model.eval()
                    if stage is not None:
                        stage.train()
                    loss = torch.nn.functional.cross_entropy(
                        head(model(x)), y[order[s : s + p.batch_size]]
                    )
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                    sched.step()
            model.eval()
            for param in model.parameters():
                param.requires_grad = False
        self.pop_notes()  # crop notes of training crops are not about the test images
        self.head = head.eval()
        self.classes_ = classes
        return self

    def extract(self, batch: torch.Tensor) -> np.ndarray:
        import torch

        if self.head is None:
            raise RuntimeError(f"{self.name} is not fitted: call fit or load_state first")
        p = self.params
        with torch_threads(p.threads), torch.no_grad():
            model = self._require_model()
            emb = model(self.prepare(batch))
            if p.output == "embedding":
                return emb.float().numpy()
            logits = self.head(emb)
            if p.output == "probabilities":
                logits = torch.softmax(logits, dim=1)
        return logits.float().numpy()

    def save_state(self, directory: Path) -> None:
        from safetensors.torch import save_file

        if self.head is None:
            raise RuntimeError(f"{self.name} is not fitted")
        d = Path(directory)
        state = {f"model.{k}": v for k, v in self._require_model().state_dict().items()}
        state.update({f"head.{k}": v for k, v in self.head.state_dict().items()})
        save_file(
            {k: v.detach().cpu().contiguous() for k, v in state.items()},
            str(d / "model.safetensors"),
        )
        meta = {"format": STATE_FORMAT, "classes": self.classes_, "model": self.params.model}
        (d / "timm_finetune.json").write_text(json.dumps(meta, indent=2), encoding="utf-8")

    def load_state(self, directory: Path) -> None:
        import timm
        import torch
        from safetensors.torch import load_file

        d = Path(directory)
        meta = json.loads((d / "timm_finetune.json").read_text(encoding="utf-8"))
        if meta.get("format") != STATE_FORMAT:
            raise ValueError(f"{d}: unsupported timm_finetune state format {meta.get('format')}")
        state = load_file(str(d / "model.safetensors"))
        p = self.params
        with torch.random.fork_rng(devices=[]):  # every weight comes from the state
            model = timm.create_model(p.model, pretrained=False, in_chans=p.in_chans,
                                      **self._backbone_kwargs())  # fmt: skip
            head = torch.nn.Linear(model.num_features, len(meta["classes"]))
        model.load_state_dict({k[6:]: v for k, v in state.items() if k.startswith("model.")})
        head.load_state_dict({k[5:]: v for k, v in state.items() if k.startswith("head.")})
        self._model = model.eval()
        self.head = head.eval()
        self.classes_ = list(meta["classes"])
