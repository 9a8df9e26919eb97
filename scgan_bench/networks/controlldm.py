"""DiffBIR's ControlLDM (Lin et al., ECCV 2024): Stable Diffusion 2.1-base (its UNet, its KL autoencoder, its
OpenCLIP ViT-H/14 text tower) and the IRControlNet that steers the UNet from the stage-1 image's latent.

Every network comes from a maintained library: the UNet is ``diffusers``' ``UNet2DConditionModel``, the
autoencoder its ``AutoencoderKL``, the IRControlNet the encoder half of its ``ControlNetModel`` (conv_in, time
embedding, down blocks, mid block, zero convolutions) without the condition-embedding stem (DiffBIR's
ControlNet has none: it concatenates the 4-channel condition latent to the noisy latent, 8 channels in), and
the text tower ``open_clip``'s ``TextTransformer`` (the official file's names, unchanged). The official
checkpoints are in LDM's layout (``input_blocks.N.M``, ``middle_block``, ``output_blocks``, ``zero_convs``;
``encoder.down.N.block.M``, ``mid.attn_1``): :func:`unet_sources`, :func:`controlnet_sources` and
:func:`vae_sources` name, for each tensor of the diffusers network, the official key it comes from, and
:func:`take` fills the network from them (a 1x1 convolution of the autoencoder's attention becomes a linear
weight), naming what is missing in the release's names and what is left over.

Conventions not visible in the tensors, fixed as the official configuration (configs/inference/cldm.yaml)
sets them: attention heads of 64 channels (``num_head_channels``), GroupNorm of 32 groups (eps 1e-5 in the
UNet's residual blocks, 1e-6 in its transformers and in the autoencoder), the time embedding ``[cos, sin]``
of ``t * 10000^(-i / half)``, linear projections in and out of the transformers, the text tower's
penultimate layer followed by its final LayerNorm.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Mapping, NamedTuple

import torch
from torch import nn

from .iddpm_unet import RES_NAMES, input_levels

HEAD_CHANNELS = 64
GROUPS = 32


@dataclass(frozen=True)
class UNetConfig:
    """LDM ``UNetModel`` / DiffBIR ``ControlNet`` sizes: widths ``model_channels * channel_mult``, the same
    number of residual blocks on every level, cross-attention transformers on ``attention_levels``."""

    model_channels: int = 320
    channel_mult: tuple[int, ...] = (1, 2, 4, 4)
    num_res_blocks: int = 2
    attention_levels: tuple[int, ...] = (0, 1, 2)
    context_dim: int = 1024
    in_channels: int = 4
    out_channels: int = 4
    head_channels: int = HEAD_CHANNELS

    def widths(self) -> list[int]:
        return [self.model_channels * m for m in self.channel_mult]

    def diffusers_kwargs(self) -> dict[str, Any]:
        n = len(self.channel_mult)
        down = tuple("CrossAttnDownBlock2D" if i in self.attention_levels else "DownBlock2D" for i in range(n))
        up = tuple("CrossAttnUpBlock2D" if i in self.attention_levels else "UpBlock2D" for i in reversed(range(n)))
        # diffusers' "attention_head_dim" of these blocks is the number of heads (its documented misnomer)
        return {"down_block_types": down, "block_out_channels": tuple(self.widths()),
                "layers_per_block": self.num_res_blocks, "cross_attention_dim": self.context_dim,
                "attention_head_dim": tuple(w // self.head_channels for w in self.widths()),
                "use_linear_projection": True, "flip_sin_to_cos": True, "freq_shift": 0,
                "norm_num_groups": GROUPS, "norm_eps": 1e-5, "up_block_types": up}


@dataclass(frozen=True)
class VAEConfig:
    """LDM ``AutoencoderKL`` sizes (ddconfig): base width ``ch``, ``ch_mult``, residual blocks per level."""

    ch: int = 128
    ch_mult: tuple[int, ...] = (1, 2, 4, 4)
    num_res_blocks: int = 2
    z_channels: int = 4


@dataclass(frozen=True)
class TextConfig:
    """OpenCLIP text tower sizes (clip_cfg.text_cfg of cldm.yaml; ViT-H/14's)."""

    width: int = 1024
    heads: int = 16
    layers: int = 24
    embed_dim: int = 1024
    context_length: int = 77
    vocab_size: int = 49408


SD21_UNET = UNetConfig()
SD21_CONTROLNET = UNetConfig(in_channels=8)          # in_channels 4 + hint_channels 4
SD21_VAE = VAEConfig()
SD21_TEXT = TextConfig()


def build_unet(cfg: UNetConfig = SD21_UNET) -> nn.Module:
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(in_channels=cfg.in_channels, out_channels=cfg.out_channels,
                                **cfg.diffusers_kwargs())


class IRControlNet(nn.Module):
    """DiffBIR's ``ControlNet``: ``forward(x, hint, t, context)`` -> (13 residuals for the UNet's skips, one
    for its middle), each from a zero convolution of the encoder's features on ``cat(x, hint)``."""

    def __init__(self, cfg: UNetConfig = SD21_CONTROLNET) -> None:
        from diffusers import ControlNetModel

        super().__init__()
        kw = cfg.diffusers_kwargs()
        kw.pop("up_block_types")
        net = ControlNetModel(in_channels=cfg.in_channels, **kw)
        # the encoder half and the zero convolutions, as ControlNetModel names them; no condition stem
        for name in ("conv_in", "time_proj", "time_embedding", "down_blocks", "mid_block",
                     "controlnet_down_blocks", "controlnet_mid_block"):
            setattr(self, name, getattr(net, name))

    def forward(self, x: torch.Tensor, hint: torch.Tensor, t: torch.Tensor, context: torch.Tensor
                ) -> tuple[tuple[torch.Tensor, ...], torch.Tensor]:
        emb = self.time_embedding(self.time_proj(t).to(x.dtype))
        h = self.conv_in(torch.cat((x, hint), dim=1))
        feats: tuple[torch.Tensor, ...] = (h,)
        for block in self.down_blocks:
            if getattr(block, "has_cross_attention", False):
                h, res = block(hidden_states=h, temb=emb, encoder_hidden_states=context)
            else:
                h, res = block(hidden_states=h, temb=emb)
            feats += res
        h = self.mid_block(h, emb, encoder_hidden_states=context)
        return (tuple(conv(f) for conv, f in zip(self.controlnet_down_blocks, feats)), self.controlnet_mid_block(h))


def build_vae(cfg: VAEConfig = SD21_VAE) -> nn.Module:
    from diffusers import AutoencoderKL

    n = len(cfg.ch_mult)
    return AutoencoderKL(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * n,
                         up_block_types=("UpDecoderBlock2D",) * n,
                         block_out_channels=tuple(cfg.ch * m for m in cfg.ch_mult),
                         layers_per_block=cfg.num_res_blocks, latent_channels=cfg.z_channels, norm_num_groups=GROUPS)


def build_text(cfg: TextConfig = SD21_TEXT) -> nn.Module:
    from open_clip.transformer import TextTransformer

    return TextTransformer(context_length=cfg.context_length, vocab_size=cfg.vocab_size, width=cfg.width,
                           heads=cfg.heads, layers=cfg.layers, output_dim=cfg.embed_dim)


def encode_text(text: nn.Module, tokens: torch.Tensor) -> torch.Tensor:
    """FrozenOpenCLIPEmbedder(layer="penultimate").encode: token + position embedding, every residual block
    but the last under the causal mask, then the final LayerNorm: N x 77 x width."""
    x = text.token_embedding(tokens) + text.positional_embedding
    for block in text.transformer.resblocks[:-1]:
        x = block(x, attn_mask=text.attn_mask)
    return text.ln_final(x)


def tokenize(prompts: Iterable[str]) -> torch.Tensor:
    """open_clip's tokenizer (the official ``tokenize``): start, BPE ids, end, zeros; 77 positions."""
    import open_clip

    return open_clip.tokenize(list(prompts))


# -- the key maps: for each tensor of the diffusers network, the official key it comes from ------------

_UNET_RES = {new: old for old, new in RES_NAMES.items()}      # DifFace's UNet's table, reversed
_VAE_RES = {"norm1": "norm1", "conv1": "conv1", "norm2": "norm2", "conv2": "conv2", "conv_shortcut": "nin_shortcut"}
_VAE_ATTN = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out"}


def _rename(rules: Mapping[str, tuple[str, Mapping[str, str] | None]], keys: Iterable[str]) -> dict[str, str]:
    """Each key under the longest matching prefix of ``rules`` -> the official prefix + the rest, its module
    path renamed by the rule's table (``None``: the rest unchanged). A key no rule covers maps to itself."""
    out = {}
    order = sorted(rules, key=len, reverse=True)
    for key in keys:
        prefix = next((p for p in order if key == p or key.startswith(p + ".")), None)
        if prefix is None:
            out[key] = key
            continue
        src, table = rules[prefix]
        rest = key[len(prefix) + 1:]
        if table is not None and "." in rest:
            module, param = rest.rsplit(".", 1)
            rest = f"{table.get(module, module)}.{param}"
        out[key] = f"{src}.{rest}"
    return out


def _encoder_rules(cfg: UNetConfig) -> dict[str, tuple[str, Mapping[str, str] | None]]:
    rules: dict[str, tuple[str, Mapping[str, str] | None]] = {
        "time_embedding.linear_1": ("time_embed.0", {}), "time_embedding.linear_2": ("time_embed.2", {}),
        "conv_in": ("input_blocks.0.0", {})}
    idx = 1
    for level in range(len(cfg.channel_mult)):
        for j in range(cfg.num_res_blocks):
            rules[f"down_blocks.{level}.resnets.{j}"] = (f"input_blocks.{idx}.0", _UNET_RES)
            rules[f"down_blocks.{level}.attentions.{j}"] = (f"input_blocks.{idx}.1", None)
            idx += 1
        if level < len(cfg.channel_mult) - 1:
            rules[f"down_blocks.{level}.downsamplers.0.conv"] = (f"input_blocks.{idx}.0.op", {})
            idx += 1
    rules["mid_block.resnets.0"] = ("middle_block.0", _UNET_RES)
    rules["mid_block.attentions.0"] = ("middle_block.1", None)
    rules["mid_block.resnets.1"] = ("middle_block.2", _UNET_RES)
    return rules


def unet_sources(keys: Iterable[str], cfg: UNetConfig) -> dict[str, str]:
    """diffusers ``UNet2DConditionModel`` key -> LDM ``UNetModel`` key (without ``model.diffusion_model.``)."""
    rules = _encoder_rules(cfg)
    rules.update({"conv_norm_out": ("out.0", {}), "conv_out": ("out.2", {})})
    idx = 0
    for k, level in enumerate(reversed(range(len(cfg.channel_mult)))):
        attn = level in cfg.attention_levels
        for i in range(cfg.num_res_blocks + 1):
            rules[f"up_blocks.{k}.resnets.{i}"] = (f"output_blocks.{idx}.0", _UNET_RES)
            rules[f"up_blocks.{k}.attentions.{i}"] = (f"output_blocks.{idx}.1", None)
            if level and i == cfg.num_res_blocks:
                rules[f"up_blocks.{k}.upsamplers.0.conv"] = (f"output_blocks.{idx}.{2 if attn else 1}.conv", {})
            idx += 1
    return _rename(rules, keys)


def controlnet_sources(keys: Iterable[str], cfg: UNetConfig) -> dict[str, str]:
    """:class:`IRControlNet` key -> DiffBIR ``ControlNet`` key (``zero_convs.N.0``, ``middle_block_out.0``)."""
    rules = _encoder_rules(cfg)
    n_feats = 1 + len(cfg.channel_mult) * cfg.num_res_blocks + len(cfg.channel_mult) - 1
    for i in range(n_feats):
        rules[f"controlnet_down_blocks.{i}"] = (f"zero_convs.{i}.0", {})
    rules["controlnet_mid_block"] = ("middle_block_out.0", {})
    return _rename(rules, keys)


def vae_sources(keys: Iterable[str], cfg: VAEConfig) -> dict[str, str]:
    """diffusers ``AutoencoderKL`` key -> LDM ``AutoencoderKL`` key (without ``first_stage_model.``); the
    decoder's levels run the other way (LDM's ``up.0`` is the last, full-resolution level)."""
    n = len(cfg.ch_mult)
    rules: dict[str, tuple[str, Mapping[str, str] | None]] = {}
    for part in ("encoder", "decoder"):
        rules.update({f"{part}.conv_in": (f"{part}.conv_in", {}), f"{part}.conv_out": (f"{part}.conv_out", {}),
                      f"{part}.conv_norm_out": (f"{part}.norm_out", {}),
                      f"{part}.mid_block.resnets.0": (f"{part}.mid.block_1", _VAE_RES),
                      f"{part}.mid_block.resnets.1": (f"{part}.mid.block_2", _VAE_RES),
                      f"{part}.mid_block.attentions.0": (f"{part}.mid.attn_1", _VAE_ATTN)})
    for i in range(n):
        for j in range(cfg.num_res_blocks):
            rules[f"encoder.down_blocks.{i}.resnets.{j}"] = (f"encoder.down.{i}.block.{j}", _VAE_RES)
        if i < n - 1:
            rules[f"encoder.down_blocks.{i}.downsamplers.0.conv"] = (f"encoder.down.{i}.downsample.conv", {})
        for j in range(cfg.num_res_blocks + 1):
            rules[f"decoder.up_blocks.{n - 1 - i}.resnets.{j}"] = (f"decoder.up.{i}.block.{j}", _VAE_RES)
        if i > 0:
            rules[f"decoder.up_blocks.{n - 1 - i}.upsamplers.0.conv"] = (f"decoder.up.{i}.upsample.conv", {})
    rules.update({"quant_conv": ("quant_conv", {}), "post_quant_conv": ("post_quant_conv", {})})
    return _rename(rules, keys)


class Taken(NamedTuple):
    """The network's tensors from the file, the file's keys taken, and the network's tensors the file lacks
    (in the release's names)."""

    mapped: dict[str, torch.Tensor]
    used: set[str]
    missing: list[str]


def take(sd: Mapping[str, torch.Tensor], sources: Mapping[str, str], own: Mapping[str, torch.Tensor]) -> Taken:
    """Fill the network's names from ``sd`` through ``sources``; a 1x1 convolution weight becomes the linear
    weight the network holds (the autoencoder's attention projections)."""
    mapped, used, missing = {}, set(), []
    for key, src in sources.items():
        if src not in sd:
            missing.append(src)
            continue
        t = sd[src]
        if t.dim() == 4 and t.shape[2:] == (1, 1) and own[key].dim() == 2:
            t = t.reshape(t.shape[0], t.shape[1])
        mapped[key] = t
        used.add(src)
    return Taken(mapped, used, sorted(missing))


# -- the configurations an official file describes ---------------------------------------------------------

def unet_config_from_state_dict(sd: Mapping[str, Any], head_channels: int = HEAD_CHANNELS) -> UNetConfig:
    """Widths, blocks per level and attention levels from the ``input_blocks`` (a block with ``in_layers`` is a
    residual block, one with ``op`` a downsample ending its level; a level holds attention when its blocks
    hold a ``proj_in``), the text width from a cross-attention's ``to_k``. Raises KeyError / ValueError when
    the tensors are not an LDM UNet."""
    mc, in_ch, mults, blocks, attn = input_levels(sd, "proj_in")
    if not blocks[-1] or len(set(blocks)) != 1:
        raise ValueError(f"residual blocks per level {blocks}: an LDM UNet has the same positive number on each")
    ctx = int(sd["middle_block.1.transformer_blocks.0.attn2.to_k.weight"].shape[1])
    out_ch = int(sd["out.2.weight"].shape[0]) if "out.2.weight" in sd else 4
    return UNetConfig(mc, tuple(mults), blocks[0], tuple(i for i, a in enumerate(attn) if a), ctx,
                      in_channels=in_ch, out_channels=out_ch, head_channels=head_channels)


def vae_config_from_state_dict(sd: Mapping[str, Any]) -> VAEConfig:
    """Base width, level widths, blocks per level and latent channels from the encoder's tensors."""
    ch = int(sd["encoder.conv_in.weight"].shape[0])
    mult, i = [], 0
    while f"encoder.down.{i}.block.0.conv1.weight" in sd:
        mult.append(int(sd[f"encoder.down.{i}.block.0.conv1.weight"].shape[0]) // ch)
        i += 1
    nrb = 0
    while f"encoder.down.0.block.{nrb}.conv1.weight" in sd:
        nrb += 1
    if not mult:
        raise ValueError("no encoder.down.0.block.0: not an LDM autoencoder")
    return VAEConfig(ch, tuple(mult), nrb, int(sd["encoder.conv_out.weight"].shape[0]) // 2)


def text_config_from_state_dict(sd: Mapping[str, Any]) -> TextConfig:
    """Width, layers, context length, vocabulary and projection width of an OpenCLIP text tower; heads are not
    visible in the tensors: one per 64 channels (ViT-H/14's 16 at its width 1024)."""
    vocab, width = (int(n) for n in sd["token_embedding.weight"].shape)
    layers = 0
    while f"transformer.resblocks.{layers}.ln_1.weight" in sd:
        layers += 1
    return TextConfig(width, max(1, width // 64), layers, int(sd["text_projection"].shape[1]),
                      int(sd["positional_embedding"].shape[0]), vocab)
