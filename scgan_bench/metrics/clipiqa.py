"""CLIP-IQA (``clip-iqa``, ``clip-iqa-paper``): no-reference quality from CLIP with antonym prompts
(Wang, Chan and Loy, AAAI 2023), higher is better, in [0, 1].

For each antonym pair (positive, negative) the score is softmax(logit_scale * cos(image, text)) of the
positive prompt, averaged over the pairs. The image tower is OpenAI's CLIP RN50 run at the image's own
size with the attention pool's positional embedding left out (the method's choice, so no resize), RGB
normalised with OpenAI's mean and std, float32.

- ``clip-iqa``: pyiqa's ``clipiqa``, the number face-restoration papers and NTIRE's real-world face
  restoration evaluation report: five pairs (good / bad image, sharp / blurry image, sharp / blurry
  edges, high / low resolution image, noise-free / noisy image).
- ``clip-iqa-paper``: the paper's single pair "Good photo." / "Bad photo.".

Weights: OpenAI's ``RN50.pt`` (MIT, sha256 in its URL). It is a TorchScript archive: its tensors are read
by :mod:`scgan_bench.assets.torchscript` without running its code (``torch.jit.load`` would). The same tensors
as a state dict (``.pth``, loaded with ``weights_only=True``) or safetensors (HuggingFace
``timm/resnet50_clip.openai``) are accepted with a pinned sha256. Prompts are tokenized in-project with
OpenAI's merge list ``bpe_simple_vocab_16e6.txt.gz`` (the ``clip`` package ships it).
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from ..interfaces import MetricSpec
from ..registries import METRICS
from ..assets.requirements import needs
from ..assets.weights import Asset, register_asset

CLIP_ASSET = "clip-rn50"
VOCAB_ASSET = "clip-bpe-vocab"

#: pyiqa's ``clipiqa`` prompts (positive, negative)
PYIQA_PAIRS: tuple[tuple[str, str], ...] = (
    ("Good image", "bad image"), ("Sharp image", "blurry image"), ("sharp edges", "blurry edges"),
    ("High resolution image", "low resolution image"), ("Noise-free image", "noisy image"))
#: the CLIP-IQA paper's quality pair
PAPER_PAIRS: tuple[tuple[str, str], ...] = (("Good photo.", "Bad photo."),)

#: tensors of OpenAI's archives that are settings, not weights (checked against the tensors' shapes)
_SETTINGS = ("input_resolution", "context_length", "vocab_size")


def read_clip_state_dict(path) -> dict[str, Any]:
    """OpenAI-layout CLIP tensors, float32, from a TorchScript archive, a safetensors file or a state dict."""
    import torch

    from ..assets.safeload import safetensors_load, torch_load
    from ..assets.torchscript import is_torchscript, read_state_dict
    from ..assets.weights import WeightsError

    if is_torchscript(path):
        sd = read_state_dict(path)
    elif str(path).endswith(".safetensors"):
        sd, _ = safetensors_load(path, "CLIP")
    else:
        sd = torch_load(path, "CLIP")
        sd = sd.get("state_dict", sd) if isinstance(sd, dict) else sd
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise WeightsError(f"CLIP: {path} does not hold a state dict of tensors")
    settings = {k: sd.pop(k) for k in _SETTINGS if k in sd}
    want = {"context_length": sd.get("positional_embedding", torch.empty(0)).shape[0],
            "vocab_size": sd.get("token_embedding.weight", torch.empty(0)).shape[0]}
    for k, v in settings.items():
        if k in want and int(v) != want[k]:
            raise WeightsError(f"CLIP: {path}: its {k} says {int(v)}, its tensors {want[k]}")
    return {k: v.float() if v.is_floating_point() else v for k, v in sd.items()}


def load_clip(path: str | None = None):
    """CLIP (RN50 by default) from the weights manager or ``path``, loaded strictly; the network's size
    is read from the file (OpenAI's other ResNet CLIPs load too)."""
    from ..baselines.loading import load_strict
    from ..networks.clip import CLIP
    from ..assets.weights import WeightsError, resolve, strip_prefix

    r = resolve(CLIP_ASSET, path)
    sd = strip_prefix(read_clip_state_dict(r.path), "module.")
    try:
        shape = CLIP.shape_of(sd)
    except (KeyError, IndexError) as exc:
        raise WeightsError(f"CLIP: {r.path} is not in OpenAI's ResNet CLIP layout (no {exc})") from None
    return load_strict(CLIP(**shape), sd, r.path, "CLIP")


def load_tokenizer(path: str | None = None):
    from ..networks.clip_tokenizer import Tokenizer
    from ..assets.weights import resolve

    return Tokenizer(resolve(VOCAB_ASSET, path).path)


class CLIPIQAScore:
    """One CLIP-IQA score per image for the given antonym pairs; the prompts' text embeddings are computed
    once; images of one size go through the image tower together."""

    requirements = needs(weights=(CLIP_ASSET, VOCAB_ASSET))

    def __init__(self, device: str = "cpu", pairs: Sequence[tuple[str, str]] = PYIQA_PAIRS, *, net=None,
                 tokenizer=None, batch: int = 16) -> None:
        import torch

        from ..networks.clip import MEAN, STD

        self.device, self.batch, self.pairs = device, batch, tuple(pairs)
        self.net = (net if net is not None else load_clip()).eval().to(device)
        tok = tokenizer if tokenizer is not None else load_tokenizer()
        tokens = tok.tokenize([t for pair in self.pairs for t in pair]).to(device)
        with torch.inference_mode():
            self.text = self.net.encode_text(tokens)
        self.mean = torch.tensor(MEAN, device=device).view(1, 3, 1, 1)
        self.std = torch.tensor(STD, device=device).view(1, 3, 1, 1)

    def __call__(self, x):
        """Scores of a batch of RGB images in [0, 1] (N x 3 x H x W)."""
        feats = self.net.encode_image((x - self.mean) / self.std, positional=False)
        probs = self.net.logits(feats, self.text).view(x.shape[0], len(self.pairs), 2).softmax(-1)
        return probs[..., 0].mean(1)

    def score_images(self, sr: Sequence[np.ndarray]) -> list[float]:
        from .batching import scores_by_size

        return scores_by_size(self, sr, self.device, self.batch)


register_asset(Asset(
    CLIP_ASSET, "RN50.pt",
    "https://openaipublic.azureedge.net/clip/models/afeb0e10f9e5a86da6080e35cf09123aca3b358a0c3e3b6c78a7b63bc04b6762/RN50.pt",
    used_by="clip-iqa, clip-iqa-paper (OpenAI CLIP RN50)", license="MIT (openai/CLIP)",
    sha256="afeb0e10f9e5a86da6080e35cf09123aca3b358a0c3e3b6c78a7b63bc04b6762",
    caches=("torch-hub", "openai-clip", "pyiqa-clip"),
    source_note="TorchScript archive; its tensors are read without running it. The sha256 is the one in "
                "OpenAI's URL (their clip.load checks it). HuggingFace timm/resnet50_clip.openai's safetensors "
                "holds the same tensors: use it with $SCGAN_BENCH_SHA256_CLIP_RN50 pinned"))

register_asset(Asset(
    VOCAB_ASSET, "bpe_simple_vocab_16e6.txt.gz",
    "https://github.com/openai/CLIP/raw/main/clip/bpe_simple_vocab_16e6.txt.gz",
    used_by="clip-iqa, clip-iqa-paper (CLIP's tokenizer)", license="MIT (openai/CLIP)",
    sha256="924691ac288e54409236115652ad4aa250f48203de50a9e4722a6ecd48d6804a",
    bundled=("clip", "bpe_simple_vocab_16e6.txt.gz"),
    source_note="also shipped by the PyPI packages openai-clip (module clip) and open_clip_torch (identical "
                "file, same sha256)"))

_CONVENTION = ("OpenAI CLIP RN50 at native size, attention pool without positional embedding, "
               "softmax over each antonym pair, positive's probability averaged")
_CAVEAT = ("scored at the image's own size: a 64 px output gives the image tower a 2 x 2 grid (CLIP saw 7 x 7 in "
           "training); compare methods at one output size within a run, not with papers' 512 px numbers")
METRICS.register("clip-iqa", MetricSpec(
    name="clip-iqa", factory=lambda device="cpu": CLIPIQAScore(device, PYIQA_PAIRS), higher_is_better=True,
    version="1", summary="CLIP-IQA no-reference quality, pyiqa's five antonym pairs (0-1)", needs_hr=False,
    backend="clip-rn50", convention=f"pyiqa's clipiqa: {_CONVENTION}", caveat=_CAVEAT,
    availability=CLIPIQAScore.requirements))
METRICS.register("clip-iqa-paper", MetricSpec(
    name="clip-iqa-paper", factory=lambda device="cpu": CLIPIQAScore(device, PAPER_PAIRS), higher_is_better=True,
    version="1", summary='CLIP-IQA no-reference quality, the paper\'s pair "Good photo." / "Bad photo." (0-1)',
    needs_hr=False, backend="clip-rn50", convention=f"the paper's prompts: {_CONVENTION}", caveat=_CAVEAT,
    availability=CLIPIQAScore.requirements))
