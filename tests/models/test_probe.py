"""Attentive probes: shapes of both official flavours, what is normalised (tokens, not queries), and the probe
grid's optimizer (every member trains as it would alone)."""

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jepa_jax.models import posemb, probe, vit
from jepa_jax.train import optim

TOKENS = jax.random.normal(jax.random.key(0), (3, 20, 32)) * 3.0 + 1.0  # [B, N, D], far from normalised


@pytest.mark.parametrize("flavour,depth,blocks", [("vjepa2", 4, 3), ("vjepa", 2, 1), ("vjepa", 1, 0)])
def test_pooler_and_probe_shapes(flavour, depth, blocks):
    pooler = probe.AttentivePooler(num_queries=3, depth=depth, num_heads=4, flavour=flavour)
    params = pooler.init(jax.random.key(1), TOKENS)["params"]
    chex.assert_shape(pooler.apply({"params": params}, TOKENS), (3, 3, 32))
    assert sorted(params) == sorted([f"blocks_{i}" for i in range(blocks)] + ["cross_attention_block",
                                                                                "query_tokens"])
    assert ("proj" in params["cross_attention_block"]["xattn"]) == (flavour == "vjepa")
    head = probe.AttentiveProbe(num_outputs=7, depth=depth, num_heads=4, flavour=flavour)
    chex.assert_shape(head.apply(head.init(jax.random.key(1), TOKENS), TOKENS), (3, 7))


def layer_norm(x, eps=probe.PROBE_LN_EPS):
    x = np.asarray(x, np.float64)
    return (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + eps)


def test_keys_and_values_are_normalised_and_queries_are_not():
    """The q projection sees the raw query tokens; the kv projection sees LayerNorm(tokens) (numpy reference)."""
    pooler = probe.AttentivePooler(num_queries=2, depth=1, num_heads=4, flavour="vjepa2")
    params = nn.meta.unbox(pooler.init(jax.random.key(2), TOKENS)["params"])
    params["query_tokens"] = params["query_tokens"] * 5.0 + 2.0  # far from normalised too
    _, state = pooler.apply({"params": params}, TOKENS, capture_intermediates=True)
    block = params["cross_attention_block"]
    captured = state["intermediates"]["cross_attention_block"]["xattn"]
    queries = np.broadcast_to(params["query_tokens"], (3, 2, 32))
    expected_q = np.einsum("bqd,dhk->bqhk", queries, block["xattn"]["q"]["kernel"]) + block["xattn"]["q"]["bias"]
    np.testing.assert_allclose(captured["q"]["__call__"][0], expected_q, atol=1e-4)
    expected_kv = (np.einsum("bnd,dthk->bnthk", layer_norm(TOKENS), block["xattn"]["kv"]["kernel"])
                   + block["xattn"]["kv"]["bias"])
    np.testing.assert_allclose(captured["kv"]["__call__"][0], expected_kv, atol=1e-4)


def test_every_grid_member_trains_as_it_would_alone():
    """Three (lr, wd) members from the same initial weights, trained together for 5 steps, end where each member
    trained alone ends (to float rounding of the batched matmuls, which Adam's first steps amplify to ~1e-6; a
    member given another's rate or decay is off by ~1e-3)."""
    head = probe.AttentiveProbe(num_outputs=4, depth=2, num_heads=4, flavour="vjepa2")
    start = nn.meta.unbox(head.init(jax.random.key(3), TOKENS)["params"])
    labels = jnp.array([0, 3, 1])
    grid = [(5e-3, 0.01), (1e-3, 0.4), (1e-4, 0.8)]

    def train(members):
        tx = optim.grid_adamw([lr for lr, _ in members], [wd for _, wd in members], total_steps=5)
        params = jax.tree.map(lambda x: jnp.stack([x] * len(members)), start)
        state = tx.init(params)

        def loss(params):  # the members' losses summed: each member's gradient is its own loss's
            logits = jax.vmap(lambda p: head.apply({"params": p}, TOKENS))(params)
            return optax.softmax_cross_entropy_with_integer_labels(logits, labels[None]).mean(-1).sum()

        for _ in range(5):
            updates, state = tx.update(jax.grad(loss)(params), state, params)
            params = optax.apply_updates(params, updates)
        return params

    together = train(grid)
    for index, member in enumerate(grid):
        alone = train([member])
        jax.tree.map(lambda t, a: np.testing.assert_allclose(t[index], a[0], atol=1e-5), together, alone)
    moved = [float(jnp.abs(together["linear"]["kernel"][i] - start["linear"]["kernel"]).max()) for i in range(3)]
    assert moved[0] > moved[1] > moved[2] > 0  # larger rates move further: the members really differ


def test_grid_needs_one_rate_per_decay():
    with pytest.raises(ValueError, match="probe grid: 2 learning rates and 3 weight decays"):
        optim.grid_adamw([1e-3, 1e-4], [0.1, 0.2, 0.3], total_steps=10)


def test_positions_add_the_token_grids_sincos_table():
    """positions=(T', H', W') equals the official probe (positions None) given tokens + the 3D sin-cos table."""
    grid = (2, 2, 5)  # 20 tokens
    with_positions = probe.AttentiveProbe(num_outputs=3, num_heads=4, positions=grid)
    plain = probe.AttentiveProbe(num_outputs=3, num_heads=4)
    params = plain.init(jax.random.key(4), TOKENS)
    table = jnp.asarray(posemb.sincos_3d(32, grid))
    np.testing.assert_allclose(with_positions.apply(params, TOKENS), plain.apply(params, TOKENS + table), atol=1e-6)
    assert not np.allclose(with_positions.apply(params, TOKENS), plain.apply(params, TOKENS), atol=1e-3)


def test_positions_are_added_alike_to_every_encoder_layers_tokens():
    grid = (2, 2, 5)  # 20 tokens per layer; 2 layers
    with_positions = probe.AttentiveProbe(num_outputs=3, num_heads=4, positions=grid)
    plain = probe.AttentiveProbe(num_outputs=3, num_heads=4)
    tokens = jnp.concatenate([TOKENS, TOKENS[::-1] * 0.5], axis=1)
    params = plain.init(jax.random.key(4), tokens)
    table = jnp.asarray(posemb.sincos_3d(32, grid))
    np.testing.assert_allclose(with_positions.apply(params, tokens),
                               plain.apply(params, tokens + jnp.concatenate([table, table])), atol=1e-6)


def test_frozen_tokens_of_several_layers_are_layer_major_then_segment_major():
    encoder = vit.VisionTransformer(size=vit.ViTSize(32, 2, 2, 64), patch_size=8, tubelet_size=2)
    video = np.random.default_rng(0).integers(0, 256, (2, 8, 16, 16, 3), dtype=np.uint8)  # 2 segments of 4 frames
    params = encoder.init(jax.random.key(0), video[:, :4].astype(np.float32))["params"]
    tokens = probe.frozen_tokens(encoder, params, video, segments=2, out_layers=(0, 1))
    expected = [encoder.apply({"params": params}, vit.normalize_video(video[:, s * 4:(s + 1) * 4]),
                              out_layers=(layer,)) for layer in (0, 1) for s in range(2)]
    np.testing.assert_allclose(tokens, np.concatenate(expected, axis=1), atol=1e-5)
