"""Q-Align (OneAlign): the in-project mPLUG-Owl2 built from a snapshot folder in the release's layout (config.json,
tokenizer.model, an index and its shards) scores shared faces as OneAlign's own code does, on a tiny random
configuration. pyiqa 0.1.16 ships that code (``pyiqa/archs/q_align``: OneAlign's modelling files); it is the
reference network, built with transformers 5 through two shims written here (its tokenizer and image
processor loaders fetch from the hub; ``invert_attention_mask``, which transformers 5 removed, is the
standard formula). The prompt is the release's ``score()`` format, its ids assembled by the release's
``tokenizer_image_token`` from a SentencePiece model trained here (encoded as the slow LlamaTokenizer does:
BOS + SentencePiece ids), the pixels by transformers' PIL CLIP processor, and the score by the formula
softmax(level logits) . (5, 4, 3, 2, 1) written here."""
from __future__ import annotations

import hashlib
import io
import json
import shutil
import types

import numpy as np
import pytest
import torch

from scgan_bench.assets import weights as W

from sb_testdata import shared_faces

pytest.importorskip("transformers", reason="Q-Align's language model classes come from transformers (setup.cfg)")
pytest.importorskip("sentencepiece", reason="Q-Align's tokenizer is SentencePiece (setup.cfg)")

#: OneAlign's score() prompt, in its own format string
PROMPT = "USER: How would you rate the {} of this {}?\n<|image|>\nASSISTANT: The {} of the {} is".format(
    "quality", "image", "quality", "image")
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
TINY_VISION = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, image_size=56,
                   patch_size=14)
TINY_ABSTRACTOR = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=48,
                       num_learnable_queries=8, encoder_hidden_size=32, grid_size=4)
TINY_LANGUAGE = dict(vocab_size=400, hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
                     num_key_value_heads=4, max_position_embeddings=512, rms_norm_eps=1e-6)


def train_tokenizer(path) -> None:
    """A small byte-fallback BPE SentencePiece model (LLaMA's kind: BOS 1, EOS 2, dummy prefix, no
    normalisation) that knows the prompt's and the level words' pieces."""
    import sentencepiece as spm

    text = ["USER: How would you rate the quality of this image?", "ASSISTANT: The quality of the image is",
            "excellent good fair poor bad", "a photo of a face with good quality", "It is poor, fair or bad."] * 20
    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(sentence_iterator=iter(text), model_writer=buf, vocab_size=400, model_type="bpe",
                                   byte_fallback=True, character_coverage=1.0, add_dummy_prefix=True,
                                   remove_extra_whitespaces=False, normalization_rule_name="identity", bos_id=1,
                                   eos_id=2, unk_id=0, pad_id=-1, minloglevel=2)
    path.write_bytes(buf.getvalue())


class SlowLlamaTokens:
    """What the slow LlamaTokenizer (legacy, add_bos_token) returns: BOS + SentencePiece's ids of the text."""

    def __init__(self, path) -> None:
        import sentencepiece as spm

        self.sp = spm.SentencePieceProcessor(model_file=str(path))
        self.bos_token_id = self.sp.bos_id()

    def __call__(self, texts):
        ids = lambda t: [self.bos_token_id, *self.sp.encode(t)]  # noqa: E731
        if isinstance(texts, str):
            return types.SimpleNamespace(input_ids=ids(texts))
        return {"input_ids": [ids(t) for t in texts]}


def _pil_processor(size: int):
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

    return CLIPImageProcessorPil(size={"shortest_edge": size}, crop_size={"height": size, "width": size}, resample=3,
                                 image_mean=list(CLIP_MEAN), image_std=list(CLIP_STD))


@pytest.fixture(scope="module")
def onealign(tmp_path_factory):
    """(OneAlign's MPLUGOwl2LlamaForCausalLM at the tiny configuration with drawn weights, its config, the
    SentencePiece file)."""
    import pyiqa.archs.q_align.modeling_mplug_owl2 as owl
    import pyiqa.archs.q_align.visual_encoder as ve
    from pyiqa.archs.q_align.configuration_mplug_owl2 import (MPLUGOwl2Config, MplugOwlVisionConfig,
                                                              MplugOwlVisualAbstractorConfig)

    sp = tmp_path_factory.mktemp("qalign-tokenizer") / "tokenizer.model"
    train_tokenizer(sp)
    saved = (owl.LlamaTokenizer.from_pretrained, owl.CLIPImageProcessor.from_pretrained)
    owl.LlamaTokenizer.from_pretrained = staticmethod(lambda *a, **k: SlowLlamaTokens(sp))
    owl.CLIPImageProcessor.from_pretrained = staticmethod(lambda *a, **k: _pil_processor(56))
    if not hasattr(ve.MplugOwlVisualAbstractorModel, "invert_attention_mask"):  # transformers 5 removed it
        ve.MplugOwlVisualAbstractorModel.invert_attention_mask = \
            lambda self, m: (1.0 - m[:, None, None, :].to(self.dtype)) * torch.finfo(self.dtype).min
    cfg = MPLUGOwl2Config(visual_config={"visual_model": MplugOwlVisionConfig(**TINY_VISION).to_dict(),
                                         "visual_abstractor": MplugOwlVisualAbstractorConfig(**TINY_ABSTRACTOR).to_dict()},
                          **TINY_LANGUAGE)
    cfg._attn_implementation = "eager"
    try:
        torch.manual_seed(0)
        ref = owl.MPLUGOwl2LlamaForCausalLM(cfg).eval()
    finally:
        owl.LlamaTokenizer.from_pretrained, owl.CLIPImageProcessor.from_pretrained = saved
    with torch.no_grad():  # weights well above the init's 0.02, so that every part moves the logits
        for n, p in ref.named_parameters():
            if p.dim() >= 2:
                p.normal_(0, 1 / p.shape[-1] ** 0.5)
            elif "norm" in n or n.endswith("ffn_ln.weight"):
                p.normal_(1, 0.2)
            else:
                p.normal_(0, 0.2)
    return ref, cfg, sp


def install_snapshot(weights_dir, ref, cfg, sp, fmt: str = "safetensors", sd: dict | None = None) -> list[str]:
    """The release's folder layout under ``<weights>/q-align``: config.json, tokenizer.model, two shards and
    their index; every file pinned by its sha256. Returns the shard names."""
    from scgan_bench.metrics.qalign import file_asset

    folder = weights_dir / "q-align"
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir()
    (folder / "config.json").write_text(cfg.to_json_string())
    shutil.copy(sp, folder / "tokenizer.model")
    sd = dict(ref.state_dict() if sd is None else sd)
    keys = sorted(sd)
    halves = (keys[: len(keys) // 2], keys[len(keys) // 2:])
    if fmt == "safetensors":
        from safetensors.torch import save_file

        names = [f"model-0000{i + 1}-of-00002.safetensors" for i in range(2)]
        for name, part in zip(names, halves):
            save_file({k: sd[k].contiguous() for k in part}, str(folder / name))
        index = "model.safetensors.index.json"
    else:
        names = [f"pytorch_model-0000{i + 1}-of-00002.bin" for i in range(2)]
        for name, part in zip(names, halves):
            torch.save({k: sd[k] for k in part}, folder / name)
        index = "pytorch_model.bin.index.json"
    (folder / index).write_text(json.dumps({"metadata": {}, "weight_map": {k: n for n, part in zip(names, halves)
                                                                            for k in part}}))
    for name in ("config.json", "tokenizer.model", index, *names):
        W.register_sha256(file_asset(name), hashlib.sha256((folder / name).read_bytes()).hexdigest())
    return names


def _faces() -> list[np.ndarray]:
    faces = shared_faces(3)
    return faces + [np.ascontiguousarray(faces[0][8:56])]  # 48 x 64: padded to a square first


def onealign_scores(ref, images: list[np.ndarray]) -> list[float]:
    """OneAlign's score(): its expand2square, the PIL CLIP processor, its tokenizer_image_token, the logits of
    its preferential ids at the last position; softmax . (5, 4, 3, 2, 1) written here."""
    from PIL import Image
    from pyiqa.archs.q_align.modeling_mplug_owl2 import IMAGE_TOKEN_INDEX, expand2square, tokenizer_image_token

    proc = _pil_processor(56)
    ids = tokenizer_image_token(PROMPT, ref.tokenizer, IMAGE_TOKEN_INDEX, return_tensors="pt")[None]
    out = []
    for im in images:
        square = expand2square(Image.fromarray(im), tuple(int(x * 255) for x in CLIP_MEAN))
        pixels = proc.preprocess(square, return_tensors="pt")["pixel_values"]
        with torch.no_grad():
            logits = ref(ids, images=pixels)["logits"][0, -1, ref.preferential_ids_].double()
        p = torch.exp(logits - logits.max())
        out.append(float((p / p.sum()) @ torch.tensor([5.0, 4.0, 3.0, 2.0, 1.0], dtype=torch.float64)))
    return out


def test_qalign_equals_onealign_on_faces(onealign, weights_dir):
    """The registered metric, built by its factory from the snapshot (safetensors shards), on the CPU in
    float32: 64 px faces and a 48 x 64 crop score as OneAlign's code scores them (1e-5 on a 1-5 scale;
    measured at most 8e-7 under ATEN_CPU_CAPABILITY default and avx2, 1 and 2 threads)."""
    from scgan_bench.registries import METRICS

    ref, cfg, sp = onealign
    install_snapshot(weights_dir, ref, cfg, sp)
    spec = METRICS.get("q-align")
    assert spec.higher_is_better is True and spec.availability().ok
    metric = spec.create()
    faces = _faces()
    got = metric.score_images(faces)
    want = onealign_scores(ref, faces)
    assert got == pytest.approx(want, abs=1e-5)
    assert len(set(np.round(got, 5))) == len(got) and all(1 <= v <= 5 for v in got)
    assert metric.tokens.levels() == ref.preferential_ids_


def test_qalign_bin_shards_and_refusals(onealign, weights_dir):
    """``.bin`` shards (torch.save, read with weights_only) give the same scores; a missing tensor is named; a
    file's sine-cosine table that is not the computed one is refused; a changed shard is refused by its pin."""
    from scgan_bench.errors import UsageError
    from scgan_bench.metrics.qalign import QAlignScore

    ref, cfg, sp = onealign
    faces = _faces()[:2]
    names = install_snapshot(weights_dir, ref, cfg, sp, fmt="bin")
    assert QAlignScore().score_images(faces) == pytest.approx(onealign_scores(ref, faces), abs=1e-5)
    sd = ref.state_dict()
    gone = "model.layers.1.self_attn.v_proj.multiway.1.weight"
    install_snapshot(weights_dir, ref, cfg, sp, sd={k: v for k, v in sd.items() if k != gone})
    with pytest.raises(UsageError, match=gone.replace(".", r"\.")):
        QAlignScore()
    table = "model.visual_abstractor.encoder.layers.0.crossattention.attention.k_pos_embed"
    install_snapshot(weights_dir, ref, cfg, sp, sd={**sd, table: sd[table].flip(0)})
    with pytest.raises(W.WeightsError, match="k_pos_embed differs"):
        QAlignScore()
    names = install_snapshot(weights_dir, ref, cfg, sp)
    with (weights_dir / "q-align" / names[1]).open("r+b") as f:
        f.seek(-4, 2)
        f.write(b"\0\0\0\1")
    with pytest.raises(W.WeightsError, match="sha256"):
        QAlignScore()


def test_qalign_full_size_layout_and_cpu_gate(onealign, weights_dir, monkeypatch):
    """At OneAlign's configuration (its config.json's values: LLaMA-2-7B, ViT-L/14 at 448, 6 abstractor
    layers) the network has OneAlign's tensors and shapes, built on the meta device; on the CPU the metric
    refuses it before reading any weight file, naming the GPU and the opt-in."""
    import pyiqa.archs.q_align.modeling_mplug_owl2 as owl
    from pyiqa.archs.q_align.configuration_mplug_owl2 import MPLUGOwl2Config

    from scgan_bench.errors import UsageError
    from scgan_bench.metrics.qalign import QAlignScore, file_asset, read_config
    from scgan_bench.networks.mplug_owl2 import MPLUGOwl2

    ref, cfg, sp = onealign
    full = MPLUGOwl2Config(vocab_size=32000, hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
                           num_attention_heads=32, num_key_value_heads=32, max_position_embeddings=2048,
                           rms_norm_eps=1e-6)
    monkeypatch.setattr(owl.LlamaTokenizer, "from_pretrained", staticmethod(lambda *a, **k: SlowLlamaTokens(sp)))
    monkeypatch.setattr(owl.CLIPImageProcessor, "from_pretrained", staticmethod(lambda *a, **k: None))
    with torch.device("meta"):
        want = {k: tuple(v.shape) for k, v in owl.MPLUGOwl2LlamaForCausalLM(full).state_dict().items()
                if not k.endswith(("q_pos_embed", "k_pos_embed", "inv_freq"))}
    folder = weights_dir / "q-align"
    folder.mkdir()
    (folder / "config.json").write_text(full.to_json_string())
    shutil.copy(sp, folder / "tokenizer.model")
    for name in ("config.json", "tokenizer.model"):
        W.register_sha256(file_asset(name), hashlib.sha256((folder / name).read_bytes()).hexdigest())
    lang, vision, abstractor = read_config(folder / "config.json")
    bare = json.loads(full.to_json_string())
    del bare["visual_config"]   # a config.json without it: the release's code takes its defaults, as here
    (tmp := weights_dir / "bare.json").write_text(json.dumps(bare))
    assert read_config(tmp)[1:] == (vision, abstractor)
    with torch.device("meta"):
        net = MPLUGOwl2(lang, vision, abstractor)
    assert {k: tuple(v.shape) for k, v in net.state_dict().items()} == want
    n = sum(p.numel() for p in net.parameters())
    # pinned: LLaMA-2-7B with the modality-adaptive copies, ViT-L/14 at 448, the abstractor (OneAlign's own count)
    assert n == sum(int(np.prod(s)) for s in want.values()) == 8_197_859_328
    monkeypatch.delenv("SCGAN_BENCH_QALIGN_CPU", raising=False)
    with pytest.raises(UsageError, match=r"8\.2 B parameters .* CUDA GPU .* SCGAN_BENCH_QALIGN_CPU=1"):
        QAlignScore("cpu")


def _write_niqe_params(path) -> None:
    """A NIQE pristine-parameter file in BasicSR's layout (the real one ships with BasicSR, not offline):
    a random mean and SPD covariance of the 36 features, the 7 x 7 Gaussian window."""
    rng = np.random.default_rng(7)
    a = rng.normal(size=(36, 36))
    g = np.exp(-((np.arange(7) - 3) ** 2) / (2 * (7 / 6) ** 2))
    window = np.outer(g, g) / np.outer(g, g).sum()
    np.savez(path, mu_pris_param=rng.normal(size=(1, 36)), cov_pris_param=a @ a.T / 36 + np.eye(36),
             gaussian_window=window)


@pytest.mark.slow
def test_ntire_score_end_to_end_with_built_in_qalign(onealign, weights_dir, tmp_path, monkeypatch):
    """A run asking for NTIRE's weighted score computes every part from files in the weights folder (random,
    reduced widths of the official layouts; Q-Align the tiny snapshot; FID against a statistics file in
    BasicSR's layout) and the score equals the report's formula written here on the parts' cells; the
    Q-Align cell is the mean of OneAlign's scores of the run's SR images."""
    import functools

    from sb_testdata import random_inception_state_dict, rgb_face
    from scgan_bench.io.image_io import read_image
    from scgan_bench.metrics import maniqa as maniqa_mod, musiq as musiq_mod
    from scgan_bench.metrics.fid_stats import STATS_ASSET, InceptionBasicSRPath
    from scgan_bench.networks.clip import CLIP
    from scgan_bench.networks.maniqa import MANIQA
    from scgan_bench.networks.musiq import MUSIQ
    from scgan_bench.run.pipeline import RunConfig, run_benchmark

    ref, cfg, sp = onealign
    install_snapshot(weights_dir, ref, cfg, sp)

    def pin(asset: str, obj=None, writer=torch.save) -> None:
        path = weights_dir / W.ASSETS.get(asset).filename
        if obj is not None:
            writer(obj, path)
        W.register_sha256(asset, hashlib.sha256(path.read_bytes()).hexdigest())

    torch.manual_seed(0)
    pin("clip-rn50", CLIP(layers=(1, 1, 1, 1), width=16, embed_dim=64, text_width=128, text_layers=2).state_dict())
    pin("maniqa-koniq", MANIQA(dim=96).state_dict())
    pin("musiq-koniq", MUSIQ(layers=2).state_dict())
    monkeypatch.setattr(maniqa_mod, "load_maniqa", functools.partial(maniqa_mod.load_maniqa, dim=96))
    monkeypatch.setattr(musiq_mod, "load_musiq", functools.partial(musiq_mod.load_musiq, layers=2))
    _write_niqe_params(weights_dir / W.ASSETS.get("niqe-pris-params").filename)
    pin("niqe-pris-params")
    pin("inception-fid", random_inception_state_dict())
    feats = InceptionBasicSRPath().extract([rgb_face(k) for k in range(20, 28)])
    pin(STATS_ASSET, {"name": "test", "size": 64, "mean": feats.mean(axis=0), "cov": np.cov(feats, rowvar=False)})

    res = run_benchmark(RunConfig(datasets=["demo"], methods=["bicubic"], metrics=["ntire-rwfr-score"],
                                  out=tmp_path / "run", limit=3, progress=False, device="cpu"))
    cells = {c.metric: c for c in res.cells}
    parts = ("clip-iqa", "maniqa", "musiq", "q-align", "niqe", "fid-ffhq512")
    assert all(cells[p].status == "ok" for p in parts), {p: (cells[p].status, cells[p].note) for p in parts}
    v = {p: cells[p].mean for p in parts}
    want = (v["clip-iqa"] + v["maniqa"] + v["musiq"] / 100 + v["q-align"] / 5 + max(0.0, (10 - v["niqe"]) / 10)
            + max(0.0, (100 - v["fid-ffhq512"]) / 100))
    assert cells["ntire-rwfr-score"].status == "ok"
    assert cells["ntire-rwfr-score"].mean == pytest.approx(want, rel=1e-9)
    srs = [read_image(p) for p in sorted((tmp_path / "run" / "sr" / "demo" / "bicubic").glob("*.png"))]
    assert len(srs) == 3
    assert v["q-align"] == pytest.approx(float(np.mean(onealign_scores(ref, srs))), abs=1e-5)
