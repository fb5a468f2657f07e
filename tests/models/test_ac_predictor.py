"""Action-conditioned predictor: frame-block causality, token layout, RoPE positions, parameter names."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jepa_jax import objectives
from jepa_jax.models import ac_predictor, posemb

GRID = (2, 3)  # non-square, so the width-position scaling shows
T, P, D, A, S = 4, 6, 16, 3, 2


def _model(**kwargs):
    return ac_predictor.ACPredictor(embed_dim=D, width=24, depth=2, num_heads=2, **kwargs)


def _inputs(key):
    k1, k2, k3 = jax.random.split(key, 3)
    return (jax.random.normal(k1, (2, T, P, D)), jax.random.normal(k2, (2, T, A)), jax.random.normal(k3, (2, T, S)))


@pytest.fixture(scope="module")
def setup():
    model = _model(predict_proprio=True)
    inputs = _inputs(jax.random.key(0))
    params = model.init(jax.random.key(1), *inputs, GRID)["params"]
    apply = jax.jit(lambda *x: model.apply({"params": params}, *x, GRID))
    return apply, inputs


@pytest.mark.parametrize("which", [0, 1, 2])  # frames, actions, proprio
@pytest.mark.parametrize("t", [0, 1, 2])
def test_frame_causal(setup, which, t):
    """Changing step t + 1 leaves the outputs of steps <= t unchanged; changing step t changes step t's outputs."""
    apply, inputs = setup
    base_frames, base_proprio = apply(*inputs)

    def perturbed(step):
        changed = list(inputs)
        changed[which] = changed[which].at[:, step].add(1.0)
        return apply(*changed)

    frames, proprio = perturbed(t + 1)
    np.testing.assert_array_equal(frames[:, :t + 1], base_frames[:, :t + 1])
    np.testing.assert_array_equal(proprio[:, :t + 1], base_proprio[:, :t + 1])
    assert not np.allclose(frames[:, t + 1], base_frames[:, t + 1])
    frames, proprio = perturbed(t)
    np.testing.assert_array_equal(frames[:, :t], base_frames[:, :t])
    assert not np.allclose(frames[:, t], base_frames[:, t])
    assert not np.allclose(proprio[:, t], base_proprio[:, t])


def test_block_causal_mask_matches_official_construction():
    """The mask equals the official block-by-block construction (every frame attends to frames 0..t)."""
    per_frame = 2 + P
    expected = np.zeros((T * per_frame, T * per_frame), bool)
    for t1 in range(T):
        for t2 in range(t1 + 1):
            expected[t1 * per_frame:(t1 + 1) * per_frame, t2 * per_frame:(t2 + 1) * per_frame] = True
    np.testing.assert_array_equal(ac_predictor.block_causal_mask(T, per_frame), expected)


def test_token_coordinates():
    """[a_t, s_t, patches_t]: conditioning tokens at (t, 0, 0), patches at (t, i, j * H' / W')."""
    coords = ac_predictor.token_coordinates(T, GRID).reshape(T, 2 + P, 3)
    for t in range(T):
        np.testing.assert_array_equal(coords[t, :2], [[t, 0, 0], [t, 0, 0]])
        for n in range(P):
            i, j = divmod(n, GRID[1])
            np.testing.assert_allclose(coords[t, 2 + n], [t, i, j * GRID[0] / GRID[1]])


def test_conditioning_tokens_rotate_by_time_only():
    """RoPE at (t, 0, 0) rotates the temporal channels [0, a) and leaves every other channel as it was."""
    x = jax.random.normal(jax.random.key(2), (1, T, 1, 24))
    coords = jnp.stack([jnp.arange(T), jnp.zeros(T), jnp.zeros(T)], -1).astype(jnp.float32)
    rotated = posemb.apply_rope_3d(x, coords)
    a = posemb.rope_axis_dim(24)
    np.testing.assert_array_equal(rotated[..., a:], x[..., a:])
    assert not np.allclose(rotated[:, 1:, :, :a], x[:, 1:, :, :a])


def test_parameter_names_follow_official_layout():
    params = _model().init(jax.random.key(1), *_inputs(jax.random.key(0)), GRID)["params"]
    assert set(params) == {"predictor_embed", "action_encoder", "state_encoder", "predictor_blocks_0",
                           "predictor_blocks_1", "predictor_norm", "predictor_proj"}
    chex.assert_shape(params["action_encoder"]["kernel"].value, (A, 24))
    chex.assert_shape(params["predictor_proj"]["kernel"].value, (24, D))
    with_proprio = _model(predict_proprio=True).init(jax.random.key(1), *_inputs(jax.random.key(0)), GRID)["params"]
    chex.assert_shape(with_proprio["proprio_proj"]["kernel"].value, (24, S))


def test_wrong_token_count_is_one_line_error():
    frames, actions, proprio = _inputs(jax.random.key(0))
    with pytest.raises(ValueError, match="6 tokens per frame, expected 3 x 3"):
        _model().init(jax.random.key(1), frames, actions, proprio, (3, 3))


@pytest.mark.parametrize("predict_proprio,state_norm", [(True, "layer"), (False, "layer"), (True, "batch")])
def test_cached_rollout_equals_recomputing_every_prefix(predict_proprio, state_norm):
    """ac_predictor.rollout feeds one frame at a time through the attention cache; the reference re-runs the whole
    imagined sequence each step (what the uncached predictor would), feeding back LN(prediction) (state_norm
    "layer") or the prediction itself ("batch"), and proprio."""
    model = _model(predict_proprio=predict_proprio)
    frames, actions, proprio = _inputs(jax.random.key(3))
    params = model.init(jax.random.key(4), frames, actions, proprio, GRID)["params"]
    feed_back = objectives.normalize_targets if state_norm == "layer" else lambda x: x
    state = feed_back(frames[:, 0])
    states, proprios = ac_predictor.rollout(model, params, state, proprio[:, 0], actions, GRID, state_norm)
    chex.assert_shape(states, (2, T, P, D))
    chex.assert_shape(proprios, (2, T, S))
    seq, seq_proprio = state[:, None], proprio[:, :1]
    for t in range(T):
        out, next_proprio = model.apply({"params": params}, seq, actions[:, :t + 1], seq_proprio, GRID)
        seq = jnp.concatenate([seq, feed_back(out[:, -1:])], axis=1)
        fed_back = next_proprio[:, -1:] if predict_proprio else seq_proprio[:, -1:]
        seq_proprio = jnp.concatenate([seq_proprio, fed_back], axis=1)
    np.testing.assert_allclose(states, seq[:, 1:], atol=2e-5)
    np.testing.assert_allclose(proprios, seq_proprio[:, 1:], atol=2e-5)


def test_batch_state_norm_standardises_each_token_feature_over_batch_and_frames():
    """normalize_states "batch" with batch_moments: every (token slot, feature) has mean 0 and std 1 over [B, T]
    (numpy reference), whatever per-feature scale and offset the features come with; "layer" is LN over D."""
    features = np.random.default_rng(0).normal(size=(6, 3, P, D)) * np.linspace(0.01, 5, D) + np.arange(D)
    states = np.asarray(ac_predictor.normalize_states(jnp.asarray(features, jnp.float32), "batch",
                                                      ac_predictor.batch_moments(jnp.asarray(features, jnp.float32))))
    want = (features - features.mean((0, 1))) / np.sqrt(features.var((0, 1)) + 1e-12)  # eps as documented
    np.testing.assert_allclose(states, want, atol=1e-3)
    layer = np.asarray(ac_predictor.normalize_states(jnp.asarray(features, jnp.float32), "layer"))
    np.testing.assert_allclose(layer, (features - features.mean(-1, keepdims=True))
                               / features.std(-1, keepdims=True), atol=1e-3)


def test_pool_states_averages_square_cells():
    features = np.random.default_rng(0).normal(size=(2, 3, 4 * 6, 5)).astype(np.float32)
    pooled = np.asarray(ac_predictor.pool_states(jnp.asarray(features), (4, 6), 2))
    grid = features.reshape(2, 3, 4, 6, 5)
    for i in range(2):
        for j in range(2):
            cell = grid[:, :, 2 * i:2 * i + 2, 3 * j:3 * j + 3].mean(axis=(2, 3))
            np.testing.assert_allclose(pooled[:, :, 2 * i + j], cell, rtol=1e-6, atol=1e-6)
    assert ac_predictor.pool_states(features, (4, 6), 0) is features
