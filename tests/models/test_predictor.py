"""Predictor shapes, official parameter counts and mask-token behaviour."""

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jepa_jax.models import predictor as predictor_lib


def count(tree) -> int:
    return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(nn.meta.unbox(tree)))


def abstract_init(model, kc=6, kt=10, grid=(8, 14, 14), dim=1024):
    args = (jax.ShapeDtypeStruct((1, kc, dim), jnp.float32), jax.ShapeDtypeStruct((1, kc), jnp.int32),
            jax.ShapeDtypeStruct((1, kt), jnp.int32))
    return jax.eval_shape(lambda *a: model.init(jax.random.key(0), *a, grid), *args)


@pytest.mark.parametrize("embed_dim,heads,mask_tokens,pos,expected", [
    (1024, 16, 2, "sincos", 22_082_944),   # V-JEPA ViT-L predictor
    (1280, 16, 2, "sincos", 22_279_808),   # V-JEPA ViT-H predictor
    (1408, 12, 10, "rope", 22_381_312),    # V-JEPA 2 ViT-g predictor (10 mask tokens)
])
def test_official_parameter_counts(embed_dim, heads, mask_tokens, pos, expected):
    model = predictor_lib.Predictor(embed_dim=embed_dim, num_heads=heads, num_mask_tokens=mask_tokens,
                                    pos_embedding=pos)
    assert count(abstract_init(model, dim=embed_dim)) == expected


@pytest.mark.parametrize("pos", ["sincos", "rope"])
def test_output_shape_and_mask_token_choice(pos):
    model = predictor_lib.Predictor(embed_dim=32, width=16, depth=1, num_heads=2, num_mask_tokens=2,
                                    pos_embedding=pos)
    grid = (2, 3, 3)
    context = jax.random.normal(jax.random.key(0), (2, 4, 32))
    ctx_idx = jnp.asarray([[0, 1, 2, 3], [5, 6, 7, 8]])
    tgt_idx = jnp.asarray([[9, 10, 17], [0, 1, 2]])
    params = nn.meta.unbox(model.init(jax.random.key(1), context, ctx_idx, tgt_idx, grid))
    out = model.apply(params, context, ctx_idx, tgt_idx, grid)
    chex.assert_shape(out, (2, 3, 32))
    # Zero-initialised mask tokens: both indices agree until the tokens differ.
    np.testing.assert_allclose(model.apply(params, context, ctx_idx, tgt_idx, grid, mask_index=1), out, atol=1e-6)
    params["params"]["mask_tokens"] = params["params"]["mask_tokens"].at[1].set(jnp.linspace(-1.0, 1.0, 16))
    assert not np.allclose(model.apply(params, context, ctx_idx, tgt_idx, grid, mask_index=1), out, atol=1e-3)
    # Predictions follow their targets when the target order is permuted, and change when targets move
    # (weights scaled up so attention is not uniform, as it nearly is at init).
    params = jax.tree.map(lambda p: p * 30.0, params)
    out = model.apply(params, context, ctx_idx, tgt_idx, grid, mask_index=1)
    np.testing.assert_allclose(model.apply(params, context, ctx_idx, tgt_idx[:, ::-1], grid, mask_index=1)[:, ::-1],
                               out, atol=1e-4)
    moved = model.apply(params, context, ctx_idx, tgt_idx + 9, grid, mask_index=1)
    assert np.abs(moved - out).max() > 1e-2
