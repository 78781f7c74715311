"""Component contracts: Launderer, FeatureExtractor, Classifier, Perturbation, Generator, Dataset.

Images travel as ``torch.Tensor`` batches: float32, RGB, NCHW, values in [0, 1]. Every component
declares a unique ``name``, a one-line ``description``, and its parameters as a nested pydantic
model called ``Params``; ``fingerprint()`` hashes class, version, parameters and weight hashes.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel, ConfigDict

if TYPE_CHECKING:  # numpy is imported where used: `import fzoo` and `fzoo --help` go without it
    import numpy as np
    import torch


class Params(BaseModel):
    """Base class of component parameters: unknown keys are rejected, values are frozen, and
    floats must be finite (``inf``/``nan`` would validate and then fail at run time)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


def stable_hash(obj: Any, length: int = 20) -> str:
    """sha256 of the canonical JSON of ``obj`` (sorted keys), truncated to ``length`` hex digits."""
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:length]


_PROVENANCE: dict[str, dict[str, Any]] = {}

#: Import paths that moved, as fingerprints spell them: the built-ins were ``fzoo.plugins.*`` until
#: the layout move of issue #12. Fingerprints (cache keys, saved pipelines' identity) keep the old
#: spelling so caches and pipelines saved before the move stay valid.
_FINGERPRINT_MODULE_ALIASES: tuple[tuple[str, str], ...] = (("fzoo_builtins.", "fzoo.plugins."),)


def _fingerprint_module(module: str) -> str:
    """``module`` as fingerprints name it (see :data:`_FINGERPRINT_MODULE_ALIASES`)."""
    for new, old in _FINGERPRINT_MODULE_ALIASES:
        if module.startswith(new):
            return old + module[len(new) :]
    return module


def provenance_of(fingerprint: str) -> dict[str, Any] | None:
    """``{"component", "weights": {file: sha256}, ...}`` of a weight-bearing component whose
    fingerprint this process computed (None for components without weights)."""
    return _PROVENANCE.get(fingerprint)


class Component:
    """Base of every component. Subclasses set ``name``, ``description`` and a nested ``Params``."""

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    kind: ClassVar[str] = ""
    version: ClassVar[str] = "1"
    Params: ClassVar[type[BaseModel]] = Params

    def __init__(self, **params: Any) -> None:
        self.params = self.Params(**params)

    def get_params(self) -> dict[str, Any]:
        """The validated parameters as plain JSON-compatible values."""
        return self.params.model_dump(mode="json")

    #: Parameters that say where the weights are (a path or a hub id). When the component reports
    #: weight hashes, their values (but None and booleans) are left out of :meth:`fingerprint`:
    #: the files' content identifies the weights, not the spelling of the path (``w/taef2``,
    #: ``w/./taef2/`` and a symlink to it are the same weights; a changed file is not).
    weight_params: ClassVar[tuple[str, ...]] = ("weights",)

    def weight_hashes(self) -> dict[str, str]:
        """sha256 of every weight file this component uses (empty when it has none).

        Use :func:`fzoo.weight_hashes` (content hashes cached by resolved path, size and mtime)."""
        return {}

    def provenance(self) -> dict[str, Any]:
        """What results record about this component's weights: ``{"weights": {file: sha256}}``
        (empty for a component without weights). Plugins add what they resolved at run time
        (``taesd``: the ``variant`` actually loaded)."""
        hashes = self.weight_hashes()
        return {"weights": hashes} if hashes else {}

    def note(self, message: str) -> None:
        """Record something the results must mention (e.g. an image cropped to a multiple of 8)."""
        self.__dict__.setdefault("_notes", []).append(message)

    def pop_notes(self) -> list[str]:
        """Return and clear the notes recorded since the last call (the runner reports them)."""
        notes: list[str] = self.__dict__.pop("_notes", [])
        return notes

    def fingerprint(self, *, with_paths: bool = False) -> str:
        """Stable hash of class, version, parameters and weight hashes: the cache identity.

        Components without weights hash their parameters as they are. With weights, the values
        of :attr:`weight_params` (but None and booleans) are replaced by a marker: the weights'
        content hashes stand for them, so the same files under another path share cache entries.
        ``with_paths``: the older fingerprint that hashed those values too (saved pipelines of
        earlier versions are checked against it). A weight-bearing component's
        :meth:`provenance` is remembered under its fingerprint (:func:`provenance_of`).
        """
        cls = type(self)
        hashes = self.weight_hashes()
        params = self.get_params()
        if hashes and not with_paths:
            located = [k for k, v in params.items() if v is not None and not isinstance(v, bool)]
            params |= {k: "<sha256>" for k in located if k in cls.weight_params}
        fp = stable_hash(
            {
                "class": _fingerprint_module(cls.__module__) + "." + cls.__qualname__,
                "name": cls.name,
                "version": cls.version,
                "params": params,
                "weights": hashes,
            }
        )
        if hashes and fp not in _PROVENANCE:
            _PROVENANCE[fp] = {"component": cls.name, **self.provenance()}
        return fp

    @classmethod
    def params_schema(cls) -> dict[str, Any]:
        """JSON schema of the parameters (what ``fzoo list`` prints).

        Defaults made by a factory are filled in, so a listing never calls them "required".
        """
        schema = cls.Params.model_json_schema()
        props = schema.get("properties", {})
        for name, info in cls.Params.model_fields.items():
            key = info.alias or name
            if key in props and "default" not in props[key] and not info.is_required():
                value = info.get_default(call_default_factory=True)
                props[key]["default"] = json.loads(json.dumps(value, default=str))
        return schema

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"


class Launderer(Component):
    """Maps a batch to a look-alike batch of the same size (e.g. an autoencoder round trip).

    The output keeps the batch size, the channels, values in [0, 1] and the image size, but may
    be cropped (top-left) to sides that are multiples of :attr:`multiple`; a launderer that
    resizes sets :attr:`changes_size` (checked at run time: :mod:`fzoo.contracts`).
    """

    kind = "launderer"
    multiple: ClassVar[int] = 1
    #: whether the output may have another size than the input (a resize, an arbitrary crop)
    changes_size: ClassVar[bool] = False

    def launder(self, batch: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


class Generator(Component):
    """A source of fully synthetic images.

    ``generate(n, seed)`` samples from noise. Generators that can also re-synthesise a given image
    (img2img: the image's latent partly noised, then denoised) set ``supports_img2img`` and
    implement ``img2img(batch, seed)``; a derived class with ``from:`` uses that.
    """

    kind = "generator"
    supports_img2img: ClassVar[bool] = False
    #: ``img2img`` may crop its input (top-left) to sides that are multiples of this
    multiple: ClassVar[int] = 1
    #: whether ``img2img`` may return another size than its input
    changes_size: ClassVar[bool] = False

    def generate(self, n: int, seed: int) -> torch.Tensor:
        raise NotImplementedError

    def img2img(self, batch: torch.Tensor, seed: int) -> torch.Tensor:
        raise NotImplementedError(f"generator {self.name!r} does not support img2img")


class Perturbation(Component):
    """A post-processing operation (robustness condition): JPEG, resize, blur, crop, noise.

    ``apply`` keeps the batch size, the channels, values in [0, 1] and, unless the class sets
    :attr:`changes_size` (resize, crop), the image size.
    """

    kind = "perturbation"
    multiple: ClassVar[int] = 1
    #: whether the output may have another size than the input (resize, crop)
    changes_size: ClassVar[bool] = False

    def apply(self, batch: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
        raise NotImplementedError


class FeatureExtractor(Component):
    """Maps a batch to a feature matrix ``[B, D]``; learned extractors also implement ``fit``.

    A learned extractor sets ``requires_fit = True`` and implements ``fit``, ``save_state`` and
    ``load_state`` (no pickle). The runner fits it on the training split only, with the labels
    named by :attr:`fit_target` (``"label"`` or ``"camera"``) and only on images of the labels
    :attr:`fit_on`; the fitted state is cached and saved with every pipeline that uses it.
    """

    kind = "feature_extractor"
    requires_fit: ClassVar[bool] = False

    @property
    def fit_target(self) -> str:
        """What :meth:`fit` learns: ``"label"`` or ``"camera"``. Default: the extractor's
        ``fit_target`` parameter when it has one, else ``"label"``."""
        return str(getattr(self.params, "fit_target", "label"))

    @property
    def fit_on(self) -> list[str] | None:
        """The labels of the training images :meth:`fit` sees (None: all). Default: the
        extractor's ``fit_on`` parameter when it has one."""
        value = getattr(self.params, "fit_on", None)
        return None if value is None else list(value)

    def extract(self, batch: torch.Tensor) -> np.ndarray:
        raise NotImplementedError

    def fit(self, batches: Iterable[torch.Tensor], labels: Sequence[str]) -> FeatureExtractor:
        """Learn from training images (train split only); the default does nothing."""
        return self

    def save_state(self, directory: Path) -> None:
        """Write the fitted state into ``directory`` (learned extractors only)."""
        raise NotImplementedError(f"{self.name!r} cannot save a fitted state")

    def load_state(self, directory: Path) -> None:
        """Read the state written by :meth:`save_state`."""
        raise NotImplementedError(f"{self.name!r} cannot load a fitted state")


class Classifier(Component):
    """A scikit-learn style estimator: ``fit(X, y)``, ``predict_proba(X)``, ``classes_``.

    Plugins usually implement ``build_estimator()`` and inherit the rest; the fitted estimator is
    saved with skops (no pickle) and loaded back only when every node of the file is on an
    explicit allow-list of exact types (:mod:`fzoo.persist`; extend it with ``trusted_types``).
    """

    kind = "classifier"
    #: Exact ``module.Class`` names, beyond the scikit-learn types fzoo's own classifiers use
    #: (:data:`fzoo.persist.SKLEARN_TYPES`), that this classifier's saved estimator may contain;
    #: e.g. ``("sklearn.neighbors._classification.KNeighborsClassifier",)``. No prefixes.
    trusted_types: tuple[str, ...] = ()
    estimator_: Any
    classes_: np.ndarray

    def build_estimator(self) -> Any:
        raise NotImplementedError

    def fit(self, X: np.ndarray, y: Sequence[Any]) -> Classifier:
        import numpy as np

        self.estimator_ = self.build_estimator()
        self.estimator_.fit(X, np.asarray(y))
        self.classes_ = np.asarray(self.estimator_.classes_)
        return self

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        import numpy as np

        return np.asarray(self.estimator_.predict_proba(X), dtype=np.float64)

    def predict(self, X: np.ndarray) -> np.ndarray:
        import numpy as np

        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]

    def save_state(self, directory: Path) -> None:
        """Write the fitted state into ``directory`` (skops format)."""
        from fzoo.persist import save_estimator

        save_estimator(self.estimator_, Path(directory) / "estimator.skops")

    def load_state(self, directory: Path) -> None:
        """Read the state written by :meth:`save_state`; refuses untrusted types."""
        from fzoo.persist import load_estimator

        path = Path(directory) / "estimator.skops"
        import numpy as np

        self.estimator_ = load_estimator(path, extra_trusted=type(self).trusted_types)
        self.classes_ = np.asarray(self.estimator_.classes_)


@dataclass
class Record:
    """One image of a dataset: where its bytes are, its label and its provenance.

    Exactly one of ``path`` or ``data`` (encoded image bytes) is set; both are decoded by
    :func:`fzoo.images.load_image`. ``source`` groups a photo with everything derived from it
    (the split never separates a group). ``split`` may force ``"train"`` or ``"test"``.
    ``tile`` is ``(x, y, width, height)``: the record is that exact crop of the decoded image
    (see :mod:`fzoo.tiles`); None is the whole image.
    """

    label: str
    source: str
    path: str | None = None
    data: bytes | None = None
    camera: str | None = None
    split: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    tile: tuple[int, int, int, int] | None = None

    @property
    def tile_name(self) -> str:
        """``#x=256,y=0`` for a tile, else empty."""
        return "" if self.tile is None else f"#x={self.tile[0]},y={self.tile[1]}"

    @property
    def display(self) -> str:
        base = self.path if self.path is not None else f"<{self.source}>"
        return base + self.tile_name


class Dataset(Component):
    """Yields :class:`Record` objects (folders, manifests, simulated cameras)."""

    kind = "dataset"

    def records(self) -> Iterator[Record]:
        raise NotImplementedError


@dataclass(frozen=True)
class Kind:
    """A kind of component: its name in YAML, its base class, the plugin hook that registers it,
    the other words ``fzoo list`` accepts for it, and the methods a class of the kind must
    override (checked at registration, :mod:`fzoo.contracts`).

    ``methods`` lists alternatives: a class overrides every method of at least one of them (a
    classifier: ``build_estimator``, or ``fit`` and ``predict_proba``). ``learned_methods`` are
    required too when the class sets ``requires_fit``.
    """

    name: str
    base: type[Component]
    hook: str
    aliases: tuple[str, ...] = ()
    methods: tuple[tuple[str, ...], ...] = ()
    learned_methods: tuple[str, ...] = ()


#: The one table of component kinds, in the order they are listed. ``KINDS``, ``BASES``,
#: ``fzoo.plugin_manager.HOOK_OF_KIND`` and ``KIND_ALIASES`` (``fzoo list``) derive from it; a new
#: kind needs a row here, a base class above and a hook spec in :mod:`fzoo.hookspecs`.
KIND_TABLE: tuple[Kind, ...] = (
    Kind("launderer", Launderer, "fzoo_register_launderers", ("launderers",), (("launder",),)),
    Kind(
        "feature_extractor",
        FeatureExtractor,
        "fzoo_register_feature_extractors",
        ("features", "feature-extractors", "feature_extractors", "extractors"),
        (("extract",),),
        ("fit", "save_state", "load_state"),
    ),
    Kind(
        "classifier",
        Classifier,
        "fzoo_register_classifiers",
        ("classifiers",),
        (("build_estimator",), ("fit", "predict_proba")),
    ),
    Kind(
        "perturbation",
        Perturbation,
        "fzoo_register_perturbations",
        ("perturbations",),
        (("apply",),),
    ),
    Kind("generator", Generator, "fzoo_register_generators", ("generators",), (("generate",),)),
    Kind("dataset", Dataset, "fzoo_register_datasets", ("datasets",), (("records",),)),
)
KINDS: tuple[str, ...] = tuple(k.name for k in KIND_TABLE)
BASES: dict[str, type[Component]] = {k.name: k.base for k in KIND_TABLE}
#: other words for a kind (plural, hyphenated) -> the kind
KIND_ALIASES: dict[str, str] = {a: k.name for k in KIND_TABLE for a in k.aliases}
