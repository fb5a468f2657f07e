"""Masked-token predictor: a narrow ViT that predicts target-token features from context tokens.

Layout follows the official `VisionTransformerPredictor`: `predictor_embed` (D -> Dp), learned `mask_tokens`
[num_mask_tokens, Dp] (official: one (1, 1, Dp) tensor per token), `predictor_blocks_{i}`, `predictor_norm`,
`predictor_proj` (Dp -> D). Positions enter as additive sin-cos (V-JEPA) or through 3D RoPE (V-JEPA 2).
"""

import flax.linen as nn
import jax.numpy as jnp

from jepa_jax.models import attention as attention_lib, posemb, vit


class Predictor(nn.Module):
    """context tokens [B, Kc, D] + context/target indices -> predicted target features [B, Kt, D] (or [B, Kt, out_dim],
    e.g. pixels: models/pixel_decoder.py)."""
    embed_dim: int            # encoder width D (the output width unless out_dim)
    width: int = 384          # predictor width Dp
    depth: int = 12
    num_heads: int = 12
    mlp_ratio: float = 4.0
    num_mask_tokens: int = 2
    pos_embedding: vit.PosEmbedding = "rope"
    rope_pairing: posemb.RopePairing = "repeat"
    uniform_power: bool = True
    remat: str = "none"  # a name in vit.REMAT_POLICIES
    attention: attention_lib.Implementation = "auto"
    dtype: str = "float32"  # compute dtype (bfloat16: mixed precision; parameters stay float32)
    scan: bool = False  # blocks as one lax.scan (vit.transformer_blocks); the weights' layout is the same
    out_dim: int = 0  # output width; 0: embed_dim

    @nn.compact
    def __call__(self, context, context_idx, target_idx, grid: tuple[int, int, int], mask_index: int = 0):
        """Predict the target tokens.

        Args:
          context: [B, Kc, D] context-encoder outputs.
          context_idx: [B, Kc] flat token indices of the context tokens.
          target_idx: [B, Kt] flat token indices to predict.
          grid: (T', H', W') token grid of the clip.
          mask_index: which learned mask token to use (V-JEPA: one per mask config).

        Returns:
          [B, Kt, out_dim or D] predictions, in `dtype`.
        """
        batch, num_targets = target_idx.shape
        x = vit.dense(self.width, ("embed", "mlp"), "predictor_embed")(context.astype(self.dtype))
        mask_tokens = self.param("mask_tokens", nn.with_logical_partitioning(nn.initializers.zeros, (None, "embed")),
                                 (self.num_mask_tokens, self.width))
        queries = jnp.broadcast_to(mask_tokens[mask_index % self.num_mask_tokens].astype(x.dtype),
                                   (batch, num_targets, self.width))
        if self.pos_embedding == "sincos":
            table = jnp.asarray(posemb.sincos_3d(self.width, grid, self.uniform_power), x.dtype)
            x = x + table[context_idx]
            queries = queries + table[target_idx]
        x = jnp.concatenate([x, queries], axis=1)
        coords = posemb.token_coordinates(jnp.concatenate([context_idx, target_idx], axis=1), grid)
        x = vit.transformer_blocks(self, x, coords, prefix="predictor_blocks", depth=self.depth,
                                   num_heads=self.num_heads, mlp_dim=int(self.width * self.mlp_ratio),
                                   rope=self.pos_embedding == "rope", rope_pairing=self.rope_pairing,
                                   remat=self.remat, attention=self.attention, scan=self.scan)
        x = vit.layer_norm("predictor_norm", x.dtype)(x[:, -num_targets:])
        return vit.dense(self.out_dim or self.embed_dim, ("mlp", "embed"), "predictor_proj")(x)
