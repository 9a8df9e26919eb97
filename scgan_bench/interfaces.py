"""The interfaces every plug-in implements: SR methods, metrics and datasets.

Images cross these interfaces as ``HxWx3`` RGB uint8 NumPy arrays (what is read from and written to
PNG), except SR methods, which take and return float32 NCHW torch tensors in [0, 1].

Plug-ins are plain classes that satisfy these protocols (no base classes); each is registered once, as
a spec, in :mod:`scgan_bench.registries`. The runner dispatches on the protocol a metric implements,
never on its name, and never branches on a method's name: each adapter owns its resizing.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Literal, Mapping, Protocol, Sequence, runtime_checkable

import numpy as np

if TYPE_CHECKING:  # torch is imported where an SR method runs, not to register or list one
    import torch

    from .io.manifest import Manifest   # (manifest imports this module)
    from .protocols import EvalProtocol


@dataclass(frozen=True)
class Availability:
    """Whether a plug-in can run here, and if not, what the user can do about it."""

    ok: bool
    reason: str = ""

    @classmethod
    def yes(cls) -> "Availability":
        return cls(True, "")


# --------------------------------------------------------------------------------- SR methods
@runtime_checkable
class SRMethod(Protocol):
    """A super-resolution method: float32 NCHW RGB in [0, 1] -> ``scale`` times larger, same range.

    ``fingerprint()`` returns everything that determines the output (code version, options, weights
    sha256); it enters the cache key.
    """

    name: str
    scale: int

    def upscale(self, lr: torch.Tensor) -> torch.Tensor: ...

    def fingerprint(self) -> Mapping[str, Any]: ...


@runtime_checkable
class AnnotatingMethod(Protocol):
    """An SR method that also reports per-image notes (e.g. PULSE's convergence, DFDNet's fallback part
    boxes): one flat dict of str -> bool / number / str per image, stored beside the SR record, counted in
    the summary and shown in the report. The runner calls this instead of ``upscale``."""

    name: str
    scale: int

    def upscale_with_notes(self, lr: torch.Tensor) -> tuple[torch.Tensor, list[dict[str, Any]]]: ...

    def fingerprint(self) -> Mapping[str, Any]: ...


@runtime_checkable
class IdAwareMethod(Protocol):
    """An SR method that needs to know which images it is given (precomputed outputs matched by id, a
    method that looks per-image data up): the runner calls ``upscale_ids`` with the batch, its image
    ids and the dataset's name instead of ``upscale``."""

    name: str
    scale: int

    def upscale_ids(self, lr: torch.Tensor, ids: list[str], dataset: str) -> torch.Tensor: ...

    def fingerprint(self) -> Mapping[str, Any]: ...


@runtime_checkable
class ReferenceMethod(Protocol):
    """A pseudo-method that needs the HR image (the ``ground-truth`` row of Table 7): the runner
    hands it the HR batch too, and skips it on real-world sets, which have none."""

    name: str
    scale: int

    def upscale_reference(self, lr: torch.Tensor, hr: torch.Tensor) -> torch.Tensor: ...

    def fingerprint(self) -> Mapping[str, Any]: ...


@dataclass(frozen=True)
class MethodSpec:
    """Registry entry for an SR method; ``factory(device=..., **options)`` builds it on a torch device.

    ``options`` are ``(name, default, help)`` triples (``run --method-opt NAME:KEY=VALUE``); ``license``
    is the licence of the code and weights a user takes on by picking the method, ``card`` the file of
    its method card, ``weights`` the assets it reads (``scgan-bench weights list``)."""

    name: str
    factory: Callable[..., SRMethod]
    summary: str
    paper: str = ""
    availability: Callable[[], Availability] = Availability.yes
    license: str = ""
    card: str = ""
    options: tuple[tuple[str, Any, str], ...] = ()
    weights: tuple[str, ...] = ()
    #: a reference row rather than an SR method (``ground-truth``): never ranked, listed last
    pseudo: bool = False

    def defaults(self) -> dict[str, Any]:
        return {k: v for k, v, _ in self.options}

    def check(self, **options: Any) -> Availability:
        """Availability under the given options (an availability check that takes ``**options`` sees
        them, e.g. PULSE's ``allow_cpu``)."""
        import inspect

        try:
            params = inspect.signature(self.availability).parameters.values()
        except (TypeError, ValueError):
            params = []
        if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
            return self.availability(**options)
        return self.availability()

    def create(self, device: str = "cpu", protocol: EvalProtocol | None = None, **options: Any
               ) -> SRMethod | ReferenceMethod:
        """Build the method on ``device``. Under another protocol than SCGAN's, a factory that takes a
        ``protocol`` keyword gets it (a face restorer's bridge then goes to the protocol's sizes); others
        are bridged by the runner (:meth:`.protocols.EvalProtocol.input_for`)."""
        unknown = sorted(set(options) - set(self.defaults()))
        if unknown:
            from .errors import UsageError

            allowed = ", ".join(sorted(self.defaults())) or "none"
            raise UsageError(f"method {self.name!r} has no option {unknown[0]!r}; options: {allowed}")
        from .assets.weights import pin_after_load

        if protocol is not None and not protocol.is_default and takes_protocol(self.factory):
            options = {**options, "protocol": protocol}
        with pin_after_load():   # first-use weight files are pinned only once the method is built
            return self.factory(device=device, **options)


def takes_protocol(factory: Callable[..., Any]) -> bool:
    """Whether a method factory declares a ``protocol`` keyword (it then fits itself to the protocol)."""
    import inspect

    try:
        return "protocol" in inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return False


# --------------------------------------------------------------------------------- metrics
@runtime_checkable
class PairedMetric(Protocol):
    """Full-reference metric: one value per (SR, HR) pair of ``HxWx3`` uint8 images."""

    def score_pairs(self, sr: Sequence[np.ndarray], hr: Sequence[np.ndarray]) -> list[float]: ...


@runtime_checkable
class NoReferenceMetric(Protocol):
    """No-reference metric: one value per SR image."""

    def score_images(self, sr: Sequence[np.ndarray]) -> list[float]: ...


@runtime_checkable
class FeatureExtractor(Protocol):
    """Per-image features (one row per image), cached per image and shared by set metrics.
    ``key`` names the features and their version (it enters the cache key)."""

    key: str

    def extract(self, images: Sequence[np.ndarray]) -> np.ndarray: ...


@runtime_checkable
class SetMetric(Protocol):
    """A metric over a whole image set, computed from cached features of the SR set and of a
    reference: the same images' HR (``paired``, keyed by id) or an HR set (FID/KID). Returns
    optional per-image values and named set-level values (e.g. ``{"kid": m, "kid_std": s}``)."""

    extractor: FeatureExtractor

    def compute(self, sr: Mapping[str, np.ndarray], ref: Mapping[str, np.ndarray]
                ) -> tuple[dict[str, float] | None, dict[str, float]]: ...


@dataclass(frozen=True)
class MetricSpec:
    """Registry entry for a metric: direction, version and requirements are stated up front."""

    name: str
    factory: Callable[..., PairedMetric | NoReferenceMetric | SetMetric]  # factory(device=...)
    summary: str
    higher_is_better: bool
    version: str
    needs_hr: bool
    convention: str = ""
    availability: Callable[[], Availability] = Availability.yes
    #: "image" (per-image PairedMetric / NoReferenceMetric), "set" (SetMetric) or "composite" (see ``parts``)
    kind: str = "image"
    #: for SetMetric: "paired" (this set's HR, by id), "lr" (this set's LR inputs, by id), "hr-set" (an HR
    #: set: FID/KID) or "stats" (published statistics the metric holds: no reference images)
    reference: str = "paired"
    #: table scale, e.g. 100 for KID (printed x100 like the paper)
    display_scale: float = 1.0
    backend: str = ""
    #: where this backend is weak (shown by `list metrics` and in the docs), e.g. near chance at 64 px
    caveat: str = ""
    #: for SetMetric: settings that depend on the test set's name (NTIRE's per-set identity threshold), passed
    #: to ``compute`` as keywords and part of the cache key; raises ValueError (a stated failure) when a set
    #: has none
    per_dataset: Callable[[str], dict[str, Any]] | None = None
    #: kind "composite": the metrics it combines (added to a run that asks for it) and how, from their set
    #: values (:mod:`scgan_bench.metrics.composite`)
    parts: tuple[str, ...] = ()
    combine: Callable[[Mapping[str, float]], float] | None = None

    @property
    def arrow(self) -> str:
        return "↑" if self.higher_is_better else "↓"

    def create(self, device: str = "cpu") -> PairedMetric | NoReferenceMetric | SetMetric:
        from .assets.weights import pin_after_load

        with pin_after_load():   # first-use weight files are pinned only once the metric is built
            return self.factory(device=device)

    def fingerprint(self) -> dict[str, Any]:
        """What determines this metric's values here: its version, and the sha256 of every weight file
        and the version of every package it declares (cache keys include it)."""
        fp = getattr(self.availability, "fingerprint", None)
        return {"version": self.version, **(fp() if callable(fp) else {"weights": {}, "packages": {}})}


# --------------------------------------------------------------------------------- datasets
@dataclass(frozen=True)
class SourceItem:
    """One manifest entry: a stable id, its source (relative path or URI) and an optional crop box
    ``(left, top, right, bottom)`` in source pixels."""

    id: str
    source: str
    box: tuple[int, int, int, int] | None = None


DatasetKind = Literal["synthetic", "real"]


@runtime_checkable
class Dataset(Protocol):
    """A test set. ``synthetic`` sets yield HR faces that a degradation turns into LR; ``real`` sets
    yield LR faces with no ground truth."""

    name: str
    kind: DatasetKind
    default_degradation: str | None

    def locate(self, root: Path | None) -> Path | None:
        """The dataset root to use (``None`` for built-in data); raise ``DatasetUnavailableError``."""

    def manifest(self, root: Path | None) -> "Manifest":
        """The ordered test selection (the split is a dataset option)."""

    def source_digest(self, root: Path | None, item: SourceItem) -> str:
        """sha256 of the item's source bytes (raises ``ImageDecodeError`` if unreadable)."""

    def load(self, root: Path | None, item: SourceItem) -> np.ndarray:
        """HR face (synthetic, ``hr_size`` square) or LR face (real, ``lr_size`` square), uint8."""

    def options(self) -> Mapping[str, Any]:
        """The options that shape this dataset's images (enter the cache key)."""


@runtime_checkable
class GivenPairs(Protocol):
    """A synthetic dataset whose LR images are given beside the HR ones (``folder-pairs``): the runner
    reads them with ``load_lr`` instead of degrading the HR image."""

    def load_lr(self, root: Path | None, item: SourceItem) -> np.ndarray: ...


@dataclass(frozen=True)
class DatasetSpec:
    """Registry entry for a dataset: its factory accepts the dataset's documented options."""

    name: str
    factory: Callable[..., Dataset]
    summary: str
    kind: DatasetKind
    card: str
    needs_root: bool = True
    #: HR set that FID/KID compare a real-world set against (None: none by default)
    default_reference: str | None = None

    def create(self, **options: Any) -> Dataset:
        return self.factory(**options)

