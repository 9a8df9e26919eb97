"""FID against published reference statistics (``fid-ffhq512``), and the streaming float64 moments that
reference statistics are made of.

Face-restoration papers since GFPGAN report FID against the FFHQ Inception statistics that BasicSR
publishes (``inception_FFHQ_512-f7b384ab.pth``: 50,000 FFHQ faces at 512 x 512). Those statistics were
produced by BasicSR's path: pytorch-fid's FID InceptionV3 (the TF graph of 2015-12-05), inputs scaled to
[-1, 1], resized to 299 x 299 with ``F.interpolate(mode="bilinear", align_corners=False)``, pool3 features
(2048-d), ``np.mean`` and ``np.cov`` (unbiased). ``fid-ffhq512`` extracts the SR images' features the same
way (:class:`InceptionBasicSRPath`: torch-fidelity's network of the same TF graph, fed BasicSR's input
instead of torch-fidelity's own TF-style resize and (x - 128) / 128), so SR and reference features share
one resize path. SR images are 64 px here: they are resized straight to 299 (the statistics' faces were
512 px), which a reader of the number must keep in mind; it is comparable across methods of one run.

:class:`Moments` keeps ``n``, ``sum x`` and ``sum x x^T`` in float64: two shards' moments add exactly, so a
reference made of many shards (or nodes) equals the one made in one pass; mean and unbiased covariance
come from the sums.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from ..errors import UsageError
from ..interfaces import MetricSpec
from ..registries import METRICS
from ..assets.requirements import needs
from ..assets.weights import Asset, register_asset

STATS_ASSET = "fid-stats-ffhq512"


@dataclass
class Moments:
    """Streaming float64 sums of feature rows: ``n``, ``s = sum x``, ``ss = sum x x^T``."""

    n: int = 0
    s: np.ndarray | None = None
    ss: np.ndarray | None = None

    def add(self, feats: np.ndarray) -> "Moments":
        x = np.asarray(feats, dtype=np.float64)
        if x.ndim != 2:
            raise ValueError(f"features must be a matrix (rows = images), got shape {x.shape}")
        if self.s is None:
            self.s, self.ss = np.zeros(x.shape[1]), np.zeros((x.shape[1], x.shape[1]))
        elif x.shape[1] != self.s.shape[0]:
            raise ValueError(f"features of width {x.shape[1]} added to moments of width {self.s.shape[0]}")
        self.n += len(x)
        self.s += x.sum(axis=0)
        self.ss += x.T @ x
        return self

    def merged(self, other: "Moments") -> "Moments":
        """The moments of both sets (exact: sums add)."""
        if self.s is None:
            return Moments(other.n, None if other.s is None else other.s.copy(),
                           None if other.ss is None else other.ss.copy())
        if other.s is None:
            return Moments(self.n, self.s.copy(), self.ss.copy())
        if other.s.shape != self.s.shape:
            raise ValueError(f"moments of width {self.s.shape[0]} and {other.s.shape[0]} cannot be merged")
        return Moments(self.n + other.n, self.s + other.s, self.ss + other.ss)

    def mean(self) -> np.ndarray:
        if not self.n:
            raise ValueError("no features")
        return self.s / self.n

    def cov(self) -> np.ndarray:
        """Unbiased covariance (``np.cov(x, rowvar=False)``)."""
        if self.n < 2:
            raise ValueError(f"a covariance needs at least 2 images, got {self.n}")
        mu = self.mean()
        return (self.ss - self.n * np.outer(mu, mu)) / (self.n - 1)

    def save(self, path: Path, **meta: str) -> None:
        """``.npz`` with the sums (mergeable) and ``mu`` / ``sigma`` (what FID tools read)."""
        import io

        from ..io.image_io import atomic_write_bytes

        buf = io.BytesIO()
        np.savez(buf, n=np.array(self.n), sum=self.s, sum_outer=self.ss, mu=self.mean(), sigma=self.cov(),
                 **{k: np.array(v) for k, v in meta.items()})
        atomic_write_bytes(path, buf.getvalue())

    @classmethod
    def load(cls, path: Path) -> "Moments":
        with np.load(path, allow_pickle=False) as z:
            if "sum" not in z or "sum_outer" not in z:
                raise UsageError(f"{path}: no streaming sums (sum, sum_outer): it holds only mean and covariance, "
                                 "which cannot be merged exactly")
            return cls(int(z["n"]), z["sum"].astype(np.float64), z["sum_outer"].astype(np.float64))


def load_reference_stats(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """``(mean, cov)`` of a reference: BasicSR's ``.pth`` (a dict with ``mean`` and ``cov`` NumPy arrays,
    loaded with ``weights_only=True`` and NumPy's array reconstruction allowed) or an ``.npz`` with
    ``mu`` / ``sigma`` (pytorch-fid, :meth:`Moments.save`)."""
    path = Path(path)
    if path.suffix == ".npz":
        with np.load(path, allow_pickle=False) as z:
            if "mu" not in z or "sigma" not in z:
                raise UsageError(f"{path}: an .npz of reference statistics needs arrays mu and sigma")
            mean, cov = z["mu"], z["sigma"]
    else:
        from ..assets.safeload import torch_load

        d = torch_load(Path(path), "reference statistics", allow=_numpy_globals())
        if not isinstance(d, Mapping) or "mean" not in d or "cov" not in d:
            raise UsageError(f"{path}: expected a dict with 'mean' and 'cov' (BasicSR's inception_FFHQ_*.pth)")
        mean, cov = (np.asarray(d[k].numpy() if hasattr(d[k], "numpy") else d[k]) for k in ("mean", "cov"))
    mean, cov = np.asarray(mean, np.float64), np.asarray(cov, np.float64)
    if mean.ndim != 1 or cov.shape != (len(mean), len(mean)):
        raise UsageError(f"{path}: mean of shape {mean.shape} and covariance of shape {cov.shape} do not match")
    return mean, cov


def _numpy_globals() -> list:
    """What a pickled NumPy array needs, under its NumPy 1 and NumPy 2 module names."""
    import numpy.core.multiarray  # noqa: F401 (the NumPy 1 name, kept as an alias by NumPy 2)

    recon = np._core.multiarray._reconstruct if hasattr(np, "_core") else np.core.multiarray._reconstruct
    out: list[Any] = [recon, (recon, "numpy.core.multiarray._reconstruct"),
                      (recon, "numpy._core.multiarray._reconstruct"), np.ndarray, np.dtype]
    out += [type(np.dtype(t)) for t in ("float64", "float32", "int64")]
    return out


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """torch-fidelity's Fréchet distance of two Gaussians (float64)."""
    from torch_fidelity.metric_fid import fid_statistics_to_metric

    def stats(mu: np.ndarray, sigma: np.ndarray) -> dict[str, Any]:
        return {"mu": np.ascontiguousarray(mu, np.float64), "sigma": np.ascontiguousarray(sigma, np.float64)}

    return float(fid_statistics_to_metric(stats(mu1, sigma1), stats(mu2, sigma2),
                                          verbose=False)["frechet_inception_distance"])


class InceptionBasicSRPath:
    """Pool3 features (2048-d) along BasicSR's path: RGB / 255 * 2 - 1, bilinear (align_corners=False)
    to 299 x 299, then the FID InceptionV3 (torch-fidelity's port of the same TF graph and weights)."""

    key = "inception-v3-compat-2048/basicsr-path"

    def __init__(self, device: str = "cpu") -> None:
        from .distribution import InceptionFeatures

        base = InceptionFeatures(device)
        self.net, self.device = base.net, device
        self.requirements = base.requirements  # the features depend on the network alone

    def extract(self, images: Sequence[np.ndarray]) -> np.ndarray:
        import torch
        import torch.nn.functional as F

        net = self.net
        x = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).to(self.device, torch.float32) / 255.0 * 2 - 1
        x = F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False)
        with torch.inference_mode():
            for name in ("Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "MaxPool_1", "Conv2d_3b_1x1",
                         "Conv2d_4a_3x3", "MaxPool_2", "Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a", "Mixed_6b",
                         "Mixed_6c", "Mixed_6d", "Mixed_6e", "Mixed_7a", "Mixed_7b", "Mixed_7c", "AvgPool"):
                x = getattr(net, name)(x)
        return torch.flatten(x, 1).double().cpu().numpy()


@dataclass
class FIDToStats:
    """FID of the SR set against published statistics (no reference images)."""

    extractor: Any
    stats_path: str | None = None
    reference: tuple[np.ndarray, np.ndarray] = field(default=None, repr=False)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        from ..assets.weights import resolve

        if self.reference is None:
            self.reference = load_reference_stats(resolve(STATS_ASSET, self.stats_path).path)

    def compute(self, sr: Mapping[str, np.ndarray], ref: Mapping[str, np.ndarray]):
        if len(sr) < 2:
            raise ValueError(f"FID needs at least 2 images, got {len(sr)}")
        m = Moments().add(np.stack([sr[k] for k in sorted(sr)]))
        mu, sigma = self.reference
        if len(mu) != len(m.mean()):
            raise ValueError(f"reference statistics of width {len(mu)} for features of width {len(m.mean())}")
        return None, {"": frechet_distance(m.mean(), m.cov(), mu, sigma), "n": float(m.n)}


register_asset(Asset(
    STATS_ASSET, "inception_FFHQ_512-f7b384ab.pth",
    "Google Drive folder (no direct download) https://drive.google.com/drive/folders/13cWIQyHX3iNmZRJ5v8v3kdyrT9RBTAi9",
    used_by="fid-ffhq512 (FFHQ 512 px Inception statistics, 50,000 faces; BasicSR / GFPGAN / CodeFormer)",
    license="Apache-2.0 (BasicSR); statistics of FFHQ (CC BY-NC-SA 4.0 images)", sha256_prefix="f7b384ab",
    caches=("scgan-bench",),
    source_note="BasicSR's metrics data (docs/Metrics.md); a Google Drive folder: download it by hand into "
                "$SCGAN_BENCH_WEIGHTS; the 8 hex digits in its name are the start of its sha256"))

_FID_STATS = needs(modules=(("torch_fidelity", "pip install torch-fidelity"),), weights=("inception-fid", STATS_ASSET))

METRICS.register("fid-ffhq512", MetricSpec(
    name="fid-ffhq512", factory=lambda device="cpu": FIDToStats(InceptionBasicSRPath(device)),
    summary="FID vs the published FFHQ-512 Inception statistics (BasicSR's resize path; no reference images)",
    higher_is_better=False, version="1", needs_hr=False, kind="set", reference="stats", availability=_FID_STATS,
    backend="inception (BasicSR path) vs FFHQ-512 stats",
    caveat="the statistics come from 512 px FFHQ faces; the SR images here are 64 px resized to 299: compare "
           "methods of one run, not with papers' 512 px values",
    convention="pool3 of the FID InceptionV3 on RGB/255*2-1 resized bilinear (align_corners=False) to 299; "
               "float64 mean and unbiased covariance; torch-fidelity's Fréchet distance"))
