"""The improved-DDPM / guided-diffusion UNet (Dhariwal & Nichol's ``UNetModel``, as DifFace trains its face
prior), assembled from ``diffusers``' blocks, and the key map from the official checkpoints onto it.

diffusers holds every block of this network (``ResnetBlock2D`` with scale-shift time conditioning,
``Attention`` with group norm and a residual, ``Downsample2D`` / ``Upsample2D``, the sinusoidal time
embedding and its MLP); its ``UNet2DModel`` does not, because it takes one number of residual blocks for
every level and DifFace's model has ``[1, 2, 2, 2, 2, 3, 4]``. :class:`GuidedUNet` wires the blocks per
level, as the official constructor does; :func:`official_key_map` renames the official tensors
(``input_blocks.N.M.*``, ``middle_block.*``, ``output_blocks.*``, ``time_embed.*``, ``out.*``) to it and
splits each attention's fused ``qkv`` convolution (heads first, then q / k / v: the "legacy" order) into
diffusers' ``to_q`` / ``to_k`` / ``to_v``.

Official conventions kept: GroupNorm of 32 groups, eps 1e-5; time embedding ``[cos, sin]`` of
``t * 10000^(-i / half)``; attention heads of 64 channels (``num_head_channels``: not visible in the
tensors, so fixed here as DifFace's configuration sets it); attention where the feature map is 32, 16 or 8
px at 512 px input (``attention_resolutions``), read from the checkpoint as the levels that hold attention.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, NamedTuple

import torch
from torch import nn

#: DifFace's configuration (configs/sample/iddpm_ffhq512_swinir.yaml)
DIFFACE_512 = {"model_channels": 32, "channel_mult": (1, 2, 4, 8, 8, 16, 16),
               "num_res_blocks": (1, 2, 2, 2, 2, 3, 4), "attention_levels": (4, 5, 6), "out_channels": 6}
HEAD_CHANNELS = 64
GROUPS = 32
EPS = 1e-5


@dataclass(frozen=True)
class UNetConfig:
    model_channels: int
    channel_mult: tuple[int, ...]
    num_res_blocks: tuple[int, ...]
    attention_levels: tuple[int, ...]
    in_channels: int = 3
    out_channels: int = 6
    head_channels: int = HEAD_CHANNELS

    def widths(self) -> list[int]:
        return [self.model_channels * m for m in self.channel_mult]


class GuidedUNet(nn.Module):
    """``UNetModel(image_size, 3, model_channels, out_channels, num_res_blocks, attention_resolutions,
    channel_mult, num_head_channels=64, use_scale_shift_norm=True, resblock_updown=False)`` from diffusers'
    blocks; ``forward(x, t)`` takes the original (unrespaced) timestep, as the official model does."""

    def __init__(self, cfg: UNetConfig | None = None) -> None:
        from diffusers.models.embeddings import TimestepEmbedding, Timesteps
        from diffusers.models.unets.unet_2d_blocks import UNetMidBlock2D, get_down_block, get_up_block

        super().__init__()
        cfg = cfg or UNetConfig(**DIFFACE_512)
        self.cfg = cfg
        mc, widths, n = cfg.model_channels, cfg.widths(), len(cfg.channel_mult)
        temb = 4 * mc
        common = {"temb_channels": temb, "resnet_eps": EPS, "resnet_act_fn": "silu", "resnet_groups": GROUPS,
                  "attention_head_dim": cfg.head_channels, "resnet_time_scale_shift": "scale_shift", "dropout": 0.0}
        self.time_proj = Timesteps(mc, flip_sin_to_cos=True, downscale_freq_shift=0)
        self.time_embedding = TimestepEmbedding(mc, temb)
        self.conv_in = nn.Conv2d(cfg.in_channels, widths[0], 3, padding=1)
        self.down_blocks = nn.ModuleList()
        ch = widths[0]
        for level in range(n):
            kind = "AttnDownBlock2D" if level in cfg.attention_levels else "DownBlock2D"
            self.down_blocks.append(get_down_block(
                kind, num_layers=cfg.num_res_blocks[level], in_channels=ch, out_channels=widths[level],
                add_downsample=level < n - 1, downsample_padding=1, **common))
            ch = widths[level]
        self.mid_block = UNetMidBlock2D(in_channels=ch, temb_channels=temb, resnet_eps=EPS, resnet_act_fn="silu",
                                        resnet_groups=GROUPS, attn_groups=GROUPS, attention_head_dim=cfg.head_channels,
                                        resnet_time_scale_shift="scale_shift", add_attention=True)
        self.up_blocks = nn.ModuleList()
        prev = ch
        for level in reversed(range(n)):
            kind = "AttnUpBlock2D" if level in cfg.attention_levels else "UpBlock2D"
            skip_below = widths[max(level - 1, 0)]       # the skip of the level below: its downsample's output
            self.up_blocks.append(get_up_block(
                kind, num_layers=cfg.num_res_blocks[level] + 1, in_channels=skip_below, out_channels=widths[level],
                prev_output_channel=prev, add_upsample=level > 0, resolution_idx=n - 1 - level, **common))
            prev = widths[level]
        self.conv_norm_out = nn.GroupNorm(GROUPS, widths[0], eps=EPS)
        self.conv_act = nn.SiLU()
        self.conv_out = nn.Conv2d(widths[0], cfg.out_channels, 3, padding=1)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        emb = self.time_embedding(self.time_proj(t).to(x.dtype))
        h = self.conv_in(x)
        skips: tuple[torch.Tensor, ...] = (h,)
        for block in self.down_blocks:
            h, res = block(hidden_states=h, temb=emb)
            skips += res
        h = self.mid_block(h, emb)
        for block in self.up_blocks:
            k = len(block.resnets)
            h = block(h, skips[-k:], emb)
            skips = skips[:-k]
        return self.conv_out(self.conv_act(self.conv_norm_out(h)))


def config_from_state_dict(sd: Mapping[str, Any]) -> UNetConfig:
    """The configuration an official checkpoint describes: widths and residual blocks per level from the
    ``input_blocks`` (a block with ``in_layers`` is a residual block, one with ``op`` a downsample that
    ends its level), attention levels from the blocks holding a ``qkv``, output channels from ``out.2``."""
    from scgan_bench.errors import WeightsError

    try:
        mc, in_ch, mults, blocks, attn = input_levels(sd, "qkv")
        out_ch = int(sd["out.2.weight"].shape[0])
    except (KeyError, IndexError) as exc:
        raise WeightsError(f"the tensors do not describe a guided-diffusion UNetModel ({exc} missing)") from None
    if not blocks[-1]:
        raise WeightsError("the tensors do not describe a guided-diffusion UNetModel (no residual block found)")
    return UNetConfig(mc, tuple(mults), tuple(blocks), tuple(i for i, a in enumerate(attn) if a),
                      in_channels=in_ch, out_channels=out_ch)


def input_levels(sd: Mapping[str, Any], attn_tensor: str) -> tuple[int, int, list[int], list[int], list[bool]]:
    """(base width, input channels, width multiplier, residual blocks and attention per level) of an
    openaimodel-style encoder (guided-diffusion's and LDM's ``input_blocks``): a block with ``in_layers`` is a
    residual block, one with ``op`` a downsample that ends its level (the innermost level has none); a level
    holds attention when a block's second module has ``attn_tensor`` (``qkv``; ``proj_in`` for LDM's
    transformers). Raises KeyError when the tensors are not such an encoder."""
    mc, in_ch = (int(n) for n in sd["input_blocks.0.0.weight"].shape[:2])
    mults, blocks, attn = [], [], []
    idx, count, width, has_attn = 1, 0, mc, False
    while f"input_blocks.{idx}.0.in_layers.2.weight" in sd or f"input_blocks.{idx}.0.op.weight" in sd:
        if f"input_blocks.{idx}.0.op.weight" in sd:
            mults.append(width // mc)
            blocks.append(count)
            attn.append(has_attn)
            count, has_attn = 0, False
        else:
            width = int(sd[f"input_blocks.{idx}.0.out_layers.3.weight"].shape[0])
            count += 1
            has_attn = has_attn or f"input_blocks.{idx}.1.{attn_tensor}.weight" in sd
        idx += 1
    mults.append(width // mc)
    blocks.append(count)
    attn.append(has_attn)
    return mc, in_ch, mults, blocks, attn


#: a ResBlock's module names, openaimodel's (guided-diffusion, LDM) -> diffusers' ``ResnetBlock2D``
RES_NAMES = {"in_layers.0": "norm1", "in_layers.2": "conv1", "emb_layers.1": "time_emb_proj", "out_layers.0": "norm2",
             "out_layers.3": "conv2", "skip_connection": "conv_shortcut"}


class KeyMap(NamedTuple):
    """The official tensors under :class:`GuidedUNet`'s names, the official keys taken, and for each name of
    the network the official key it comes from (to name a missing tensor as the release names it)."""

    mapped: dict[str, torch.Tensor]
    used: set[str]
    source: dict[str, str]


class _Mapper:
    """Collects official tensors under new names and remembers which official keys were taken."""

    def __init__(self, sd: Mapping[str, torch.Tensor]) -> None:
        self.sd, self.out, self.used, self.source = sd, {}, set(), {}

    def take(self, src: str) -> torch.Tensor:
        self.used.add(src)
        return self.sd[src]

    def copy(self, src: str, dst: str) -> None:
        for p in ("weight", "bias"):
            self.source[f"{dst}.{p}"] = f"{src}.{p}"
            if f"{src}.{p}" in self.sd:
                self.out[f"{dst}.{p}"] = self.take(f"{src}.{p}")

    def res(self, src: str, dst: str) -> None:
        for a, b in RES_NAMES.items():
            self.copy(f"{src}.{a}", f"{dst}.{b}")

    def attn(self, src: str, dst: str, head_channels: int) -> None:
        """Fused 1-D ``qkv`` conv (3C x C x 1) in the legacy order (per head: q, k, v) -> ``to_q/k/v`` (C x C);
        ``proj_out`` (C x C x 1) -> ``to_out.0``; ``norm`` -> ``group_norm``. Each tensor the file lacks stays
        missing, named as the release names it."""
        self.copy(f"{src}.norm", f"{dst}.group_norm")
        for p in ("weight", "bias"):
            for name in ("to_q", "to_k", "to_v"):
                self.source[f"{dst}.{name}.{p}"] = f"{src}.qkv.{p}"
            self.source[f"{dst}.to_out.0.{p}"] = f"{src}.proj_out.{p}"
            if f"{src}.qkv.{p}" in self.sd:
                t = self.take(f"{src}.qkv.{p}")
                c = t.shape[0] // 3
                t = t.reshape(c // head_channels, 3, head_channels, -1)
                for i, name in enumerate(("to_q", "to_k", "to_v")):
                    self.out[f"{dst}.{name}.{p}"] = t[:, i].reshape(c, -1).squeeze(-1).contiguous()
            if f"{src}.proj_out.{p}" in self.sd:
                t = self.take(f"{src}.proj_out.{p}")
                self.out[f"{dst}.to_out.0.{p}"] = t.reshape(t.shape[0], -1).squeeze(-1) if p == "weight" else t


def official_key_map(sd: Mapping[str, torch.Tensor], cfg: UNetConfig) -> KeyMap:
    """The official tensors renamed for :class:`GuidedUNet` (see :class:`KeyMap`). A key of the file that the
    map does not take is unexpected; a name of the network that the map did not fill is missing, named by
    ``source`` as the release names it."""
    m = _Mapper(sd)
    for a, b in (("time_embed.0", "time_embedding.linear_1"), ("time_embed.2", "time_embedding.linear_2"),
                 ("input_blocks.0.0", "conv_in"), ("out.0", "conv_norm_out"), ("out.2", "conv_out")):
        m.copy(a, b)
    n, hc = len(cfg.channel_mult), cfg.head_channels
    idx = 1
    for level in range(n):
        for j in range(cfg.num_res_blocks[level]):
            m.res(f"input_blocks.{idx}.0", f"down_blocks.{level}.resnets.{j}")
            if level in cfg.attention_levels:
                m.attn(f"input_blocks.{idx}.1", f"down_blocks.{level}.attentions.{j}", hc)
            idx += 1
        if level < n - 1:
            m.copy(f"input_blocks.{idx}.0.op", f"down_blocks.{level}.downsamplers.0.conv")
            idx += 1
    m.res("middle_block.0", "mid_block.resnets.0")
    m.attn("middle_block.1", "mid_block.attentions.0", hc)
    m.res("middle_block.2", "mid_block.resnets.1")
    idx = 0
    for k, level in enumerate(reversed(range(n))):
        attn = level in cfg.attention_levels
        for i in range(cfg.num_res_blocks[level] + 1):
            m.res(f"output_blocks.{idx}.0", f"up_blocks.{k}.resnets.{i}")
            if attn:
                m.attn(f"output_blocks.{idx}.1", f"up_blocks.{k}.attentions.{i}", hc)
            if level and i == cfg.num_res_blocks[level]:
                m.copy(f"output_blocks.{idx}.{2 if attn else 1}.conv", f"up_blocks.{k}.upsamplers.0.conv")
            idx += 1
    return KeyMap(m.out, m.used, m.source)
