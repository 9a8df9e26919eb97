"""Q-Align (``q-align``): no-reference quality from OneAlign (Wu et al., ICML 2024; ``q-future/one-align``), the
NTIRE real-world face restoration score's Q-Align term, a 1-5 scale, higher is better.

Network: mPLUG-Owl2 (:mod:`scgan_bench.networks.mplug_owl2`) built from the release's ``config.json`` and
its weight files (an HF snapshot folder ``q-align/`` in the weights folder: ``config.json``,
``tokenizer.model``, the index and its shards, ``.safetensors`` or ``.bin``), without ``trust_remote_code``:
no code from the folder runs. Every file is sha256-pinned on first use (none is published) and the
tensors load strictly (the release's names; sine-cosine and rotary tables in the file are checked against
the computed ones, then dropped). Float16 on a GPU (the release's dtype, as Q-Align's ``score``); float32
on the CPU, which a model above 1 B parameters refuses (8.2 B parameters: 33 GB) unless
``SCGAN_BENCH_QALIGN_CPU=1``.

Scoring, as OneAlign's ``score(task_="quality", input_="image")``: the image padded to a square with CLIP's
mean colour (centred), resized with Pillow's bicubic to 448 px (CLIPImageProcessor's PIL path: shortest
edge 448, centre crop 448), scaled to [0, 1] and CLIP-normalised; the prompt
``"USER: How would you rate the quality of this image?\\n<|image|>\\nASSISTANT: The quality of the image is"``
tokenized with the release's SentencePiece model as the slow ``LlamaTokenizer`` does (BOS, then each text
chunk as SentencePiece encodes it; the image's 65 tokens in place of ``<|image|>``); the next-token logits
of "excellent", "good", "fair", "poor", "bad" (each word's last token), softmax, dot (5, 4, 3, 2, 1). The
release takes that last softmax and dot in float16; here in float32.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..interfaces import MetricSpec
from ..registries import METRICS
from ..assets.requirements import needs
from ..assets.weights import Asset, register_asset

FOLDER = "q-align"
REPO = "https://huggingface.co/q-future/one-align/resolve/main/"
LICENSE = ("the terms of Q-Future/Q-Align and the q-future/one-align model card (read them before redistributing); "
           "mPLUG-Owl2's architecture: MIT (X-PLUG); its language model is a LLaMA-2-7B fine-tune: Llama 2 "
           "Community License")
CONFIG_ASSET = f"{FOLDER}/config.json"
TOKENIZER_ASSET = f"{FOLDER}/tokenizer.model"
INDEXES = ("model.safetensors.index.json", "pytorch_model.bin.index.json")
SINGLE_FILES = ("model.safetensors", "pytorch_model.bin")
PROMPT = ("USER: How would you rate the quality of this image?\n<|image|>\nASSISTANT: The quality of the image is")
IMAGE_TOKEN = "<|image|>"
LEVELS = ("excellent", "good", "fair", "poor", "bad")
LEVEL_VALUES = (5.0, 4.0, 3.0, 2.0, 1.0)
CPU_LIMIT = 1_000_000_000   # parameters; above it the CPU needs SCGAN_BENCH_QALIGN_CPU=1
#: tensors a release may carry that the network computes itself (checked, then dropped)
COMPUTED = ("q_pos_embed", "k_pos_embed", "rotary_emb.inv_freq")


def file_asset(name: str) -> str:
    """The weights-manager asset of the snapshot file ``name`` (registered on first use)."""
    from ..assets.weights import ASSETS

    asset = f"{FOLDER}/{name}"
    if asset not in ASSETS:
        register_asset(Asset(asset, asset, REPO + name, used_by="q-align (OneAlign, mPLUG-Owl2)", license=LICENSE))
    return asset


for _name in ("config.json", "tokenizer.model"):
    file_asset(_name)


def read_config(path: Path) -> tuple[Any, Any, Any]:
    """(LlamaConfig, VisionConfig, AbstractorConfig) from the release's ``config.json`` (JSON only)."""
    from ..errors import WeightsError
    from ..networks.mplug_owl2 import AbstractorConfig, VisionConfig, llama_config

    try:
        raw = json.loads(Path(path).read_text())
        visual = raw.get("visual_config") or {}   # absent: the release's code takes its defaults (ours)
        vis, ab = visual.get("visual_model") or {}, visual.get("visual_abstractor") or {}
        lang = {k: raw[k] for k in ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
                                    "num_attention_heads", "rms_norm_eps", "max_position_embeddings")}
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise WeightsError(f"Q-Align: {path} is not mPLUG-Owl2's config.json ({type(exc).__name__}: {exc})") from None
    lang["num_key_value_heads"] = raw.get("num_key_value_heads") or lang["num_attention_heads"]
    lang["rope_theta"] = float(raw.get("rope_theta", 10000.0))
    if raw.get("rope_scaling"):
        raise WeightsError(f"Q-Align: {path} asks for rope_scaling {raw['rope_scaling']}; OneAlign has none")
    vision = VisionConfig(width=vis.get("hidden_size", 1024), layers=vis.get("num_hidden_layers", 24),
                          heads=vis.get("num_attention_heads", 16), mlp=vis.get("intermediate_size", 4096),
                          image=vis.get("image_size", 448), patch=vis.get("patch_size", 14),
                          eps=vis.get("layer_norm_eps", 1e-6))
    abstractor = AbstractorConfig(width=ab.get("hidden_size", 1024), layers=ab.get("num_hidden_layers", 6),
                                  heads=ab.get("num_attention_heads", 16), mlp=ab.get("intermediate_size", 2816),
                                  queries=ab.get("num_learnable_queries", 64), eps=ab.get("layer_norm_eps", 1e-6),
                                  encoder_width=ab.get("encoder_hidden_size", 1024),
                                  grid=ab.get("grid_size") or 32)
    return llama_config(**lang), vision, abstractor


def weight_files(folder: Path) -> list[str]:
    """The snapshot's weight file names: an index's shards, else the one file."""
    from ..assets.weights import WeightsError, offline, resolve

    def shards(index: str) -> list[str]:
        r = resolve(file_asset(index))
        try:
            return sorted(set(json.loads(r.path.read_text())["weight_map"].values()))
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise WeightsError(f"Q-Align: {r.path} is not a weight index ({type(exc).__name__}: {exc})") from None

    for index in INDEXES:
        if (folder / index).is_file():
            return shards(index)
    for single in SINGLE_FILES:
        if (folder / single).is_file():
            return [single]
    if not offline():   # nothing here yet: the release's index, downloaded (its shards follow)
        for index in INDEXES:
            try:
                return shards(index)
            except WeightsError:
                continue
    raise WeightsError(f"Q-Align: no weights in {folder}: expected {' or '.join(INDEXES)} with its shards, or "
                       f"{' or '.join(SINGLE_FILES)} (the files of {REPO.replace('resolve/main/', '')})")


def read_weights(folder: Path) -> dict[str, Any]:
    """Every tensor of the snapshot, each file resolved (sha256-pinned) by the weights manager."""
    from ..assets.safeload import safetensors_load, tensors_only, torch_load
    from ..assets.weights import WeightsError, resolve

    sd: dict[str, Any] = {}
    for name in weight_files(folder):
        r = resolve(file_asset(name))
        part = safetensors_load(r.path, "Q-Align")[0] if name.endswith(".safetensors") else torch_load(r.path, "Q-Align")
        if not isinstance(part, dict):
            raise WeightsError(f"Q-Align: {r.path} does not hold a state dict (got {type(part).__name__})")
        tensors_only(part, r.path, "Q-Align")
        sd.update(part)
    return sd


def _drop_computed(tables: dict[str, Any], sd: dict[str, Any], path: Path) -> dict[str, Any]:
    """Tensors the network computes itself (:data:`COMPUTED`), if the file holds them: each must equal the
    computed table (1e-3: a float16 copy), then it is dropped."""
    import torch

    from ..errors import WeightsError

    out = {}
    for k, v in sd.items():
        table = next((tables[t.split(".")[-1]] for t in COMPUTED if k.endswith(t)), None)
        if table is None:
            out[k] = v
        elif table.shape != v.shape or not torch.allclose(table, v.float(), atol=1e-3, rtol=1e-3):
            raise WeightsError(f"Q-Align: {path}: {k} differs from the table mPLUG-Owl2 computes")
    return out


def meta_network(cfg: Any, vision: Any, abstractor: Any):
    """The network's skeleton on the meta device (no memory): its size, then :func:`fill`."""
    import torch

    from ..networks.mplug_owl2 import MPLUGOwl2

    with torch.device("meta"):
        return MPLUGOwl2(cfg, vision, abstractor)


def fill(net, folder: Path, sd: dict[str, Any], dtype: Any):
    """``net`` (from :func:`meta_network`) with the file's tensors in ``dtype`` as its parameters (no second
    copy of 16 GB), strictly, and its computed tables made on the CPU."""
    from ..baselines.loading import load_strict

    tables = net.computed_tables(net.config, net.vision, net.abstractor)
    sd = _drop_computed(tables, sd, folder)
    load_strict(net, {k: v.to(dtype) for k, v in sd.items()}, folder, "Q-Align (mPLUG-Owl2)", assign=True)
    net.set_tables(tables)
    return net.eval()


class Tokens:
    """The prompt's ids as the slow LlamaTokenizer builds them, from the release's SentencePiece model."""

    def __init__(self, path: Path) -> None:
        import sentencepiece as spm

        from ..errors import WeightsError

        self.sp = spm.SentencePieceProcessor()
        try:
            self.sp.Load(str(path))
        except (OSError, RuntimeError) as exc:
            raise WeightsError(f"Q-Align: {path} is not a SentencePiece model ({exc})") from None

    def prompt(self) -> tuple[list[int], list[int]]:
        """(ids before the image: BOS + the first chunk, ids after it: the second chunk)."""
        first, second = PROMPT.split(IMAGE_TOKEN)
        return [self.sp.bos_id(), *self.sp.EncodeAsIds(first)], list(self.sp.EncodeAsIds(second))

    def levels(self) -> list[int]:
        """Each level word's last token id (OneAlign's ``preferential_ids_``)."""
        return [self.sp.EncodeAsIds(w)[-1] for w in LEVELS]


def preprocess(img: np.ndarray, size: int) -> np.ndarray:
    """HxWx3 uint8 -> 3 x size x size float32, CLIP-normalised: square padding with CLIP's mean colour
    (centred), Pillow bicubic so that the shorter side is ``size``, centre crop."""
    from ..io.resize import resize_uint8
    from ..networks.clip import MEAN, STD

    h, w = img.shape[:2]
    if h != w:
        side = max(h, w)
        canvas = np.empty((side, side, 3), np.uint8)
        canvas[:] = [int(m * 255) for m in MEAN]
        top, left = (side - h) // 2, (side - w) // 2
        canvas[top:top + h, left:left + w] = img
        img = canvas
    out = resize_uint8(img, (size, size), "bicubic").astype(np.float32) / 255.0
    return ((out - np.array(MEAN, np.float32)) / np.array(STD, np.float32)).transpose(2, 0, 1)


class QAlignScore:
    """One Q-Align score (1-5) per image."""

    requirements = needs(modules=(("transformers", "pip install transformers"),
                                  ("sentencepiece", "pip install sentencepiece")),
                         weights=(CONFIG_ASSET, TOKENIZER_ASSET))

    def __init__(self, device: str = "cpu", *, net=None, tokens: Tokens | None = None, dtype: Any = None,
                 batch: int = 4) -> None:
        import torch

        from ..assets.weights import resolve
        from ..errors import UsageError

        self.device, self.batch = str(device), batch
        on_gpu = self.device.startswith("cuda")
        self.dtype = dtype or (torch.float16 if on_gpu else torch.float32)
        if net is None:
            cfg_path = resolve(CONFIG_ASSET).path
            net = meta_network(*read_config(cfg_path))
            n = sum(p.numel() for p in net.parameters())
            if not on_gpu and n > CPU_LIMIT and os.environ.get("SCGAN_BENCH_QALIGN_CPU") != "1":
                raise UsageError(f"q-align: the model has {n / 1e9:.1f} B parameters ({n * 4 / 2**30:.0f} GiB in "
                                 f"float32): it runs on a CUDA GPU (float16); set SCGAN_BENCH_QALIGN_CPU=1 to run "
                                 f"it on the CPU anyway")
            net = fill(net, cfg_path.parent, read_weights(cfg_path.parent), self.dtype)
        self.net = net.to(self.device).eval()
        self.tokens = tokens if tokens is not None else Tokens(resolve(TOKENIZER_ASSET).path)
        before, after = self.tokens.prompt()
        self.before = torch.tensor(before, device=self.device)
        self.after = torch.tensor(after, device=self.device)
        self.levels = torch.tensor(self.tokens.levels(), device=self.device)
        self.values = torch.tensor(LEVEL_VALUES, dtype=torch.float32, device=self.device)

    def __call__(self, pixels):
        """Scores of a batch of CLIP-normalised 448 px images (N x 3 x S x S)."""
        logits = self.net.last_logits(pixels.to(self.device, self.dtype), self.before, self.after, self.levels)
        return logits.float().softmax(-1) @ self.values

    def score_images(self, sr: Sequence[np.ndarray]) -> list[float]:
        import torch

        size = self.net.vision.image
        out: list[float] = []
        for s in range(0, len(sr), self.batch):
            x = torch.from_numpy(np.stack([preprocess(im, size) for im in sr[s:s + self.batch]]))
            with torch.inference_mode():
                out += [float(v) for v in self(x).double().cpu()]
        return out


METRICS.register("q-align", MetricSpec(
    name="q-align", factory=lambda device="cpu": QAlignScore(device), higher_is_better=True, version="1",
    summary="Q-Align no-reference quality (OneAlign, mPLUG-Owl2; 1-5)", needs_hr=False, backend="q-align-onealign",
    convention="OneAlign's score(): square pad with CLIP's mean, Pillow bicubic to 448, the release's prompt and "
               "SentencePiece ids, softmax over the five level words' logits, dot (5..1); float16 on a GPU",
    caveat="a 7 B-parameter language model: GPU only in practice (16 GB in float16); the last softmax is taken "
           "in float32 (the release: float16), so scores differ from the release's by up to ~2e-3",
    availability=QAlignScore.requirements))
