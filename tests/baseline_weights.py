"""Random-weight state dicts in the official key layouts of the pretrained baselines, written without
the project's loaders (formulas from the official sources, or the reference classes spandrel ships), at
reduced sizes where the architecture allows; saved in each method's official container."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from sb_testdata import rgb_face


def lr_faces(n: int = 4) -> torch.Tensor:
    """n real 16 px faces as an NCHW float batch with exact 8-bit values."""
    from PIL import Image

    ims = [np.asarray(Image.fromarray(rgb_face(i, 128)).resize((16, 16), Image.Resampling.BICUBIC)) for i in range(n)]
    return torch.from_numpy(np.stack(ims)).permute(0, 3, 1, 2).float() / 255


def rrdb_state_dict(num_block: int = 2, nf: int = 16, gc: int = 32, seed: int = 0) -> dict[str, torch.Tensor]:
    """BasicSR RRDBNet (Real-ESRGAN release layout): conv_first, body.i.rdbR.convC, conv_body, conv_up1/2,
    conv_hr, conv_last; the 5 convs of a dense block read nf + (c-1)*gc channels."""
    g = torch.Generator().manual_seed(seed)
    sd: dict[str, torch.Tensor] = {}

    def conv(name: str, cin: int, cout: int) -> None:
        sd[f"{name}.weight"] = torch.randn(cout, cin, 3, 3, generator=g) * (0.5 / (cin * 9) ** 0.5)
        sd[f"{name}.bias"] = torch.randn(cout, generator=g) * 0.01

    conv("conv_first", 3, nf)
    for i in range(num_block):
        for r in (1, 2, 3):
            for c in range(1, 6):
                conv(f"body.{i}.rdb{r}.conv{c}", nf + (c - 1) * gc, gc if c < 5 else nf)
    for name in ("conv_body", "conv_up1", "conv_up2", "conv_hr"):
        conv(name, nf, nf)
    conv("conv_last", nf, 3)
    sd["conv_last.bias"] += 0.5  # outputs mid-range, not clamped away
    return sd


def lrgan_state_dict(seed: int = 0, counters: bool = True) -> dict[str, torch.Tensor]:
    """GEN_DEEP (model.py of jingyang2017/Face-and-Image-super-resolution), written from its source: 206
    entries with the BatchNorm counters."""
    g = torch.Generator().manual_seed(seed)
    sd: dict[str, torch.Tensor] = {}

    def w(name: str, *shape: int) -> None:
        fan = int(np.prod(shape[1:])) or 1
        sd[name] = torch.randn(*shape, generator=g) / fan ** 0.5

    def bn(name: str, c: int) -> None:
        sd[f"{name}.weight"] = 1 + 0.1 * torch.randn(c, generator=g)
        sd[f"{name}.bias"] = 0.1 * torch.randn(c, generator=g)
        sd[f"{name}.running_mean"] = 0.1 * torch.randn(c, generator=g)
        sd[f"{name}.running_var"] = 0.5 + torch.rand(c, generator=g)
        if counters:
            sd[f"{name}.num_batches_tracked"] = torch.tensor(1000)

    def block(name: str, cin: int, cout: int) -> None:
        bn(f"{name}.bn1", cin)
        w(f"{name}.conv1.weight", cout, cin, 3, 3)
        bn(f"{name}.bn2", cout)
        w(f"{name}.conv2.weight", cout, cout, 3, 3)
        if cin != cout:
            w(f"{name}.skip.weight", cout, cin, 1, 1)
            sd[f"{name}.skip.bias"] = torch.zeros(cout)

    w("layers_in.weight", 256, 3, 3, 3)
    for j in range(12):
        block(f"layers_set_final.0.{j}", 256, 256)
    for j, (cin, cout) in enumerate(((256, 128), (128, 128), (128, 128))):
        block(f"layers_set_final.1.{j}", cin, cout)
    for i, c in enumerate((256, 128)):
        bn(f"layers_set_final_up.{i}.1", c)
        w(f"layers_set_final_up.{i}.3.weight", c, c, 1, 1)
        sd[f"layers_set_final_up.{i}.3.bias"] = 0.01 * torch.randn(c, generator=g)
    w("a1.0.weight", 128, 256, 1, 1)
    sd["a1.0.bias"] = torch.zeros(128)
    w("a2.0.weight", 96, 128, 1, 1)
    sd["a2.0.bias"] = torch.zeros(96)
    w("main.0.weight", 96, 128, 3, 3)
    w("main.2.weight", 96, 96, 1, 1)
    sd["main.2.bias"] = torch.zeros(96)
    w("main.4.weight", 3, 96, 1, 1)
    sd["main.4.bias"] = torch.zeros(3)
    return sd


def _perturbed(module: torch.nn.Module, seed: int) -> dict[str, torch.Tensor]:
    """The module's state dict with every float tensor nudged, so that biases are not all zero."""
    g = torch.Generator().manual_seed(seed)
    return {k: (v + 0.02 * torch.randn(v.shape, generator=g)) if v.is_floating_point() else v
            for k, v in module.state_dict().items()}


def gfpgan_clean_state_dict(seed: int = 0, out_size: int = 128, narrow: float = 0.25) -> dict[str, torch.Tensor]:
    from spandrel.architectures.GFPGAN import GFPGAN

    torch.manual_seed(seed)
    net = GFPGAN(out_size=out_size, num_style_feat=64, channel_multiplier=2, decoder_load_path=None,
                 fix_decoder=False, num_mlp=2, input_is_latent=True, different_w=True, narrow=narrow, sft_half=True)
    return _perturbed(net, seed)


def gfpgan_v1_state_dict(seed: int = 0, out_size: int = 128, narrow: float = 0.25) -> dict[str, torch.Tensor]:
    from spandrel.architectures.GFPGAN.__arch.gfpganv1_arch import GFPGANv1

    torch.manual_seed(seed)
    net = GFPGANv1(out_size=out_size, num_style_feat=64, channel_multiplier=1, decoder_load_path=None,
                   fix_decoder=True, num_mlp=2, input_is_latent=True, different_w=True, narrow=narrow, sft_half=True)
    return _perturbed(net, seed)


def hifacegan_official_shapes(ngf: int = 48) -> dict[str, tuple[int, ...]]:
    """Every entry of Face-Renovation's ``LIPSPADEGenerator`` state dict (``norm_G=spectralspadesyncbatch3x3``,
    ``semantic_nc=3``, 512 px, 5 halvings) and its shape, written from the author's own port (BasicSR's
    ``hifacegan_arch.py`` / ``hifacegan_util.py``) with the official names (``G_middle_*``), not from the
    project's network: ``fc``; SPADE residual blocks (old-style spectral norm on ``conv_0`` / ``conv_1`` /
    bias-free ``conv_s``; each SPADE a parameter-free SyncBatchNorm's three buffers, ``mlp_shared.0``,
    bias-free ``mlp_gamma`` / ``mlp_beta`` from min(128, C) hidden channels); ``to_rgbs``; the LIP encoder
    (bias-free stem conv, then per halving a SimplifiedLIP (bias-free conv + affine InstanceNorm) and a conv,
    channels ngf x 1, 2, 4, 8, 16, 16, at Sequential indices 0 and 3 + 4 i, 4 + 4 i). 230 entries."""
    out: dict[str, tuple[int, ...]] = {}

    def sn(name: str, cin: int, cout: int, k: int, bias: bool = True) -> None:
        out.update({f"{name}.weight_orig": (cout, cin, k, k), f"{name}.weight_u": (cout,),
                    f"{name}.weight_v": (cin * k * k,)})
        if bias:
            out[f"{name}.bias"] = (cout,)

    def spade(name: str, c: int) -> None:
        hidden = min(128, c)
        out.update({f"{name}.param_free_norm.running_mean": (c,), f"{name}.param_free_norm.running_var": (c,),
                    f"{name}.param_free_norm.num_batches_tracked": (),
                    f"{name}.mlp_shared.0.weight": (hidden, 3, 3, 3), f"{name}.mlp_shared.0.bias": (hidden,),
                    f"{name}.mlp_gamma.weight": (c, hidden, 3, 3), f"{name}.mlp_beta.weight": (c, hidden, 3, 3)})

    def block(name: str, fin: int, fout: int) -> None:
        mid = min(fin, fout)
        sn(f"{name}.conv_0", fin, mid, 3)
        sn(f"{name}.conv_1", mid, fout, 3)
        if fin != fout:
            sn(f"{name}.conv_s", fin, fout, 1, bias=False)
        spade(f"{name}.norm_0", fin)
        spade(f"{name}.norm_1", mid)
        if fin != fout:
            spade(f"{name}.norm_s", fin)

    out.update({"fc.weight": (16 * ngf, 3, 3, 3), "fc.bias": (16 * ngf,)})
    for name in ("head_0", "G_middle_0", "G_middle_1"):
        block(name, 16 * ngf, 16 * ngf)
    for i, (a, b) in enumerate(((16, 8), (8, 4), (4, 2), (2, 1))):
        block(f"ups.{i}", a * ngf, b * ngf)
        out.update({f"to_rgbs.{i}.weight": (3, b * ngf, 3, 3), f"to_rgbs.{i}.bias": (3,)})
    out["lip_encoder.model.0.weight"] = (ngf, 3, 3, 3)
    ratios = (1, 2, 4, 8, 16, 16)
    for i in range(5):
        cin, cout, j = ngf * ratios[i], ngf * ratios[i + 1], 3 + 4 * i
        out.update({f"lip_encoder.model.{j}.logit.0.weight": (cin, cin, 3, 3),
                    f"lip_encoder.model.{j}.logit.1.weight": (cin,), f"lip_encoder.model.{j}.logit.1.bias": (cin,),
                    f"lip_encoder.model.{j + 1}.weight": (cout, cin, 3, 3), f"lip_encoder.model.{j + 1}.bias": (cout,)})
    return out


def hifacegan_state_dict(seed: int = 0, ngf: int = 4, module_prefix: bool = False) -> dict[str, torch.Tensor]:
    """A random LIP-SPADE file in the official layout (:func:`hifacegan_official_shapes`) at a reduced
    width: weights scaled by fan-in, unit ``u`` / ``v``, positive running variances, counters as int64,
    affine InstanceNorm weights near 1; ``module_prefix`` adds DataParallel's ``module.``."""
    g = torch.Generator().manual_seed(seed)
    sd: dict[str, torch.Tensor] = {}
    for k, shape in hifacegan_official_shapes(ngf).items():
        if k.endswith("num_batches_tracked"):
            sd[k] = torch.tensor(1000)
        elif k.endswith(("weight_u", "weight_v")):
            sd[k] = torch.nn.functional.normalize(torch.randn(shape, generator=g), dim=0)
        elif k.endswith("running_var"):
            sd[k] = 0.5 + torch.rand(shape, generator=g)
        elif k.endswith("logit.1.weight"):
            sd[k] = 1 + 0.1 * torch.randn(shape, generator=g)
        elif len(shape) > 1:
            sd[k] = torch.randn(shape, generator=g) * (1.0 / int(np.prod(shape[1:]))) ** 0.5
        else:
            sd[k] = 0.02 * torch.randn(shape, generator=g)
    return {f"module.{k}" if module_prefix else k: v for k, v in sd.items()}


def pulse_synthesis_state_dict(seed: int = 0, resolution: int = 64, fmap_base: int = 128, fmap_max: int = 32,
                               dlatent: int = 32) -> dict[str, torch.Tensor]:
    """PULSE's G_synthesis layout (``blocks.{R}x{R}.{const, bias, conv, conv0_up, conv1, epi1, epi2}``,
    ``conv0_up.intermediate.kernel`` blur buffers, ``torgb``) at a reduced resolution and width, written
    from stylegan.py: channels(r) = min(fmap_base / 2^(r-1), fmap_max)."""
    g = torch.Generator().manual_seed(seed)
    sd: dict[str, torch.Tensor] = {}
    ch = [min(int(fmap_base / 2 ** (r - 1)), fmap_max) for r in range(11)]
    blur = torch.tensor([[1.0, 2.0, 1.0], [2.0, 4.0, 2.0], [1.0, 2.0, 1.0]])[None, None] / 16

    def epi(p: str, c: int) -> None:
        sd[f"{p}.noise.weight"] = 0.1 * torch.randn(c, generator=g)
        sd[f"{p}.style_mod.lin.weight"] = torch.randn(2 * c, dlatent, generator=g)
        sd[f"{p}.style_mod.lin.bias"] = 0.1 * torch.randn(2 * c, generator=g)

    r_log2 = int(np.log2(resolution))
    sd["blocks.4x4.const"] = torch.randn(1, ch[2], 4, 4, generator=g)
    sd["blocks.4x4.bias"] = torch.ones(ch[2])
    epi("blocks.4x4.epi1", ch[2])
    sd["blocks.4x4.conv.weight"] = torch.randn(ch[2], ch[2], 3, 3, generator=g)
    sd["blocks.4x4.conv.bias"] = torch.zeros(ch[2])
    epi("blocks.4x4.epi2", ch[2])
    for r in range(3, r_log2 + 1):
        p = f"blocks.{2 ** r}x{2 ** r}"
        sd[f"{p}.conv0_up.weight"] = torch.randn(ch[r], ch[r - 1], 3, 3, generator=g)
        sd[f"{p}.conv0_up.bias"] = torch.zeros(ch[r])
        sd[f"{p}.conv0_up.intermediate.kernel"] = blur.clone()
        epi(f"{p}.epi1", ch[r])
        sd[f"{p}.conv1.weight"] = torch.randn(ch[r], ch[r], 3, 3, generator=g)
        sd[f"{p}.conv1.bias"] = torch.zeros(ch[r])
        epi(f"{p}.epi2", ch[r])
    sd["torgb.weight"] = torch.randn(3, ch[r_log2], 1, 1, generator=g)
    sd["torgb.bias"] = torch.zeros(3)
    return sd


def gaussian_fit(dlatent: int = 32, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {"mean": 0.1 * torch.randn(dlatent, generator=g), "std": 0.5 + torch.rand(dlatent, generator=g)}


def dfdnet_state_dict(seed: int = 0, width: float = 0.125) -> dict[str, torch.Tensor]:
    """UNetDictFace's file at a reduced width in the official layout (:func:`dfdnet_official_state_dict`;
    no reference class ships offline, so the layout is written from the official source below)."""
    return dfdnet_official_state_dict(seed, width)


def dfdnet_official_shapes(width: float = 1.0) -> dict[str, tuple[int, ...]]:
    """Every entry of csxmli2016/DFDNet's ``UNetDictFace(64)`` state dict and its shape, written from the
    official ``models/networks.py`` (not from the project's network): old-style spectral norm
    (``weight_orig``, ``weight_u`` (out,), ``weight_v`` (in*k*k,), ``bias``) on the attention blocks,
    MSDilate, the up-blocks and ToRGB; plain ``weight`` / ``bias`` in ``up4``'s two ``UpResBlock`` and its
    last conv; the up-blocks' Blur buffers ``weight`` / ``weight_flip`` (C, 1, 3, 3); torchvision VGG19
    (``model.features``, ``model.classifier`` at full width only) and its four slices naming the same
    tensors again; ``RGB_mean`` / ``RGB_std``. 386 entries at full width. ``width`` scales channels."""
    def c(n: int) -> int:
        return max(1, int(n * width))

    out: dict[str, tuple[int, ...]] = {}

    def sn(name: str, cin: int, cout: int, k: int = 3) -> None:
        out.update({f"{name}.weight_orig": (cout, cin, k, k), f"{name}.weight_u": (cout,),
                    f"{name}.weight_v": (cin * k * k,), f"{name}.bias": (cout,)})

    def plain(name: str, cin: int, cout: int, k: int = 3) -> None:
        out.update({f"{name}.weight": (cout, cin, k, k), f"{name}.bias": (cout,)})

    for part in ("le", "re", "no", "mo"):
        for size, ch in ((256, 128), (128, 256), (64, 512), (32, 512)):
            sn(f"{part}_{size}.0", c(ch), c(ch))
            sn(f"{part}_{size}.2", c(ch), c(ch))
    vgg = (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M")
    cin, idx, convs = 3, 0, []
    for v in vgg:
        if v == "M":
            idx += 1
            continue
        convs.append((idx, cin, c(v)))
        cin, idx = c(v), idx + 2   # conv, ReLU
    slices = ((0, 8), (8, 17), (17, 26), (26, 35))
    for j, ci, co in convs:
        plain(f"VggExtract.model.features.{j}", ci, co)
        s_idx = next(n for n, (a, b) in enumerate(slices) if a <= j < b)
        plain(f"VggExtract.features.{s_idx}.{j}", ci, co)
    if width == 1.0:
        for j, (fi, fo) in zip((0, 3, 6), ((25088, 4096), (4096, 4096), (4096, 1000))):
            out.update({f"VggExtract.model.classifier.{j}.weight": (fo, fi),
                        f"VggExtract.model.classifier.{j}.bias": (fo,)})
    out.update({"VggExtract.RGB_mean": (1, 3, 1, 1), "VggExtract.RGB_std": (1, 3, 1, 1)})
    ngf = c(64)
    for k in range(1, 5):
        sn(f"MSDilate.conv{k}.0", ngf * 8, ngf * 8)
        sn(f"MSDilate.conv{k}.2", ngf * 8, ngf * 8)
    sn("MSDilate.convi", ngf * 32, ngf * 8)
    for n, (ci, co) in enumerate(((ngf * 8, ngf * 8), (ngf * 8, ngf * 4), (ngf * 4, ngf * 2), (ngf * 2, ngf))):
        out.update({f"up{n}.conv1.0.weight": (ci, 1, 3, 3), f"up{n}.conv1.0.weight_flip": (ci, 1, 3, 3)})
        sn(f"up{n}.conv1.1", ci, co)
        sn(f"up{n}.convup.1", co, co)
        for model in ("ScaleModel1", "ShiftModel1"):
            sn(f"up{n}.{model}.0", ci, co)
            sn(f"up{n}.{model}.2", co, co)
    sn("up4.0", ngf, ngf)
    for blk in (2, 3):
        plain(f"up4.{blk}.Model.0", ngf, ngf)
        plain(f"up4.{blk}.Model.2", ngf, ngf)
    plain("up4.4", ngf, 3)
    for n, ch in enumerate((ngf * 8, ngf * 4, ngf * 2, ngf)):
        sn(f"to_rgb{n}.0", ch, ch)
        sn(f"to_rgb{n}.2", ch, 3)
    return out


def dfdnet_official_state_dict(seed: int = 0, width: float = 0.125) -> dict[str, torch.Tensor]:
    """A random file in the official layout (:func:`dfdnet_official_shapes`) at a reduced width: weights
    scaled by fan-in, unit ``u`` / ``v``, the fixed Blur kernel, the VGG slices naming the same tensors."""
    g = torch.Generator().manual_seed(seed)
    blur = torch.tensor([[1.0, 2.0, 1.0], [2.0, 4.0, 2.0], [1.0, 2.0, 1.0]]).view(1, 1, 3, 3) / 16
    sd: dict[str, torch.Tensor] = {}
    for k, shape in dfdnet_official_shapes(width).items():
        if k.endswith("conv1.0.weight") or k.endswith("conv1.0.weight_flip"):
            sd[k] = blur.repeat(shape[0], 1, 1, 1)          # symmetric: its flip is itself
        elif k.endswith(("weight_u", "weight_v")):
            sd[k] = torch.nn.functional.normalize(torch.randn(shape, generator=g), dim=0)
        elif k.endswith("RGB_mean"):
            sd[k] = torch.tensor([0.485, 0.456, 0.406]).view(shape)
        elif k.endswith("RGB_std"):
            sd[k] = torch.tensor([0.229, 0.224, 0.225]).view(shape)
        elif len(shape) > 1:
            fan_in = int(np.prod(shape[1:]))
            sd[k] = torch.randn(shape, generator=g) * (1.0 / fan_in) ** 0.5
        else:
            sd[k] = torch.randn(shape, generator=g) * 0.01
    for k in sd:   # the VGG slices name the same tensors as model.features
        if k.startswith("VggExtract.features."):
            sd[k] = sd["VggExtract.model.features." + k.split(".", 3)[3]]
    return sd


def dfdnet_dictionaries(width: float = 0.125, atoms: int = 3, seed: int = 0) -> dict[tuple[str, int], np.ndarray]:
    """The 16 DictionaryCenter512 arrays, flattened per atom as (K, C * s * s) float32."""
    from scgan_bench.baselines.dfdnet_arch import FEATURE_SIZES, PARTS, dictionary_shape

    rng = np.random.default_rng(seed)
    return {(p, f): rng.standard_normal((atoms, int(np.prod(dictionary_shape(p, f, atoms, width)[1:]))))
            .astype(np.float32) for p in PARTS for f in FEATURE_SIZES}


def restoreformer_state_dict(seed: int = 0, plus: bool = False) -> dict[str, torch.Tensor]:
    """spandrel's RestoreFormer at reduced width (ch 32); ``plus`` adds RF++'s cross-attention blocks at the
    decoder's 32 px level (``decoder.up.4.attn.{0,1,2}``: GroupNorms, 1x1 q/k/v/proj_out), from the official
    layout."""
    from spandrel.architectures.RestoreFormer import RestoreFormer

    torch.manual_seed(seed)
    sd = _perturbed(RestoreFormer(n_embed=64, embed_dim=32, ch=32, ch_mult=(1, 2, 2, 4, 4, 8), z_channels=32), seed)
    if plus:
        g = torch.Generator().manual_seed(seed + 1)
        c = 32 * 4
        for j in range(3):
            p = f"decoder.up.4.attn.{j}"
            for norm in ("norm1", "norm2"):
                sd[f"{p}.{norm}.weight"] = 1 + 0.02 * torch.randn(c, generator=g)
                sd[f"{p}.{norm}.bias"] = 0.02 * torch.randn(c, generator=g)
            for conv in ("q", "k", "v", "proj_out"):
                sd[f"{p}.{conv}.weight"] = torch.randn(c, c, 1, 1, generator=g) / c ** 0.5
                sd[f"{p}.{conv}.bias"] = 0.02 * torch.randn(c, generator=g)
    return sd


def codeformer_state_dict(seed: int = 0) -> dict[str, torch.Tensor]:
    """spandrel-extra-arches' CodeFormer with a 1-layer, 64-wide transformer (its VQ autoencoder and the
    16x16 latent grid are fixed by the architecture)."""
    import spandrel_extra_arches  # noqa: F401
    from spandrel_extra_arches.architectures.CodeFormer import CodeFormer

    torch.manual_seed(seed)
    return _perturbed(CodeFormer(dim_embd=64, n_head=8, n_layers=1, codebook_size=64), seed)


def lightning(sd: dict[str, torch.Tensor], extra: bool = True) -> dict:
    """A Lightning checkpoint of RF/RF++: ``state_dict`` with ``vqvae.`` keys (+ a training-only loss
    module and the utility counter some checkpoints carry) and the usual top-level entries."""
    inner = {f"vqvae.{k}": v for k, v in sd.items()}
    if extra:
        inner["loss.discriminator.main.0.weight"] = torch.zeros(4, 3, 4, 4)
        inner["vqvae.quantize.utility_counter"] = torch.zeros(sd["quantize.embedding.weight"].shape[0])
    return {"epoch": 1, "global_step": 10, "state_dict": inner}


def save(obj, path: Path, legacy: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(obj, path, _use_new_zipfile_serialization=not legacy)
    return path


def pmrf_networks(seed: int = 0) -> tuple[torch.nn.Module, torch.nn.Module]:
    """A reduced PMRF: an HDiT of three levels (16, 24 and 32 wide, 7 x 7 neighborhood attention on the outer
    two, global inside, heads of 8) and a DifFace-style SwinIR (embed 12, one stage of 2 blocks, window 8, pixel-unshuffle
    8 in, nearest+conv x8 out), random weights (attention temperatures positive, as trained ones are)."""
    from scgan_bench.networks.hdit import HDiT, Level

    torch.manual_seed(seed)
    flow = HDiT((Level(1, 16, 24, 8, 7), Level(1, 24, 32, 8, 7), Level(1, 32, 48, 8, 0)), (1, 16, 24))
    for name, p in flow.named_parameters():
        if name.endswith("self_attn.scale"):
            torch.nn.init.uniform_(p, 1.0, 10.0)
        else:
            torch.nn.init.normal_(p, std=0.05)
    return flow.eval(), difface_swinir()


def pmrf_state_dict(seed: int = 0, extra: dict | None = None) -> dict[str, torch.Tensor]:
    """The reduced PMRF in the release's layout: the training module's state dict, ``model.*`` (flow) and
    ``mmse_model.*`` (DifFace's SwinIR, whose ``conv_first`` is ``Sequential(PixelUnshuffle, Conv2d)``)."""
    flow, swin = pmrf_networks(seed)
    sd = {f"model.{k}": v.clone().contiguous() for k, v in flow.state_dict().items()}
    sd.update({f"mmse_model.{k}": v for k, v in swinir_release_keys(swin).items()})
    return {**sd, **(extra or {})}


def difface_swinir() -> torch.nn.Module:
    """A reduced DifFace SwinIR (embed 12, one stage of 2 blocks, window 8, pixel-unshuffle 8 in,
    nearest+conv x8 out) with the generator's current random weights."""
    from spandrel.architectures.SwinIR.__arch.SwinIR import SwinIR

    return SwinIR(img_size=16, patch_size=1, in_chans=3, embed_dim=12, depths=[2], num_heads=[2], window_size=8,
                  mlp_ratio=2, upscale=8, img_range=1.0, upsampler="nearest+conv", resi_connection="1conv",
                  start_unshuffle=8).eval()


def swinir_release_keys(swin: torch.nn.Module) -> dict[str, torch.Tensor]:
    """spandrel's SwinIR state dict in DifFace's layout (``conv_first`` is ``Sequential(PixelUnshuffle, Conv2d)``)."""
    return {("conv_first.1." + k.split(".", 1)[1] if k.startswith("conv_first.") else k): v.clone().contiguous()
            for k, v in swin.state_dict().items()}


def _writers(s: dict[str, tuple[int, ...]]):
    """(lin, conv, norm): record a linear layer's, a convolution's and a normalisation's tensors in ``s``."""
    def lin(p, i, o, bias=True):
        s[f"{p}.weight"] = (o, i)
        if bias:
            s[f"{p}.bias"] = (o,)

    def conv(p, i, o, k=3):
        s[f"{p}.weight"], s[f"{p}.bias"] = (o, i, k, k), (o,)

    def norm(p, c):
        s[f"{p}.weight"], s[f"{p}.bias"] = (c,), (c,)

    return lin, conv, norm


def iddpm_official_shapes(mc: int, mult: tuple, nrb: tuple, attn_levels: tuple, out_ch: int = 6,
                          in_ch: int = 3) -> dict[str, tuple[int, ...]]:
    """Every tensor of guided-diffusion's ``UNetModel`` as DifFace's models/unet.py builds it (scale-shift
    norm, conv resampling, no resblock up/down), written here from its constructor: name -> shape."""
    s: dict[str, tuple[int, ...]] = {}
    lin, conv, norm = _writers(s)

    def res(p, i, o):
        norm(f"{p}.in_layers.0", i)
        conv(f"{p}.in_layers.2", i, o)
        lin(f"{p}.emb_layers.1", 4 * mc, 2 * o)
        norm(f"{p}.out_layers.0", o)
        conv(f"{p}.out_layers.3", o, o)
        if i != o:
            conv(f"{p}.skip_connection", i, o, 1)

    def attn(p, c):
        norm(f"{p}.norm", c)
        s[f"{p}.qkv.weight"], s[f"{p}.qkv.bias"] = (3 * c, c, 1), (3 * c,)
        s[f"{p}.proj_out.weight"], s[f"{p}.proj_out.bias"] = (c, c, 1), (c,)

    lin("time_embed.0", mc, 4 * mc)
    lin("time_embed.2", 4 * mc, 4 * mc)
    conv("input_blocks.0.0", in_ch, mc)
    chans, ch, idx = [mc], mc, 1
    for level, m in enumerate(mult):
        for _ in range(nrb[level]):
            res(f"input_blocks.{idx}.0", ch, m * mc)
            ch = m * mc
            if level in attn_levels:
                attn(f"input_blocks.{idx}.1", ch)
            chans.append(ch)
            idx += 1
        if level != len(mult) - 1:
            conv(f"input_blocks.{idx}.0.op", ch, ch)
            chans.append(ch)
            idx += 1
    res("middle_block.0", ch, ch)
    attn("middle_block.1", ch)
    res("middle_block.2", ch, ch)
    idx = 0
    for level in reversed(range(len(mult))):
        for i in range(nrb[level] + 1):
            res(f"output_blocks.{idx}.0", ch + chans.pop(), mult[level] * mc)
            ch, j = mult[level] * mc, 1
            if level in attn_levels:
                attn(f"output_blocks.{idx}.1", ch)
                j = 2
            if level and i == nrb[level]:
                conv(f"output_blocks.{idx}.{j}.conv", ch, ch)
            idx += 1
    norm("out.0", ch)
    conv("out.2", mc, out_ch)
    return s


#: the reduced DifFace UNet of the tests: widths 32, 32, 32, 32, 64, 128 (512 -> 16 px), residual blocks
#: per level 1, 1, 1, 1, 1, 2, attention (two heads of 64) on the innermost level (16 px at 512 px) and in the middle
DIFFACE_TINY = {"mc": 32, "mult": (1, 1, 1, 1, 2, 4), "nrb": (1, 1, 1, 1, 1, 2), "attn_levels": (5,)}


def iddpm_official_state_dict(seed: int = 0, **cfg) -> dict[str, torch.Tensor]:
    """Random weights in the official layout (norm scales near 1, everything else N(0, 0.05^2))."""
    g = torch.Generator().manual_seed(seed)
    sd = {}
    for k, shape in iddpm_official_shapes(**{**DIFFACE_TINY, **cfg}).items():
        t = torch.randn(shape, generator=g) * 0.05
        if k.endswith(("in_layers.0.weight", "out_layers.0.weight", ".norm.weight")) or k == "out.0.weight":
            t = t + 1                                   # a GroupNorm scale
        sd[k] = t.contiguous()
    return sd


def difface_files(directory: Path, seed: int = 0, unet_extra: dict | None = None) -> tuple[Path, Path, dict, torch.nn.Module]:
    """The reduced DifFace release in ``directory``: the UNet's official state dict saved raw (as
    iddpm_ffhq512_ema500000.pth) and the SwinIR's under ``state_dict`` with DataParallel's ``module.`` prefix
    (as swinir_restoration512_L1.pth; sampler.load_model reads both forms). Returns both paths, the UNet's
    tensors and the SwinIR network."""
    unet = {**iddpm_official_state_dict(seed), **(unet_extra or {})}
    torch.manual_seed(seed)
    swin = difface_swinir()
    p_unet, p_swin = directory / "iddpm_ffhq512_ema500000.pth", directory / "swinir_restoration512_L1.pth"
    torch.save(unet, p_unet)
    torch.save({"state_dict": {f"module.{k}": v for k, v in swinir_release_keys(swin).items()}}, p_swin)
    return p_unet, p_swin, unet, swin


def check_gpu_only(name: str) -> None:
    """A GPU-only method (its files installed): without CUDA it is listed as "GPU only here" unless
    ``allow_cpu=true``, and creating it on the CPU without that option is refused, naming the option."""
    import pytest

    from scgan_bench.errors import UsageError
    from scgan_bench.registries import METHODS

    spec = METHODS.get(name)
    if not torch.cuda.is_available():
        assert "GPU only here" in spec.check().reason and spec.check(allow_cpu=True).ok
    with pytest.raises(UsageError, match="allow_cpu=true"):
        spec.create(device="cpu")


# -- DiffBIR: Stable Diffusion 2.1-base + IRControlNet in the official (LDM) layouts --------------------------

def ldm_unet_official_shapes(mc: int = 320, mult: tuple = (1, 2, 4, 4), nrb: int = 2, attn_levels: tuple = (0, 1, 2),
                             ctx: int = 1024, in_ch: int = 4, hint: int = 0, out_ch: int = 4,
                             control: bool = False) -> dict[str, tuple[int, ...]]:
    """Every tensor of LDM's ``UNetModel`` (use_spatial_transformer, use_linear_in_transformer, legacy=False,
    transformer_depth 1, no scale-shift) or, with ``control``, of DiffBIR's ``ControlNet`` (the same encoder on
    ``in_ch + hint`` channels, a zero convolution after each input block and after the middle, no decoder),
    written here from their constructors: name -> shape."""
    s: dict[str, tuple[int, ...]] = {}
    lin, conv, norm = _writers(s)

    def res(p, i, o):
        norm(f"{p}.in_layers.0", i)
        conv(f"{p}.in_layers.2", i, o)
        lin(f"{p}.emb_layers.1", 4 * mc, o)
        norm(f"{p}.out_layers.0", o)
        conv(f"{p}.out_layers.3", o, o)
        if i != o:
            conv(f"{p}.skip_connection", i, o, 1)

    def transformer(p, c):
        norm(f"{p}.norm", c)
        lin(f"{p}.proj_in", c, c)
        b = f"{p}.transformer_blocks.0"
        for a, kv in (("attn1", c), ("attn2", ctx)):
            lin(f"{b}.{a}.to_q", c, c, bias=False)
            lin(f"{b}.{a}.to_k", kv, c, bias=False)
            lin(f"{b}.{a}.to_v", kv, c, bias=False)
            lin(f"{b}.{a}.to_out.0", c, c)
        lin(f"{b}.ff.net.0.proj", c, 8 * c)          # GEGLU: 2 x (4 x c)
        lin(f"{b}.ff.net.2", 4 * c, c)
        for n in ("norm1", "norm2", "norm3"):
            norm(f"{b}.{n}", c)
        lin(f"{p}.proj_out", c, c)

    def zero(i, c):
        conv(f"zero_convs.{i}.0", c, c, 1)

    lin("time_embed.0", mc, 4 * mc)
    lin("time_embed.2", 4 * mc, 4 * mc)
    conv("input_blocks.0.0", in_ch + hint, mc)
    if control:
        zero(0, mc)
    chans, ch, idx = [mc], mc, 1
    for level, m in enumerate(mult):
        for _ in range(nrb):
            res(f"input_blocks.{idx}.0", ch, m * mc)
            ch = m * mc
            if level in attn_levels:
                transformer(f"input_blocks.{idx}.1", ch)
            if control:
                zero(idx, ch)
            chans.append(ch)
            idx += 1
        if level != len(mult) - 1:
            conv(f"input_blocks.{idx}.0.op", ch, ch)
            if control:
                zero(idx, ch)
            chans.append(ch)
            idx += 1
    res("middle_block.0", ch, ch)
    transformer("middle_block.1", ch)
    res("middle_block.2", ch, ch)
    if control:
        conv("middle_block_out.0", ch, ch, 1)
        return s
    idx = 0
    for level in reversed(range(len(mult))):
        for i in range(nrb + 1):
            res(f"output_blocks.{idx}.0", ch + chans.pop(), mult[level] * mc)
            ch, j = mult[level] * mc, 1
            if level in attn_levels:
                transformer(f"output_blocks.{idx}.1", ch)
                j = 2
            if level and i == nrb:
                conv(f"output_blocks.{idx}.{j}.conv", ch, ch)
            idx += 1
    norm("out.0", ch)
    conv("out.2", mc, out_ch)
    return s


def ldm_vae_official_shapes(ch: int = 128, mult: tuple = (1, 2, 4, 4), nrb: int = 2, z: int = 4
                            ) -> dict[str, tuple[int, ...]]:
    """Every tensor of LDM's ``AutoencoderKL`` (double_z, no attention but the middle's), from its Encoder and
    Decoder constructors: name -> shape."""
    s: dict[str, tuple[int, ...]] = {}
    _, conv, norm = _writers(s)

    def res(p, i, o):
        norm(f"{p}.norm1", i)
        conv(f"{p}.conv1", i, o)
        norm(f"{p}.norm2", o)
        conv(f"{p}.conv2", o, o)
        if i != o:
            conv(f"{p}.nin_shortcut", i, o, 1)

    def mid(p, c):
        res(f"{p}.mid.block_1", c, c)
        norm(f"{p}.mid.attn_1.norm", c)
        for n in ("q", "k", "v", "proj_out"):
            conv(f"{p}.mid.attn_1.{n}", c, c, 1)
        res(f"{p}.mid.block_2", c, c)

    conv("encoder.conv_in", 3, ch)
    block_in = ch
    for i, m in enumerate(mult):
        for j in range(nrb):
            res(f"encoder.down.{i}.block.{j}", block_in, ch * m)
            block_in = ch * m
        if i != len(mult) - 1:
            conv(f"encoder.down.{i}.downsample.conv", block_in, block_in)
    mid("encoder", block_in)
    norm("encoder.norm_out", block_in)
    conv("encoder.conv_out", block_in, 2 * z)
    block_in = ch * mult[-1]
    conv("decoder.conv_in", z, block_in)
    mid("decoder", block_in)
    for i in reversed(range(len(mult))):
        for j in range(nrb + 1):
            res(f"decoder.up.{i}.block.{j}", block_in, ch * mult[i])
            block_in = ch * mult[i]
        if i != 0:
            conv(f"decoder.up.{i}.upsample.conv", block_in, block_in)
    norm("decoder.norm_out", block_in)
    conv("decoder.conv_out", block_in, 3)
    conv("quant_conv", 2 * z, 2 * z, 1)
    conv("post_quant_conv", z, z, 1)
    return s


def openclip_text_official_shapes(width: int = 1024, layers: int = 24, embed: int = 1024, ctx: int = 77,
                                  vocab: int = 49408) -> dict[str, tuple[int, ...]]:
    """The text half of OpenCLIP's ``CLIP`` (the model DiffBIR's FrozenOpenCLIPEmbedder keeps after deleting the
    visual tower), as SD 2.1 stores it under ``cond_stage_model.model.``: name -> shape."""
    s: dict[str, tuple[int, ...]] = {"token_embedding.weight": (vocab, width), "positional_embedding": (ctx, width)}
    for i in range(layers):
        p = f"transformer.resblocks.{i}"
        for n in ("ln_1", "ln_2"):
            s[f"{p}.{n}.weight"], s[f"{p}.{n}.bias"] = (width,), (width,)
        s[f"{p}.attn.in_proj_weight"], s[f"{p}.attn.in_proj_bias"] = (3 * width, width), (3 * width,)
        s[f"{p}.attn.out_proj.weight"], s[f"{p}.attn.out_proj.bias"] = (width, width), (width,)
        s[f"{p}.mlp.c_fc.weight"], s[f"{p}.mlp.c_fc.bias"] = (4 * width, width), (4 * width,)
        s[f"{p}.mlp.c_proj.weight"], s[f"{p}.mlp.c_proj.bias"] = (width, 4 * width), (width,)
    s["ln_final.weight"], s["ln_final.bias"] = (width,), (width,)
    s["text_projection"] = (width, embed)
    s["logit_scale"] = ()
    return s


#: the reduced DiffBIR of the tests: UNet / IRControlNet widths 64, 128 (heads of 64: one, then two), one residual
#: block per level, attention on both, text width 128 (two heads) and 3 blocks, autoencoder of width 32 with the
#: release's 3 downsamplings (64 px -> 8 px latents)
DIFFBIR_TINY = {"unet": {"mc": 64, "mult": (1, 2), "nrb": 1, "attn_levels": (0, 1), "ctx": 128},
                "vae": {"ch": 32, "mult": (1, 1, 1, 1), "nrb": 1}, "text": {"width": 128, "layers": 3, "embed": 128}}


def _random(shapes: dict[str, tuple[int, ...]], g: torch.Generator, std: float = 0.05) -> dict[str, torch.Tensor]:
    """N(0, std^2) tensors; the scales of normalisation layers near 1."""
    out = {}
    for k, shape in shapes.items():
        t = torch.randn(shape, generator=g) * std
        if k.endswith(".weight") and len(shape) == 1 and any(n in k for n in ("norm", "ln_", "in_layers.0", "out_layers.0",
                                                                                "out.0", "ln_final")):
            t = t + 1
        out[k] = t.contiguous()
    return out


def diffbir_official_tensors(seed: int = 0) -> dict[str, dict[str, torch.Tensor]]:
    """Random tensors of the reduced DiffBIR in the official layouts: ``unet`` / ``vae`` / ``text`` (SD 2.1's
    parts, without their prefixes), ``control`` (the IRControlNet)."""
    g = torch.Generator().manual_seed(seed)
    u, v, t = DIFFBIR_TINY["unet"], DIFFBIR_TINY["vae"], DIFFBIR_TINY["text"]
    text = _random(openclip_text_official_shapes(**t), g)
    text["logit_scale"] = torch.tensor(4.6052)
    return {"unet": _random(ldm_unet_official_shapes(**u), g),
            "control": _random(ldm_unet_official_shapes(**u, hint=4, control=True), g),
            "vae": _random(ldm_vae_official_shapes(**v), g), "text": text}


def ldm_schedule_buffers() -> dict[str, torch.Tensor]:
    """LatentDiffusion's registered schedule buffers as SD 2.1's checkpoint stores them (float32)."""
    betas = np.linspace(0.00085 ** 0.5, 0.012 ** 0.5, 1000, dtype=np.float64) ** 2
    abar = np.cumprod(1 - betas)
    prev = np.append(1.0, abar[:-1])
    var = betas * (1 - prev) / (1 - abar)
    raw = {"betas": betas, "alphas_cumprod": abar, "alphas_cumprod_prev": prev, "sqrt_alphas_cumprod": np.sqrt(abar),
           "sqrt_one_minus_alphas_cumprod": np.sqrt(1 - abar), "log_one_minus_alphas_cumprod": np.log(1 - abar),
           "sqrt_recip_alphas_cumprod": np.sqrt(1 / abar), "sqrt_recipm1_alphas_cumprod": np.sqrt(1 / abar - 1),
           "posterior_variance": var, "posterior_log_variance_clipped": np.log(np.maximum(var, 1e-20)),
           "posterior_mean_coef1": betas * np.sqrt(prev) / (1 - abar),
           "posterior_mean_coef2": (1 - prev) * np.sqrt(1 - betas) / (1 - abar)}
    return {k: torch.from_numpy(v).float() for k, v in raw.items()}


def diffbir_files(directory: Path, seed: int = 0, sd_extra: dict | None = None, safetensors: bool = False
                  ) -> tuple[dict[str, Path], dict[str, dict[str, torch.Tensor]], torch.nn.Module]:
    """The reduced DiffBIR v2 release in ``directory``: SD 2.1 as its Lightning checkpoint (``state_dict`` with
    ``model.diffusion_model.`` / ``first_stage_model.`` / ``cond_stage_model.model.`` tensors, the schedule
    buffers and the EMA counters; or a .safetensors export), the IRControlNet raw (v2.pth), the stage-1 SwinIR
    under ``state_dict`` (face_swinir_v1.ckpt). Returns the paths, the official tensors and the SwinIR."""
    parts = diffbir_official_tensors(seed)
    inner = {**{f"model.diffusion_model.{k}": v for k, v in parts["unet"].items()},
             **{f"first_stage_model.{k}": v for k, v in parts["vae"].items()},
             **{f"cond_stage_model.model.{k}": v for k, v in parts["text"].items()},
             **ldm_schedule_buffers(), "model_ema.decay": torch.tensor(0.9999),
             "model_ema.num_updates": torch.tensor(0, dtype=torch.int32), **(sd_extra or {})}
    torch.manual_seed(seed)
    swin = difface_swinir()
    paths = {"control": directory / "v2.pth", "cleaner": directory / "face_swinir_v1.ckpt"}
    if safetensors:
        from safetensors.torch import save_file

        paths["sd"] = directory / "v2-1_512-ema-pruned.safetensors"
        save_file(inner, str(paths["sd"]))
    else:
        paths["sd"] = directory / "v2-1_512-ema-pruned.ckpt"
        torch.save({"epoch": 6, "global_step": 220000, "state_dict": inner}, paths["sd"])
    torch.save(parts["control"], paths["control"])
    torch.save({"state_dict": swinir_release_keys(swin)}, paths["cleaner"])
    return paths, parts, swin
