"""Identity kept from the low-quality input (``id-lq-adaface``), the identity check of real-world face
restoration (NTIRE Real-World Face Restoration): the cosine similarity of AdaFace IR-50 embeddings of
the SR output and of its own LR input. Any set, real-world ones included (no ground truth needed).

AdaFace IR-50 trained on MS1MV2 (``adaface_ir50_ms1mv2.ckpt``, MIT), written in-project
(:mod:`scgan_bench.networks.adaface`) and loaded strictly from the checkpoint's ``state_dict`` (``model.``
keys; the margin head is not used). Both images are warped with the fixed FFHQ-to-ArcFace 5-point
alignment of :mod:`.arcface` (the LR input, 16 px, is upsampled by the same bilinear warp) and fed as
AdaFace expects: BGR, ``(x / 255 - 0.5) / 0.5``. Embeddings are L2-normalised. The NTIRE challenge's
per-set thresholds and weighted score are not part of this metric.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from ..interfaces import MetricSpec
from ..registries import METRICS
from ..assets.requirements import needs
from ..assets.weights import Asset, register_asset
from .arcface import IdentitySimilarity, align_112

ADAFACE_ASSET = "adaface-ir50-ms1mv2"


def load_adaface(path: str | None = None, *, width: float = 1.0):
    """The IR-50 backbone of the release, from a Lightning checkpoint's ``model.`` keys, strictly."""
    import argparse

    from ..baselines.loading import load_strict
    from ..errors import UsageError
    from ..networks.adaface import IRBackbone
    from ..assets.safeload import tensors_only, torch_load
    from ..assets.weights import resolve

    r = resolve(ADAFACE_ASSET, path)
    # Lightning keeps the training arguments beside the weights: a Namespace is allowed, nothing else
    ckpt = torch_load(r.path, "adaface", allow=[argparse.Namespace])
    sd = ckpt.get("state_dict", ckpt) if isinstance(ckpt, dict) else None
    if not isinstance(sd, dict):
        raise UsageError(f"{r.path}: no state dict inside")
    model = {k[len("model."):]: v for k, v in sd.items() if k.startswith("model.")} or \
        {k: v for k, v in sd.items() if not k.startswith("head.")}
    tensors_only(model, r.path, "adaface")
    model = {k: v.float() if v.is_floating_point() else v for k, v in model.items()}
    return load_strict(IRBackbone(50, width=width), model, r.path, "AdaFace IR-50")


class AdaFaceFeatures:
    """L2-normalised 512-d AdaFace IR-50 embeddings of faces aligned with the fixed 5-point template."""

    key = "adaface-ir50-ms1mv2/ffhq-template-112-bgr/cv2-warp"  # v1 (float bilinear warp) is stale

    def __init__(self, device: str = "cpu", weights_path: str | None = None, *, net=None) -> None:
        self.device, self.requirements = device, _ADAFACE
        self.net = (net if net is not None else load_adaface(weights_path)).eval().to(device)

    def extract(self, images: Sequence[np.ndarray]) -> np.ndarray:
        import torch

        x = align_112(images).flip(1)  # RGB -> BGR; align_112 gives RGB / 127.5 - 1 = (x / 255 - 0.5) / 0.5
        with torch.inference_mode():
            e = self.net(x.to(self.device)).double()
        return torch.nn.functional.normalize(e, dim=1).cpu().numpy()


register_asset(Asset(
    ADAFACE_ASSET, "adaface_ir50_ms1mv2.ckpt",
    "no direct download (a web page, not the file): the README of https://github.com/mk-minchul/AdaFace "
    "(Pretrained Models) links the IR-50 MS1MV2 checkpoint on Google Drive; save it as adaface_ir50_ms1mv2.ckpt",
    used_by="id-lq-adaface (AdaFace IR-50, MS1MV2)", license="MIT (AdaFace)", caches=("scgan-bench",),
    source_note="AdaFace's README links the checkpoint (Google Drive); no official sha256 is published: verified "
                "by trust-on-first-use"))
_ADAFACE = needs(weights=(ADAFACE_ASSET,))

METRICS.register("id-lq-adaface", MetricSpec(
    name="id-lq-adaface", factory=lambda device="cpu": IdentitySimilarity(AdaFaceFeatures(device)),
    summary="identity kept from the LR input: AdaFace cosine of SR and its LR input, mean over images",
    higher_is_better=True, version="2", needs_hr=False, kind="set", reference="lr", availability=_ADAFACE,
    backend="adaface",
    convention="AdaFace IR-50 (MS1MV2), SR and LR input warped by the fixed FFHQ-to-ArcFace 5-point template to "
               "112 px (bilinear), BGR (x/255-0.5)/0.5, unit embeddings; NTIRE's per-set thresholds: id-gate-adaface"))


#: NTIRE 2025 Real-World Face Restoration (challenge report, arXiv 2504.14600): an output passes the identity
#: check when the AdaFace cosine with its low-quality input reaches its test set's threshold
NTIRE_THRESHOLDS = {"WIDER-Test": 0.3, "WebPhoto-Test": 0.3, "CelebA": 0.5, "LFW-Test": 0.6, "CelebChild-Test": 0.6}
#: scgan-bench's real-world sets and the NTIRE set each corresponds to (crops from WIDER FACE; photos from the web)
NTIRE_SET_OF = {"widerface": "WIDER-Test", "webface": "WebPhoto-Test", "wider-test": "WIDER-Test",
                "webphoto-test": "WebPhoto-Test", "lfw-test": "LFW-Test", "celebchild-test": "CelebChild-Test"}


def ntire_threshold(dataset: str) -> dict[str, float]:
    """The identity gate's threshold for a test set: ``$SCGAN_BENCH_ID_GATE_<SET>`` if set, else NTIRE's for
    the set it corresponds to; a set with neither is a stated failure, never a guessed threshold."""
    import os

    env = "SCGAN_BENCH_ID_GATE_" + dataset.upper().replace("-", "_").replace(":", "_")
    if os.environ.get(env):
        try:
            t = float(os.environ[env])
        except ValueError:
            raise ValueError(f"${env}={os.environ[env]!r} is not a number") from None
        if not -1.0 <= t <= 1.0:
            raise ValueError(f"${env}={t}: a cosine threshold lies in [-1, 1]")
        return {"threshold": t}
    if dataset in NTIRE_SET_OF:
        return {"threshold": NTIRE_THRESHOLDS[NTIRE_SET_OF[dataset]]}
    choices = ", ".join(f"{k} {v}" for k, v in NTIRE_THRESHOLDS.items())
    raise ValueError(f"no identity-gate threshold for dataset {dataset!r}: set ${env} (NTIRE's: {choices})")


@dataclass
class IdentityGate:
    """NTIRE's identity check: the share of SR images whose AdaFace cosine with their own LR input reaches
    the set's threshold (``failed``: how many do not; per image: the cosine)."""

    extractor: Any

    def compute(self, sr: Mapping[str, np.ndarray], lr: Mapping[str, np.ndarray], *, threshold: float):
        per = {i: float(np.clip(np.dot(sr[i], lr[i]), -1.0, 1.0)) for i in sorted(sr) if i in lr}
        if not per:
            raise ValueError("no SR image has its LR input")
        failed = sum(v < threshold for v in per.values())
        return per, {"": 1.0 - failed / len(per), "failed": float(failed), "threshold": threshold}


METRICS.register("id-gate-adaface", MetricSpec(
    name="id-gate-adaface", factory=lambda device="cpu": IdentityGate(AdaFaceFeatures(device)),
    summary="NTIRE identity gate: share of SR images whose AdaFace cosine with their LR input reaches the set's "
            "threshold (also: failed count, threshold)",
    higher_is_better=True, version="2", needs_hr=False, kind="set", reference="lr", availability=_ADAFACE,
    backend="adaface", per_dataset=ntire_threshold,
    convention="as id-lq-adaface; threshold per set: NTIRE 2025's (WIDER-Test / WebPhoto-Test 0.3, CelebA 0.5, "
               "LFW-Test / CelebChild-Test 0.6; widerface -> WIDER-Test, webface -> WebPhoto-Test) or "
               "$SCGAN_BENCH_ID_GATE_<SET>; a set with neither fails with that message"))
