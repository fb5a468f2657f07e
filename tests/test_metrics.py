"""Collapse monitors and MFU inputs: effective rank, cosine, feature std, peak FLOPs table, XLA FLOP counts."""

import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jepa_jax import metrics


def rankme_reference(x):
    s = np.linalg.svd(np.asarray(x, np.float64), compute_uv=False)
    p = s / s.sum() + 1e-12
    return float(np.exp(-(p * np.log(p)).sum()))


@pytest.mark.parametrize("rank", [1, 5, 16])
def test_effective_rank_of_equal_orthogonal_directions_is_their_count(rank):
    basis = np.linalg.qr(np.random.default_rng(rank).normal(size=(16, 16)))[0][:rank]
    x = np.tile(basis, (4, 1))  # [4 * rank, 16], `rank` equal singular values
    assert float(metrics.effective_rank(jnp.asarray(x, jnp.float32))) == pytest.approx(rank, rel=1e-3)


def test_effective_rank_matches_an_svd_reference():
    x = np.random.default_rng(0).normal(size=(300, 32)) * np.linspace(0.1, 3.0, 32)
    assert float(metrics.effective_rank(jnp.asarray(x, jnp.float32))) == pytest.approx(rankme_reference(x),
                                                                                        rel=1e-3)


def test_cosine_and_feature_std():
    a = jax.random.normal(jax.random.key(0), (2, 7, 16))
    assert float(metrics.mean_cosine(a, a)) == pytest.approx(1.0, abs=1e-6)
    assert float(metrics.mean_cosine(a, -a)) == pytest.approx(-1.0, abs=1e-6)
    assert float(metrics.feature_std(jnp.ones((2, 7, 16)))) == 0.0
    assert float(metrics.feature_std(a)) == pytest.approx(float(np.asarray(a).reshape(-1, 16).std(0).mean()),
                                                          rel=1e-5)


def test_peak_flops_table_override_and_unknown_device():
    h100 = types.SimpleNamespace(platform="gpu", device_kind="NVIDIA H100 80GB HBM3")
    assert metrics.peak_flops_per_device(h100) == 989e12
    v5e = types.SimpleNamespace(platform="tpu", device_kind="TPU v5 lite")
    assert metrics.peak_flops_per_device(v5e) == 197e12
    assert metrics.peak_flops_of_kind("TPU v5") == 459e12  # v5p's device kind
    assert metrics.peak_flops_per_device(h100, override=1e12) == 1e12
    with pytest.raises(ValueError, match=r"no peak FLOP/s known for device kind 'Mystery X1': set "
                                         r"--config.monitor.peak_flops"):
        metrics.peak_flops_per_device(types.SimpleNamespace(platform="gpu", device_kind="Mystery X1"))
    assert metrics.peak_flops_per_device(jax.devices()[0]) > 0  # CPU: the configurable estimate


def test_compiled_flops_counts_a_matmul():
    compiled = jax.jit(jnp.matmul).lower(jnp.ones((64, 128)), jnp.ones((128, 32))).compile()
    assert metrics.compiled_flops(compiled) == 2 * 64 * 128 * 32
