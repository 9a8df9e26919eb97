"""The pretrained baselines behind the SR interface: official key layouts and containers (random weights,
reduced sizes where the architecture allows), strict loading, file verification, the resolution bridge,
input ranges, determinism, and their place in runs and Table 5."""
from __future__ import annotations

import math
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from baseline_weights import (
    codeformer_state_dict,
    dfdnet_dictionaries,
    dfdnet_official_shapes,
    dfdnet_state_dict,
    gaussian_fit,
    gfpgan_clean_state_dict,
    gfpgan_v1_state_dict,
    hifacegan_official_shapes,
    hifacegan_state_dict,
    lightning,
    lr_faces,
    lrgan_state_dict,
    pulse_synthesis_state_dict,
    restoreformer_state_dict,
    rrdb_state_dict,
    save,
)
from PIL import Image

from scgan_bench.assets import weights as W
from scgan_bench.io.manifest import sha256_file
from scgan_bench.registries import METHODS, load_plugins

load_plugins()


def install(asset: str, obj, legacy: bool = False, pin: bool = True) -> Path:
    """Save ``obj`` as asset's file in $SCGAN_BENCH_WEIGHTS and pin its sha256 (as a user pins a file)."""
    import os

    a = W.ASSETS.get(asset)
    path = save(obj, Path(os.environ["SCGAN_BENCH_WEIGHTS"]) / a.filename, legacy=legacy)
    if pin:
        W.register_sha256(asset, sha256_file(path))
    return path


# method -> (asset, container object maker); reduced sizes need any_config=True
CASES = {
    "realesrgan": ("realesrgan-x4plus", lambda: {"params_ema": rrdb_state_dict()}),
    "lrgan": ("lrgan-released", lambda: lrgan_state_dict()),
    "gfpgan-v1": ("gfpgan-v1", lambda: {"params_ema": gfpgan_v1_state_dict()}),
    "gfpgan-v1.3": ("gfpgan-v1.3", lambda: {"params_ema": gfpgan_clean_state_dict()}),
    "gfpgan-v1.4": ("gfpgan-v1.4", lambda: {"params": gfpgan_clean_state_dict(1)}),
    "restoreformer": ("restoreformer-pth", lambda: {"params_ema": restoreformer_state_dict()}),
    "restoreformer++": ("restoreformer++", lambda: lightning(restoreformer_state_dict(plus=True))),
    "hifacegan": ("hifacegan-x16", lambda: hifacegan_state_dict(module_prefix=True)),
}
FULL_SIZE = {"lrgan"}  # the others are reduced-size files of the official layout


def make(method: str, **opts):
    if method not in FULL_SIZE:
        opts.setdefault("any_config", True)
    if method.startswith("restoreformer"):
        opts.setdefault("input_size", 128)  # fully convolutional: a smaller bridge keeps the test fast
    return METHODS.get(method).create(**opts)


# ---------------------------------------------------------------------------------- sizes, layouts
def test_parameter_counts_of_the_official_configurations_are_pinned():
    """The numbers of shared/baselines.md, from the classes each loader builds (on the meta device)."""
    from scgan_bench.baselines import (
        dfdnet_arch,
        gfpganv1_arch,
        hifacegan_arch,
        lrgan_arch,
        pulse_arch,
        restoreformer_arch,
    )
    from scgan_bench.baselines.gfpgan import clean_config
    from spandrel.architectures.GFPGAN import GFPGAN
    from spandrel.architectures.RestoreFormer import RestoreFormer
    from spandrel_extra_arches.architectures.CodeFormer import CodeFormer

    def count(m):
        return sum(p.numel() for p in m.parameters())

    assert sum(v.numel() for v in rrdb_state_dict(23, 64, 32).values()) == 16_697_987
    assert len(rrdb_state_dict(23, 64, 32)) == 702
    lr_sd = lrgan_state_dict()
    assert len(lr_sd) == 206
    assert sum(v.numel() for k, v in lr_sd.items() if not k.split(".")[-1].startswith(("running", "num_"))) == 15_490_403
    assert count(lrgan_arch.LRGANGenerator()) == 15_490_403
    with torch.device("meta"):
        official_clean = GFPGAN(out_size=512, num_style_feat=512, channel_multiplier=2, decoder_load_path=None,
                                fix_decoder=False, num_mlp=8, input_is_latent=True, different_w=True, narrow=1,
                                sft_half=True)
        assert count(official_clean) == 86_444_252 and len(official_clean.state_dict()) == 285
        # the loader reads back exactly the official configuration from a full-size file's shapes
        assert clean_config(official_clean.state_dict()) == dict(
            out_size=512, num_style_feat=512, channel_multiplier=2, decoder_load_path=None, fix_decoder=False,
            num_mlp=8, input_is_latent=True, different_w=True, narrow=1.0, sft_half=True)
        v1 = gfpganv1_arch.GFPGANv1()
        assert count(v1) == 76_207_244 and len(v1.state_dict()) == 285
        assert gfpganv1_arch.config_from_state_dict(v1.state_dict()) == gfpganv1_arch.OFFICIAL_CONFIG
        assert count(CodeFormer()) == 94_112_707 and len(CodeFormer().state_dict()) == 515
        assert count(RestoreFormer()) == 72_680_003
        rfpp = restoreformer_arch.RestoreFormerNet(restoreformer_arch.RFPP_CONFIG)
        assert count(rfpp) == 73_472_579 and len(rfpp.state_dict()) == 441
        assert restoreformer_arch.config_from_state_dict(rfpp.state_dict(), 4) == restoreformer_arch.RFPP_CONFIG
        rf = restoreformer_arch.RestoreFormerNet(restoreformer_arch.RF_CONFIG)
        assert count(rf) == 72_680_003 and len(rf.state_dict()) == 405
        synth = pulse_arch.Synthesis()
        assert len(synth.state_dict()) == 100 and sum(v.numel() for v in synth.state_dict().values()) == 24_110_843
        assert pulse_arch.config_from_state_dict(synth.state_dict()) == pulse_arch.OFFICIAL_CONFIG
        dfd = dfdnet_arch.UNetDictFace()
        dsd = dfd.state_dict()
        assert count(dfd) == 240_117_181
        # every entry of the official UNetDictFace(64) with its shape, written from the official source in
        # the test data (386 entries, the four up-blocks' blur buffers included; up4's residual blocks are
        # plain convolutions there)
        official = dfdnet_official_shapes(1.0)
        assert len(official) == 386 and {k: tuple(v.shape) for k, v in dsd.items()} == official
        # key names of BasicSR's convert_dfdnet.py mapping (the official checkpoint's side)
        assert {"VggExtract.model.features.0.weight", "VggExtract.RGB_mean", "VggExtract.RGB_std", "le_256.0.weight_orig",
                "mo_32.2.weight_v", "MSDilate.conv1.0.weight_orig", "MSDilate.convi.weight_orig",
                "up0.ScaleModel1.0.weight_orig", "up3.ShiftModel1.2.bias", "up4.2.Model.0.weight", "up4.4.weight",
                "to_rgb0.0.weight_orig", "VggExtract.model.classifier.6.weight"} <= set(dsd)
        lip = hifacegan_arch.LIPSPADEGenerator()
        assert count(lip) == 72_223_660
        # every entry of the released LIP-SPADE generator (ngf 48) with its shape, written from the author's
        # port in the test data (230 entries)
        official = hifacegan_official_shapes(48)
        assert len(official) == 230 and {k: tuple(v.shape) for k, v in lip.state_dict().items()} == official
        # shapes reported for the released checkpoints (Face-Renovation issue #41): to_rgbs at ngf 48
        assert [official[f"to_rgbs.{i}.weight"] for i in range(4)] == [
            (3, 384, 3, 3), (3, 192, 3, 3), (3, 96, 3, 3), (3, 48, 3, 3)]


def _lrgan_reference(sd: dict, x: torch.Tensor) -> torch.Tensor:
    """GEN_DEEP's forward written from model.py, on the raw official state dict (eval-mode BatchNorm)."""
    def bn(p, t):
        return F.batch_norm(t, sd[f"{p}.running_mean"], sd[f"{p}.running_var"], sd[f"{p}.weight"], sd[f"{p}.bias"],
                            False, 0.0, 1e-5)

    def block(p, t):
        out = F.conv2d(F.relu(bn(f"{p}.bn1", t)), sd[f"{p}.conv1.weight"], padding=1)
        out = F.conv2d(F.relu(bn(f"{p}.bn2", out)), sd[f"{p}.conv2.weight"], padding=1)
        res = F.conv2d(t, sd[f"{p}.skip.weight"], sd[f"{p}.skip.bias"]) if f"{p}.skip.weight" in sd else t
        return out + res

    def up(i, t):
        t = F.relu(bn(f"layers_set_final_up.{i}.1", F.interpolate(t, scale_factor=2, mode="bilinear",
                                                                  align_corners=True)))
        return F.conv_transpose2d(t, sd[f"layers_set_final_up.{i}.3.weight"], sd[f"layers_set_final_up.{i}.3.bias"])

    h = F.conv2d(x, sd["layers_in.weight"], padding=1)
    t = h
    for j in range(12):
        t = block(f"layers_set_final.0.{j}", t)
    h = up(0, h + t)
    t = h
    for j in range(3):
        t = block(f"layers_set_final.1.{j}", t)
    h = up(1, t + F.conv2d(h, sd["a1.0.weight"], sd["a1.0.bias"]))
    h = F.relu(F.conv2d(h, sd["main.0.weight"], padding=1))
    h = F.relu(F.conv2d(h, sd["main.2.weight"], sd["main.2.bias"]))
    return torch.tanh(F.conv2d(h, sd["main.4.weight"], sd["main.4.bias"]))


def test_lrgan_adapter_equals_the_released_forward_on_rgb_in_minus1_1(weights_dir):
    """The released model.pkl (legacy torch.save format, raw state dict) loads with weights_only=True; the
    adapter feeds RGB in [-1, 1] and returns (y + 1) / 2 of the released forward."""
    sd = lrgan_state_dict(3)
    install("lrgan-released", sd, legacy=True)
    m = make("lrgan")
    lr = lr_faces(2)
    with torch.no_grad():
        want = (_lrgan_reference(sd, lr * 2 - 1).clamp(-1, 1) + 1) / 2
        wrong = (_lrgan_reference(sd, lr).clamp(-1, 1) + 1) / 2       # [0, 1] fed to the network
        bgr = (_lrgan_reference(sd, lr.flip(1) * 2 - 1).flip(1).clamp(-1, 1) + 1) / 2
        got = m.upscale(lr)
    assert (got - want).abs().max() < 1e-4   # 3.6e-6 at most over default / AVX2 ISAs, 1 / 2 threads (issue 26)
    assert (got - wrong).abs().max() > 1e-2 and (got - bgr).abs().max() > 1e-2  # the comparison can fail
    assert m.fingerprint()["channel_order"] == "rgb"
    mm = make("lrgan", minmax=True)
    y = mm.upscale(lr)
    assert torch.allclose(y.amin(dim=(1, 2, 3)), torch.zeros(2), atol=1e-6)
    assert torch.allclose(y.amax(dim=(1, 2, 3)), torch.ones(2), atol=1e-6)


# ------------------------------------------------------------------------ every adapter, end to end
@pytest.mark.parametrize("method", list(CASES))
def test_adapter_output_is_64px_in_range_deterministic_and_batch_independent(weights_dir, method):
    asset, obj = CASES[method]
    install(asset, obj())
    lr = lr_faces(4)
    first = make(method)
    out4 = first.upscale(lr)
    assert out4.shape == (4, 3, 64, 64) and out4.dtype == torch.float32
    assert out4.min() >= 0 and out4.max() <= 1 and torch.isfinite(out4).all()
    assert out4.std() > 1e-3                                   # not a constant image
    second = make(method)                                      # a fresh load: another run
    out1 = second.upscale(lr[2:3])
    # batch size changes only the float summation order: up to 5.7e-6 here (RestoreFormer, default ISA), 1.1e-5
    # on another AMD EPYC (issue 26); a batch-dependent bug (noise seeded by batch position) moves pixels by 1e-1
    assert (out1[0] - out4[2]).abs().max() <= 1e-4
    fp = first.fingerprint()
    assert fp == second.fingerprint()
    assert set(fp["weights"]) == {asset} and len(fp["weights"][asset]) == 64
    assert "bridge" in fp and fp["input_range"] in ("[-1,1]", "[0,1]")


def _bicubic512(lr: torch.Tensor, size: int) -> torch.Tensor:
    ims = [np.asarray(Image.fromarray(im).resize((size, size), Image.Resampling.BICUBIC))
           for im in (lr * 255).round().byte().permute(0, 2, 3, 1).numpy()]
    return torch.from_numpy(np.stack(ims)).permute(0, 3, 1, 2).contiguous().float() / 255


def _area(y: torch.Tensor, out: int = 64) -> torch.Tensor:
    n, c, h, w = y.shape
    k = h // out
    return y.reshape(n, c, out, k, out, k).mean(dim=(3, 5))


# direct calls, as each official inference script calls its network
DIRECT = {
    "realesrgan": (lambda net, x: net(x), "[0,1]"),
    "gfpgan-v1": (lambda net, x: net(x), "[-1,1]"),
    "gfpgan-v1.3": (lambda net, x: net(x, return_rgb=False, randomize_noise=False)[0], "[-1,1]"),
    "restoreformer": (lambda net, x: net(x)[0], "[-1,1]"),
    "restoreformer++": (lambda net, x: net(x), "[-1,1]"),
    "hifacegan": (lambda net, x: net(x), "[0,1]"),
}


@pytest.mark.parametrize("method", list(DIRECT))
def test_adapter_feeds_the_network_the_range_it_was_trained_on(weights_dir, method):
    """Adapter output == the loaded network called directly on its training range through the bridge
    written here (Pillow bicubic to the input size, 8-bit; exact area average back); feeding [0, 1] to
    a [-1, 1] network gives a clearly different image, so this comparison catches it."""
    asset, obj = CASES[method]
    install(asset, obj())
    opts = {"noise": "stored"} if method.startswith("gfpgan") else {}
    m = make(method, **opts)
    lr = lr_faces(2)
    call, rng = DIRECT[method]
    size = getattr(m.bridge, "input_size", 16)
    x = _bicubic512(lr, size) if m.bridge is not None else lr
    with torch.no_grad():
        if rng == "[-1,1]":
            want, wrong = (call(m.net, x * 2 - 1).clamp(-1, 1) + 1) / 2, (call(m.net, x).clamp(-1, 1) + 1) / 2
        else:
            want, wrong = call(m.net, x).clamp(0, 1), call(m.net, x * 2 - 1).clamp(0, 1)
    if m.bridge is not None:
        want, wrong = _area(want), _area(wrong)
    got = m.upscale(lr)
    assert (got - want).abs().max() <= 1e-5
    assert (got - wrong).abs().max() > 1e-2


# ------------------------------------------------------------------------------ refusing bad files
def test_tampered_file_is_refused(weights_dir):
    path = install("realesrgan-x4plus", {"params_ema": rrdb_state_dict()})
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.raises(W.WeightsError, match="sha256.*tampered"):
        make("realesrgan")
    assert not METHODS.get("realesrgan").availability().ok


def test_lrgan_file_is_checked_against_the_published_git_blob_id(weights_dir):
    """model.pkl has no published sha256 but a git blob id: a file with another blob id is refused
    (naming both ids) before trust-on-first-use could record it."""
    from scgan_bench.baselines.lrgan import GIT_BLOB

    path = install("lrgan-released", lrgan_state_dict(), legacy=True, pin=False)
    with pytest.raises(W.WeightsError) as e:
        make("lrgan")
    assert GIT_BLOB in str(e.value) and W.git_blob_sha1(path) in str(e.value)
    out = subprocess.run(["git", "hash-object", str(path)], capture_output=True, text=True)
    if out.returncode == 0:                       # the same id as git's own
        assert out.stdout.strip() == W.git_blob_sha1(path)
    assert not (W.data_home() / "weights-lock.json").exists() or "lrgan-released" not in (
        W.data_home() / "weights-lock.json").read_text()


@pytest.mark.parametrize("method,wrong_asset_of,obj,named", [
    ("codeformer", "codeformer", lambda: {"params_ema": rrdb_state_dict()}, "Real-ESRGAN"),
    ("gfpgan-v1.3", "gfpgan-v1.3", lambda: {"params_ema": gfpgan_v1_state_dict()}, "GFPGAN v1, paper model"),
    ("gfpgan-v1", "gfpgan-v1", lambda: {"params": gfpgan_clean_state_dict()}, "GFPGANv1Clean"),
    ("realesrgan", "realesrgan-x4plus", lambda: lrgan_state_dict(), "LRGAN generator"),
    ("lrgan", "lrgan-released", lambda: {"G_l2h": {}}, "SCGAN R_LS"),
    ("restoreformer", "restoreformer-pth", lambda: {"params_ema": restoreformer_state_dict(plus=True)},
     "RestoreFormer++"),
    ("restoreformer++", "restoreformer++", lambda: lightning(restoreformer_state_dict()), "RestoreFormer weights"),
    ("codeformer", "codeformer", lambda: lightning(restoreformer_state_dict(plus=True)), "RestoreFormer++"),
    ("hifacegan", "hifacegan-x16", lambda: {"params_ema": rrdb_state_dict()}, "Real-ESRGAN"),
    ("gfpgan-v1.4", "gfpgan-v1.4", lambda: {"params": hifacegan_state_dict()}, "HiFaceGAN"),
])
def test_a_file_of_another_method_is_named(weights_dir, method, wrong_asset_of, obj, named):
    install(wrong_asset_of, obj())
    with pytest.raises(W.WeightsError) as e:
        make(method)
    msg = str(e.value)
    assert named in msg and f"not {method}" in msg, msg


def test_strict_loading_names_missing_unexpected_and_resized_keys(weights_dir):
    sd = rrdb_state_dict()
    sd["body.0.rdb1.conv1.extra"] = torch.zeros(1)   # spandrel's key conversion would drop it silently
    install("realesrgan-x4plus", {"params_ema": sd})
    with pytest.raises(W.WeightsError, match=r"1 unexpected \(body\.0\.rdb1\.conv1\.extra\)"):
        make("realesrgan")
    sd = lrgan_state_dict()
    del sd["layers_set_final.1.0.skip.bias"]
    install("lrgan-released", sd)
    with pytest.raises(W.WeightsError, match=r"1 missing \(layers_set_final\.1\.0\.skip\.bias\)"):
        make("lrgan")
    sd = lrgan_state_dict(counters=False)                 # 0.4.1-era files may lack BN counters: allowed
    install("lrgan-released", sd)
    make("lrgan")
    sd = lrgan_state_dict()
    sd["main.4.weight"] = torch.zeros(3, 64, 1, 1)
    install("lrgan-released", sd)
    with pytest.raises(W.WeightsError, match=r"main\.4\.weight: \(3, 64, 1, 1\), the network needs \(3, 96, 1, 1\)"):
        make("lrgan")
    sd = lightning(restoreformer_state_dict(plus=True))
    del sd["state_dict"]["vqvae.decoder.up.4.attn.2.q.bias"]
    install("restoreformer++", sd)
    with pytest.raises(W.WeightsError, match=r"missing \(decoder\.up\.4\.attn\.2\.q\.bias\)"):
        make("restoreformer++")


def test_another_configuration_is_refused_unless_asked(weights_dir):
    install("realesrgan-x4plus", {"params_ema": rrdb_state_dict()})
    with pytest.raises(W.WeightsError, match=r"577,811 parameters; the official model has 16,697,987"):
        METHODS.get("realesrgan").create()
    m = METHODS.get("realesrgan").create(any_config=True)
    assert m.fingerprint()["params"] == 577_811


# ------------------------------------------------------------------------------------ GFPGAN noise
def test_gfpgan_v1_in_project_network_equals_the_original_with_native_ops(monkeypatch):
    """Our pure-PyTorch GFPGANv1 against the original class (spandrel's copy) whose fused bias +
    leaky-ReLU, missing a CUDA extension here, is replaced by its definition written in this test."""
    import spandrel.architectures.GFPGAN.__arch.fused_act as fa
    import spandrel.architectures.GFPGAN.__arch.stylegan2_arch as sa
    from scgan_bench.baselines import gfpganv1_arch
    from spandrel.architectures.GFPGAN.__arch.gfpganv1_arch import GFPGANv1 as Original

    def fused(x, bias, negative_slope=0.2, scale=2 ** 0.5):
        return F.leaky_relu(x + bias.reshape((1, -1) + (1,) * (x.ndim - 2)), negative_slope) * scale

    monkeypatch.setattr(fa, "fused_leaky_relu", fused)
    monkeypatch.setattr(sa, "fused_leaky_relu", fused)
    torch.manual_seed(0)
    ref = Original(out_size=64, num_style_feat=32, channel_multiplier=1, decoder_load_path=None, fix_decoder=True,
                   num_mlp=1, input_is_latent=True, different_w=True, narrow=0.125, sft_half=True).eval()
    sd = {k: v + 0.05 * torch.randn_like(v) if v.is_floating_point() else v for k, v in ref.state_dict().items()}
    ref.load_state_dict(sd)
    ours = gfpganv1_arch.GFPGANv1(gfpganv1_arch.config_from_state_dict(sd)).eval()
    ours.load_state_dict(sd, strict=True)
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    with torch.no_grad():
        want = ref(x, return_rgb=False, randomize_noise=False)[0]
        assert (ours(x) - want).abs().max() <= 1e-5 * max(1.0, want.abs().max().item())


def test_gfpgan_noise_is_seeded_per_image_or_stored(weights_dir):
    install("gfpgan-v1.3", {"params_ema": gfpgan_clean_state_dict()})
    lr = lr_faces(3)
    seeded = make("gfpgan-v1.3")
    a = seeded.upscale(lr)
    b = make("gfpgan-v1.3").upscale(lr.flip(0))                 # other batch order, another load
    assert (a - b.flip(0)).abs().max() <= 1e-5
    stored = make("gfpgan-v1.3", noise="stored").upscale(lr)
    assert (a - stored).abs().max() > 1e-3                       # the noise reaches the output
    assert seeded.fingerprint() != make("gfpgan-v1.3", noise="stored").fingerprint()
    # the same picture gets the same noise, different pictures different noise
    from scgan_bench.baselines.adapter import image_keys
    from scgan_bench.baselines.gfpgan import seeded_noise

    k = image_keys(torch.cat([lr[:1], lr[:1], lr[1:2]]))
    assert k[0] == k[1] != k[2]
    n0, n2 = seeded_noise(k[0], [torch.Size([1, 1, 8, 8])]), seeded_noise(k[2], [torch.Size([1, 1, 8, 8])])
    assert not torch.equal(n0[0], n2[0])


# ------------------------------------------------------------------------------------ HiFaceGAN
def test_hifacegan_normalises_each_image_alone_and_spectral_norm_modes_differ(weights_dir):
    """Per-sample statistics: an image's output does not depend on its batch neighbours (train-mode
    BatchNorm's would); ``sn=iterate`` (one power iteration from the stored vectors) is a different,
    equally deterministic network; a released checkpoint name outside the list is refused."""
    from scgan_bench.errors import UsageError

    install("hifacegan-x16", hifacegan_state_dict())
    lr = lr_faces(2)
    a = make("hifacegan")
    both = a.upscale(lr)
    dark = a.upscale(torch.stack([lr[0], lr[1] * 0.1]))
    assert (both[0] - dark[0]).abs().max() <= 1e-5
    it1, it2 = make("hifacegan", sn="iterate").upscale(lr[:1]), make("hifacegan", sn="iterate").upscale(lr[:1])
    assert torch.equal(it1, it2) and (it1 - both[:1]).abs().max() > 1e-4
    with pytest.raises(UsageError, match="x4sr is a plain SPADE generator"):
        make("hifacegan", checkpoint="x4sr")
    with pytest.raises(W.WeightsError, match="hifacegan_face_renov_latest_net_G.pth not found"):
        make("hifacegan", checkpoint="face_renov")


def test_hifacegan_blocks_follow_their_formulas():
    """One SPADE residual block and one LIP pooling written here with F ops on the module's tensors:
    SPADE = instance_norm(x) * gamma(seg) + beta(seg) with seg nearest-resized, spectral norm with the
    stored u, v; LIP = avgpool(x e^l) / avgpool(e^l) with l = 12 sigmoid(IN(conv x))."""
    from scgan_bench.baselines.hifacegan_arch import SimplifiedLIP, SPADEResnetBlock

    torch.manual_seed(0)
    blk = SPADEResnetBlock(8, 4).eval()
    sd = {k: v + 0.1 * torch.randn_like(v) if v.is_floating_point() and "weight_" not in k else v
          for k, v in blk.state_dict().items()}
    blk.load_state_dict(sd)
    x, seg = torch.randn(2, 8, 8, 8), torch.rand(2, 3, 32, 32)

    def sn(p):
        w = sd[f"{p}.weight_orig"]
        sigma = sd[f"{p}.weight_u"] @ (w.flatten(1) @ sd[f"{p}.weight_v"])
        return w / sigma

    def spade(p, t):
        s = F.interpolate(seg, size=t.shape[2:], mode="nearest")
        a = F.relu(F.conv2d(s, sd[f"{p}.mlp_shared.0.weight"], sd[f"{p}.mlp_shared.0.bias"], padding=1))
        mean, var = t.mean((2, 3), keepdim=True), t.var((2, 3), unbiased=False, keepdim=True)
        return ((t - mean) / (var + 1e-5).sqrt() * F.conv2d(a, sd[f"{p}.mlp_gamma.weight"], padding=1)
                + F.conv2d(a, sd[f"{p}.mlp_beta.weight"], padding=1))

    xs = F.conv2d(spade("norm_s", x), sn("conv_s"))
    dx = F.conv2d(F.leaky_relu(spade("norm_0", x), 0.2), sn("conv_0"), sd["conv_0.bias"], padding=1)
    dx = F.conv2d(F.leaky_relu(spade("norm_1", dx), 0.2), sn("conv_1"), sd["conv_1.bias"], padding=1)
    with torch.no_grad():
        assert (blk(x, seg) - (xs + dx)).abs().max() < 1e-4
        lip = SimplifiedLIP(8).eval()
        c = lip.logit[0].weight
        logit = 12 * torch.sigmoid(F.instance_norm(F.conv2d(x, c, padding=1), weight=lip.logit[1].weight,
                                                   bias=lip.logit[1].bias, eps=1e-5))
        e = logit.exp()
        assert (lip(x) - F.avg_pool2d(x * e, 3, 2, 1) / F.avg_pool2d(e, 3, 2, 1)).abs().max() < 1e-5


# ------------------------------------------------------------------------------------ DFDNet
def _install_dfdnet(weights_dir, sd=None, dicts=None):
    import os

    from scgan_bench.baselines.dfdnet import dict_asset

    install("dfdnet", sd if sd is not None else dfdnet_state_dict())
    for (part, f), arr in (dicts or dfdnet_dictionaries()).items():
        path = Path(os.environ["SCGAN_BENCH_WEIGHTS"]) / "DictionaryCenter512" / f"{part}_{f}_center.npy"
        path.parent.mkdir(exist_ok=True)
        np.save(path, arr, allow_pickle=not isinstance(arr, np.ndarray) or arr.dtype == object)
        W.register_sha256(dict_asset(part, f), sha256_file(path))


def _official_boxes(landmarks):
    """test_FaceDict.py's recipe, written again here."""
    groups = {"left_eye": [*range(17, 22), *range(36, 42)], "right_eye": [*range(22, 27), *range(42, 48)],
              "nose": list(range(29, 36)), "mouth": list(range(48, 68))}
    out = {}
    for name, idx in groups.items():
        p = np.asarray(landmarks, float)[idx]
        m, half = p.mean(0), max(np.max(p.max(0) - p.min(0)) / 2, 16)
        out[name] = tuple(int(v) for v in np.hstack((m - half + 1, m + half)).astype(int))
    return out


@pytest.fixture(scope="module")
def dlib68():
    import dlib

    det = dlib.get_frontal_face_detector()
    sp = dlib.shape_predictor(str(W.resolve("dlib-shape-68", allow_download=False).path))

    def landmarks(img):
        faces = det(img, 0)
        return None if not len(faces) else np.array([(p.x, p.y) for p in sp(img, max(faces, key=lambda r: r.area()))
                                                      .parts()])

    return landmarks


def test_dfdnet_part_boxes_follow_the_official_recipe_on_real_faces(dlib68):
    """On the shared FFHQ-aligned faces at 512 px: boxes from dlib's 68 landmarks equal the official
    recipe computed here; the stored fallback boxes are that recipe on the mean landmarks of all of them."""
    from sb_testdata import HR_FACES, need
    from scgan_bench.baselines.dfdnet import CANONICAL_BOXES, LandmarkBoxes, part_boxes

    files = sorted(need(HR_FACES).glob("*.png"))
    boxes = LandmarkBoxes()
    all_pts = []
    for f in files:
        img = np.asarray(Image.open(f).convert("RGB").resize((512, 512), Image.Resampling.BICUBIC))
        pts = dlib68(img)
        assert pts is not None, f
        all_pts.append(pts)
        if len(all_pts) <= 5:
            got, source = boxes(img)
            assert source == "dlib68" and got == _official_boxes(pts) == part_boxes(pts)
    assert _official_boxes(np.mean(np.array(all_pts, float), 0)) == CANONICAL_BOXES
    flat = np.full((512, 512, 3), 128, np.uint8)
    got, source = boxes(flat)
    assert source.startswith("canonical") and got == CANONICAL_BOXES


def test_dfdnet_runs_per_image_with_notes_and_equals_the_network_called_directly(weights_dir, dlib68):
    from scgan_bench.baselines.dfdnet import CANONICAL_BOXES

    _install_dfdnet(weights_dir)
    m = make("dfdnet")
    lr = torch.cat([lr_faces(2), torch.full((1, 3, 16, 16), 0.5)])
    out, notes = m.upscale_with_notes(lr)
    assert out.shape == (3, 3, 64, 64) and out.min() >= 0 and out.max() <= 1
    assert [n["dfdnet_boxes"] for n in notes][2].startswith("canonical")
    alone, _ = make("dfdnet").upscale_with_notes(lr[1:2])
    assert (alone[0] - out[1]).abs().max() <= 1e-5
    x = _bicubic512(lr[:1], 512)
    u8 = (x * 255).round().byte().permute(0, 2, 3, 1).numpy()[0]
    pts = dlib68(u8)
    b = _official_boxes(pts) if pts is not None else CANONICAL_BOXES
    with torch.no_grad():
        want = _area((m.net(x * 2 - 1, b).clamp(-1, 1) + 1) / 2)
        wrong = _area((m.net(x, b).clamp(-1, 1) + 1) / 2)
    assert (out[:1] - want).abs().max() <= 1e-5 and (out[:1] - wrong).abs().max() > 1e-2
    fp = m.fingerprint()
    assert len(fp["weights"]) == 17 and fp["fallback_boxes"]["provenance"].startswith("official part-box recipe")


def test_dfdnet_loading_is_strict_reads_dictionaries_without_unpickling(weights_dir):
    sd = dfdnet_state_dict()
    lean = {k: v for k, v in sd.items() if not k.startswith("VggExtract.features.")
            and not (k.startswith("up") and ".conv1.0.weight" in k)}
    _install_dfdnet(weights_dir, lean)
    a = make("dfdnet").upscale(lr_faces(1))
    _install_dfdnet(weights_dir, sd)
    assert torch.equal(a, make("dfdnet").upscale(lr_faces(1)))      # the second names were the same tensors
    bad = dict(sd)
    bad["VggExtract.features.0.0.weight"] = bad["VggExtract.features.0.0.weight"] + 1
    _install_dfdnet(weights_dir, bad)
    with pytest.raises(W.WeightsError, match="differs from VggExtract.model.features.0.weight"):
        make("dfdnet")
    bad = dict(sd)
    del bad["MSDilate.convi.bias"]
    _install_dfdnet(weights_dir, bad)
    with pytest.raises(W.WeightsError, match=r"1 missing \(MSDilate\.convi\.bias\)"):
        make("dfdnet")
    dicts = dfdnet_dictionaries()
    dicts[("nose", 64)] = np.array([{"atoms": 1}], dtype=object)
    _install_dfdnet(weights_dir, sd, dicts)
    with pytest.raises(W.WeightsError, match="nose_64_center.npy holds pickled objects"):
        make("dfdnet")
    dicts = dfdnet_dictionaries()
    dicts[("mouth", 32)] = dicts[("mouth", 32)][:, :-1]
    _install_dfdnet(weights_dir, sd, dicts)
    with pytest.raises(W.WeightsError, match="mouth_32_center.npy has shape"):
        make("dfdnet")
    _install_dfdnet(weights_dir, hifacegan_state_dict())
    with pytest.raises(W.WeightsError, match="holds HiFaceGAN / LIP-SPADE generator weights, not dfdnet"):
        make("dfdnet")


# ------------------------------------------------------------------------------------ PULSE
def _pulse(weights_dir, **opts):
    install("pulse-synthesis", pulse_synthesis_state_dict())
    install("pulse-gaussian-fit", gaussian_fit())
    return make("pulse", allow_cpu=True, **opts)


def test_pulse_search_lowers_its_loss_and_reports_each_image(weights_dir):
    """A reduced 64 px synthesis (32-d latents): 5 CPU steps lower every image's loss; every image gets an
    output and notes; a fresh search of one image alone equals its result in the batch."""
    m = _pulse(weights_dir, steps=5)
    lr = lr_faces(2)
    out, notes = m.upscale_with_notes(lr)
    assert out.shape == (2, 3, 64, 64) and out.min() >= 0 and out.max() <= 1
    for n in notes:
        assert n["pulse_steps"] == 5 and n["pulse_loss_last"] < n["pulse_loss_first"]
        assert isinstance(n["pulse_converged"], bool) and n["pulse_min_l2"] >= 2e-3
    alone, n1 = _pulse(weights_dir, steps=5).upscale_with_notes(lr[1:])
    assert torch.equal(alone[0], out[1]) and n1[0] == notes[1]
    from scgan_bench.baselines.adapter import image_keys

    lat, _, _ = m._initial(image_keys(lr))                 # each image starts from its own draw
    lat2, _, _ = m._initial(image_keys(lr.flip(0)))
    assert not torch.equal(lat[0], lat[1]) and torch.equal(lat[0], lat2[1])
    assert m.fingerprint()["steps"] == 5 and m.fingerprint()["loss"] == "100*L2+0.05*GEOCROSS"


def test_pulse_convergence_flag_time_budget_and_gpu_only_marking(weights_dir):
    from scgan_bench.baselines.pulse import PulseMethod, PulseSettings

    from scgan_bench.errors import UsageError

    m = _pulse(weights_dir, steps=2)
    lr = lr_faces(1)
    loose = PulseMethod(m.synthesis, m.mean, m.std, PulseSettings(steps=2, eps=10.0))
    strict = PulseMethod(m.synthesis, m.mean, m.std, PulseSettings(steps=2, eps=1e-12))
    assert loose.upscale_with_notes(lr)[1][0]["pulse_converged"] is True
    assert strict.upscale_with_notes(lr)[1][0]["pulse_converged"] is False
    budget = _pulse(weights_dir, steps=50, time_budget_s=1e-9)        # always exceeded after the first step
    assert budget.upscale_with_notes(lr)[1][0]["pulse_steps"] == 1
    assert budget.fingerprint()["time_budget_s"] == 1e-9
    spec = METHODS.get("pulse")
    if not torch.cuda.is_available():
        assert "GPU only" in spec.check().reason and spec.check(allow_cpu=True).ok
        with pytest.raises(UsageError, match="GPU only"):
            spec.create()


def test_pulse_pieces_follow_the_released_definitions():
    """The bicubic down-sampler, the geodesic cross loss, the schedule and the spherical projection,
    against formulas written here."""
    from scgan_bench.baselines import pulse_arch as A

    def cubic(x, a=-0.5):
        x = abs(x)
        return (a + 2) * x ** 3 - (a + 3) * x ** 2 + 1 if x <= 1 else (a * x ** 3 - 5 * a * x ** 2 + 8 * a * x - 4 * a
                                                                      if x < 2 else 0.0)

    k = np.array([cubic((i - 8 + 0.5) / 4) for i in range(16)])
    k /= k.sum()
    x = torch.rand(1, 3, 32, 32, dtype=torch.float64)
    xp = np.pad(x.numpy(), ((0, 0), (0, 0), (6, 6), (6, 6)), mode="reflect")
    d = A.BicubicDownSample(4)
    got = d(x.float()).double().numpy()
    ref = np.zeros((1, 3, 8, 8))
    for oy in range(8):
        for ox in range(8):
            ref[0, :, oy, ox] = np.einsum("cij,i,j->c", xp[0, :, oy * 4:oy * 4 + 16, ox * 4:ox * 4 + 16], k, k)
    assert np.abs(got - ref).max() < 1e-5
    lat = torch.randn(2, 4, 8, dtype=torch.float64)
    want = []
    for b in range(2):       # loss.py: D_ij = 2 atan2(|x_i - x_j|, |x_i + x_j|); mean(D^2 * dim) / 8
        d = [[2 * math.atan2(math.sqrt(float(((lat[b, i] - lat[b, j]) ** 2).sum()) + 1e-9),
                             math.sqrt(float(((lat[b, i] + lat[b, j]) ** 2).sum()) + 1e-9)) for j in range(4)]
             for i in range(4)]
        want.append(sum(x ** 2 * 8 for row in d for x in row) / 16 / 8)
    assert torch.allclose(A.geocross(lat), torch.tensor(want, dtype=torch.float64), atol=1e-9)
    assert A.one_cycle_drop(0, 100) == pytest.approx(0.1) and A.one_cycle_drop(45, 100) == pytest.approx(1.0)
    assert A.one_cycle_drop(99, 100) == pytest.approx(0.1 + 0.9 * (0.001 - 0.1))
    p = torch.randn(2, 3, 5, requires_grad=True)
    r0 = p.detach().norm(dim=2)
    opt = A.SphericalAdam([p], lr=0.5)
    (p ** 3).sum().backward()
    opt.step()
    assert torch.allclose(p.detach().norm(dim=2), r0, atol=1e-4)


def test_method_notes_reach_the_records_summary_csv_and_report(weights_dir, tmp_path, capsys):
    from scgan_bench.cli import main

    install("pulse-synthesis", pulse_synthesis_state_dict())
    install("pulse-gaussian-fit", gaussian_fit())
    out = tmp_path / "run"
    assert main(["run", "--datasets", "demo-real", "--methods", "pulse", "--metrics", "psnr", "--limit", "2",
                 "--out", str(out), "--quiet", "--method-opt", "pulse:allow_cpu=true", "--method-opt", "pulse:steps=2",
                 "--method-opt", "pulse:any_config=true"]) == 0
    import csv
    import json

    rows = list(csv.DictReader(open(out / "method_notes.csv")))
    assert {r["key"] for r in rows} >= {"pulse_converged", "pulse_steps"} and {r["image_id"] for r in rows}
    rec = json.loads(next((out / "sr" / "demo-real" / "pulse" / "records").glob("*.json")).read_text())
    assert rec["notes"]["pulse_steps"] == 2
    summary = (out / "summary.md").read_text()
    assert "Method notes, pulse" in summary and "pulse_converged:" in summary and "pulse_steps: 2 2" in summary
    from scgan_bench.reports.report import build_report

    page = build_report(out, per_dataset=2, figures=False).read_text()
    assert "note:pulse_converged" in page
    assert "PULSE code: no licence" in capsys.readouterr().out    # the restricted licence is named


def test_trust_on_first_use_files_are_recorded_then_a_changed_file_is_refused(weights_dir, capsys):
    """HiFaceGAN, DFDNet and PULSE publish no hash: the first file that loads is recorded (issue 33: a file
    that fails to load pins nothing, so the genuine one put in its place is taken); a later, different
    file under the same name is refused (named, with how to pin it or forget the pin)."""
    from scgan_bench.cli import main

    lock = W.data_home() / "weights-lock.json"
    path = install("hifacegan-x16", {"params_ema": rrdb_state_dict()}, pin=False)   # another method's file
    with pytest.raises(W.WeightsError, match="Real-ESRGAN"):
        make("hifacegan")
    assert not lock.exists() or "hifacegan-x16" not in lock.read_text()
    save(hifacegan_state_dict(), path)
    make("hifacegan")
    assert "hifacegan-x16" in lock.read_text()
    save(hifacegan_state_dict(seed=1), path)
    with pytest.raises(W.WeightsError, match="expected first-use .*SCGAN_BENCH_SHA256_HIFACEGAN_X16.*"
                                             "weights unpin hifacegan-x16"):
        make("hifacegan")
    assert main(["weights", "unpin", "hifacegan-x16"]) == 0
    assert "pin forgotten" in capsys.readouterr().out and "hifacegan-x16" not in lock.read_text()
    make("hifacegan")
    assert "hifacegan-x16" in lock.read_text()


# ------------------------------------------------------------------------------------ RestoreFormer
def test_restoreformer_layouts_give_the_same_network_and_rfpp_code_matches_spandrels_rf(weights_dir):
    sd = restoreformer_state_dict(5)
    install("restoreformer-pth", {"params": sd})
    install("restoreformer-ckpt", lightning(sd))
    lr = lr_faces(2)
    a = make("restoreformer", layout="pth").upscale(lr)
    m = make("restoreformer", layout="ckpt")
    assert m.fingerprint()["training_entries_ignored"] == 1          # loss.* left out, by name
    assert (a - m.upscale(lr)).abs().max() == 0
    # the in-project RF++ class, configured as RestoreFormer, is spandrel's RestoreFormer to the bit
    from scgan_bench.baselines import restoreformer_arch as A

    ours = A.RestoreFormerNet(A.config_from_state_dict(sd, 8)).eval()
    ours.load_state_dict(sd, strict=True)
    x = torch.rand(1, 3, 64, 64) * 2 - 1
    with torch.no_grad():
        assert (ours(x) - m.net(x)[0]).abs().max() <= 1e-6


# ------------------------------------------------------------------------------------ the bridge
def test_bridge_modes_are_the_stated_resizers_and_area_is_exact():
    import cv2
    from scgan_bench.baselines.bridge import Bridge

    lr = lr_faces(2)
    u8 = (lr * 255).round().byte().permute(0, 2, 3, 1).numpy()
    up = Bridge(128).up(lr)
    assert torch.equal(up, _bicubic512(lr, 128))
    off = Bridge(128, "official").up(lr)
    cv = np.stack([cv2.resize(im, (128, 128), interpolation=cv2.INTER_LINEAR) for im in u8])
    assert torch.equal(off, torch.from_numpy(cv).permute(0, 3, 1, 2).float() / 255)
    assert (up - off).abs().max() > 0.01                          # the two modes differ
    y = torch.rand(2, 3, 512, 512)
    assert torch.allclose(Bridge(512).down(y, 64), _area(y), atol=1e-6)
    assert "bicubic" in Bridge(512).describe()["up"] and "cv2" in Bridge(512, "official").describe()["up"]


# ------------------------------------------------------------------------------------ CodeFormer
def test_codeformer_call_convention_on_a_recording_network():
    """The forward CodeFormer's adapter uses: [-1, 1] input at 512 px, fidelity passed as ``weight=``
    (spandrel's name; ``w=`` would be swallowed by its **kwargs), first output taken."""
    from scgan_bench.baselines.adapter import PretrainedSR
    from scgan_bench.baselines.bridge import Bridge
    from scgan_bench.baselines.codeformer import make_forward

    calls = []

    class Recorder(torch.nn.Module):
        def forward(self, x, weight=0.5, **kw):
            calls.append((x.clone(), weight, kw))
            return torch.tanh(x * 3) * 0.9, None

    m = PretrainedSR("codeformer", Recorder(), make_forward(0.7), "[-1,1]", Bridge(512))
    lr = lr_faces(2)
    got = m.upscale(lr)
    (x, weight, kw), = calls
    assert weight == 0.7 and "w" not in kw
    assert torch.allclose(x, _bicubic512(lr, 512) * 2 - 1, atol=1e-6)
    assert (got - _area((torch.tanh(x * 3) * 0.9 + 1) / 2)).abs().max() <= 1e-5


@pytest.mark.slow
def test_codeformer_gets_minus1_1_and_the_fidelity_weight_by_its_real_name(weights_dir):
    """At 512 px (CodeFormer's latent grid is fixed at 16 x 16): the network receives the bridged image in
    [-1, 1] and weight=w (spandrel swallows a misspelt w=); its output comes back as (y + 1) / 2 area-
    averaged; a batch of 2 and a single image give the same result."""
    install("codeformer", {"params_ema": codeformer_state_dict()})
    m = make("codeformer", w=0.7)
    seen = []
    inner = m.net

    class Recorder(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = inner

        def forward(self, x, **kw):
            out = self.inner(x, **kw)
            seen.append((x.clone(), kw, out[0].clone()))
            return out

    m.net = Recorder()
    lr = lr_faces(2)
    got = m.upscale(lr)
    (x, kw, y), = seen
    assert kw.get("weight") == 0.7 and "w" not in kw
    assert torch.allclose(x, _bicubic512(lr, 512) * 2 - 1, atol=1e-6)
    assert (got - _area((y.clamp(-1, 1) + 1) / 2)).abs().max() <= 1e-5
    assert got.shape == (2, 3, 64, 64) and got.min() >= 0 and got.max() <= 1
    single = make("codeformer", w=0.7).upscale(lr[1:])
    assert (single[0] - got[1]).abs().max() <= 1e-5
    assert m.fingerprint()["w"] == 0.7


# ------------------------------------------------------------------------------------ CLI and tables
def test_method_options_parse_validate_and_resolve_aliases():
    from scgan_bench.cli import parse_method_options
    from scgan_bench.errors import UsageError

    assert parse_method_options(["gfpgan:noise=stored", "codeformer:w=0.7"]) == {
        "gfpgan-v1.3": {"noise": "stored"}, "codeformer": {"w": 0.7}}
    with pytest.raises(UsageError, match="no option 'fidelity'"):
        parse_method_options(["codeformer:fidelity=1"])
    with pytest.raises(UsageError, match="expected float"):
        parse_method_options(["codeformer:w=high"])
    assert METHODS.resolve_list("gfpgan,gfpgan-v1.3,real-esrgan") == ["gfpgan-v1.3", "realesrgan"]


def test_list_methods_shows_every_table_method_licences_and_cards(weights_dir, capsys):
    from scgan_bench.baselines import PLANNED

    from scgan_bench.cli import main
    from scgan_bench.tables.specs import TABLES

    assert main(["list", "methods"]) == 0
    out = capsys.readouterr().out
    for n in ("5", "6", "7"):
        for m in TABLES.get(n).methods:
            assert METHODS.canonical(m) in out or m in PLANNED, m
    for m in PLANNED:
        assert f"{m}" in out and "not implemented yet" in out
    assert "NON-COMMERCIAL" in out and "unavailable: weights 'codeformer' (codeformer.pth) missing" in out
    root = Path(__file__).resolve().parents[1] / "baselines"
    for name, spec in METHODS.items():
        if spec.card:
            text = (root / spec.card).read_text()
            for needed in ("Licence", "Weights", "Input protocol", "sha256"):
                assert needed.lower() in text.lower(), (spec.card, needed)


@pytest.mark.slow
def test_methods_all_runs_what_is_available_and_table5_shows_it(weights_dir, tmp_path, capsys):
    import shutil

    from sb_testdata import SHARED, need

    from scgan_bench.cli import main

    shutil.copy(need(SHARED / "weights" / "niqe_pris_params.npz"), weights_dir)   # NIQE's pristine model
    install("realesrgan-x4plus", {"params_ema": rrdb_state_dict()})
    install("lrgan-released", lrgan_state_dict())
    out = tmp_path / "run"
    assert main(["run", "--datasets", "demo-real", "--methods", "all", "--metrics", "niqe", "--limit", "3",
                 "--out", str(out), "--quiet", "--method-opt", "realesrgan:any_config=true"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert any(line.startswith("unavailable method:codeformer: weights 'codeformer'") for line in lines)
    assert sum(line.startswith("unavailable method:gfpgan-v1") for line in lines) == 3
    import csv

    rows = list(csv.DictReader(open(out / "results.csv")))
    assert {r["method"] for r in rows} >= {"realesrgan", "lrgan", "bicubic"}
    assert main(["table", "5", str(out), "--dataset-map", "widerface=demo-real"]) == 0
    md = (out / "table5.md").read_text()
    niqe_row = next(line for line in md.splitlines() if line.startswith("| Widerface → demo-real | NIQE"))
    cells = [c.strip() for c in niqe_row.strip("|").split("|")]
    header = [c.strip() for c in md.splitlines()[2].strip("|").split("|")]
    for label in ("Real-ESRGAN", "LRGAN", "Bicubic Interpolation"):
        assert math.isfinite(float(cells[header.index(label)].split("[")[0].split(" ")[0].strip("*"))), label
    assert "column 'real-esrgan' shows run method 'realesrgan'" in md
    assert "official pretrained weights" in md and "not retrained" in md
    assert "method cyclegan unavailable: no checkpoint: train one (`scgan-bench train --method cyclegan" in md


def test_file_and_checkpoint_options_make_a_method_available_through_the_cli(weights_dir, tmp_path):
    """``--method-opt NAME:weights=PATH`` (a file outside the weights folder, its sha256 pinned as a user
    pins one) makes Real-ESRGAN available and scored with no file in the weights folder; HiFaceGAN's
    ``checkpoint=face_renov`` needs the face_renov file, not the x16 one; a path that does not exist is
    the method's stated reason, in the run's cells."""
    import csv
    import json

    from scgan_bench.cli import main

    own = save({"params_ema": rrdb_state_dict()}, tmp_path / "mine" / "my_realesrgan.pth")
    W.register_sha256("realesrgan-x4plus", sha256_file(own))
    install("hifacegan-face_renov", hifacegan_state_dict(module_prefix=True))
    out = tmp_path / "run"
    args = ["run", "--datasets", "demo", "--methods", "realesrgan,hifacegan,lrgan", "--metrics", "psnr",
            "--limit", "2", "--out", str(out), "--method-opt", f"realesrgan:weights={own}",
            "--method-opt", "realesrgan:any_config=true", "--method-opt", "hifacegan:checkpoint=face_renov",
            "--method-opt", "hifacegan:any_config=true", "--method-opt", f"lrgan:weights={tmp_path / 'nope.pkl'}"]
    assert main(args) == 0
    rows = [r for r in csv.DictReader(open(out / "results.csv")) if r["metric"] == "psnr" and r["image_id"] != "*"]
    assert sorted({r["method"] for r in rows}) == ["hifacegan", "realesrgan"]
    assert all(sum(r["method"] == m for r in rows) == 2 for m in ("hifacegan", "realesrgan"))
    meta = json.loads((out / "run.json").read_text())
    assert meta["unavailable"] == {"method:lrgan": f"--method-opt lrgan:weights={tmp_path / 'nope.pkl'}: no such file"}
    # HiFaceGAN ran with the default bicubic bridge where its script resizes with cv2: Table 5's note says so
    assert meta["methods"]["hifacegan"]["official_bridge"] == "cv2-linear"
    assert "official_bridge" not in meta["methods"]["realesrgan"]   # native 16 -> 64, no bridge
    from scgan_bench.tables.render import pretrained_notes
    from scgan_bench.tables.specs import TABLES

    notes = pretrained_notes(TABLES.get("5"), out, {"hifacegan": "hifacegan", "real-esrgan": "realesrgan"},
                             {"hifacegan", "realesrgan"})
    hf = next(n for n in notes if n.startswith("HifaceGAN"))
    assert "resizes with cv2-linear" in hf and "--method-opt hifacegan:bridge=official" in hf
    assert not any("bridge=official" in n for n in notes if not n.startswith("HifaceGAN"))


@pytest.mark.parametrize("method,shaped,second,dropped", [
    ("realesrgan", "conv_body.weight", "body.0.rdb2.conv2.weight", "conv_up1.bias"),
    ("restoreformer", "encoder.down.0.block.1.conv1.weight", "encoder.down.1.block.0.conv2.weight",
     "encoder.down.0.block.1.norm1.bias"),
    ("codeformer", "encoder.blocks.2.conv1.weight", "encoder.blocks.4.conv2.weight", "encoder.blocks.2.norm1.bias"),
    ("dfdnet", "up4.2.Model.0.weight", "up4.3.Model.2.weight", "up4.4.bias"),
])
def test_a_refused_file_names_every_key_that_differs(weights_dir, method, shaped, second, dropped):
    """A file with one tensor of another shape, one missing and one unexpected entry is refused with all
    three named in the layout's own names (spandrel's loader renames Real-ESRGAN's keys and, for shape
    errors, used to be cut after its first line), and a second mis-shaped tensor is named too."""
    from scgan_bench.assets.weights import WeightsError

    asset, container = {**CASES, "codeformer": ("codeformer", lambda: {"params_ema": codeformer_state_dict()}),
                        "dfdnet": ("dfdnet", dfdnet_state_dict)}[method]
    obj = container()
    sd = obj.get("params_ema", obj.get("params", obj.get("state_dict", obj))) if isinstance(obj, dict) else obj
    sd[shaped] = torch.zeros(1, 1, 1, 1)
    sd[second] = torch.zeros(2, 1, 1, 1)
    del sd[dropped]
    sd["extra.weight"] = torch.zeros(1)
    if method == "dfdnet":
        _install_dfdnet(weights_dir, sd)
    else:
        install(asset, obj)
    with pytest.raises(WeightsError) as err:
        make(method)
    for key in (shaped, second, dropped, "extra.weight"):
        assert key in str(err.value), (key, str(err.value)[:600])


def test_list_methods_names_every_missing_file_the_failed_check_and_what_loads(weights_dir, tmp_path, capsys):
    """``list methods``: DFDNet without files names all 17 it needs at once; an LRGAN file that is not the
    release is refused by its git blob id (not "the sha256 check") with how to pin it; an available method
    says its files are verified but not yet loaded, and ``--check`` loads them: a DFDNet file with a key of
    another shape becomes unavailable with the loader's reason."""
    from scgan_bench.cli import main

    reason = METHODS.get("dfdnet").check().reason
    assert reason.startswith("17 weight files missing") and "mouth_32_center.npy" in reason
    assert "DFDNet_latest_net_G.pth" in reason
    save(lrgan_state_dict(), Path(weights_dir) / W.ASSETS.get("lrgan-released").filename, legacy=True)
    reason = METHODS.get("lrgan").check().reason
    assert "git blob id" in reason and "SCGAN_BENCH_SHA256_LRGAN_RELEASED=<sha256>" in reason
    assert "sha256 check" not in reason
    sd = dfdnet_state_dict()
    sd["up4.4.weight"] = torch.zeros(3, 1, 3, 3)
    _install_dfdnet(weights_dir, sd)
    assert main(["list", "methods"]) == 0
    row = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("dfdnet ")]
    assert row and "available" in row[0] and "files present and verified; loaded by a run" in row[0]
    assert main(["list", "methods", "--check"]) == 0
    out = capsys.readouterr().out
    assert "unavailable: its files do not load: WeightsError: dfdnet:" in out and "up4.4.weight" in out


def test_spandrel_refusals_keep_all_of_spandrels_message():
    """Without a layout to compare with, a file spandrel refuses is reported with all of spandrel's
    message (its missing, unexpected and size-mismatch lines), not its first line."""
    from scgan_bench.baselines.loading import spandrel_build
    from scgan_bench.assets.weights import WeightsError

    sd = restoreformer_state_dict()
    sd["encoder.down.0.block.1.conv1.weight"] = torch.zeros(1, 1, 1, 1)
    del sd["encoder.down.0.block.1.norm1.bias"]
    sd["extra.weight"] = torch.zeros(1)
    with pytest.raises(WeightsError) as err:
        spandrel_build(sd, "RestoreFormer", "x.pth", "restoreformer")
    for key in ("encoder.down.0.block.1.conv1.weight", "encoder.down.0.block.1.norm1.bias", "extra.weight"):
        assert key in str(err.value), key
