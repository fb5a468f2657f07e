"""Analytic FLOPs of the JEPA encoder, predictor and train step (2 FLOPs per multiply-add, matmuls only: norms,
softmax, GELU and the optimizer are left out, as MFU counts them), checked against XLA's cost analysis by
`jepa-jax bench`."""

import math

import jax
import jax.numpy as jnp

from jepa_jax import config as config_lib


def clip_tokens(config) -> int:
    """Tokens of one whole clip: T' x H' x W'."""
    return math.prod(config_lib.token_grid(config))


def blocks_flops(tokens: int, width: int, depth: int, mlp_dim: int) -> float:
    """Forward FLOPs of `depth` transformer blocks on one sequence of `tokens` x `width`: qkv, scores, weighted
    sum, output projection and the two MLP matmuls."""
    per_block = (2 * tokens * width * 3 * width + 2 * 2 * tokens * tokens * width + 2 * tokens * width * width
                 + 2 * 2 * tokens * width * mlp_dim)
    return float(depth * per_block)


def encoder_flops(config, tokens: int) -> float:
    """Forward FLOPs of the encoder on one clip, `tokens` of which go through the blocks (all, or the context)."""
    size = config_lib.encoder_size(config)
    m = config.model
    patch = 3 * m.tubelet_size * m.patch_size ** 2
    num_patches = clip_tokens(config)
    return 2.0 * num_patches * patch * size.width + blocks_flops(tokens, size.width, size.depth, size.mlp_dim)


def predictor_flops(config, context: int, targets: int) -> float:
    """Forward FLOPs of the mask-token predictor on one clip: embed `context` tokens, blocks over context +
    `targets` tokens, project the targets back to the encoder width."""
    width, p = config_lib.encoder_size(config).width, config.model.predictor
    return (2.0 * context * width * p.width + blocks_flops(context + targets, p.width, p.depth,
                                                             int(p.width * p.mlp_ratio))
            + 2.0 * targets * p.width * width)


def mask_token_counts(masks) -> list[tuple[int, int, int]]:
    """(context, targets per block, blocks) per mask config of a batch's masks ((context [B, Kc], target [B, Kt]
    or [B, n, Kt]), ...)."""
    return [(c.shape[-1], t.shape[-1], t.shape[1] if len(t.shape) == 3 else 1) for c, t in masks]


def jepa_step_flops(config, masks) -> float:
    """FLOPs of one JEPA train step on the whole batch: the target encoder's forward on every token, and forward +
    backward (3x forward) of the context encoder and predictor for each mask config (and each target block)."""
    batch = config.data.batch_size
    total = encoder_flops(config, clip_tokens(config))
    for context, targets, blocks in mask_token_counts(masks):
        total += 3 * (encoder_flops(config, context) + blocks * predictor_flops(config, context, targets))
    return batch * total


def with_xla_attention(config):
    """A copy of `config` whose attention is XLA's single fused op: XLA's cost analysis counts a loop body once,
    so the blocked kernel's FLOPs would be undercounted (the FLOPs do not depend on the kernel)."""
    config = config.copy_and_resolve_references()
    config.model.attention = "xla"
    return config


def lowered_flops(fn, *args) -> float:
    """FLOPs of fn(*args) (abstract arguments allowed) from XLA's cost analysis of the lowered program."""
    return float(jax.jit(fn).lower(*args).cost_analysis()["flops"])


def forward_flops_check(config, masks) -> dict:
    """Analytic vs XLA FLOPs of one forward pass of the encoder (whole clips) and of the predictor (the first mask
    config's context and targets), on the whole batch: {"encoder"|"predictor": {"analytic", "xla", "ratio"}}."""
    config = with_xla_attention(config)
    encoder, predictor = config_lib.build_encoder(config), config_lib.build_predictor(config)
    batch, (frames, size) = config.data.batch_size, config_lib.clip_shape(config)
    video = jax.ShapeDtypeStruct((batch, frames, size, size, 3), jnp.float32)
    context, targets = (jax.ShapeDtypeStruct((batch, x.shape[-1]), jnp.int32) for x in masks[0])
    features = jax.ShapeDtypeStruct((batch, context.shape[1], config_lib.encoder_size(config).width), jnp.float32)
    grid = config_lib.token_grid(config)
    key = jax.random.key(0)
    encoder_params = jax.eval_shape(encoder.init, key, video)
    predictor_params = jax.eval_shape(lambda *x: predictor.init(key, *x, grid), features, context, targets)
    xla = {"encoder": lowered_flops(encoder.apply, encoder_params, video),
           "predictor": lowered_flops(lambda p, *x: predictor.apply(p, *x, grid), predictor_params, features, context,
                                      targets)}
    analytic = {"encoder": batch * encoder_flops(config, clip_tokens(config)),
                "predictor": batch * predictor_flops(config, context.shape[1], targets.shape[1])}
    return {part: {"analytic": analytic[part], "xla": xla[part], "ratio": xla[part] / analytic[part]}
            for part in xla}
