"""Scanned blocks (model.scan_layers): the same numbers as unrolled blocks from either weight layout, the stacked
layout's round trip, logical names and weight-decay mask."""

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jepa_jax.models import ac_predictor, predictor, stacking, vit
from jepa_jax.train import optim

VIDEO = jax.random.normal(jax.random.key(0), (2, 4, 16, 16, 3))  # 2 x 2 x 2 = 8 tokens
KEEP = jnp.array([[0, 2, 3, 5], [1, 2, 6, 7]])


def assert_trees_close(a, b, atol):
    chex.assert_trees_all_equal_structs(a, b)
    jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, atol=atol), a, b)


def encoder_case(scan: bool, remat: str):
    model = vit.VisionTransformer(size="nano", patch_size=8, tubelet_size=2, remat=remat, scan=scan)
    return model, (VIDEO, KEEP)


def predictor_case(scan: bool, remat: str):
    model = predictor.Predictor(embed_dim=32, width=16, depth=3, num_heads=2, remat=remat, scan=scan)
    context = jax.random.normal(jax.random.key(1), (2, 4, 32))
    return model, (context, KEEP, jnp.array([[1, 4], [0, 3]]), (2, 2, 2))


@pytest.mark.parametrize("case", [encoder_case, predictor_case])
@pytest.mark.parametrize("remat", ["none", "nothing_saveable"])
@pytest.mark.parametrize("layout", ["unrolled", "stacked"])
def test_scanned_blocks_give_the_unrolled_outputs_and_gradients(case, remat, layout):
    unrolled, inputs = case(False, remat)
    scanned, _ = case(True, remat)
    params = nn.meta.unbox(unrolled.init(jax.random.key(2), *inputs)["params"])
    assert not stacking.is_stacked(params)
    given = stacking.stack(params) if layout == "stacked" else params
    loss = lambda model: lambda p: jnp.square(model.apply({"params": p}, *inputs)).mean()
    assert_trees_close(scanned.apply({"params": given}, *inputs), unrolled.apply({"params": params}, *inputs), 1e-6)
    grads = jax.grad(loss(unrolled))(params)
    assert_trees_close(jax.grad(loss(scanned))(given), stacking.stack(grads) if layout == "stacked" else grads, 1e-5)


def test_scanned_cached_rollout_equals_unrolled():
    """The attention cache goes through the scan too (one (keys, values) per block): V-JEPA 2-AC's rollout."""
    models = [ac_predictor.ACPredictor(embed_dim=32, width=16, depth=3, num_heads=2, scan=scan) for scan in (0, 1)]
    frames = jax.random.normal(jax.random.key(3), (2, 3, 4, 32))
    actions, proprio = jax.random.normal(jax.random.key(4), (2, 3, 5)), jax.random.normal(jax.random.key(5), (2, 3, 2))
    params = models[0].init(jax.random.key(6), frames, actions, proprio, (2, 2))["params"]
    outs = [ac_predictor.rollout(model, weights, frames[:, 0], proprio[:, 0], actions, (2, 2))
            for model, weights in zip(models, (params, stacking.stack(params)))]
    assert_trees_close(outs[1], outs[0], 1e-5)


def test_stack_and_unstack_are_inverse_and_name_the_layers_axis():
    model, inputs = encoder_case(False, "none")
    boxed = model.init(jax.random.key(0), *inputs)["params"]
    stacked = stacking.stack(boxed)
    assert sorted(k for k in stacked if "blocks" in k) == ["blocks"]
    qkv = stacked["blocks"]["attn"]["qkv"]["kernel"]
    assert qkv.names == ("layers", "embed", None, "heads", "kv") and qkv.value.shape == (2, 32, 3, 2, 16)
    assert stacking.is_stacked(stacked) and not stacking.is_stacked(boxed)
    assert_trees_close(nn.meta.unbox(stacking.unstack(stacked)), nn.meta.unbox(boxed), 0)
    numpy_tree = jax.device_get(nn.meta.unbox(stacked))  # the host path (bench, export) slices numpy arrays
    assert_trees_close(stacking.unstack(numpy_tree), jax.device_get(nn.meta.unbox(boxed)), 0)


def test_unnumbered_blocks_fail_naming_the_group():
    with pytest.raises(ValueError, match=r"blocks_\*: blocks \[0, 2\] are not numbered 0..1"):
        stacking.stack({"blocks_0": {"w": jnp.ones(2)}, "blocks_2": {"w": jnp.ones(2)}})


def test_weight_decay_mask_counts_dimensions_per_block():
    """Stacked LayerNorm scales are [L, D] but stay undecayed, like the unrolled [D] ones."""
    model, inputs = encoder_case(False, "none")
    params = nn.meta.unbox(model.init(jax.random.key(0), *inputs)["params"])
    per_block = jax.tree.map(lambda m: bool(np.all(m)), stacking.stack(optim.decay_mask(params)))
    assert optim.decay_mask(stacking.stack(params)) == per_block
    assert not optim.decay_mask(stacking.stack(params))["blocks"]["norm1"]["scale"]
