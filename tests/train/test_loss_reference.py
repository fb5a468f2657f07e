"""The whole JEPA loss of one train step against an independent numpy computation (no torch).

A tiny sin-cos ViT (one block, width 12) and predictor (one block, width 8): patch embedding, blocks, target
normalisation, predictor, gathered L1 per mask config, and SIGReg over the context embeddings are written here in
float64 numpy from the config and the parameters. Only SIGReg's random slice directions come from jax.random, drawn
as the step draws them (they are an input, not something under test).
"""

import math

import flax.linen as nn
import jax
import numpy as np

from jepa_jax import parallel
from jepa_jax.data import pipeline
from jepa_jax.train import loop

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406])
IMAGENET_STD = np.array([0.229, 0.224, 0.225])
_erf = np.vectorize(math.erf)


def layer_norm(x, p=None, eps=1e-6):
    """LayerNorm over the last axis; without `p` (no affine) as the target normalisation."""
    y = (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + eps)
    return y if p is None else y * p["scale"] + p["bias"]


def dense(p, x):
    return x @ p["kernel"] + p["bias"]


def attention(p, x, num_heads):
    """Fused qkv [D, 3, h, Dh], softmax(q k / sqrt(Dh)) v, proj [h, Dh, D]."""
    qkv = np.einsum("bnd,dshk->bnshk", x, p["qkv"]["kernel"]) + p["qkv"]["bias"]
    q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]
    logits = np.einsum("bqhd,bkhd->bhqk", q, k) / math.sqrt(q.shape[-1])
    weights = np.exp(logits - logits.max(-1, keepdims=True))
    weights /= weights.sum(-1, keepdims=True)
    out = np.einsum("bhqk,bkhd->bqhd", weights, v)
    return np.einsum("bqhd,hdo->bqo", out, p["proj"]["kernel"]) + p["proj"]["bias"]


def block(p, x, num_heads):
    """Pre-LN block with the exact (erf) GELU."""
    x = x + attention(p["attn"], layer_norm(x, p["norm1"]), num_heads)
    h = dense(p["mlp"]["fc1"], layer_norm(x, p["norm2"]))
    return x + dense(p["mlp"]["fc2"], 0.5 * h * (1.0 + _erf(h / math.sqrt(2.0))))


def sincos_table(dim, grid):
    """V-JEPA's 3D table (uniform power): 2 ceil(dim / 6) channels [sin | cos] per axis t, i, j, cut to dim."""
    per_axis = 2 * math.ceil(dim / 6)
    coords = np.stack(np.meshgrid(*(np.arange(n) for n in grid), indexing="ij"), -1).reshape(-1, 3)
    omega = 1.0 / 10000.0 ** (np.arange(per_axis // 2) / (per_axis / 2))
    parts = []
    for axis in range(3):
        angles = coords[:, axis, None] * omega
        parts += [np.sin(angles), np.cos(angles)]
    return np.concatenate(parts, axis=1)[:, :dim]


def encoder(p, video, config, keep=None):
    """Normalised uint8 clips [B, T, H, W, 3] -> tokens [B, N or K, D] (time-major tubelets)."""
    m = config.model
    t, s = m.tubelet_size, m.patch_size
    b, frames, height, width, c = video.shape
    grid = (frames // t, height // s, width // s)
    x = video.reshape(b, grid[0], t, grid[1], s, grid[2], s, c).transpose(0, 1, 3, 5, 2, 4, 6, 7)
    kernel = p["patch_embed"]["kernel"]
    x = x.reshape(b, -1, t * s * s * c) @ kernel.reshape(-1, kernel.shape[-1]) + p["patch_embed"]["bias"]
    x = x + sincos_table(x.shape[-1], grid)
    if keep is not None:
        x = np.take_along_axis(x, keep[..., None], axis=1)
    for layer in range(m.custom.depth):
        x = block(p[f"blocks_{layer}"], x, m.custom.num_heads)
    return layer_norm(x, p["norm"]), grid


def predictor(p, context, context_idx, target_idx, grid, mask_index, config):
    """Context tokens + indices -> predicted targets [B, Kt, D]: embed, mask token + positions, blocks, proj."""
    m = config.model.predictor
    x = dense(p["predictor_embed"], context)
    table = sincos_table(x.shape[-1], grid)
    queries = p["mask_tokens"][mask_index % len(p["mask_tokens"])] + table[target_idx]
    x = np.concatenate([x + table[context_idx], queries], axis=1)
    for layer in range(m.depth):
        x = block(p[f"predictor_blocks_{layer}"], x, m.num_heads)
    return dense(p["predictor_proj"], layer_norm(x[:, -target_idx.shape[1]:], p["predictor_norm"]))


def sigreg(embeddings, directions, t_max, num_points):
    """Epps-Pulley against N(0, 1) on every unit direction (trapezoid on t in [0, t_max], doubled), mean / M."""
    directions = directions / np.linalg.norm(directions, axis=0, keepdims=True)
    x = embeddings @ directions  # [M, S]
    t = np.linspace(0.0, t_max, (num_points + 1) // 2)
    gauss = np.exp(-0.5 * t ** 2)
    real = np.cos(x[..., None] * t).mean(0) - gauss
    imag = np.sin(x[..., None] * t).mean(0)
    err = (real ** 2 + imag ** 2) * gauss  # [S, P]
    integral = ((err[:, 1:] + err[:, :-1]) / 2 * np.diff(t)).sum(-1)
    m = len(embeddings)
    return (2.0 * integral * m).mean() / m


def reference_losses(params, batch, directions, config):
    """(prediction loss, SIGReg) of the sigreg objective: targets from the online encoder on the full clip."""
    video = (batch["video"].astype(np.float64) / 255.0 - IMAGENET_MEAN) / IMAGENET_STD
    features, grid = encoder(params["encoder"], video, config)
    targets = layer_norm(features, eps=1e-5)
    losses, contexts = [], []
    for mask_index, (context_idx, target_idx) in enumerate(batch["masks"]):
        context, _ = encoder(params["encoder"], video, config, keep=context_idx)
        contexts.append(context.reshape(-1, context.shape[-1]))
        prediction = predictor(params["predictor"], context, context_idx, target_idx, grid, mask_index, config)
        target = np.take_along_axis(targets, target_idx[..., None], axis=1)
        losses.append(np.abs(prediction - target).mean())
    s = config.sigreg
    return np.mean(losses), sigreg(np.concatenate(contexts), directions, s.t_max, s.num_points)


def test_one_step_loss_equals_the_numpy_reference(smoke_config):
    config = smoke_config
    config.objective = "sigreg"
    config.data.batch_size = 2
    config.model.update(size="custom", pos_embedding="sincos")
    config.model.custom.update(width=12, depth=1, num_heads=2, mlp_dim=24)
    config.model.predictor.update(width=8, depth=1, num_heads=2, mlp_ratio=2.0)
    run = loop.build_run(config, devices=jax.devices()[:1])
    source = pipeline.world_source(config, seed=config.seed)
    batch = next(iter(pipeline.make_train_dataset(source, run.maskers, config.data.batch_size, seed=config.seed,
                                                  process_index=0, process_count=1)))
    assert len(batch["masks"]) == 2  # short- and long-range: the loss averages both
    # Perturb the initial parameters so that zero-initialised biases and mask tokens and unit LayerNorm scales
    # all take part in the comparison.
    rng = np.random.default_rng(0)
    state = run.state.replace(params=jax.tree.map(
        lambda x: jax.device_put(np.asarray(x) + rng.normal(0, 0.5, x.shape).astype(x.dtype), x.sharding),
        run.state.params))
    params = jax.tree.map(lambda x: np.asarray(x, np.float64), jax.device_get(state.params))
    key = jax.random.fold_in(state.rng, state.step)  # the step's key, drawn before the step donates the state
    directions = np.asarray(jax.random.normal(key, (config.model.custom.width, config.sigreg.num_slices)), np.float64)
    prediction_loss, sigreg_value = reference_losses(params, batch, directions, config)

    with jax.set_mesh(run.mesh), nn.logical_axis_rules(parallel.RULES):
        _, metrics = run.train_step(state, parallel.host_to_global(batch, run.mesh))
    metrics = jax.device_get(metrics)
    # float32 on device vs float64 here agree to ~1e-7; the tolerance still tells the erf GELU from the tanh one.
    rtol = 2e-6
    np.testing.assert_allclose(metrics["prediction_loss"], prediction_loss, rtol=rtol)
    np.testing.assert_allclose(metrics["sigreg"], sigreg_value, rtol=rtol)
    np.testing.assert_allclose(metrics["loss"], prediction_loss + config.sigreg.weight * sigreg_value, rtol=rtol)
