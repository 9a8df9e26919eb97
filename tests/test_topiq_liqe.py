"""TOPIQ-NR, TOPIQ-NR-face, LIQE and LIQE-mix: the in-project networks load pyiqa's checkpoint layouts strictly
and score shared faces as pyiqa 0.1.16's own ``CFANet`` / ``LIQE`` do, on the same random weights (the
released files are not offline; pyiqa's constructors are told not to download). Tolerance 1e-5 on scores
(float32, the same operations; measured at most 1.8e-7 for TOPIQ and 4.8e-7 for LIQE under
ATEN_CPU_CAPABILITY default and avx2, 1 and 2 threads)."""
from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from scgan_bench.assets import weights as W
from scgan_bench.metrics import liqe as _liqe, topiq as _topiq  # noqa: F401 (register the assets)

from sb_testdata import shared_faces, tamper

TOL = 1e-5


def _tensor(images: list[np.ndarray]) -> torch.Tensor:
    return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 255


def _install(weights_dir, asset: str, obj) -> None:
    path = weights_dir / W.ASSETS.get(asset).filename
    torch.save(obj, path)
    W.register_sha256(asset, hashlib.sha256(path.read_bytes()).hexdigest())


def _pyiqa_cfanet(face: bool, seed: int):
    """pyiqa's CFANet as ``topiq_nr`` / ``topiq_nr-face`` build it (ResNet-50 from timm, no download), with
    random weights and drawn BatchNorm statistics (so that a stage in training mode or a wrong stage shows)."""
    import pyiqa.archs.topiq_arch as arch

    helper = arch.FaceRestoreHelper
    arch.FaceRestoreHelper = lambda *a, **k: None  # the face aligner (downloads RetinaFace); unused here
    try:
        torch.manual_seed(seed)
        ref = arch.CFANet(semantic_model_name="resnet50", use_ref=False, pretrained=False, backbone_pretrain=False,
                          model_name="topiq_nr_cgfiqa_res50" if face else "cfanet_nr_koniq_res50",
                          test_img_size=512 if face else None, align_crop_face=False).eval()
    finally:
        arch.FaceRestoreHelper = helper
    with torch.no_grad():
        for m in ref.semantic_model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.1)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.normal_(1, 0.1)
                m.bias.normal_(0, 0.1)
        ref.h_emb.normal_(0, 1)  # the position embedding well above the init's 0.02, so that its resize shows
        ref.w_emb.normal_(0, 1)
    return ref


@pytest.mark.parametrize("name, asset, face", [("topiq-nr", "topiq-nr-koniq", False),
                                               ("topiq-nr-face", "topiq-nr-face-cgfiqa", True)])
def test_topiq_equals_pyiqa_on_faces(name, asset, face, weights_dir):
    """The registered metric, built by its factory from a file in pyiqa's layout (``params``), scores 64 px
    shared faces (and, for the face model, a 96 x 80 crop: non-square resize) as pyiqa's CFANet."""
    from scgan_bench.registries import METRICS

    ref = _pyiqa_cfanet(face, seed=3)
    _install(weights_dir, asset, {"params": ref.state_dict()})
    metric = METRICS.get(name).create()
    assert METRICS.get(name).higher_is_better is True
    n_params = sum(p.numel() for p in metric.net.parameters())
    assert n_params == sum(p.numel() for p in ref.parameters()) == 45_196_934  # full size, pinned
    faces = shared_faces(3)
    if face:
        faces.append(np.ascontiguousarray(shared_faces(1, 96)[0][8:, 4:84]))
    got = metric.score_images(faces)
    with torch.no_grad():
        want = [float(v) for f in faces for v in ref(_tensor([f])).flatten()]
    assert got == pytest.approx(want, abs=TOL)
    assert len(set(np.round(got, 6))) == len(got)  # the faces are told apart


def test_topiq_file_loads_strictly_after_its_sha256(weights_dir):
    """Missing / misshaped tensors named; a plain state dict loads too; a changed file is refused by hash."""
    from scgan_bench.errors import UsageError
    from scgan_bench.metrics.topiq import load_topiq
    from scgan_bench.networks.topiq import TOPIQNR

    torch.manual_seed(0)
    sd = TOPIQNR().state_dict()
    for bad in ({k: v for k, v in sd.items() if k != "attn_blks.2.layers.0.self_attn.in_proj_weight"},
                {**sd, "weight_pool.4.splitconv.weight": sd["weight_pool.4.splitconv.weight"][:8]}):
        _install(weights_dir, "topiq-nr-koniq", {"params": bad})
        with pytest.raises(UsageError, match=r"attn_blks\.2\.layers\.0\.self_attn|weight_pool\.4\.splitconv"):
            load_topiq("topiq-nr-koniq")
    _install(weights_dir, "topiq-nr-koniq", sd)
    net = load_topiq("topiq-nr-koniq")
    assert all(torch.equal(v, net.state_dict()[k]) for k, v in sd.items())
    tamper(weights_dir / W.ASSETS.get("topiq-nr-koniq").filename)
    with pytest.raises(W.WeightsError, match="sha256"):
        load_topiq("topiq-nr-koniq")


#: a reduced CLIP ViT in pyiqa's constructor's terms (ViT-B/32 is width 768, 12 + 12 layers, embed 512)
SMALL_VIT = dict(embed_dim=64, image_resolution=224, vision_layers=2, vision_width=128, vision_patch_size=32,
                 context_length=77, vocab_size=49408, transformer_width=128, transformer_heads=2, transformer_layers=2)


def _pyiqa_liqe(multitask: bool, seed: int, tmp_path, **cfg):
    """pyiqa's LIQE around a random CLIP of pyiqa's own class (LayerNorm gains drawn, so a skipped norm shows);
    its text-feature cache pointed at an empty folder, so the features come from these weights."""
    import pyiqa.archs.liqe_arch as arch
    from pyiqa.archs.clip_model import CLIP as RefCLIP

    torch.manual_seed(seed)
    clip = RefCLIP(**{**SMALL_VIT, **cfg}).float()
    with torch.no_grad():
        for n, p in clip.named_parameters():
            if "ln" in n and n.endswith("weight"):
                p.normal_(1, 0.2)
        clip.logit_scale.fill_(np.log(60.0))
    load, cache = arch.load, arch.DEFAULT_CACHE_DIR
    arch.load, arch.DEFAULT_CACHE_DIR = (lambda *a, **k: clip), str(tmp_path)
    try:
        return arch.LIQE(pretrained=False, mtl=multitask).eval()
    finally:
        arch.load, arch.DEFAULT_CACHE_DIR = load, cache


@pytest.mark.parametrize("name, asset, multitask", [("liqe", "liqe-koniq", False), ("liqe-mix", "liqe-mix", True)])
def test_liqe_equals_pyiqa(name, asset, multitask, weights_dir, tmp_path):
    """A reduced ViT in LIQE's file layout (``params`` -> ``clip_model.*``), loaded by the registered factory:
    64 px faces scored as pyiqa scores them resized to 224 (bilinear, written here), and 256 / 300 x 260 /
    512 px images (1, 4 x 2 and 15 of 100 patches) as pyiqa scores them directly."""
    from scgan_bench.registries import METRICS

    ref = _pyiqa_liqe(multitask, 5, tmp_path)
    _install(weights_dir, asset, {"params": ref.state_dict()})
    metric = METRICS.get(name).create()
    assert METRICS.get(name).higher_is_better is True
    faces = shared_faces(3)
    got = metric.score_images(faces)
    with torch.no_grad():
        want = ref(F.interpolate(_tensor(faces), size=(224, 224), mode="bilinear", align_corners=False)).flatten()
    assert got == pytest.approx(want.tolist(), abs=TOL)
    assert len(set(np.round(got, 6))) == len(got)
    rng = np.random.default_rng(0)
    for h, w in ((256, 256), (300, 260), (512, 512)):
        big = [np.clip(shared_faces(1, max(h, w))[0][:h, :w].astype(int) + rng.integers(-20, 21, (h, w, 3)), 0, 255)
               .astype(np.uint8)]
        with torch.no_grad():
            assert metric.score_images(big) == pytest.approx(ref(_tensor(big)).flatten().tolist(), abs=TOL)


def test_liqe_full_size_layout_and_refusals(weights_dir, tmp_path):
    """ViT-B/32 at full size has pyiqa's CLIP's keys, shapes and count (no forward pass); a file without a
    tensor, or a ResNet CLIP, is refused by name; the text tower's prompts are LIQE's (5 and 495)."""
    from pyiqa.archs.clip_model import CLIP as RefCLIP

    from scgan_bench.errors import UsageError
    from scgan_bench.metrics.liqe import load_liqe_clip, prompts
    from scgan_bench.networks.clip import CLIP

    full = dict(embed_dim=512, image_resolution=224, vision_layers=12, vision_width=768, vision_patch_size=32,
                context_length=77, vocab_size=49408, transformer_width=512, transformer_heads=8, transformer_layers=12)
    with torch.device("meta"):
        ref = RefCLIP(**full).state_dict()
        net = CLIP(**CLIP.shape_of(ref))
    want = {k: v.shape for k, v in ref.items()}
    assert {k: v.shape for k, v in net.state_dict().items()} == want
    assert sum(p.numel() for p in net.parameters()) == 151_277_313
    assert len(prompts(False)) == 5 and len(prompts(True)) == 495
    assert prompts(True)[1] == "a photo of a animal with jpeg compression artifacts, which is of bad quality"
    assert prompts(True)[99] == "a photo of a animal with jpeg2000 compression artifacts, which is of poor quality"

    sd = _pyiqa_liqe(False, 0, tmp_path).state_dict()
    _install(weights_dir, "liqe-koniq", {"params": {k: v for k, v in sd.items() if k != "clip_model.visual.ln_post.bias"}})
    with pytest.raises(UsageError, match=r"visual\.ln_post\.bias"):
        load_liqe_clip("liqe-koniq")
    rn = CLIP(layers=(1, 1, 1, 1), width=16, embed_dim=64, text_width=128, text_layers=1).state_dict()
    _install(weights_dir, "liqe-koniq", {"params": {f"clip_model.{k}": v for k, v in rn.items()}})
    with pytest.raises(W.WeightsError, match="ResNet CLIP"):
        load_liqe_clip("liqe-koniq")
