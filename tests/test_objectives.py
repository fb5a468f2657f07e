"""Objective pieces against independent values: SIGReg (analytic Epps–Pulley expectations), LN targets, EMA."""

import math

import jax
import jax.numpy as jnp
import numpy as np

from jepa_jax import objectives

GAUSSIAN_EXPECTATION = math.sqrt(2 * math.pi) - math.sqrt(2 * math.pi / 3)  # E[T] for N(0,1) samples
COLLAPSED_PER_SAMPLE = math.sqrt(2 * math.pi) - 2 * math.sqrt(math.pi) + math.sqrt(2 * math.pi / 3)


def test_epps_pulley_on_gaussian_samples_matches_analytic_expectation():
    x = jax.random.normal(jax.random.key(0), (2000, 400))  # 400 independent statistics
    stats = np.asarray(objectives.epps_pulley(x))
    assert abs(stats.mean() - GAUSSIAN_EXPECTATION) < 0.1
    assert np.quantile(stats, 0.95) < 5.0  # vs ~820 for a point mass of the same size


def test_epps_pulley_of_a_point_mass_matches_analytic_value():
    m = 500
    stats = objectives.epps_pulley(jnp.zeros((m, 3)))
    np.testing.assert_allclose(stats, m * COLLAPSED_PER_SAMPLE, rtol=1e-3)


def test_sigreg_scores_gaussian_low_and_collapsed_or_shifted_high():
    key = jax.random.key(1)
    m, d = 4096, 32
    gaussian = jax.random.normal(key, (m, d))
    collapsed = jnp.ones((m, d)) * 0.3
    shifted = gaussian + 1.0
    scaled = gaussian * 3.0
    score = lambda x: float(objectives.sigreg(x, jax.random.key(2), num_slices=64))
    g = score(gaussian)
    assert g * m < 2.0  # the undivided statistic is ~1.06
    for bad in (collapsed, shifted, scaled):
        assert score(bad) > 50 * g


def test_sigreg_gradient_pushes_towards_gaussian():
    x = jax.random.normal(jax.random.key(3), (1024, 8)) * 0.2 + 0.5
    loss = lambda z: objectives.sigreg(z, jax.random.key(4), num_slices=32)
    for _ in range(100):
        x = x - 200.0 * jax.grad(loss)(x)
    assert float(loss(x)) < 0.2 * float(loss(jax.random.normal(jax.random.key(3), (1024, 8)) * 0.2 + 0.5))


def test_normalize_targets_is_layernorm_without_affine():
    x = np.random.default_rng(0).normal(size=(3, 5, 16)).astype(np.float32) * 4 + 2
    expected = (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + 1e-5)
    np.testing.assert_allclose(objectives.normalize_targets(jnp.asarray(x)), expected, atol=1e-5)


def test_prediction_losses():
    a, b = jnp.asarray([[1.0, -2.0]]), jnp.asarray([[0.0, 0.0]])
    assert float(objectives.prediction_loss(a, b, "l1")) == 1.5
    assert float(objectives.prediction_loss(a, b, "l2")) == 2.5


def test_ema_update_and_momentum_ramp():
    target, online = {"w": jnp.ones(3)}, {"w": jnp.zeros(3)}
    np.testing.assert_allclose(objectives.ema_update(target, online, 0.9)["w"], 0.9)
    np.testing.assert_allclose(float(objectives.ema_momentum(0, 0.99, 1.0, 100)), 0.99)
    np.testing.assert_allclose(float(objectives.ema_momentum(50, 0.99, 1.0, 100)), 0.995)
    assert float(objectives.ema_momentum(1000, 0.99, 1.0, 100)) == 1.0


def test_batch_spread_is_zero_for_identical_clips():
    x = jax.random.normal(jax.random.key(5), (1, 6, 4))
    assert float(objectives.batch_spread(jnp.repeat(x, 8, axis=0))) < 1e-6
    assert float(objectives.batch_spread(jax.random.normal(jax.random.key(6), (64, 6, 4)))) > 0.9


def test_smooth_l1_is_huber_with_beta_1_as_torch():
    prediction = np.array([[0.5, -2.0, 0.0, 1.0]], np.float32)
    target = np.zeros_like(prediction)
    expected = np.mean([0.5 * 0.25, 2.0 - 0.5, 0.0, 1.0 - 0.5])  # F.smooth_l1_loss(beta=1), mean reduction
    assert math.isclose(float(objectives.prediction_loss(prediction, target, "smooth_l1")), expected, rel_tol=1e-6)
