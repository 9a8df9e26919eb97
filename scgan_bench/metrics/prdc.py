"""Precision, recall, density and coverage of the SR set against the HR reference set on k-NN manifolds of
Inception (``*-inception``) or DINOv2 (``*-dinov2``) features, higher is better, in [0, 1] (density may
exceed 1).

A set's manifold is the union of balls around its samples, each of radius its distance to its k-th
nearest neighbour in the same set (Euclidean, the sample itself not counted).

- precision / recall (Kynkäänniemi et al., NeurIPS 2019), as torch-fidelity 0.4's ``prc`` computes them:
  k = 3; precision = the share of SR samples inside the reference manifold, recall = the share of
  reference samples inside the SR manifold (inside: distance <= radius).
- density / coverage (Naeem et al., ICML 2020), as their ``prdc`` code: k = 5; density = the mean, over
  SR samples, of the number of reference balls that hold it, divided by k; coverage = the share of
  reference samples whose ball holds at least one SR sample (inside: distance < radius).

The features are the ones FID / FD-DINOv2 use (cached per image, sharded like theirs); distances are
computed in float64 with ``torch.cdist`` (on the run's device).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from ..interfaces import FeatureExtractor, MetricSpec
from ..registries import METRICS

PR_K = 3   # torch-fidelity's prc_neighborhood (Kynkäänniemi et al.'s default)
DC_K = 5   # Naeem et al.'s recommended k


def _radii(x, k: int):
    """Each row's distance to its k-th nearest other row."""
    import torch

    return torch.cdist(x, x).kthvalue(k + 1, dim=1).values


def prdc(sr: np.ndarray, ref: np.ndarray, device: Any = "cpu") -> dict[str, float]:
    """Precision and recall (k = 3, <=) and density and coverage (k = 5, <) of ``sr`` against ``ref``."""
    import torch

    x = torch.as_tensor(np.ascontiguousarray(sr), dtype=torch.float64, device=device)
    y = torch.as_tensor(np.ascontiguousarray(ref), dtype=torch.float64, device=device)
    need = max(PR_K, DC_K) + 1
    if len(x) < need or len(y) < need:
        raise ValueError(f"precision / recall / density / coverage need at least {need} images per set "
                         f"(k = {DC_K} neighbours besides the image itself; SR {len(x)}, reference {len(y)})")
    d = torch.cdist(x, y)                          # SR x reference
    pr_ref, pr_sr, dc_ref = _radii(y, PR_K), _radii(x, PR_K), _radii(y, DC_K)
    return {"precision": float((d <= pr_ref[None]).any(1).double().mean()),
            "recall": float((d.T <= pr_sr[None]).any(1).double().mean()),
            "density": float((d < dc_ref[None]).sum(1).double().mean() / DC_K),
            "coverage": float((d.min(0).values < dc_ref).double().mean())}


@dataclass
class KNNManifold:
    """One of precision / recall / density / coverage (``which``) of two feature sets."""

    extractor: FeatureExtractor
    which: str
    device: str = "cpu"

    def compute(self, sr: Mapping[str, np.ndarray], ref: Mapping[str, np.ndarray]):
        from .distribution import _matrices

        a, b = _matrices(self.which, sr, ref)
        out = prdc(a, b, self.device)
        return None, {"": out[self.which], "k": float(PR_K if self.which in ("precision", "recall") else DC_K)}


def _inception(device: str = "cpu"):
    from .distribution import InceptionFeatures

    return InceptionFeatures(device)


def _dinov2(device: str = "cpu"):
    from .dinov2 import dinov2_features

    return dinov2_features(device)


_WHAT = {"precision": ("share of SR images inside the reference set's k-NN manifold", "Kynkäänniemi et al. 2019 "
                       f"as torch-fidelity 0.4's prc: k = {PR_K}, distance <= k-NN radius"),
         "recall": ("share of reference images inside the SR set's k-NN manifold", "Kynkäänniemi et al. 2019 "
                    f"as torch-fidelity 0.4's prc: k = {PR_K}, distance <= k-NN radius"),
         "density": ("how many reference k-NN balls hold an SR image, over k, averaged", "Naeem et al. 2020 "
                     f"as their prdc code: k = {DC_K}, distance < k-NN radius"),
         "coverage": ("share of reference images whose k-NN ball holds an SR image", "Naeem et al. 2020 "
                      f"as their prdc code: k = {DC_K}, distance < k-NN radius")}


def _register() -> None:
    from .dinov2 import DINOv2Features
    from .distribution import InceptionFeatures

    for backbone, make, avail, label in (("inception", _inception, InceptionFeatures.requirements,
                                          "torch-fidelity InceptionV3 pool3 (2048-d, FID's)"),
                                         ("dinov2", _dinov2, DINOv2Features.requirements,
                                          "DINOv2 ViT-L/14 class token (1024-d, FD-DINOv2's)")):
        for which, (summary, convention) in _WHAT.items():
            name = f"{which}-{backbone}"
            METRICS.register(name, MetricSpec(
                name=name, factory=lambda device="cpu", _w=which, _m=make: KNNManifold(_m(device), _w, str(device)),
                summary=f"{which.capitalize()} on {label} features: {summary}", higher_is_better=True,
                version="1", needs_hr=False, kind="set", reference="hr-set", backend=backbone,
                convention=convention + "; float64 torch.cdist",
                caveat="k-NN radii shrink as sets grow: compare methods on sets of the same size",
                availability=avail))


_register()
