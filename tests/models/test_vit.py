"""Encoder shapes, parameter counts, kept-index equivalence and input errors."""

import math

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jepa_jax.models import posemb, vit

ALL_SIZES = sorted(vit.SIZES)


def param_count(tree) -> int:
    return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(nn.meta.unbox(tree)))


@pytest.mark.parametrize("size", ALL_SIZES)
@pytest.mark.parametrize("kind", ["video", "image"])
def test_output_shapes_at_every_size(size, kind):
    """Abstract evaluation (no allocation): video 16x64x64 -> 8*4*4 tokens, image 64x64 -> 4*4 tokens."""
    width = vit.SIZES[size].width
    if kind == "video":
        model, shape, tokens = vit.VisionTransformer(size=size, patch_size=16, tubelet_size=2), (2, 16, 64, 64, 3), 128
    else:
        model, shape, tokens = vit.VisionTransformer(size=size, patch_size=16, tubelet_size=1), (2, 64, 64, 3), 16
    x = jax.ShapeDtypeStruct(shape, jnp.float32)
    params = jax.eval_shape(model.init, jax.random.key(0), x)
    out = jax.eval_shape(model.apply, params, x)
    chex.assert_shape(out, (2, tokens, width))
    keep = jax.ShapeDtypeStruct((2, 5), jnp.int32)
    chex.assert_shape(jax.eval_shape(model.apply, params, x, keep), (2, 5, width))


@pytest.mark.parametrize("size,expected", [("large", 303_885_312), ("huge", 631_648_000),
                                           ("giant", 1_012_173_952)])
def test_rope_parameter_counts_match_official(size, expected):
    model = vit.VisionTransformer(size=size, patch_size=16, tubelet_size=2, pos_embedding="rope")
    params = jax.eval_shape(model.init, jax.random.key(0), jax.ShapeDtypeStruct((1, 16, 256, 256, 3), jnp.float32))
    assert param_count(params) == expected


def test_parameter_layout_follows_official_names():
    model = vit.VisionTransformer(size="nano", patch_size=8, tubelet_size=2)
    params = nn.meta.unbox(jax.eval_shape(model.init, jax.random.key(0),
                                          jax.ShapeDtypeStruct((1, 4, 16, 16, 3), jnp.float32)))["params"]
    assert set(params) == {"patch_embed", "blocks_0", "blocks_1", "norm"}
    block = params["blocks_0"]
    assert set(block) == {"norm1", "attn", "norm2", "mlp"}
    chex.assert_shape(block["attn"]["qkv"]["kernel"], (32, 3, 2, 16))  # [D, (q,k,v), heads, head_dim]
    chex.assert_shape(block["attn"]["proj"]["kernel"], (2, 16, 32))
    chex.assert_shape(block["mlp"]["fc1"]["kernel"], (32, 128))
    chex.assert_shape(params["patch_embed"]["kernel"], (2, 8, 8, 3, 32))  # Conv3d (D,3,t,p,p) transposed


def test_every_parameter_has_logical_names():
    model = vit.VisionTransformer(size="nano", patch_size=8, tubelet_size=2)
    boxed = jax.eval_shape(model.init, jax.random.key(0), jax.ShapeDtypeStruct((1, 4, 16, 16, 3), jnp.float32))
    leaves = jax.tree.leaves(boxed, is_leaf=lambda x: isinstance(x, nn.LogicallyPartitioned))
    assert leaves and all(isinstance(x, nn.LogicallyPartitioned) for x in leaves)
    assert all(len(x.names) == len(x.value.shape) for x in leaves)


@pytest.mark.parametrize("pos_embedding", ["sincos", "rope"])
def test_kept_indices_equal_gathering_tokens_before_the_blocks(pos_embedding):
    """encoder(video, keep) == norm(blocks(gather(patch_embed(video) + pos, keep))) composed by hand."""
    model = vit.VisionTransformer(size="nano", patch_size=8, tubelet_size=2, pos_embedding=pos_embedding)
    video = jax.random.normal(jax.random.key(1), (2, 4, 16, 24, 3))
    grid = (2, 2, 3)
    params = nn.meta.unbox(model.init(jax.random.key(0), video))["params"]
    keep = jnp.asarray([[0, 3, 5, 11], [1, 2, 7, 8]])
    dims = vit.SIZES["nano"]

    tokens = vit.PatchEmbed(dims.width, 8, 2).apply({"params": params["patch_embed"]}, video)
    if pos_embedding == "sincos":
        tokens = tokens + posemb.sincos_3d(dims.width, grid)
    x = jnp.take_along_axis(tokens, keep[..., None], axis=1)
    coords = jnp.asarray(posemb.grid_coordinates(grid))[keep]
    for layer in range(dims.depth):
        block = vit.Block(dims.num_heads, dims.mlp_dim, rope=pos_embedding == "rope")
        x = block.apply({"params": params[f"blocks_{layer}"]}, x, coords)
    expected = nn.LayerNorm(epsilon=1e-6).apply({"params": params["norm"]}, x)

    np.testing.assert_allclose(model.apply({"params": params}, video, keep), expected, atol=1e-5)
    # And the kept tokens differ from the same tokens encoded with the whole clip (attention sees less).
    full = model.apply({"params": params}, video)
    assert not np.allclose(jnp.take_along_axis(full, keep[..., None], axis=1), expected, atol=1e-3)


@pytest.mark.parametrize("kwargs,shape,message", [
    (dict(size="colossal"), (1, 4, 16, 16, 3), "model size 'colossal' is unknown"),
    (dict(patch_size=5), (1, 4, 16, 16, 3), "model.patch_size=5 must divide"),
    (dict(tubelet_size=3), (1, 4, 16, 16, 3), "model.tubelet_size=3 must divide"),
])
def test_bad_input_errors_name_the_field(kwargs, shape, message):
    model = vit.VisionTransformer(**{"size": "nano", "patch_size": 8, "tubelet_size": 2, **kwargs})
    with pytest.raises(ValueError, match=message):
        jax.eval_shape(model.init, jax.random.key(0), jax.ShapeDtypeStruct(shape, jnp.float32))


def test_real_forward_is_finite_and_depends_on_input():
    model = vit.VisionTransformer(size="micro", patch_size=8, tubelet_size=2)
    video = jax.random.normal(jax.random.key(3), (2, 4, 16, 16, 3))
    params = model.init(jax.random.key(0), video)
    out = model.apply(params, video)
    chex.assert_shape(out, (2, 8, 128))
    chex.assert_tree_all_finite(out)
    assert float(jnp.abs(out[0] - out[1]).mean()) > 1e-3


@pytest.mark.parametrize("policy", ["nothing_saveable", "dots_saveable", "dots_with_no_batch_dims_saveable"])
def test_remat_policies_change_memory_not_numbers(policy):
    """Same gradients; XLA's memory analysis of the compiled forward pass shows each policy keeps less for the
    backward pass than no remat, nothing_saveable far less.

    What the forward pass keeps for the backward pass (the vjp residuals, compiled outputs of jit(vjp)) is what
    remat trades for recomputation. The temp size of a whole forward+backward program is no measure on CPU: its
    concurrency-optimised scheduler runs the recomputation early, so remat even raises it there.
    """
    video = jax.random.normal(jax.random.key(4), (2, 4, 32, 32, 3))  # 2 x 32 tokens, 2 blocks
    models = {name: vit.VisionTransformer(size="nano", patch_size=8, tubelet_size=2, remat=name)
              for name in ("none", policy)}
    params = nn.meta.unbox(models["none"].init(jax.random.key(0), video))
    loss = lambda model: lambda p: jnp.square(model.apply(p, video)).mean()
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-6),
                 *(jax.jit(jax.grad(loss(model)))(params) for model in models.values()))
    kept = {name: jax.jit(lambda p, m=model: jax.vjp(loss(m), p)[1]).lower(params).compile()
            .memory_analysis().output_size_in_bytes for name, model in models.items()}
    assert kept[policy] < (0.5 if policy == "nothing_saveable" else 1.0) * kept["none"], kept


def test_gelu_is_the_exact_erf_gelu():
    x = np.linspace(-8.0, 8.0, 1001)
    expected = np.array([0.5 * v * (1.0 + math.erf(v / math.sqrt(2.0))) for v in x])  # torch.nn.GELU()
    np.testing.assert_allclose(vit.gelu(jnp.asarray(x, jnp.float32)), expected, atol=2e-6)


def test_patchify_flattens_each_tubelet_in_time_major_token_order():
    video = np.random.default_rng(3).normal(size=(2, 4, 16, 24, 3)).astype(np.float32)  # grid 2 x 2 x 3
    tubelets = np.asarray(vit.patchify(jnp.asarray(video), 8, 2))
    chex.assert_shape(tubelets, (2, 12, 2 * 8 * 8 * 3))
    for t, h, w in [(0, 0, 0), (1, 0, 2), (1, 1, 1)]:
        expected = video[:, 2 * t:2 * t + 2, 8 * h:8 * h + 8, 8 * w:8 * w + 8].reshape(2, -1)
        np.testing.assert_array_equal(tubelets[:, (t * 2 + h) * 3 + w], expected)


@pytest.mark.parametrize("scan", [False, True])
def test_out_layers_are_each_blocks_output_through_the_final_norm(scan):
    """out_layers=(l, ...): block l's output equals the output of the same encoder cut to l + 1 blocks."""
    video = jax.random.normal(jax.random.key(3), (2, 4, 16, 16, 3))
    full = vit.VisionTransformer(size=vit.ViTSize(32, 3, 2, 64), patch_size=8, scan=scan)
    params = nn.meta.unbox(full.init(jax.random.key(4), video)["params"])
    levels = full.apply({"params": params}, video, out_layers=(2, 0))
    assert levels.shape == (2, 2 * 8, 32)
    np.testing.assert_allclose(levels[:, :8], full.apply({"params": params}, video), atol=1e-6)
    cut = vit.VisionTransformer(size=vit.ViTSize(32, 1, 2, 64), patch_size=8)
    first = {k: v for k, v in params.items() if k in ("patch_embed", "blocks_0", "norm")}
    np.testing.assert_allclose(levels[:, 8:], cut.apply({"params": first}, video), atol=1e-6)
