"""Attentive probes: a learned query cross-attends to frozen encoder tokens, then a linear head.

Both official flavours (`src/models/attentive_pooler.py` and `src/models/utils/modules.py` of
facebookresearch/jepa and facebookresearch/vjepa2):
- "vjepa2": depth - 1 self-attention blocks over the tokens, then one cross-attention block (no output projection
  in the cross-attention). V-JEPA 2's probes have depth 4 and 16 heads (vjepa2 `configs/eval/vitl/ssv2.yaml`:
  classifier.num_probe_blocks, num_heads).
- "vjepa":  one cross-attention block (with an output projection `proj`), then depth - 1 self-attention blocks
  over the queries. V-JEPA's probes have depth 1.
The cross-attention block normalises the tokens (keys and values), never the queries: q += xattn(q, LN1(x)), then
q += MLP(LN2(q)). Parameter names follow the official state dict (`pooler.query_tokens`,
`pooler.cross_attention_block.{norm1,xattn.q,xattn.kv,xattn.proj,norm2,mlp.fc1,mlp.fc2}`, `pooler.blocks_{i}`,
`linear`). LayerNorms use torch's default eps 1e-5, as the official probes are built.
"""

from typing import Literal

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jepa_jax.models import attention as attention_lib, posemb, vit

Flavour = Literal["vjepa", "vjepa2"]
FLAVOURS = ("vjepa", "vjepa2")
FEATURES = ("encoder", "pixels")
PROBE_LN_EPS = 1e-5


class CrossAttention(nn.Module):
    """queries [B, Q, D] attend to tokens [B, N, D] -> [B, Q, D]; `q` and `kv` projections, `proj` if use_proj."""
    num_heads: int
    use_proj: bool
    proj_std: float = 0.02
    attention: attention_lib.Implementation = "auto"

    @nn.compact
    def __call__(self, queries, tokens):
        width = queries.shape[-1]
        head_dim = width // self.num_heads
        q = vit.dense((self.num_heads, head_dim), ("embed", "heads", "kv"), "q")(queries)
        kv = vit.dense((2, self.num_heads, head_dim), ("embed", None, "heads", "kv"), "kv")(tokens)
        out = attention_lib.dot_product_attention(q, kv[:, :, 0], kv[:, :, 1], None, self.attention)
        if self.use_proj:
            return vit.dense(width, ("heads", "kv", "embed"), "proj", num_in=2, std=self.proj_std)(out)
        return out.reshape(out.shape[:2] + (width,))


class CrossAttentionBlock(nn.Module):
    """q + xattn(q, LN1(tokens)), then + MLP(LN2(q)): queries [B, Q, D], tokens [B, N, D] -> [B, Q, D]."""
    num_heads: int
    mlp_dim: int
    use_proj: bool
    proj_std: float = 0.02
    fc2_std: float = 0.02
    attention: attention_lib.Implementation = "auto"

    @nn.compact
    def __call__(self, queries, tokens):
        normed = vit.layer_norm("norm1", epsilon=PROBE_LN_EPS)(tokens)
        queries = queries + CrossAttention(self.num_heads, self.use_proj, self.proj_std, self.attention,
                                           name="xattn")(queries, normed)
        mlp = vit.Mlp(self.mlp_dim, self.fc2_std, name="mlp")
        return queries + mlp(vit.layer_norm("norm2", epsilon=PROBE_LN_EPS)(queries))


class AttentivePooler(nn.Module):
    """tokens [B, N, D] -> [B, num_queries, D]."""
    num_queries: int = 1
    depth: int = 1
    num_heads: int = 16
    mlp_ratio: float = 4.0
    flavour: Flavour = "vjepa2"
    attention: attention_lib.Implementation = "auto"

    @nn.compact
    def __call__(self, tokens):
        width = tokens.shape[-1]
        queries = self.param("query_tokens", nn.with_logical_partitioning(vit.trunc_normal(), (None, None, "embed")),
                             (1, self.num_queries, width))
        queries = jnp.broadcast_to(queries.astype(tokens.dtype), (tokens.shape[0],) + queries.shape[1:])
        mlp_dim = int(width * self.mlp_ratio)
        extra = [dict(num_heads=self.num_heads, mlp_dim=mlp_dim, attention=self.attention, name=f"blocks_{layer}")
                 for layer in range(self.depth - 1)]
        if self.flavour == "vjepa2":
            for layer, block in enumerate(extra):
                tokens = vit.Block(**block, residual_std=0.02 / (2.0 * (layer + 1)) ** 0.5)(tokens)
            cross_std = 0.02 / (2.0 * max(self.depth - 1, 1)) ** 0.5
            return CrossAttentionBlock(self.num_heads, mlp_dim, use_proj=False, fc2_std=cross_std,
                                       attention=self.attention, name="cross_attention_block")(queries, tokens)
        queries = CrossAttentionBlock(self.num_heads, mlp_dim, use_proj=True, proj_std=0.02 / 2 ** 0.5,
                                      fc2_std=0.02 / 2 ** 0.5, attention=self.attention,
                                      name="cross_attention_block")(queries, tokens)
        for layer, block in enumerate(extra):  # extra block l (1-based): residual weights / sqrt(2 (l + 1))
            queries = vit.Block(**block, residual_std=0.02 / (2.0 * (layer + 2)) ** 0.5)(queries)
        return queries


class AttentiveProbe(nn.Module):
    """tokens [B, N, D] -> outputs [B, num_outputs] (class logits, or regression targets): AttentivePooler with one
    query, then `linear`.

    positions: None (the official probes), or the (T', H', W') token grid, whose fixed 3D sin-cos embedding is added
    to the tokens first (to each of several encoder layers' tokens alike, frozen_tokens' out_layers). The official
    pooler sees no positions, so it can only read where something is from what the tokens themselves encode; an
    encoder with RoPE keeps positions out of its tokens (they enter only the attention scores), and pixels carry
    none.
    """
    num_outputs: int
    depth: int = 1
    num_heads: int = 16
    mlp_ratio: float = 4.0
    flavour: Flavour = "vjepa2"
    attention: attention_lib.Implementation = "auto"
    positions: tuple[int, int, int] | None = None

    @nn.compact
    def __call__(self, tokens):
        if self.positions is not None:  # the same table for every encoder layer's tokens (frozen_tokens' out_layers)
            table = posemb.sincos_3d(tokens.shape[-1], self.positions)
            tokens = tokens + jnp.asarray(np.tile(table, (-(-tokens.shape[1] // len(table)), 1)), tokens.dtype)
        pooled = AttentivePooler(1, self.depth, self.num_heads, self.mlp_ratio, self.flavour, self.attention,
                                 name="pooler")(tokens)[:, 0]
        return vit.dense(self.num_outputs, ("embed", None), "linear")(pooled)


def frozen_tokens(encoder: vit.VisionTransformer, encoder_params, video, features: str = "encoder",
                  segments: int = 1, out_layers: tuple[int, ...] = ()):
    """The tokens a probe reads from uint8 clips [B, S T, H, W, C] of S segments (clips of T frames, concatenated in
    time), normalised as in training: each segment through the frozen encoder (no gradient flows back), its
    tokens concatenated along the token axis, [B, S N, D] (the official `attend_across_segments`); or for
    features="pixels" each tubelet's pixels [B, S N, t * p * p * C]. out_layers: the normalised outputs of these
    encoder blocks (VisionTransformer), layer-major: [B, L S N, D]."""
    batch, frames = video.shape[:2]
    if frames % segments:
        raise ValueError(f"{frames} frames do not split into {segments} segments")
    clips = vit.normalize_video(video).reshape((batch * segments, frames // segments) + video.shape[2:])
    if features == "pixels":
        tokens = vit.patchify(clips, encoder.patch_size, encoder.tubelet_size)
    else:
        tokens = jax.lax.stop_gradient(encoder.apply({"params": encoder_params}, clips, out_layers=out_layers))
    layers = max(len(out_layers), 1) if features != "pixels" else 1
    tokens = tokens.reshape((batch, segments, layers, -1, tokens.shape[-1])).swapaxes(1, 2)
    return tokens.reshape((batch, -1, tokens.shape[-1]))
