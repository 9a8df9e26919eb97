"""mPLUG-Owl2 (Ye et al., CVPR 2024) as Q-Align / OneAlign (``q-future/one-align``) run it, in the parameter
names of the released checkpoint (``MPLUGOwl2LlamaForCausalLM``), built without ``trust_remote_code``.

Written in-project from the paper and the release's layout:

- vision encoder (``model.vision_model``): a ViT-L/14 at 448 px: patches by a bias-free convolution, a
  class token, a learned position embedding, ``pre_layernorm``; pre-norm blocks whose one
  ``query_key_value`` projection is laid out per head as (q, k, v), QuickGELU MLP; ``post_layernorm`` on
  every token (1 + 32 x 32 of them).
- visual abstractor (``model.visual_abstractor``): 64 learned queries; in each layer the LayerNorm'd queries
  (``norm1``) attend over [queries, LayerNorm'd image tokens (``normk``)], keys carrying fixed sine-cosine
  position embeddings (1-D for the queries, 2-D for the 32 x 32 grid plus a zero class position), the
  output added to the *normalised* queries, then a SwiGLU MLP with an inner LayerNorm (``ffn_ln``);
  ``visual_fc`` to the language width and one learned end token (``vit_eos``): 65 visual tokens.
- language model (``model.*``, ``lm_head``): LLaMA-2 with the modality-adaptive module: per token, text (0)
  or image (1), its own pre-attention and pre-MLP RMSNorm and its own key and value projections
  (``multiway.0`` / ``multiway.1``); queries, output projection and MLP shared. RMSNorm, the SwiGLU MLP,
  rotary embedding and its application are transformers' own Llama classes; causal attention.

The sine-cosine tables are computed here; copies of them in a file (``q_pos_embed`` / ``k_pos_embed``) are
checked against them by the loader, as are rotary ``inv_freq`` buffers.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class VisionConfig:
    width: int = 1024
    layers: int = 24
    heads: int = 16
    mlp: int = 4096
    image: int = 448
    patch: int = 14
    eps: float = 1e-6


@dataclass(frozen=True)
class AbstractorConfig:
    width: int = 1024
    layers: int = 6
    heads: int = 16
    mlp: int = 2816
    queries: int = 64
    eps: float = 1e-6
    encoder_width: int = 1024
    grid: int = 32


def _sincos_1d(dim: int, pos: np.ndarray) -> np.ndarray:
    omega = 1.0 / 10000 ** (np.arange(dim // 2, dtype=np.float32) / (dim / 2.0))
    out = np.einsum("m,d->md", pos.reshape(-1).astype(np.float32), omega)
    return np.concatenate([np.sin(out), np.cos(out)], axis=1)


def query_positions(dim: int, queries: int) -> torch.Tensor:
    """1-D sine-cosine embedding of the learned queries' indices."""
    return torch.from_numpy(_sincos_1d(dim, np.arange(queries, dtype=np.float32))).float()


def grid_positions(dim: int, grid: int) -> torch.Tensor:
    """2-D sine-cosine embedding of a grid x grid patch grid, row-major (first half: of each patch's column
    index, second half: of its row index, as the release's meshgrid orders them), after a zero row for the
    class token."""
    gw, gh = np.meshgrid(np.arange(grid, dtype=np.float32), np.arange(grid, dtype=np.float32))
    emb = np.concatenate([_sincos_1d(dim // 2, gw), _sincos_1d(dim // 2, gh)], axis=1)
    return torch.from_numpy(np.concatenate([np.zeros([1, dim], np.float32), emb], axis=0)).float()


class _Stack(nn.Module):
    """``<name>.layers.N`` in the release's names."""

    def __init__(self, layers: list[nn.Module]) -> None:
        super().__init__()
        self.layers = nn.ModuleList(layers)


# --- vision encoder -----------------------------------------------------------------------------------------

class VisionEmbeddings(nn.Module):
    def __init__(self, c: VisionConfig) -> None:
        super().__init__()
        self.cls_token = nn.Parameter(torch.randn(1, 1, c.width))
        self.patch_embed = nn.Conv2d(3, c.width, c.patch, stride=c.patch, bias=False)
        self.position_embedding = nn.Parameter(torch.randn(1, (c.image // c.patch) ** 2 + 1, c.width))
        self.pre_layernorm = nn.LayerNorm(c.width, eps=c.eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls_token.expand(x.shape[0], 1, -1).to(x.dtype), x], 1)
        return self.pre_layernorm(x + self.position_embedding[:, :x.shape[1]].to(x.dtype))


class VisionAttention(nn.Module):
    def __init__(self, c: VisionConfig) -> None:
        super().__init__()
        self.heads = c.heads
        self.query_key_value = nn.Linear(c.width, 3 * c.width)
        self.dense = nn.Linear(c.width, c.width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        q, k, v = self.query_key_value(x).reshape(b, n, self.heads, 3, c // self.heads).permute(3, 0, 2, 1, 4)
        return self.dense(F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, n, c))


class VisionLayer(nn.Module):
    def __init__(self, c: VisionConfig) -> None:
        super().__init__()
        self.self_attn = VisionAttention(c)
        self.input_layernorm = nn.LayerNorm(c.width, eps=c.eps)
        self.mlp = nn.Module()
        self.mlp.fc1 = nn.Linear(c.width, c.mlp)
        self.mlp.fc2 = nn.Linear(c.mlp, c.width)
        self.post_attention_layernorm = nn.LayerNorm(c.width, eps=c.eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.self_attn(self.input_layernorm(x))
        h = self.mlp.fc1(self.post_attention_layernorm(x))
        return x + self.mlp.fc2(h * torch.sigmoid(1.702 * h))


class VisionModel(nn.Module):
    """RGB normalised with CLIP's mean and std (``image`` px square) -> every token, ``post_layernorm``'d."""

    def __init__(self, c: VisionConfig) -> None:
        super().__init__()
        self.embeddings = VisionEmbeddings(c)
        self.encoder = _Stack([VisionLayer(c) for _ in range(c.layers)])
        self.post_layernorm = nn.LayerNorm(c.width, eps=c.eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.embeddings(x)
        for layer in self.encoder.layers:
            x = layer(x)
        return self.post_layernorm(x)


# --- visual abstractor --------------------------------------------------------------------------------------

class AbstractorAttention(nn.Module):
    def __init__(self, c: AbstractorConfig) -> None:
        super().__init__()
        self.heads = c.heads
        self.query = nn.Linear(c.width, c.width)
        self.key = nn.Linear(c.encoder_width, c.width)
        self.value = nn.Linear(c.encoder_width, c.width)
        self.register_buffer("q_pos_embed", query_positions(c.width, c.queries), persistent=False)
        self.register_buffer("k_pos_embed", grid_positions(c.width, c.grid), persistent=False)

    def forward(self, queries: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
        """``queries`` normalised (B x Q x C), ``memory`` = [queries, image tokens] (B x (Q + T) x C)."""
        b, q_len, c = queries.shape
        pos = torch.cat([self.q_pos_embed, self.k_pos_embed]).to(queries.dtype)
        if memory.shape[1] != pos.shape[0]:
            raise ValueError(f"the abstractor's key positions cover {pos.shape[0] - q_len} image tokens, the vision "
                             f"encoder gives {memory.shape[1] - q_len}")

        def heads(t: torch.Tensor) -> torch.Tensor:
            return t.view(b, -1, self.heads, c // self.heads).transpose(1, 2)

        q = heads(self.query(queries + self.q_pos_embed.to(queries.dtype)))
        k, v = heads(self.key(memory + pos)), heads(self.value(memory))
        return F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, q_len, c)


class AbstractorMLP(nn.Module):
    def __init__(self, c: AbstractorConfig) -> None:
        super().__init__()
        self.w1 = nn.Linear(c.width, c.mlp)
        self.w2 = nn.Linear(c.mlp, c.width)
        self.w3 = nn.Linear(c.width, c.mlp)
        self.ffn_ln = nn.LayerNorm(c.mlp, eps=c.eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w2(self.ffn_ln(F.silu(self.w1(x)) * self.w3(x)))


class AbstractorOutput(nn.Module):
    def __init__(self, c: AbstractorConfig) -> None:
        super().__init__()
        self.out_proj = nn.Linear(c.width, c.width)
        self.norm2 = nn.LayerNorm(c.width)   # torch's default eps, as released
        self.mlp = AbstractorMLP(c)

    def forward(self, context: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        x = residual + self.out_proj(context)
        return x + self.mlp(self.norm2(x))


class AbstractorCrossAttention(nn.Module):
    def __init__(self, c: AbstractorConfig) -> None:
        super().__init__()
        self.attention = AbstractorAttention(c)
        self.output = AbstractorOutput(c)
        self.norm1 = nn.LayerNorm(c.width)
        self.normk = nn.LayerNorm(c.width)

    def forward(self, queries: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        q = self.norm1(queries)
        memory = torch.cat([q, self.normk(image)], 1)
        return self.output(self.attention(q, memory), q)


class AbstractorLayer(nn.Module):
    def __init__(self, c: AbstractorConfig) -> None:
        super().__init__()
        self.crossattention = AbstractorCrossAttention(c)


class VisualAbstractor(nn.Module):
    """Image tokens (B x T x C_v) -> 64 query tokens in the language width + the end token (B x 65 x C)."""

    def __init__(self, c: AbstractorConfig, language_width: int) -> None:
        super().__init__()
        self.encoder = _Stack([AbstractorLayer(c) for _ in range(c.layers)])
        self.visual_fc = nn.Linear(c.width, language_width)
        self.query_embeds = nn.Parameter(torch.randn(1, c.queries, c.width))
        self.vit_eos = nn.Parameter(torch.randn(1, 1, language_width))

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        x = self.query_embeds.expand(image.shape[0], -1, -1).to(image.dtype)
        for layer in self.encoder.layers:
            x = layer.crossattention(x, image)
        x = self.visual_fc(x)
        return torch.cat([x, self.vit_eos.expand(x.shape[0], -1, -1).to(x.dtype)], 1)


# --- the modality-adaptive LLaMA ----------------------------------------------------------------------------

class Multiway(nn.Module):
    """Two copies of a token-wise module: ``multiway.0`` for text tokens, ``multiway.1`` for image tokens."""

    def __init__(self, make) -> None:
        super().__init__()
        self.multiway = nn.ModuleList([make(), make()])

    def forward(self, x: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        """``image``: B x L booleans, True where the token is visual."""
        text = ~image
        first = self.multiway[0](x[text])
        out = first.new_empty(*x.shape[:-1], first.shape[-1])
        out[text] = first
        if image.any():
            out[image] = self.multiway[1](x[image])
        return out


class ModalityAttention(nn.Module):
    def __init__(self, cfg: Any) -> None:
        super().__init__()
        from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding

        d, h, kv = cfg.hidden_size, cfg.num_attention_heads, cfg.num_key_value_heads
        self.heads, self.kv_heads, self.head_dim = h, kv, d // h
        self.q_proj = nn.Linear(d, h * self.head_dim, bias=False)
        self.k_proj = Multiway(lambda: nn.Linear(d, kv * self.head_dim, bias=False))
        self.v_proj = Multiway(lambda: nn.Linear(d, kv * self.head_dim, bias=False))
        self.o_proj = nn.Linear(h * self.head_dim, d, bias=False)
        self.rotary_emb = LlamaRotaryEmbedding(config=cfg)

    def forward(self, x: torch.Tensor, image: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        from transformers.models.llama.modeling_llama import apply_rotary_pos_emb

        b, n, _ = x.shape
        q = self.q_proj(x).view(b, n, self.heads, self.head_dim).transpose(1, 2)
        k = self.k_proj(x, image).view(b, n, self.kv_heads, self.head_dim).transpose(1, 2)
        v = self.v_proj(x, image).view(b, n, self.kv_heads, self.head_dim).transpose(1, 2)
        cos, sin = self.rotary_emb(v, positions)
        q, k = apply_rotary_pos_emb(q, k, cos, sin)
        if self.kv_heads != self.heads:
            k = k.repeat_interleave(self.heads // self.kv_heads, dim=1)
            v = v.repeat_interleave(self.heads // self.kv_heads, dim=1)
        a = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.o_proj(a.transpose(1, 2).reshape(b, n, -1))


class DecoderLayer(nn.Module):
    def __init__(self, cfg: Any) -> None:
        super().__init__()
        from transformers.models.llama.modeling_llama import LlamaMLP, LlamaRMSNorm

        self.self_attn = ModalityAttention(cfg)
        self.mlp = LlamaMLP(cfg)
        self.input_layernorm = Multiway(lambda: LlamaRMSNorm(cfg.hidden_size, eps=cfg.rms_norm_eps))
        self.post_attention_layernorm = Multiway(lambda: LlamaRMSNorm(cfg.hidden_size, eps=cfg.rms_norm_eps))

    def forward(self, x: torch.Tensor, image: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        x = x + self.self_attn(self.input_layernorm(x, image), image, positions)
        return x + self.mlp(self.post_attention_layernorm(x, image))


class OwlModel(nn.Module):
    """``model.*``: token embedding, decoder layers, final RMSNorm, and the two visual parts."""

    def __init__(self, cfg: Any, vision: VisionConfig, abstractor: AbstractorConfig) -> None:
        super().__init__()
        from transformers.models.llama.modeling_llama import LlamaRMSNorm

        self.embed_tokens = nn.Embedding(cfg.vocab_size, cfg.hidden_size)
        self.layers = nn.ModuleList(DecoderLayer(cfg) for _ in range(cfg.num_hidden_layers))
        self.norm = LlamaRMSNorm(cfg.hidden_size, eps=cfg.rms_norm_eps)
        self.vision_model = VisionModel(vision)
        self.visual_abstractor = VisualAbstractor(abstractor, cfg.hidden_size)


class MPLUGOwl2(nn.Module):
    """The whole checkpoint (``model.*`` + ``lm_head``). :meth:`last_logits` runs one prompt with one image
    per row and returns the next-token logits of the given vocabulary ids at the prompt's end."""

    def __init__(self, cfg: Any, vision: VisionConfig = VisionConfig(),
                 abstractor: AbstractorConfig = AbstractorConfig()) -> None:
        super().__init__()
        self.config, self.vision, self.abstractor = cfg, vision, abstractor
        self.model = OwlModel(cfg, vision, abstractor)
        self.lm_head = nn.Linear(cfg.hidden_size, cfg.vocab_size, bias=False)

    @staticmethod
    def computed_tables(cfg: Any, vision: VisionConfig, abstractor: AbstractorConfig) -> dict[str, torch.Tensor]:
        """The tables the network computes rather than learns (on the CPU): the abstractor's query and key
        positions, the rotary inverse frequencies."""
        from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding

        with torch.device("cpu"):
            inv_freq = LlamaRotaryEmbedding(config=cfg).inv_freq
        return {"q_pos_embed": query_positions(abstractor.width, abstractor.queries),
                "k_pos_embed": grid_positions(abstractor.width, abstractor.grid), "inv_freq": inv_freq}

    def set_tables(self, tables: dict[str, torch.Tensor]) -> None:
        """Put :meth:`computed_tables` in place (after a build on the meta device)."""
        from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding

        for m in self.modules():
            if isinstance(m, AbstractorAttention):
                m.q_pos_embed, m.k_pos_embed = tables["q_pos_embed"].clone(), tables["k_pos_embed"].clone()
            elif isinstance(m, LlamaRotaryEmbedding):
                m.inv_freq, m.original_inv_freq = tables["inv_freq"].clone(), tables["inv_freq"].clone()

    def visual_tokens(self, pixels: torch.Tensor) -> torch.Tensor:
        """CLIP-normalised images (B x 3 x S x S) -> B x 65 x hidden."""
        return self.model.visual_abstractor(self.model.vision_model(pixels))

    def last_logits(self, pixels: torch.Tensor, before: torch.Tensor, after: torch.Tensor,
                    ids: torch.Tensor) -> torch.Tensor:
        """Token ids ``before`` and ``after`` the image (1-D), the image's tokens in between: logits of ``ids``
        for the token that follows, B x len(ids)."""
        vis = self.visual_tokens(pixels)
        b = vis.shape[0]
        emb = self.model.embed_tokens
        x = torch.cat([emb(before).expand(b, -1, -1).to(vis.dtype), vis, emb(after).expand(b, -1, -1).to(vis.dtype)], 1)
        image = torch.zeros(b, x.shape[1], dtype=torch.bool, device=x.device)
        image[:, len(before):len(before) + vis.shape[1]] = True
        positions = torch.arange(x.shape[1], device=x.device)[None].expand(b, -1)
        for layer in self.model.layers:
            x = layer(x, image, positions)
        h = self.model.norm(x[:, -1])
        return F.linear(h, self.lm_head.weight[ids])


def llama_config(**kw: Any):
    """transformers' LlamaConfig with Q-Align's language settings (LLaMA-2-7B) unless given (the class as the
    Llama modelling module holds it: OneAlign's own code, imported in the tests, rebinds the configuration
    module's name to its subclass)."""
    from transformers.models.llama.modeling_llama import LlamaConfig

    base = dict(vocab_size=32000, hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
                num_attention_heads=32, num_key_value_heads=32, hidden_act="silu", max_position_embeddings=4096,
                rms_norm_eps=1e-5, rope_theta=10000.0, attention_bias=False, mlp_bias=False)
    base.update(kw)
    return LlamaConfig(**base)
