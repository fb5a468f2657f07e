"""Ridge probes and the world-probe feature pooling."""

import numpy as np

from jepa_jax.evals import ridge, world_probe


def test_ridge_recovers_a_linear_map_and_scores_noise_near_zero():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(600, 20))
    w = rng.normal(size=(20, 3))
    y = x @ w + 0.01 * rng.normal(size=(600, 3))
    assert ridge.ridge_probe(x[:400], y[:400], x[400:], y[400:])["score"] > 0.99
    noise = rng.normal(size=(600, 3))
    assert ridge.ridge_probe(x[:400], noise[:400], x[400:], noise[400:])["score"] < 0.05


def test_r2_score_reference_values():
    y = np.array([[1.0], [2.0], [3.0]])
    assert ridge.r2_score(y, y) == 1.0
    assert abs(ridge.r2_score(y, np.full_like(y, 2.0))) < 1e-12


def test_pooling_keeps_time_and_quadrants():
    grid = (2, 4, 4)
    tokens = np.zeros((1, 32, 1))
    tokens[0, 16 + 3, 0] = 16.0  # time slice 1, row 0, column 3 -> top-right quadrant
    pooled = world_probe.pool_tokens(tokens, grid)
    np.testing.assert_allclose(pooled["time"], [[0.0, 1.0]])
    np.testing.assert_allclose(pooled["quad"], [[0, 0, 0, 0, 0, 4.0, 0, 0]])


def test_pixel_tokens_average_tubelets():
    video = np.zeros((1, 2, 4, 4, 3), np.uint8)
    video[0, :, :2, :2] = 255
    tokens = world_probe.pixel_tokens(video, patch_size=2, tubelet_size=2)
    assert tokens.shape == (1, 4, 3)
    np.testing.assert_allclose(tokens[0, :, 0], [255, 0, 0, 0])
