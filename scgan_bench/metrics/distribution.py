"""FID and KID between an SR set and an HR reference set, through torch-fidelity's own functions.

Features: torch-fidelity's TF-compatible InceptionV3 (pool3, 2048-d; it resizes uint8 input to 299 px
internally), its weights resolved and sha256-checked by the weights manager and loaded with
``weights_only=True``. An offline identity-space variant uses dlib's 128-d face descriptor
(``fid-dlib`` / ``kid-dlib``; labelled as such). Features are cached per image and shared by FID and
KID. KID: ``kid_subsets=100`` subsets of :func:`kid_subset_size` = ``min(1000, max(2, n // 2))``
images (``n`` the smaller set), torch-fidelity's polynomial kernel (degree 3, gamma 1/d, coef 1) and
its fixed seed 2020; reported as mean and std, printed x100 in tables (like the paper). Subsets are
drawn without replacement, so torch-fidelity's default size (1000) would make every subset the whole
set for the paper's 1,000-image LS3D-W and print +-0.00 where the paper prints +-0.06..0.16; half
the smaller set (at most 1000) keeps the subsets different and the std meaningful for every set size
of the paper (LS3D-W 500, FFHQ 1000, Widerface 1000, WebFace 514).
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from ..interfaces import FeatureExtractor, MetricSpec
from ..registries import METRICS
from ..assets.requirements import needs

KID_SUBSETS = 100
KID_MAX_SUBSET = 1000
KID_SEED = 2020


@contextmanager
def _verified_inception_weights(state_dict: dict[str, Any]):
    """torch-fidelity loads its weights with an unrestricted ``torch.load``; hand it our verified,
    ``weights_only``-loaded state dict instead, for the duration of the constructor only."""
    import torch_fidelity.feature_extractor_inceptionv3 as fe

    original = fe.load_state_dict_from_url
    fe.load_state_dict_from_url = lambda *a, **k: state_dict
    try:
        yield
    finally:
        fe.load_state_dict_from_url = original


_INCEPTION = needs(modules=(("torch_fidelity", "pip install torch-fidelity"),), weights=("inception-fid",))


class InceptionFeatures:
    """torch-fidelity's InceptionV3 pool3 features (2048-d) of uint8 RGB images."""

    key = "inception-v3-compat-2048/tf-fidelity"
    requirements = _INCEPTION

    def __init__(self, device: str = "cpu", weights_path: str | None = None) -> None:
        from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

        from ..assets.safeload import loading_into
        from ..assets.weights import load_state_dict

        sd, self.resolved = load_state_dict("inception-fid", weights_path)
        with _verified_inception_weights(sd), loading_into("inception-fid", self.resolved.path,
                                                           "torch-fidelity's InceptionV3"):
            self.net = FeatureExtractorInceptionV3("inception-v3-compat", ["2048"])
        self.device = device
        self.net.to(device)

    def extract(self, images: Sequence[np.ndarray]) -> np.ndarray:
        import torch

        x = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).contiguous().to(self.device)
        with torch.inference_mode():
            (feats,) = self.net(x)
        return feats.double().cpu().numpy()


def fid_from_features(sr: np.ndarray, ref: np.ndarray) -> float:
    """torch-fidelity's FID between two feature matrices (float64)."""
    import torch
    from torch_fidelity.metric_fid import fid_features_to_statistics, fid_statistics_to_metric

    s1 = fid_features_to_statistics(torch.from_numpy(np.ascontiguousarray(sr, np.float64)))
    s2 = fid_features_to_statistics(torch.from_numpy(np.ascontiguousarray(ref, np.float64)))
    return float(fid_statistics_to_metric(s1, s2, verbose=False)["frechet_inception_distance"])


def fid_torch(sr: np.ndarray, ref: np.ndarray, device: Any = "cpu") -> float:
    """The same Fréchet distance in float64 on ``device`` (a GPU run's; no scipy/numpy round trip):
    means and unbiased covariances, and tr(sqrt(S1 S2)) as the sum of the square roots of the
    eigenvalues of the symmetric S1^1/2 S2 S1^1/2 (similar to S1 S2, so the same eigenvalues; torch-fidelity
    takes them from the non-symmetric product with ``eigvals``; eigenvalues below zero, rounding noise of
    rank-deficient covariances, count as zero in both)."""
    import torch

    x = torch.as_tensor(np.ascontiguousarray(sr), dtype=torch.float64, device=device)
    y = torch.as_tensor(np.ascontiguousarray(ref), dtype=torch.float64, device=device)
    s1, s2 = torch.cov(x.T), torch.cov(y.T)
    w, v = torch.linalg.eigh(s1)
    root = (v * w.clamp_min(0).sqrt()) @ v.T
    m = root @ s2 @ root
    tr_covmean = torch.linalg.eigvalsh((m + m.T) / 2).clamp_min(0).sqrt().sum()
    d = x.mean(0) - y.mean(0)
    return float(d @ d + s1.trace() + s2.trace() - 2 * tr_covmean)


def kid_torch(sr: np.ndarray, ref: np.ndarray, device: Any = "cpu", subsets_per_pass: int = 10
              ) -> tuple[float, float, int]:
    """The same KID in float64 on ``device``: torch-fidelity's subsets (indices drawn on the host from
    ``RandomState(2020)`` in its order: SR subset, then reference subset, per subset), its polynomial
    kernel (x.y / d + 1)^3 and unbiased MMD^2 estimator, ``subsets_per_pass`` subsets per batched
    matrix product; mean and population std over the subsets."""
    import torch

    size = kid_subset_size(len(sr), len(ref))
    rng = np.random.RandomState(KID_SEED)
    picks = [(rng.choice(len(sr), size, replace=False), rng.choice(len(ref), size, replace=False))
             for _ in range(KID_SUBSETS)]
    x = torch.as_tensor(np.ascontiguousarray(sr), dtype=torch.float64, device=device)
    y = torch.as_tensor(np.ascontiguousarray(ref), dtype=torch.float64, device=device)
    gamma = 1.0 / x.shape[1]

    def kernel_sums(a: torch.Tensor, b: torch.Tensor, drop_diagonal: bool) -> torch.Tensor:
        k = (torch.bmm(a, b.transpose(1, 2)) * gamma + 1.0) ** 3
        total = k.sum(dim=(1, 2))
        return total - k.diagonal(dim1=1, dim2=2).sum(1) if drop_diagonal else total

    mmds = []
    for s in range(0, KID_SUBSETS, subsets_per_pass):
        part = picks[s:s + subsets_per_pass]
        a = x[torch.as_tensor(np.stack([p[0] for p in part]), device=device)]
        b = y[torch.as_tensor(np.stack([p[1] for p in part]), device=device)]
        m = float(size)
        mmds.append((kernel_sums(a, a, True) + kernel_sums(b, b, True)) / (m * (m - 1))
                    - 2 * kernel_sums(a, b, False) / (m * m))
    mmd = torch.cat(mmds)
    return float(mmd.mean()), float(mmd.std(correction=0)), size


def on_gpu(device: Any) -> bool:
    return str(device).startswith("cuda")


def kid_subset_size(n_sr: int, n_ref: int) -> int:
    """Images per KID subset: half the smaller set, at least 2, at most 1000 (see the module doc)."""
    return min(KID_MAX_SUBSET, max(2, min(n_sr, n_ref) // 2))


def kid_from_features(sr: np.ndarray, ref: np.ndarray) -> tuple[float, float, int]:
    """torch-fidelity's KID (mean, std, subset size used) with the documented subset protocol."""
    import torch
    from torch_fidelity.metric_kid import kid_features_to_metric

    size = kid_subset_size(len(sr), len(ref))
    out = kid_features_to_metric(torch.from_numpy(np.ascontiguousarray(sr, np.float64)),
                                 torch.from_numpy(np.ascontiguousarray(ref, np.float64)),
                                 kid_subsets=KID_SUBSETS, kid_subset_size=size, rng_seed=KID_SEED,
                                 verbose=False, kid_kernel="poly", kid_kernel_poly_degree=3,
                                 kid_kernel_poly_gamma=None, kid_kernel_poly_coef0=1)
    return out["kernel_inception_distance_mean"], out["kernel_inception_distance_std"], size


def _matrices(what: str, sr: Mapping[str, np.ndarray], ref: Mapping[str, np.ndarray]
              ) -> tuple[np.ndarray, np.ndarray]:
    """Feature matrices in id order; both sets need at least 2 images."""
    if len(sr) < 2 or len(ref) < 2:
        raise ValueError(f"{what} needs at least 2 images per set (SR {len(sr)}, reference {len(ref)})")
    return np.stack([sr[k] for k in sorted(sr)]), np.stack([ref[k] for k in sorted(ref)])


@dataclass
class FID:
    """FID of two feature sets: torch-fidelity's functions on the CPU; on a GPU the same formulas in
    float64 there (:func:`fid_torch`)."""

    extractor: FeatureExtractor
    device: str = "cpu"

    def compute(self, sr: Mapping[str, np.ndarray], ref: Mapping[str, np.ndarray]):
        a, b = _matrices("FID", sr, ref)
        return None, {"": fid_torch(a, b, self.device) if on_gpu(self.device) else fid_from_features(a, b)}


@dataclass
class KID:
    """KID of two feature sets: torch-fidelity's functions on the CPU; on a GPU the same subsets and
    estimator in float64 there (:func:`kid_torch`)."""

    extractor: FeatureExtractor
    device: str = "cpu"

    def compute(self, sr: Mapping[str, np.ndarray], ref: Mapping[str, np.ndarray]):
        a, b = _matrices("KID", sr, ref)
        mean, std, size = kid_torch(a, b, self.device) if on_gpu(self.device) else kid_from_features(a, b)
        return None, {"": mean, "std": std, "subset_size": float(size)}


def _dlib_features(device: str = "cpu"):
    from .identity import DlibDescriptor, register_with_torch_fidelity

    register_with_torch_fidelity()
    return DlibDescriptor.shared()


_DLIB = needs(modules=(("dlib", "pip install dlib-bin"),), weights=("dlib-face-recognition", "dlib-shape-5"))
_CONV_KID = (f"KID: {KID_SUBSETS} subsets of min({KID_MAX_SUBSET}, max(2, n // 2)) images (n: the smaller "
             f"set), poly kernel d=3, seed {KID_SEED}; tables print KID x100")
for _name, _cls, _feat, _avail, _summary, _scale, _backend in (
        ("fid", FID, lambda device="cpu": InceptionFeatures(device), _INCEPTION,
         "FID (torch-fidelity InceptionV3 pool3) vs the HR reference set", 1.0, "inception"),
        ("kid", KID, lambda device="cpu": InceptionFeatures(device), _INCEPTION,
         "KID mean +- std (torch-fidelity) vs the HR reference set", 100.0, "inception"),
        ("fid-dlib", FID, _dlib_features, _DLIB,
         "FID in dlib's 128-d face-descriptor space (offline identity-space backend)", 1.0, "dlib"),
        ("kid-dlib", KID, _dlib_features, _DLIB,
         "KID in dlib's 128-d face-descriptor space (offline identity-space backend)", 100.0, "dlib")):
    METRICS.register(_name, MetricSpec(
        name=_name, factory=lambda device="cpu", _c=_cls, _f=_feat: _c(_f(device), str(device)),
        summary=_summary, higher_is_better=False, version="2" if _cls is KID else "1", needs_hr=False, kind="set",
        reference="hr-set",
        availability=_avail, display_scale=_scale, backend=_backend,
        caveat=("identity-space distance: values are not on the scale of the paper's Inception FID/KID and "
                "cannot be compared with them" if _backend == "dlib" else ""),
        convention=_CONV_KID if _cls is KID else "FID on float64 features (torch-fidelity)"))
