"""Position encodings: fixed 3D sin-cos tables (V-JEPA) and 3D rotary embeddings (V-JEPA 2).

Token order everywhere is time-major: n = t * (H' * W') + i * W' + j for a token grid (T', H', W').
"""

import math
from typing import Literal

import jax.numpy as jnp
import numpy as np

RopePairing = Literal["repeat", "interleave"]


def grid_coordinates(grid: tuple[int, int, int]) -> np.ndarray:
    """Integer (t, i, j) coordinates of every token of a grid, in token order: [N, 3]."""
    t, h, w = np.meshgrid(*(np.arange(n) for n in grid), indexing="ij")
    return np.stack([t.ravel(), h.ravel(), w.ravel()], axis=-1)


def token_coordinates(indices, grid: tuple[int, int, int]):
    """(t, i, j) coordinates of flat token indices: [..., K] -> [..., K, 3] (numpy or jax)."""
    _, h, w = grid
    xp = jnp if not isinstance(indices, np.ndarray) else np
    return xp.stack([indices // (h * w), (indices % (h * w)) // w, indices % w], axis=-1)


def sincos_1d(dim: int, positions: np.ndarray) -> np.ndarray:
    """1D sin-cos embedding: [N] positions -> [N, dim] = [sin(p * w_k) | cos(p * w_k)], w_k = 1e4^(-2k/dim)."""
    if dim % 2:
        raise ValueError(f"sin-cos embedding dim must be even, got {dim}")
    omega = 1.0 / 10000.0 ** (np.arange(dim // 2, dtype=np.float64) / (dim / 2.0))
    angles = positions.astype(np.float64)[:, None] * omega[None, :]
    return np.concatenate([np.sin(angles), np.cos(angles)], axis=1)


def sincos_3d(dim: int, grid: tuple[int, int, int], uniform_power: bool = True) -> np.ndarray:
    """Fixed 3D sin-cos table for a (T', H', W') grid: [N, dim] float32, blocks ordered [time | height | width].

    `uniform_power` (all released V-JEPA models) gives each axis 2 * ceil(dim / 6) channels and truncates the
    concatenation to `dim`; otherwise time gets dim / 2 and height, width dim / 4 each. A grid with T' = 1 gives the
    2D image table [height | width] with dim / 2 channels each, as in I-JEPA.
    """
    coords = grid_coordinates(grid)
    if grid[0] == 1:
        parts = [sincos_1d(dim // 2, coords[:, 1]), sincos_1d(dim // 2, coords[:, 2])]
    elif uniform_power:
        per_axis = 2 * math.ceil(dim / 6)
        parts = [sincos_1d(per_axis, coords[:, a]) for a in range(3)]
    else:
        parts = [sincos_1d(dim // 2, coords[:, 0]), sincos_1d(dim // 4, coords[:, 1]),
                          sincos_1d(dim // 4, coords[:, 2])]
    return np.concatenate(parts, axis=1)[:, :dim].astype(np.float32)


def rope_axis_dim(head_dim: int) -> int:
    """Channels rotated per axis in V-JEPA 2's 3D RoPE: a = 2 * floor(floor(head_dim / 3) / 2)."""
    return 2 * ((head_dim // 3) // 2)


def _rope_angles(positions, axis_dim: int, pairing: RopePairing):
    """Angles for one axis: positions [..., K] -> [..., K, axis_dim] in float32."""
    half = axis_dim // 2
    omega = 1.0 / 10000.0 ** (jnp.arange(half, dtype=jnp.float32) / half)
    # "repeat" reproduces the released V-JEPA 2 weights: frequencies tiled [w0..w(m-1), w0..w(m-1)] while the
    # rotation pairs adjacent channels (2i, 2i+1). "interleave" is the textbook rotation [w0, w0, w1, w1, ...].
    omega = jnp.tile(omega, 2) if pairing == "repeat" else jnp.repeat(omega, 2)
    return positions.astype(jnp.float32)[..., None] * omega


def _rotate_pairs(x, angles):
    """Rotate adjacent channel pairs: out[2i] = x[2i]cos - x[2i+1]sin, out[2i+1] = x[2i+1]cos + x[2i]sin."""
    partner = jnp.stack([-x[..., 1::2], x[..., 0::2]], axis=-1).reshape(x.shape)
    return x * jnp.cos(angles) + partner * jnp.sin(angles)


def apply_rope_3d(x, coords, pairing: RopePairing = "repeat"):
    """3D RoPE on queries or keys.

    Args:
        x: [B, N, heads, head_dim] queries or keys.
        coords: [B, N, 3] or [N, 3] integer (t, i, j) token coordinates.
        pairing: "repeat" (official V-JEPA 2, needed to load its weights) or "interleave".

    Returns:
        [B, N, heads, head_dim]: channels [0, a) rotated by t, [a, 2a) by i, [2a, 3a) by j, the rest unchanged.
    """
    a = rope_axis_dim(x.shape[-1])
    coords = jnp.broadcast_to(coords, x.shape[:2] + (3,))
    rotated = []
    for axis in range(3):
        angles = _rope_angles(coords[..., axis], a, pairing)[:, :, None, :]  # [B, N, 1, a]
        chunk = x[..., axis * a:(axis + 1) * a].astype(jnp.float32)
        rotated.append(_rotate_pairs(chunk, angles).astype(x.dtype))
    return jnp.concatenate(rotated + [x[..., 3 * a:]], axis=-1)
