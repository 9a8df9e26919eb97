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

from typing import Sequence

import numpy as np

from ..interfaces import MetricSpec
from ..registries import METRICS
from ..requirements import needs
from ..weights import Asset, register_asset
from .arcface import IdentitySimilarity, align_112

ADAFACE_ASSET = "adaface-ir50-ms1mv2"


def load_adaface(path: str | None = None, *, width: float = 1.0):
    """The IR-50 backbone of the release, from a Lightning checkpoint's ``model.`` keys, strictly."""
    import argparse

    import torch

    from ..baselines.loading import load_strict
    from ..errors import UsageError
    from ..networks.adaface import IRBackbone
    from ..weights import resolve

    r = resolve(ADAFACE_ASSET, path)
    try:  # Lightning keeps the training arguments beside the weights: a Namespace is allowed, nothing else
        with torch.serialization.safe_globals([argparse.Namespace]):
            ckpt = torch.load(r.path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 (said with the file's name and the way out)
        raise UsageError(f"{r.path}: not loadable with weights_only=True ({str(exc).splitlines()[0]}); if you trust "
                         "the file, save its 'state_dict' entry alone with torch and use that file") from None
    sd = ckpt.get("state_dict", ckpt) if isinstance(ckpt, dict) else None
    if not isinstance(sd, dict):
        raise UsageError(f"{r.path}: no state dict inside")
    model = {k[len("model."):]: v for k, v in sd.items() if k.startswith("model.")} or \
        {k: v for k, v in sd.items() if not k.startswith("head.")}
    model = {k: v.float() if v.is_floating_point() else v for k, v in model.items()}
    return load_strict(IRBackbone(50, width=width), model, r.path, "AdaFace IR-50")


class AdaFaceFeatures:
    """L2-normalised 512-d AdaFace IR-50 embeddings of faces aligned with the fixed 5-point template."""

    key = "adaface-ir50-ms1mv2/ffhq-template-112-bgr"

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
    ADAFACE_ASSET, "adaface_ir50_ms1mv2.ckpt", "https://github.com/mk-minchul/AdaFace#pretrained-models",
    used_by="id-lq-adaface (AdaFace IR-50, MS1MV2)", license="MIT (AdaFace)", caches=("scgan-bench",),
    source_note="AdaFace's README links the checkpoint (Google Drive); no official sha256 is published: verified "
                "by trust-on-first-use"))
_ADAFACE = needs(weights=(ADAFACE_ASSET,))

METRICS.register("id-lq-adaface", MetricSpec(
    name="id-lq-adaface", factory=lambda device="cpu": IdentitySimilarity(AdaFaceFeatures(device)),
    summary="identity kept from the LR input: AdaFace cosine of SR and its LR input, mean over images",
    higher_is_better=True, version="1", needs_hr=False, kind="set", reference="lr", availability=_ADAFACE,
    backend="adaface",
    convention="AdaFace IR-50 (MS1MV2), SR and LR input warped by the fixed FFHQ-to-ArcFace 5-point template to "
               "112 px (bilinear), BGR (x/255-0.5)/0.5, unit embeddings; NTIRE's per-set thresholds not applied"))
