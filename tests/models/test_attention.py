"""Attention kernels: the blocked path equals the XLA one (values and gradients), the choice by backend, and the
model.attention switch reaching every block."""

import contextlib

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jepa_jax import config as config_lib, parallel
from jepa_jax.models import attention, vit


def reference_attention(q, k, v, mask):
    """Plain numpy softmax attention: q [B, N, h, Dh], k/v [B, M, h, Dh], mask [B, 1|h, N, M] or None."""
    q, k, v = (np.asarray(x, np.float64) for x in (q, k, v))
    scores = np.einsum("bnhd,bmhd->bhnm", q, k) / np.sqrt(q.shape[-1])
    if mask is not None:
        scores = np.where(np.asarray(mask), scores, -np.inf)
    weights = np.exp(scores - scores.max(-1, keepdims=True))
    weights /= weights.sum(-1, keepdims=True)
    return np.einsum("bhnm,bmhd->bnhd", weights, v)


@pytest.fixture(name="small_blocks")
def small_blocks_fixture(monkeypatch):
    monkeypatch.setattr(attention, "QUERY_BLOCK", 16)  # 37 queries: 3 blocks of 13, 2 padded rows
    monkeypatch.setattr(attention, "SCORES_PER_TILE", 2 * 2 * 13 * 45)  # 2 clips x 2 heads x 13 queries x 45 keys


def test_tiles_group_heads_under_the_score_budget(small_blocks):
    assert attention._tile_sizes(2, 4, 37, 45) == (2, 3, 13)  # pylint: disable=protected-access
    assert attention._tile_sizes(2, 3, 37, 45) == (1, 3, 13)  # pylint: disable=protected-access
    assert attention._tile_sizes(8, 4, 37, 45) == (1, 3, 13)  # pylint: disable=protected-access  (over budget: 1)


@pytest.mark.parametrize("masked", ["none", "one_head", "per_head"])
def test_blocked_attention_matches_the_reference_and_xla_with_gradients(small_blocks, masked):
    rng = np.random.default_rng(0)
    q = jnp.asarray(rng.normal(size=(2, 37, 4, 8)), jnp.float32)  # tiles: 2 groups of 2 heads x 3 query blocks
    k, v = (jnp.asarray(rng.normal(size=(2, 45, 4, 8)), jnp.float32) for _ in range(2))  # 8 cached keys too
    mask = None
    if masked == "one_head":  # causal over the 45 keys (the first 8 always visible), [1, 1, N, M] as the AC predictor's
        mask = jnp.asarray(np.arange(45)[None, :] <= np.arange(37)[:, None] + 8)[None, None]
    elif masked == "per_head":  # a different random mask per clip and head (every query sees key 0)
        mask = jnp.asarray(rng.random((2, 4, 37, 45)) < 0.5).at[..., 0].set(True)
    blocked = attention.dot_product_attention(q, k, v, mask, "blocked")
    chex.assert_shape(blocked, (2, 37, 4, 8))
    np.testing.assert_allclose(blocked, reference_attention(q, k, v, mask), atol=1e-5)
    loss = lambda kind: lambda *qkv: jnp.sum(jnp.sin(attention.dot_product_attention(*qkv, mask, kind)))
    grads = jax.grad(loss("blocked"), argnums=(0, 1, 2))(q, k, v)
    expected = jax.grad(loss("xla"), argnums=(0, 1, 2))(q, k, v)
    for got, want in zip(grads, expected):
        np.testing.assert_allclose(got, want, atol=1e-5)


@pytest.mark.parametrize("on_mesh", [False, True])
def test_splash_attention_matches_the_reference_with_gradients(on_mesh):
    """The TPU kernel run by Pallas's interpreter: 150 queries and 200 keys (padded to 256, the padded keys masked
    out); on_mesh: jitted on a (data 2, fsdp 2, tensor 2) mesh, the kernel under shard_map over batch and heads."""
    rng = np.random.default_rng(2)
    q = jnp.asarray(rng.normal(size=(4, 150, 2, 16)), jnp.float32)
    k, v = (jnp.asarray(rng.normal(size=(4, 200, 2, 16)), jnp.float32) for _ in range(2))
    splash = lambda *qkv: attention._splash(*qkv, interpret=True)  # pylint: disable=protected-access
    loss = lambda kernel: lambda *qkv: jnp.sum(jnp.sin(kernel(*qkv)))
    if on_mesh:
        mesh = parallel.make_mesh({"data": 2, "fsdp": 2, "tensor": 2})
        sharded = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec(("data", "fsdp"), None, "tensor"))
        q, k, v = (jax.device_put(x, sharded) for x in (q, k, v))
    with (parallel.on_mesh(mesh) if on_mesh else contextlib.nullcontext()):
        out = jax.jit(splash)(q, k, v)
        grads = jax.jit(jax.grad(loss(splash), argnums=(0, 1, 2)))(q, k, v)
    chex.assert_shape(out, (4, 150, 2, 16))
    np.testing.assert_allclose(out, reference_attention(q, k, v, None), atol=1e-5)
    expected = jax.grad(loss(lambda *qkv: attention.dot_product_attention(*qkv, None, "xla")), argnums=(0, 1, 2))
    for got, want in zip(grads, expected(q, k, v)):
        np.testing.assert_allclose(got, want, atol=1e-5)


def test_auto_blocks_on_cpu_and_cudnn_falls_back_with_a_warning(monkeypatch):
    assert jax.default_backend() == "cpu"
    assert attention.resolve("auto", jnp.float32) == "blocked"
    assert attention.resolve("xla", jnp.float32) == "xla"
    warnings = []
    monkeypatch.setattr(attention.logging, "warning", warnings.append)
    attention._warn_once.cache_clear()  # pylint: disable=protected-access
    assert attention.resolve("cudnn", jnp.bfloat16) == "blocked"
    assert attention.resolve("cudnn", jnp.bfloat16) == "blocked"
    assert warnings == ["model.attention='cudnn' needs a GPU and bf16/fp16 inputs (here: cpu, bfloat16); using "
                        "'blocked'"]  # once
    config = config_lib.load("experiments/configs/tiny_world.py")
    config.model.update(attention="cudnn", dtype="bfloat16")
    config_lib.validate(config)  # falls back when the step runs
    config.model.attention_strict = True
    with pytest.raises(ValueError, match=r"^config.model.attention='cudnn' needs a GPU and bf16/fp16 inputs \(here: "
                                         r"cpu, bfloat16\), and config.model.attention_strict=True: choose another"):
        config_lib.validate(config)
    assert attention.resolve("splash", jnp.float32) == "blocked"
    assert warnings[-1] == "model.attention='splash' needs a TPU (here: cpu); using 'blocked'"
    with pytest.raises(ValueError, match=r"model.attention='flash': choose one of \['auto', 'xla', 'blocked', "):
        attention.resolve("flash", jnp.float32)


def test_model_attention_switch_reaches_every_block(small_blocks, monkeypatch, smoke_config):
    calls = []
    blocked = attention._blocked  # pylint: disable=protected-access
    monkeypatch.setattr(attention, "_blocked", lambda *args: calls.append(1) or blocked(*args))
    video = jnp.asarray(np.random.default_rng(1).normal(size=(1, 4, 32, 32, 3)), jnp.float32)  # 2 x 4 x 4 tokens
    outputs = {}
    for kind in ("xla", "blocked"):
        smoke_config.model.update(attention=kind, patch_size=8)
        encoder = config_lib.build_encoder(smoke_config)
        params = encoder.init(jax.random.key(0), video)
        calls.clear()
        outputs[kind] = encoder.apply(params, video)
        assert len(calls) == (vit.get_size(encoder.size).depth if kind == "blocked" else 0)
    np.testing.assert_allclose(outputs["blocked"], outputs["xla"], atol=1e-5)


def test_unknown_attention_is_a_config_error(smoke_config):
    smoke_config.model.attention = "flash"
    with pytest.raises(ValueError, match=r"config.model.attention='flash' is not valid: choose one of"):
        config_lib.validate(smoke_config)
