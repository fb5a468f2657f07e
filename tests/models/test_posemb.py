"""Position encodings against independently computed values (plain Python loops over the official
formulas, docs/official_reference.md 2)."""

import math

import jax.numpy as jnp
import numpy as np
import pytest

from jepa_jax.models import posemb


def reference_sincos_1d(dim, pos):
    """Sin-cos: w_k = 10000^(-k/(d/2)); [sin(p w_0..), cos(p w_0..)]."""
    half = dim // 2
    return [math.sin(pos * 10000 ** (-k / half)) for k in range(half)] + \
           [math.cos(pos * 10000 ** (-k / half)) for k in range(half)]


def test_sincos_3d_uniform_power_matches_the_official_formula():
    dim, grid = 20, (2, 3, 4)
    table = posemb.sincos_3d(dim, grid, uniform_power=True)
    per_axis = 2 * math.ceil(dim / 6)  # 8 per axis -> 24, truncated to 20
    assert table.shape == (24, dim) and table.dtype == np.float32
    n = 0
    for t in range(2):
        for i in range(3):
            for j in range(4):
                row = reference_sincos_1d(per_axis, t) + reference_sincos_1d(per_axis, i) + \
                      reference_sincos_1d(per_axis, j)
                np.testing.assert_allclose(table[n], row[:dim], atol=1e-6)
                n += 1


def test_sincos_3d_split_dims_and_2d_image_table():
    table = posemb.sincos_3d(16, (2, 2, 2), uniform_power=False)  # time 8 | height 4 | width 4
    np.testing.assert_allclose(table[7], reference_sincos_1d(8, 1) + reference_sincos_1d(4, 1) +
                               reference_sincos_1d(4, 1), atol=1e-6)
    image = posemb.sincos_3d(8, (1, 3, 3))  # I-JEPA 2D: height 4 | width 4
    np.testing.assert_allclose(image[5], reference_sincos_1d(4, 1) + reference_sincos_1d(4, 2), atol=1e-6)


def test_vjepa_predictor_sincos_has_128_channels_per_axis():
    # Official: predictor width 384 gets exactly 128 / 128 / 128.
    table = posemb.sincos_3d(384, (1 + 1, 1, 2))
    np.testing.assert_allclose(table[1, 256:], reference_sincos_1d(128, 1), atol=1e-6)


@pytest.mark.parametrize("head_dim,expected", [(64, 20), (80, 26), (32, 10), (88, 28)])
def test_rope_axis_dims_match_the_official_ones(head_dim, expected):
    assert posemb.rope_axis_dim(head_dim) == expected


def reference_rope(x, coords, pairing):
    """Loop implementation of the official 3D RoPE for one token/head: x [Dh], coords (t, i, j)."""
    dh = len(x)
    a = 2 * ((dh // 3) // 2)
    m = a // 2
    out = list(x)
    for axis in range(3):
        pos = coords[axis]
        for c in range(a):
            k = c % m if pairing == "repeat" else c // 2
            theta = pos * 10000 ** (-k / m)
            base = axis * a
            if c % 2 == 0:
                out[base + c] = x[base + c] * math.cos(theta) - x[base + c + 1] * math.sin(theta)
            else:
                out[base + c] = x[base + c] * math.cos(theta) + x[base + c - 1] * math.sin(theta)
    return out


@pytest.mark.parametrize("pairing", ["repeat", "interleave"])
def test_rope_matches_loop_reference(pairing):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 5, 3, 32)).astype(np.float32)
    coords = rng.integers(0, 9, size=(2, 5, 3))
    out = np.asarray(posemb.apply_rope_3d(jnp.asarray(x), jnp.asarray(coords), pairing))
    for b in range(2):
        for n in range(5):
            for h in range(3):
                np.testing.assert_allclose(out[b, n, h], reference_rope(x[b, n, h], coords[b, n], pairing),
                                           atol=1e-4)


def test_interleave_is_a_relative_rotation_and_repeat_is_not():
    """Interleaved RoPE: <R(p)q, R(p')k> depends on p - p' only. The official 'repeat' quirk breaks this."""
    rng = np.random.default_rng(1)
    q, k = (jnp.asarray(rng.normal(size=(1, 1, 1, 64)), jnp.float32) for _ in range(2))

    def score(pairing, p1, p2):
        a = posemb.apply_rope_3d(q, jnp.asarray([[p1]]), pairing)
        b = posemb.apply_rope_3d(k, jnp.asarray([[p2]]), pairing)
        return float((a * b).sum())

    shift = ([1, 2, 3], [4, 0, 5]), ([3, 4, 5], [6, 2, 7])
    inter = [score("interleave", *pair) for pair in shift]
    rep = [score("repeat", *pair) for pair in shift]
    assert abs(inter[0] - inter[1]) < 1e-4
    assert abs(rep[0] - rep[1]) > 1e-3


def test_token_coordinates_are_time_major():
    grid = (2, 3, 4)
    coords = posemb.grid_coordinates(grid)
    np.testing.assert_array_equal(posemb.token_coordinates(np.arange(24), grid), coords)
    np.testing.assert_array_equal(coords[13], [1, 0, 1])  # 13 = 1 * 12 + 0 * 4 + 1
