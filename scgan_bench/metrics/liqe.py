"""LIQE (``liqe``, ``liqe-mix``): no-reference quality from CLIP ViT-B/32 fine-tuned for vision-language
correspondence (Zhang et al., CVPR 2023), a 1-5 scale, higher is better.

Network: OpenAI's CLIP ViT-B/32 (:mod:`scgan_bench.networks.clip`, OpenAI's names), every tensor from the
LIQE file (pyiqa's ``liqe_koniq.pt`` / ``liqe_mix.pt``: ``params`` -> ``clip_model.*``), loaded strictly;
no sha256 is published for them: trust on first use, then pinned. Prompts are tokenized in-project with
CLIP's merge list and encoded by the file's own text tower each time the metric is built (pyiqa caches
the text features in one file per variant, whatever weights made them).

Scoring, as pyiqa 0.1.16's ``LIQE`` in eval mode: CLIP normalisation; the 224 px patches of a 32 px grid
(``unfold``), at most 15 of them taken at a stride of (patches // 15); each patch's unit image embedding
against the unit text embeddings, times exp(logit_scale); logits averaged over the patches, softmax over
all prompts; the five quality levels' probabilities (summed over scenes and distortions for ``liqe-mix``)
give the score sum_k k p_k. ``liqe``: the KonIQ-10k model, prompts "a photo with {q} quality";
``liqe-mix``: the multitask model, prompts "a photo of a {scene} with {distortion} artifacts, which is
of {q} quality" (5 x 9 x 11).

pyiqa refuses images with a side below 224 px. Here such an image is first resized (bilinear) so that
its shorter side is 224: a 64 px face becomes one 224 px patch (stated as the metric's caveat).
"""
from __future__ import annotations

from itertools import product
from typing import Sequence

import numpy as np

from ..interfaces import MetricSpec
from ..registries import METRICS
from ..assets.requirements import needs
from ..assets.weights import Asset, register_asset
from .clipiqa import VOCAB_ASSET

KONIQ_ASSET = "liqe-koniq"
MIX_ASSET = "liqe-mix"
PATCH, STEP, MAX_PATCHES = 224, 32, 15
QUALITIES = ("bad", "poor", "fair", "good", "perfect")
SCENES = ("animal", "cityscape", "human", "indoor", "landscape", "night", "plant", "still_life", "others")
DISTORTIONS = ("jpeg2000 compression", "jpeg compression", "noise", "blur", "color", "contrast", "overexposure",
               "underexposure", "spatial", "quantization", "other")


def prompts(multitask: bool) -> list[str]:
    """LIQE's prompts, quality slowest, then scene, then distortion (the order its softmax is read in)."""
    if multitask:
        return [f"a photo of a {c} with {d} artifacts, which is of {q} quality"
                for q, c, d in product(QUALITIES, SCENES, DISTORTIONS)]
    return [f"a photo with {q} quality" for q in QUALITIES]


def load_liqe_clip(asset: str, path: str | None = None):
    """The CLIP ViT of a LIQE file (``params`` -> ``clip_model.*``, or a plain CLIP state dict), strictly."""
    from ..baselines.loading import load_strict
    from ..networks.clip import CLIP
    from ..assets.weights import WeightsError, load_state_dict, strip_prefix

    sd, r = load_state_dict(asset, path, ("state_dict", "params"))
    sd = strip_prefix(strip_prefix(sd, "module."), "clip_model.")
    try:
        shape = CLIP.shape_of(sd)
    except (KeyError, IndexError) as exc:
        raise WeightsError(f"LIQE: {r.path} is not in LIQE's layout (clip_model.* of OpenAI's CLIP; no {exc})") \
            from None
    if not shape.get("patch"):
        raise WeightsError(f"LIQE: {r.path} holds a ResNet CLIP; LIQE is a ViT-B/32")
    return load_strict(CLIP(**shape), sd, r.path, f"LIQE ({asset})")


def patch_starts(size: int) -> list[int]:
    """Offsets of the 224 px windows along a side, at LIQE's 32 px step (``Tensor.unfold``)."""
    return list(range(0, size - PATCH + 1, STEP))


class LIQEScore:
    """One LIQE score per image; the prompts' unit text embeddings are computed once."""

    def __init__(self, device: str = "cpu", asset: str = KONIQ_ASSET, *, net=None, tokenizer=None) -> None:
        import torch

        from ..networks.clip import MEAN, STD
        from .clipiqa import load_tokenizer

        self.device, self.multitask = device, asset == MIX_ASSET
        self.net = (net if net is not None else load_liqe_clip(asset)).eval().to(device)
        tok = tokenizer if tokenizer is not None else load_tokenizer()
        with torch.inference_mode():
            text = self.net.encode_text(tok.tokenize(prompts(self.multitask)).to(device))
        self.text = text / text.norm(dim=1, keepdim=True)
        self.mean = torch.tensor(MEAN, device=device).view(1, 3, 1, 1)
        self.std = torch.tensor(STD, device=device).view(1, 3, 1, 1)

    def __call__(self, x):
        """Scores of a batch of RGB images in [0, 1] (N x 3 x H x W), H and W at least 224."""
        import torch

        n = x.shape[0]
        x = (x - self.mean) / self.std
        rows, cols = patch_starts(x.shape[2]), patch_starts(x.shape[3])
        cells = [(r, c) for r in rows for c in cols]
        k = min(MAX_PATCHES, len(cells))
        picked = [cells[max(1, len(cells) // k) * i] for i in range(k)]
        patches = torch.stack([x[:, :, r:r + PATCH, c:c + PATCH] for r, c in picked], 1)
        feats = self.net.encode_image(patches.flatten(0, 1))
        feats = feats / feats.norm(dim=1, keepdim=True)
        logits = (self.net.logit_scale.exp() * feats @ self.text.t()).view(n, k, -1).mean(1)
        probs = logits.softmax(dim=1).view(n, len(QUALITIES), -1).sum(2)
        return probs @ torch.arange(1, len(QUALITIES) + 1, dtype=probs.dtype, device=probs.device)

    def score_images(self, sr: Sequence[np.ndarray]) -> list[float]:
        from .batching import scores_by_size

        return scores_by_size(self._upsized, sr, self.device, 4)

    def _upsized(self, x):
        """Images with a side below 224 px resized (bilinear) so that the shorter side is 224."""
        import torch.nn.functional as F

        h, w = x.shape[2:]
        if min(h, w) < PATCH:
            size = (PATCH, round(PATCH * w / h)) if h <= w else (round(PATCH * h / w), PATCH)
            x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
        return self(x)


_BASE = "https://huggingface.co/chaofengc/IQA-PyTorch-Weights/resolve/main/"
_LICENSE = "MIT (zwx8981/LIQE); CLIP ViT-B/32 initialisation MIT (openai/CLIP); file published by pyiqa"
register_asset(Asset(KONIQ_ASSET, "liqe_koniq.pt", _BASE + "liqe_koniq.pt", used_by="liqe (KonIQ-10k model)",
                     license=_LICENSE))
register_asset(Asset(MIX_ASSET, "liqe_mix.pt", _BASE + "liqe_mix.pt", used_by="liqe-mix (multitask model)",
                     license=_LICENSE))

_CONVENTION = ("pyiqa 0.1.16's LIQE: CLIP ViT-B/32, 224 px patches on a 32 px grid (at most 15, evenly strided), "
               "logits averaged over patches, softmax, score = sum_k k p(quality k)")
_CAVEAT = ("pyiqa refuses sides below 224 px; here they are first resized (bilinear) to a 224 px shorter side, so a "
           "64 px face is one upsampled patch: compare methods at one output size, not with papers' numbers")
METRICS.register("liqe", MetricSpec(
    name="liqe", factory=lambda device="cpu": LIQEScore(device, KONIQ_ASSET), higher_is_better=True, version="1",
    summary="LIQE no-reference quality (KonIQ-10k model, 1-5)", needs_hr=False, backend="liqe-koniq",
    convention=_CONVENTION + '; prompts "a photo with {q} quality"', caveat=_CAVEAT,
    availability=needs(weights=(KONIQ_ASSET, VOCAB_ASSET))))
METRICS.register("liqe-mix", MetricSpec(
    name="liqe-mix", factory=lambda device="cpu": LIQEScore(device, MIX_ASSET), higher_is_better=True, version="1",
    summary="LIQE no-reference quality (multitask model, 1-5)", needs_hr=False, backend="liqe-mix",
    convention=_CONVENTION + "; 495 scene x distortion x quality prompts, quality marginal", caveat=_CAVEAT,
    availability=needs(weights=(MIX_ASSET, VOCAB_ASSET))))
