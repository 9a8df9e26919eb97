"""Metric presets: ``--metrics preset:NAME`` names a protocol's metrics at once (``scgan-bench list metrics``
prints them). A preset may name metrics this version does not implement yet; they are left out with a
message naming them, never replaced by others."""
from __future__ import annotations

from typing import Callable

#: preset -> (what it is, its metrics in the order of the protocol)
PRESETS: dict[str, tuple[str, tuple[str, ...]]] = {
    "scgan": ("the SCGAN paper's metrics (Tables 1-7 and the landmark figure)",
              ("fid", "kid", "lpips", "niqe", "hog-detect", "facenet-verif", "landmark-retinaface")),
    "bfr-synthetic": ("blind face restoration on synthetic pairs: fidelity, perceptual, identity, landmarks, "
                      "FID to FFHQ; Deg and LMD as VQFR's scripts compute them (what VQFR / CodeFormer-style "
                      "papers print)", ("psnr", "ssim", "lpips", "dists", "ids-arcface", "deg-vqfr", "lmd-awing",
                                        "fid-ffhq512")),
    "bfr-2026": ("what 2024-2026 blind-face-restoration papers print (DiffBIR, PMRF, OSDFace, InterLCM and later): "
                 "fidelity, perceptual and identity distances to the ground truth, landmarks, FID to FFHQ, the "
                 "no-reference quality models of their tables, FD on DINOv2 and DINOv2 precision / recall",
                 ("psnr", "ssim", "lpips", "dists", "ids-arcface", "deg-vqfr", "lmd-awing", "fid-ffhq512",
                  "fd-dinov2", "precision-dinov2", "recall-dinov2", "niqe", "musiq", "maniqa", "clip-iqa",
                  "topiq-nr-face", "liqe", "q-align")),
    "ntire-rwfr": ("NTIRE Real-World Face Restoration: no-reference quality (Q-Align included), FID to FFHQ, the "
                   "identity gate and the weighted score",
                   ("musiq", "maniqa", "clip-iqa", "q-align", "niqe", "fid-ffhq512", "id-lq-adaface", "id-gate-adaface",
                    "ntire-rwfr-score")),
}


def expand(names: list[str], known: Callable[[str], bool], say: Callable[[str], None] | None = None) -> list[str]:
    """``preset:NAME`` entries replaced by their implemented metrics (order kept, repeats dropped); the
    metrics a preset names that ``known`` does not know are said, once per preset."""
    from ..errors import UsageError

    out: list[str] = []
    for n in names:
        if not n.startswith("preset:"):
            out.append(n)
            continue
        key = n.split(":", 1)[1]
        if key not in PRESETS:
            raise UsageError(f"unknown metric preset {key!r}; presets: {', '.join(f'preset:{p}' for p in PRESETS)}")
        members = PRESETS[key][1]
        missing = [m for m in members if not known(m)]
        if missing and say is not None:
            say(f"preset:{key}: not implemented in this version, left out: {', '.join(missing)}")
        out += [m for m in members if known(m)]
    return list(dict.fromkeys(out))
