"""Issue 31: DiffBIR v2 (face path) behind the SR interface. SD 2.1's UNet and autoencoder and the IRControlNet are
diffusers networks filled through key maps from the official (LDM) layouts, the text tower open_clip's: their
full-size layouts and parameter counts are checked against the official constructors (written here:
baseline_weights.ldm_unet_official_shapes, ldm_vae_official_shapes, openclip_text_official_shapes), their
forwards against ControlledUnetModel / ControlNet / AutoencoderKL / FrozenOpenCLIPEmbedder(penultimate) written
here with plain tensor operations on the official tensors, and the adapter against the official pipeline
(SwinIRPipeline + ControlLDM + SpacedSampler + wavelet_reconstruction, written here from DiffBIR's code). Random
weights at reduced size in the official containers."""
from __future__ import annotations

import hashlib
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from scgan_bench.errors import UsageError, WeightsError
from scgan_bench.registries import METHODS, load_plugins

from baseline_weights import (check_gpu_only, diffbir_files, diffbir_official_tensors, difface_swinir,
                              ldm_unet_official_shapes, ldm_vae_official_shapes, lr_faces,
                              openclip_text_official_shapes)

load_plugins()

NEG = "low quality, blurry, low-resolution, noisy, unsharp, weird textures"


def _install(weights_dir: Path, **kw):
    from scgan_bench.assets import weights as W
    from scgan_bench.baselines import diffbir

    paths, parts, swin = diffbir_files(weights_dir, **kw)
    for asset, key in ((diffbir.SD, "sd"), (diffbir.CONTROL, "control"), (diffbir.CLEANER, "cleaner")):
        W.register_sha256(asset, hashlib.sha256(paths[key].read_bytes()).hexdigest())
    return paths, parts, swin


def _make(**opts):
    return METHODS.get("diffbir").create(allow_cpu=True, any_config=True, **opts)


# -- the official networks, with plain tensor operations on the official tensors ------------------------------

def _gn(sd, h, p, eps):
    return F.group_norm(h, 32, sd[f"{p}.weight"], sd[f"{p}.bias"], eps=eps)


def _conv(sd, h, p, **kw):
    w = sd[f"{p}.weight"]
    return F.conv2d(h, w, sd[f"{p}.bias"], padding=kw.pop("padding", w.shape[-1] // 2), **kw)


def _lin(sd, x, p):
    return F.linear(x, sd[f"{p}.weight"], sd.get(f"{p}.bias"))


def _ln(sd, x, p):
    return F.layer_norm(x, x.shape[-1:], sd[f"{p}.weight"], sd[f"{p}.bias"], eps=1e-5)


def _heads(q, k, v, heads, mask=None):
    b, n, c = q.shape
    q, k, v = (t.reshape(b, -1, heads, c // heads).transpose(1, 2) for t in (q, k, v))
    w = q @ k.transpose(-1, -2) / math.sqrt(c // heads)
    if mask is not None:
        w = w + mask
    return (torch.softmax(w, dim=-1) @ v).transpose(1, 2).reshape(b, n, c)


def _ldm_encoder_half(sd, x, t, ctx, mc, zero=None):
    """LDM UNetModel's time embedding and input blocks (and middle), walking the official keys: block 0 the input
    convolution, a block with ``op`` a downsample, else a ResBlock (no scale-shift) and, with ``proj_in``, a
    SpatialTransformer (linear in/out, heads of 64, GEGLU feed-forward). Returns (emb, hs, h, zero-conv outs)."""
    half = mc // 2
    freqs = torch.exp(-math.log(10000) * torch.arange(half, dtype=torch.float32) / half)
    args = t[:, None].float() * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1).to(x.dtype)
    emb = _lin(sd, F.silu(_lin(sd, emb, "time_embed.0")), "time_embed.2")

    def res(h, p):
        z = _conv(sd, F.silu(_gn(sd, h, f"{p}.in_layers.0", 1e-5)), f"{p}.in_layers.2")
        z = z + _lin(sd, F.silu(emb), f"{p}.emb_layers.1")[..., None, None]
        z = _conv(sd, F.silu(_gn(sd, z, f"{p}.out_layers.0", 1e-5)), f"{p}.out_layers.3")
        return (_conv(sd, h, f"{p}.skip_connection") if f"{p}.skip_connection.weight" in sd else h) + z

    def st(h, p):
        b, c, hh, ww = h.shape
        x_ = _gn(sd, h, f"{p}.norm", 1e-6).permute(0, 2, 3, 1).reshape(b, hh * ww, c)
        x_ = _lin(sd, x_, f"{p}.proj_in")
        blk = f"{p}.transformer_blocks.0"
        for a, kv in (("attn1", None), ("attn2", ctx)):
            n = _ln(sd, x_, f"{blk}.norm{1 if a == 'attn1' else 2}")
            src = n if kv is None else kv
            q, k, v = (_lin(sd, m, f"{blk}.{a}.to_{w}") for m, w in ((n, "q"), (src, "k"), (src, "v")))
            o = _heads(q, k, v, c // 64)
            x_ = _lin(sd, o, f"{blk}.{a}.to_out.0") + x_
        y, gate = _lin(sd, _ln(sd, x_, f"{blk}.norm3"), f"{blk}.ff.net.0.proj").chunk(2, dim=-1)
        x_ = _lin(sd, y * F.gelu(gate), f"{blk}.ff.net.2") + x_
        return _lin(sd, x_, f"{p}.proj_out").reshape(b, hh, ww, c).permute(0, 3, 1, 2) + h

    def block(h, p):
        if f"{p}.0.op.weight" in sd:
            return _conv(sd, h, f"{p}.0.op", stride=2, padding=1)
        h = res(h, f"{p}.0")
        return st(h, f"{p}.1") if f"{p}.1.proj_in.weight" in sd else h

    h = _conv(sd, x, "input_blocks.0.0")
    hs, outs, idx = [h], [], 1
    if zero:
        outs.append(_conv(sd, h, "zero_convs.0.0"))
    while f"input_blocks.{idx}.0.op.weight" in sd or f"input_blocks.{idx}.0.in_layers.0.weight" in sd:
        h = block(h, f"input_blocks.{idx}")
        hs.append(h)
        if zero:
            outs.append(_conv(sd, h, f"zero_convs.{idx}.0"))
        idx += 1
    h = res(st(res(h, "middle_block.0"), "middle_block.1"), "middle_block.2")
    if zero:
        outs.append(_conv(sd, h, "middle_block_out.0"))
    return emb, hs, h, outs, res, st


def official_controlnet(sd, x, hint, t, ctx, mc):
    """DiffBIR's ControlNet.forward: 13 outputs (here: one per input block, then the middle's)."""
    return _ldm_encoder_half(sd, torch.cat([x, hint], dim=1), t, ctx, mc, zero=True)[3]


def official_unet(sd, x, t, ctx, mc, control):
    """ControlledUnetModel.forward: the middle's output + control.pop(), then each output block on
    cat(h, hs.pop() + control.pop())."""
    control = list(control)
    emb, hs, h, _, res, st = _ldm_encoder_half(sd, x, t, ctx, mc)
    h = h + control.pop()
    idx = 0
    while f"output_blocks.{idx}.0.in_layers.0.weight" in sd:
        h = res(torch.cat([h, hs.pop() + control.pop()], dim=1), f"output_blocks.{idx}.0")
        j = 1
        if f"output_blocks.{idx}.1.proj_in.weight" in sd:
            h, j = st(h, f"output_blocks.{idx}.1"), 2
        if f"output_blocks.{idx}.{j}.conv.weight" in sd:
            h = _conv(sd, F.interpolate(h, scale_factor=2, mode="nearest"), f"output_blocks.{idx}.{j}.conv")
        idx += 1
    return _conv(sd, F.silu(_gn(sd, h, "out.0", 1e-5)), "out.2")


def _vae_res(sd, h, p):
    z = _conv(sd, F.silu(_gn(sd, h, f"{p}.norm1", 1e-6)), f"{p}.conv1")
    z = _conv(sd, F.silu(_gn(sd, z, f"{p}.norm2", 1e-6)), f"{p}.conv2")
    return (_conv(sd, h, f"{p}.nin_shortcut") if f"{p}.nin_shortcut.weight" in sd else h) + z


def _vae_mid(sd, h, p):
    h = _vae_res(sd, h, f"{p}.mid.block_1")
    b, c, hh, ww = h.shape
    n = _gn(sd, h, f"{p}.mid.attn_1.norm", 1e-6)
    q, k, v = (_conv(sd, n, f"{p}.mid.attn_1.{x}").reshape(b, c, -1) for x in "qkv")
    w = torch.softmax(torch.bmm(q.permute(0, 2, 1), k) * c ** -0.5, dim=2)
    a = torch.bmm(v, w.permute(0, 2, 1)).reshape(b, c, hh, ww)
    h = h + _conv(sd, a, f"{p}.mid.attn_1.proj_out")
    return _vae_res(sd, h, f"{p}.mid.block_2")


def official_vae_encode_mode(sd, x):
    """LDM AutoencoderKL.encode(x).mode(): Encoder (asymmetric pad + stride-2 conv downsamples), quant_conv, mean."""
    h = _conv(sd, x, "encoder.conv_in")
    i = 0
    while f"encoder.down.{i}.block.0.conv1.weight" in sd:
        j = 0
        while f"encoder.down.{i}.block.{j}.conv1.weight" in sd:
            h = _vae_res(sd, h, f"encoder.down.{i}.block.{j}")
            j += 1
        if f"encoder.down.{i}.downsample.conv.weight" in sd:
            h = _conv(sd, F.pad(h, (0, 1, 0, 1)), f"encoder.down.{i}.downsample.conv", stride=2, padding=0)
        i += 1
    h = _conv(sd, F.silu(_gn(sd, _vae_mid(sd, h, "encoder"), "encoder.norm_out", 1e-6)), "encoder.conv_out")
    moments = _conv(sd, h, "quant_conv")
    return moments[:, :moments.shape[1] // 2]


def official_vae_decode(sd, z):
    h = _conv(sd, _conv(sd, z, "post_quant_conv"), "decoder.conv_in")
    h = _vae_mid(sd, h, "decoder")
    levels = sum(1 for k in sd if k.startswith("decoder.up.") and k.endswith(".block.0.conv1.weight"))
    for i in reversed(range(levels)):
        j = 0
        while f"decoder.up.{i}.block.{j}.conv1.weight" in sd:
            h = _vae_res(sd, h, f"decoder.up.{i}.block.{j}")
            j += 1
        if i:
            h = _conv(sd, F.interpolate(h, scale_factor=2.0, mode="nearest"), f"decoder.up.{i}.upsample.conv")
    return _conv(sd, F.silu(_gn(sd, h, "decoder.norm_out", 1e-6)), "decoder.conv_out")


def official_text(sd, tokens, heads):
    """FrozenOpenCLIPEmbedder(layer="penultimate").encode_with_transformer on the official tensors."""
    x = sd["token_embedding.weight"][tokens] + sd["positional_embedding"]
    n = x.shape[1]
    mask = torch.full((n, n), float("-inf"), dtype=x.dtype).triu(1)
    layers = sum(1 for k in sd if k.endswith(".ln_1.weight"))
    for i in range(layers - 1):
        p = f"transformer.resblocks.{i}"
        qkv = F.linear(_ln(sd, x, f"{p}.ln_1"), sd[f"{p}.attn.in_proj_weight"], sd[f"{p}.attn.in_proj_bias"])
        q, k, v = qkv.chunk(3, -1)
        x = x + _lin(sd, _heads(q, k, v, heads, mask), f"{p}.attn.out_proj")
        x = x + _lin(sd, F.gelu(_lin(sd, _ln(sd, x, f"{p}.ln_2"), f"{p}.mlp.c_fc")), f"{p}.mlp.c_proj")
    return _ln(sd, x, "ln_final")


def _loaded(parts, swin, dtype=torch.float32):
    """The reduced networks through the adapter's loader (official tensors -> key maps -> strict loads)."""
    from scgan_bench.baselines import diffbir

    from baseline_weights import swinir_release_keys

    parts = {k: {n: t.to(dtype) for n, t in v.items() if n != "logit_scale"} for k, v in parts.items()}
    names = {"sd": "sd.ckpt", "control": "v2.pth", "cleaner": "c.ckpt"}
    net, _ = diffbir.load_networks({k: parts[k] for k in ("unet", "vae", "text")}, parts["control"],
                                   swinir_release_keys(swin), names)
    return net.to(dtype).eval()


# -- tests -----------------------------------------------------------------------------------------------------

def test_full_size_parameter_counts_and_key_layouts_are_the_official_ones():
    from scgan_bench.baselines import diffbir, difface
    from scgan_bench.networks import controlldm as C

    cases = {"unet": (ldm_unet_official_shapes(), C.build_unet, lambda k: C.unet_sources(k, C.SD21_UNET)),
             "controlnet": (ldm_unet_official_shapes(hint=4, control=True), C.IRControlNet,
                            lambda k: C.controlnet_sources(k, C.SD21_CONTROLNET)),
             "vae": (ldm_vae_official_shapes(), C.build_vae, lambda k: C.vae_sources(k, C.SD21_VAE)),
             "text": (openclip_text_official_shapes(), C.build_text, lambda k: {n: n for n in k})}
    for name, (shapes, make, sources) in cases.items():
        official = {k: s for k, s in shapes.items() if k != "logit_scale"}     # CLIP's, unused by the text tower
        assert sum(math.prod(s) for s in official.values()) == diffbir.PARAMS[name], name
        with torch.device("meta"):
            net = make()
            tensors = {k: torch.empty(s) for k, s in official.items()}
        own = net.state_dict()
        assert sum(p.numel() for p in net.parameters()) == diffbir.PARAMS[name], name
        taken = C.take(tensors, sources(list(own)), own)
        assert not taken.missing and taken.used == set(official), name          # every official tensor, once
        assert {k: tuple(v.shape) for k, v in taken.mapped.items()} == {k: tuple(v.shape) for k, v in own.items()}, name
    assert diffbir.PARAMS == {"unet": 865_910_724, "controlnet": 363_153_280, "vae": 83_653_863, "text": 354_032_640,
                              "cleaner": 15_792_587} and difface.SWINIR_PARAMS == diffbir.PARAMS["cleaner"]
    full = {k: torch.empty(s, device="meta") for k, s in ldm_unet_official_shapes().items()}
    assert C.unet_config_from_state_dict(full) == C.SD21_UNET
    ctrl = {k: torch.empty(s, device="meta") for k, s in ldm_unet_official_shapes(hint=4, control=True).items()}
    assert C.unet_config_from_state_dict(ctrl) == C.SD21_CONTROLNET
    vae = {k: torch.empty(s, device="meta") for k, s in ldm_vae_official_shapes().items()}
    assert C.vae_config_from_state_dict(vae) == C.SD21_VAE
    text = {k: torch.empty(s, device="meta") for k, s in openclip_text_official_shapes().items()}
    assert C.text_config_from_state_dict(text) == C.SD21_TEXT


def test_the_networks_with_the_key_maps_are_the_official_forwards():
    """Random official tensors in float64: ControlNet's 5 residuals, the controlled UNet's epsilon, the
    autoencoder's mode and decoding, and the text tower's penultimate output all equal the official forwards
    written above (two heads in the UNet's inner level and in the text tower: head order matters)."""
    from scgan_bench.networks.controlldm import encode_text, tokenize

    parts = diffbir_official_tensors(1)
    net = _loaded(parts, difface_swinir(), torch.float64)
    p64 = {k: {n: t.double() for n, t in v.items()} for k, v in parts.items()}
    g = torch.Generator().manual_seed(0)
    x, hint = (torch.randn(2, 4, 8, 8, generator=g, dtype=torch.float64) for _ in range(2))
    t = torch.tensor([999, 20])
    tokens = tokenize(["", NEG])
    with torch.no_grad():
        ctx = encode_text(net.text, tokens)
        want_ctx = official_text(p64["text"], tokens, heads=2)
        torch.testing.assert_close(ctx, want_ctx, rtol=0, atol=1e-9)
        down, mid = net.controlnet(x, hint, t, ctx)
        want = official_controlnet(p64["control"], x, hint, t, ctx, mc=64)
        assert len(down) + 1 == len(want) == 5
        for got_i, want_i in zip([*down, mid], want):
            torch.testing.assert_close(got_i, want_i, rtol=0, atol=1e-9)
        eps = net.unet(x, t, encoder_hidden_states=ctx, down_block_additional_residuals=down,
                       mid_block_additional_residual=mid).sample
        torch.testing.assert_close(eps, official_unet(p64["unet"], x, t, ctx, 64, want), rtol=0, atol=1e-9)
        img = torch.rand(2, 3, 64, 64, generator=g, dtype=torch.float64) * 2 - 1
        z = net.vae.encode(img).latent_dist.mode()
        torch.testing.assert_close(z, official_vae_encode_mode(p64["vae"], img), rtol=0, atol=1e-9)
        torch.testing.assert_close(net.vae.decode(z).sample, official_vae_decode(p64["vae"], z), rtol=0, atol=1e-9)
    assert tokens[0, :3].tolist() == [49406, 49407, 0] and tokens[1, 0] == 49406    # start, end, zero padding


def _space(num, count):
    """guided-diffusion respace.space_timesteps(num, str(count)): one section."""
    frac = (num - 1) / (count - 1) if count > 1 else 1
    cur, out = 0.0, []
    for _ in range(count):
        out.append(round(cur))
        cur += frac
    return sorted(set(out))


def _wavelet(content, style):
    """utils/common.py wavelet_reconstruction: 5 levels of the dilated binomial blur."""
    kernel = torch.tensor([[0.0625, 0.125, 0.0625], [0.125, 0.25, 0.125], [0.0625, 0.125, 0.0625]],
                          dtype=content.dtype)[None, None].repeat(3, 1, 1, 1)

    def decompose(img):
        high = torch.zeros_like(img)
        for i in range(5):
            r = 2 ** i
            low = F.conv2d(F.pad(img, (r, r, r, r), mode="replicate"), kernel, groups=3, dilation=r)
            high += img - low
            img = low
        return high, img

    return decompose(content)[0] + decompose(style)[1]


def official_pipeline(parts, swin, lq, keys, steps, cfg_scale=4.0, strength=1.0, pos="", neg=NEG):
    """SwinIRPipeline.run (not tiled) + ControlLDM + SpacedSampler.sample from noise, on the official networks
    written above; the noise of the adapter's seed rule (start noise, then one draw per step)."""
    from scgan_bench.networks.controlldm import tokenize

    gens = [torch.Generator().manual_seed(int(k[:15], 16) ^ 0x44424952) for k in keys]

    def randn(shape):
        return torch.stack([torch.randn(shape, generator=g) for g in gens])

    cond_img = swin(lq)                                              # no clip
    c_img = official_vae_encode_mode(parts["vae"], cond_img * 2 - 1) * 0.18215
    bs = lq.shape[0]
    c_pos = official_text(parts["text"], tokenize([pos] * bs), heads=2)
    c_neg = official_text(parts["text"], tokenize([neg] * bs), heads=2)
    betas = np.linspace(0.00085 ** 0.5, 0.0120 ** 0.5, 1000, dtype=np.float64) ** 2
    train_abar = np.cumprod(1.0 - betas, axis=0)
    used = _space(1000, steps)
    new_betas, last = [], 1.0
    for i, a in enumerate(train_abar):
        if i in used:
            new_betas.append(1 - a / last)
            last = a
    nb = np.array(new_betas)
    abar = np.cumprod(1 - nb)
    prev = np.append(1.0, abar[:-1])
    f32 = {n: torch.tensor(v, dtype=torch.float32) for n, v in {
        "sqrt_recip": np.sqrt(1 / abar), "sqrt_recipm1": np.sqrt(1 / abar - 1),
        "var": nb * (1 - prev) / (1 - abar), "c1": nb * np.sqrt(prev) / (1 - abar),
        "c2": (1 - prev) * np.sqrt(1 - nb) / (1 - abar)}.items()}

    def model(x, t, ctx):
        control = [c * strength for c in official_controlnet(parts["control"], x, c_img, t, ctx, 64)]
        return official_unet(parts["unet"], x, t, ctx, 64, control)

    x = randn(c_img.shape[1:])
    timesteps = sorted(used)[::-1]
    for i, step in enumerate(timesteps):
        model_t = torch.full((bs,), step, dtype=torch.long)
        t = len(timesteps) - i - 1
        e_c = model(x, model_t, c_pos)
        e_u = model(x, model_t, c_neg)
        e = e_u + cfg_scale * (e_c - e_u)
        pred_x0 = f32["sqrt_recip"][t] * x - f32["sqrt_recipm1"][t] * e
        mean = f32["c1"][t] * pred_x0 + f32["c2"][t] * x
        noise = randn(x.shape[1:])
        x = mean + (1.0 if t != 0 else 0.0) * torch.sqrt(f32["var"][t]) * noise
    sample = official_vae_decode(parts["vae"], x / 0.18215)
    out = _wavelet((sample + 1) / 2, cond_img)
    return (out * 255.0).clamp(0, 255).to(torch.uint8).float() / 255


def test_the_pipeline_is_the_official_one():
    """The adapter's forward on two 64 px faces (reduced networks), 3 spaced steps (original steps 999, 500, 0),
    guidance 4.0 between the empty prompt and the release's negative prompt: equal to the official pipeline
    written above in 8-bit levels (float32 sums in another order may move a value across a level: at most one
    level, on few values); the noise follows each image's key."""
    from scgan_bench.baselines import diffbir
    from scgan_bench.baselines.adapter import image_keys

    parts = diffbir_official_tensors(2)
    torch.manual_seed(2)
    swin = difface_swinir()
    swin.conv_last.bias.data = torch.tensor([0.9, -0.9, 0.0])     # stage 1 leaves [0, 1]: it must stay unclipped
    net = _loaded(parts, swin)
    y = F.interpolate(lr_faces(2), size=(64, 64), mode="bicubic", antialias=True)
    keys = image_keys(y)
    assert diffbir.space_timesteps(1000, 3) == _space(1000, 3) == [0, 500, 999]
    assert diffbir.space_timesteps(1000, 50) == _space(1000, 50)
    with torch.inference_mode():
        got = diffbir.make_forward(steps=3, size=64)(net, y, keys)
        want = official_pipeline(parts, swin, y, keys, steps=3)
        stage1 = swin(y)
    assert got.shape == (2, 3, 64, 64)
    d = (got - want).abs() * 255
    # measured (2-core AMD EPYC, ATEN_CPU_CAPABILITY default and avx2, 1 and 2 threads): at most 1 level on at
    # most 0.016 % of the values; allowed: 1 level on 0.5 %
    assert d.max() <= 1.0001 and (d > 0.5).float().mean() <= 5e-3
    assert torch.equal(got * 255, torch.floor(got * 255))          # 8-bit levels (truncated)
    assert stage1.min() < -0.1 and stage1.max() > 1.1
    assert (got - stage1.clamp(0, 1)).abs().mean() > 1e-3
    with torch.inference_mode():
        swapped = diffbir.make_forward(steps=3, size=64)(net, y, keys[::-1])
        no_cfg = diffbir.make_forward(steps=3, size=64, cfg_scale=1.0)(net, y, keys)
        bf16 = diffbir.make_forward(steps=3, size=64, precision="bf16")(net, y, keys)   # the autocast path
    assert not torch.allclose(swapped, got, atol=1e-2)
    assert not torch.allclose(no_cfg, got, atol=1e-2)
    # bfloat16 autocast: the same image up to its precision (measured, default and avx2 kernels: 0.73-0.80 levels
    # on average, 18 at most)
    assert bf16.dtype == torch.float32 and 0 < (bf16 - got).abs().mean() * 255 < 8


def test_the_wavelet_colour_fix_and_the_spaced_schedule_are_the_official_ones():
    from scgan_bench.baselines import diffbir

    g = torch.Generator().manual_seed(3)
    a, b = torch.rand(2, 3, 40, 36, generator=g), torch.rand(2, 3, 40, 36, generator=g)
    torch.testing.assert_close(diffbir.wavelet_colour_fix(a, b), _wavelet(a, b), rtol=0, atol=1e-6)
    # the low band is the style's: a constant style image gives the content's high frequencies + that constant
    flat = torch.full_like(b, 0.25)
    hi = diffbir.wavelet_colour_fix(a, flat) - 0.25
    torch.testing.assert_close(hi, _wavelet(a, torch.zeros_like(b)), rtol=0, atol=1e-6)
    s = diffbir.spaced_schedule(50)
    assert s["timesteps"].tolist()[:4] == [0, 20, 41, 61] and s["timesteps"][-1] == 999
    betas = np.linspace(0.00085 ** 0.5, 0.012 ** 0.5, 1000) ** 2
    abar = np.cumprod(1 - betas)[s["timesteps"].numpy()]
    np.testing.assert_allclose(s["sqrt_recipm1"].numpy(), np.sqrt(1 / abar - 1), rtol=1e-6)
    assert s["variance"][0] == 0                                   # the first step has no posterior variance


def test_the_adapter_runs_the_released_files(weights_dir):
    """End to end on the release's containers: 16 px -> bicubic 512 -> the reduced networks at 512 px (64 px
    latents), 2 spaced steps -> area 64; equal to the official pipeline through the same bridge within one
    8-bit level (a truncated 512 px level may differ on few values; the 8 x 8 average moves less)."""
    from scgan_bench.baselines.adapter import image_keys

    paths, parts, swin = _install(weights_dir)
    m = _make(steps=2)
    fp = m.fingerprint()
    assert fp["cfg_scale"] == 4.0 and fp["neg_prompt"] == NEG and fp["pos_prompt"] == "" and fp["precision"] == "fp32"
    assert fp["config"]["unet"]["channel_mult"] == [1, 2] and fp["params"]["controlnet"] > 0
    lr = lr_faces(1)
    got = m.upscale(lr)
    assert got.shape == (1, 3, 64, 64) and 0 <= got.min() and got.max() <= 1
    with torch.inference_mode():
        want = m.bridge.down(official_pipeline(parts, swin, m.bridge.up(lr), image_keys(lr), steps=2), 64)
    assert (got - want).abs().max() * 255 <= 1.0001                  # 8-bit levels at 512, averaged over 8 x 8


@pytest.mark.slow
def test_outputs_are_deterministic_and_independent_of_the_batch_in_8_bit_levels(weights_dir):
    from scgan_bench.run.superres import quantise

    _install(weights_dir, safetensors=True)
    m = _make(steps=1, sd=str(weights_dir / "v2-1_512-ema-pruned.safetensors"))
    lr = lr_faces(3)
    a = quantise(m.upscale(lr))
    one = np.concatenate([quantise(m.upscale(lr[i:i + 1])) for i in range(3)])
    assert np.array_equal(quantise(m.upscale(lr[2:3])), one[2:3])          # a second run: the same levels
    assert not np.array_equal(one[0], one[1])
    # one image alone vs in a batch of three: float sums in another order move some 512 px values across an
    # 8-bit level (the output is truncated there, as released), and the 8 x 8 average then across a 64 px level.
    # Measured (2-core AMD EPYC): at most 1 level on 0.38-0.53 % of the values under ATEN_CPU_CAPABILITY=default
    # and avx2, 1 and 2 threads. Allowed: 2 levels on at most 2 % of the values
    d = np.abs(a.astype(int) - one.astype(int))
    assert d.max() <= 2 and (d > 0).mean() <= 2e-2


def test_the_release_is_loaded_strictly_and_a_foreign_or_tampered_file_refused(weights_dir, tmp_path):
    from scgan_bench.assets import weights as W
    from scgan_bench.baselines import diffbir

    from baseline_weights import swinir_release_keys

    _install(weights_dir, sd_extra={"model.diffusion_model.label_emb.0.0.weight": torch.zeros(4, 4)})
    with pytest.raises(WeightsError, match=r"UNet.*1 unexpected \(label_emb\.0\.0\.weight\)"):
        _make()
    _install(weights_dir, sd_extra={"lora.up.weight": torch.zeros(1)})
    with pytest.raises(WeightsError, match=r"1 unexpected \(lora\.up\.weight\)"):
        _make()
    paths, parts, swin = _install(weights_dir)
    data = bytearray(paths["control"].read_bytes())
    data[-10] ^= 0xFF
    paths["control"].write_bytes(bytes(data))
    with pytest.raises(WeightsError, match="sha256"):
        _make()
    names = {"sd": "sd.ckpt", "control": "v2.pth", "cleaner": "c.ckpt"}
    sd_parts = {k: {n: t for n, t in parts[k].items() if n != "logit_scale"} for k in ("unet", "vae", "text")}
    control = dict(parts["control"])
    del control["zero_convs.2.0.bias"]
    with pytest.raises(WeightsError, match=r"IRControlNet.*1 missing \(zero_convs\.2\.0\.bias\)"):
        diffbir.load_networks(sd_parts, control, swinir_release_keys(swin), names)
    broken = {**sd_parts, "vae": {k: v for k, v in parts["vae"].items() if k != "encoder.mid.attn_1.q.weight"}}
    with pytest.raises(WeightsError, match=r"autoencoder.*1 missing \(encoder\.mid\.attn_1\.q\.weight\)"):
        diffbir.load_networks(broken, parts["control"], swinir_release_keys(swin), names)
    with pytest.raises(WeightsError, match="zero_convs: not DiffBIR's IRControlNet.*swapped"):
        diffbir.load_networks(sd_parts, {f"model.diffusion_model.{k}": v for k, v in parts["unet"].items()},
                              swinir_release_keys(swin), names)
    with pytest.raises(WeightsError, match="stage-1 SwinIR"):
        diffbir.load_networks(sd_parts, parts["control"], parts["unet"], names)
    with pytest.raises(WeightsError, match="holds the IRControlNet, not Stable Diffusion"):
        diffbir.split_sd(parts["control"], "sd.ckpt")
    zsnr = {f"model.diffusion_model.{k}": v for k, v in parts["unet"].items()}
    zsnr["alphas_cumprod"] = torch.linspace(0.999, 0.0, 1000)
    with pytest.raises(WeightsError, match="another noise schedule"):
        diffbir.split_sd(zsnr, "sd.ckpt")
    _install(weights_dir)
    with pytest.raises(WeightsError, match="865,910,724"):       # a reduced network is another configuration
        METHODS.get("diffbir").create(allow_cpu=True)
    path = tmp_path / "wrong.ckpt"                                 # the stage-1 option naming the IRControlNet
    torch.save(parts["control"], path)
    W.register_sha256(diffbir.CLEANER, hashlib.sha256(path.read_bytes()).hexdigest())
    with pytest.raises(WeightsError, match="wrong.ckpt holds a diffusion network"):
        _make(cleaner=str(path))


def test_cpu_needs_an_explicit_option_and_the_sampler_settings_are_checked(weights_dir):
    _install(weights_dir)
    check_gpu_only("diffbir")
    for bad in ({"steps": 0}, {"steps": 1001}, {"precision": "fp8"}):
        with pytest.raises(UsageError, match="diffbir"):
            _make(**bad)
