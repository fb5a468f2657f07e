"""Softmax attention kernels behind one function, chosen by `model.attention`.

- "xla": jax.nn.dot_product_attention's XLA path (the whole [N, M] score matrix at once).
- "blocked": the same arithmetic in head-major layout, one tile at a time (lax.map): a group of heads x at most
  `QUERY_BLOCK` queries x all keys, at most about SCORES_PER_TILE scores, each tile recomputed in the backward
  pass. One tile's scores are live instead of all [B, h, N, M], which keeps them in cache on CPU and bounds the
  memory of long sequences.
- "cudnn": jax.nn.dot_product_attention's cuDNN (flash) kernel; GPU only, bf16/fp16 only.
- "splash": the Pallas splash-attention kernel (jax.experimental.pallas.ops.tpu); TPU only, no attention mask
  (a masked call runs "xla"). Sequences are padded to whole 128-token blocks with the padded keys masked out; the
  kernel runs per device under shard_map over the batch and heads axes (logical names, mapped by the rules).
- "auto": cudnn on a GPU for bf16/fp16 inputs, splash on a TPU, blocked on CPU, else xla.
"""

import functools
from typing import Literal

from absl import logging
import flax.linen as nn
import jax
from jax.sharding import PartitionSpec
import jax.numpy as jnp
import numpy as np

Implementation = Literal["auto", "xla", "blocked", "cudnn", "splash"]
IMPLEMENTATIONS = ("auto", "xla", "blocked", "cudnn", "splash")
SPLASH_BLOCKS = (512, 256, 128)  # splash tile sizes, largest first: the largest that divides the padded length
QUERY_BLOCK = 512
SCORES_PER_TILE = 1_500_000  # about 6 MB of fp32 scores: a tile stays in cache on CPU
_HALF = (jnp.bfloat16, jnp.float16)


def check(implementation: str) -> None:
    """One-line error for an unknown model.attention."""
    if implementation not in IMPLEMENTATIONS:
        raise ValueError(f"model.attention={implementation!r}: choose one of {list(IMPLEMENTATIONS)}")


@functools.cache
def _warn_once(message: str) -> None:
    logging.warning(message)


def unavailable(implementation: str, dtype) -> str | None:
    """Why `implementation` cannot run on this backend with `dtype` inputs, or None if it can."""
    if implementation == "cudnn" and not (jax.default_backend() == "gpu" and dtype in _HALF):
        return (f"model.attention='cudnn' needs a GPU and bf16/fp16 inputs (here: {jax.default_backend()}, "
                f"{jnp.dtype(dtype).name})")
    if implementation == "splash" and jax.default_backend() != "tpu":
        return f"model.attention='splash' needs a TPU (here: {jax.default_backend()})"
    return None


def resolve(implementation: str, dtype) -> str:
    """The kernel that runs: "auto" by backend and dtype; "cudnn" where it cannot run falls back (one warning
    line; config.model.attention_strict makes that an error when the config is checked)."""
    check(implementation)
    backend = jax.default_backend()
    reason = unavailable(implementation, dtype)
    if reason:
        fallback = resolve("auto", dtype)
        _warn_once(f"{reason}; using {fallback!r}")
        return fallback
    if implementation != "auto":
        return implementation
    if backend == "gpu" and dtype in _HALF:
        return "cudnn"
    return {"cpu": "blocked", "tpu": "splash"}.get(backend, "xla")


def _head_major_attention(q, k, v, mask):
    """q [B, h, n, Dh], k/v [B, h, M, Dh], mask None or bool [B, 1|h, n, M] -> [B, h, n, Dh].

    Scores, exponentials and their sums in fp32; the softmax is normalised after the weighted sum (a division of
    [n, Dh] instead of [n, M]), and its shift (the row maximum) carries no gradient: softmax does not depend on it.
    """
    scores = jnp.einsum("bhnd,bhmd->bhnm", q * jnp.asarray(q.shape[-1] ** -0.5, q.dtype), k,
                        preferred_element_type=jnp.float32)
    if mask is not None:
        scores = jnp.where(mask, scores, jnp.finfo(jnp.float32).min)
    weights = jnp.exp(scores - jax.lax.stop_gradient(scores.max(-1, keepdims=True)))
    out = jnp.einsum("bhnm,bhmd->bhnd", weights.astype(v.dtype), v, preferred_element_type=jnp.float32)
    return (out / weights.sum(-1, keepdims=True)).astype(v.dtype)


def _tile_sizes(batch: int, heads: int, n: int, m: int) -> tuple[int, int, int]:
    """(head group, query blocks, queries per block): ceil(n / QUERY_BLOCK) equal query blocks, and the largest
    number of heads (a divisor of `heads`, at least 1) whose batch x group x block x m scores fit SCORES_PER_TILE."""
    blocks = -(-n // QUERY_BLOCK)
    size = -(-n // blocks)  # 1,568 tokens: 4 blocks of 392, no padding
    fits = [g for g in range(1, heads + 1) if heads % g == 0 and batch * g * size * m <= SCORES_PER_TILE]
    return max(fits, default=1), blocks, size


def _blocked(q, k, v, mask):
    """q [B, N, h, Dh], k/v [B, M, h, Dh], mask None or [B|1, 1|h, N, M] -> [B, N, h, Dh], one tile at a time
    (lax.map, each tile recomputed in the backward pass): a group of heads x a block of queries x all keys, in
    head-major layout (N padded up to whole blocks; padded rows attend everywhere and are dropped). The batch
    axis stays whole, so a batch sharded over devices stays sharded."""
    batch, n, heads, head_dim = q.shape
    group, blocks, size = _tile_sizes(batch, heads, n, k.shape[1])
    pad = blocks * size - n

    def query_tiles(x, x_group):  # [B | 1, N, hx, d] -> [hx / x_group x blocks, B | 1, x_group, size, d]
        x = jnp.pad(x, ((0, 0), (0, pad), (0, 0), (0, 0)), constant_values=True if x.dtype == jnp.bool_ else 0)
        x = x.reshape(x.shape[0], blocks, size, x.shape[2] // x_group, x_group, x.shape[-1])
        return x.transpose(3, 1, 0, 4, 2, 5).reshape((-1,) + x.shape[:1] + (x_group, size, x.shape[-1]))

    def head_groups(x):  # [B, M, h, Dh] -> [h / group, B, group, M, Dh]
        return x.reshape(batch, x.shape[1], heads // group, group, head_dim).transpose(2, 0, 3, 1, 4)

    k_groups, v_groups = head_groups(k), head_groups(v)
    # A one-head mask has one tile per query block (tile t uses block t % blocks), a per-head one one per q tile.
    mask_tiles = None if mask is None else query_tiles(jnp.swapaxes(mask, 1, 2), 1 if mask.shape[1] == 1 else group)

    def one(tile, q_tile):
        mask_tile = None if mask is None else mask_tiles[tile % mask_tiles.shape[0]]
        return _head_major_attention(q_tile, k_groups[tile // blocks], v_groups[tile // blocks], mask_tile)

    tiles = query_tiles(q, group)
    out = jax.lax.map(jax.checkpoint(lambda args: one(*args)), (jnp.arange(tiles.shape[0]), tiles))
    out = out.reshape(heads // group, blocks, batch, group, size, head_dim).transpose(2, 1, 4, 0, 3, 5)
    return out.reshape(batch, blocks * size, heads, head_dim)[:, :n]


def _splash_block(length: int) -> int:
    return next(block for block in SPLASH_BLOCKS if length % block == 0)


def _splash(q, k, v, interpret: bool = False):
    """q [B, N, h, Dh], k/v [B, M, h, Dh] -> [B, N, h, Dh] with the splash kernel (interpret: Pallas's interpreter,
    which runs anywhere, for tests). N and M are padded to whole blocks; padded keys are masked, padded queries
    dropped."""
    from jax.experimental.pallas.ops.tpu.splash_attention import (splash_attention_kernel as splash,
                                                                  splash_attention_mask as splash_mask)
    n, m, heads = q.shape[1], k.shape[1], q.shape[2]
    block = SPLASH_BLOCKS[-1]
    padded_n, padded_m = -(-n // block) * block, -(-m // block) * block
    keys_kept = np.zeros((padded_n, padded_m), bool)
    keys_kept[:, :m] = True
    bq, bkv = _splash_block(padded_n), _splash_block(padded_m)
    sizes = splash.BlockSizes(block_q=bq, block_kv=bkv, block_kv_compute=bkv, block_q_dkv=bq, block_kv_dkv=bkv,
                              block_kv_dkv_compute=bkv, block_q_dq=bq, block_kv_dq=bkv)
    kernel = splash.make_splash_mha(splash_mask.MultiHeadMask([splash_mask.NumpyMask(keys_kept)] * heads),
                                    block_sizes=sizes, head_shards=1, q_seq_shards=1, interpret=interpret)

    def head_major(x, padded):  # [B, L, h, Dh] -> [B, h, padded, Dh]
        return jnp.pad(x, ((0, 0), (0, padded - x.shape[1]), (0, 0), (0, 0))).transpose(0, 2, 1, 3)

    def per_device(q, k, v):  # [b, h', L, Dh] blocks of the batch and heads: the kernel takes one sample's heads
        return jax.vmap(lambda q, k, v: kernel(q, k, v, segment_ids=None))(q, k, v)

    mesh, run = jax.sharding.get_abstract_mesh(), per_device
    if not mesh.empty:
        spec = PartitionSpec(*nn.logical_to_mesh_axes(("act_batch", "heads", None, None)))
        run = jax.shard_map(per_device, mesh=mesh, in_specs=(spec,) * 3, out_specs=spec, check_vma=False)
    scale = jnp.asarray(q.shape[-1] ** -0.5, q.dtype)
    out = run(head_major(q * scale, padded_n), head_major(k, padded_m), head_major(v, padded_m))
    return out.transpose(0, 2, 1, 3)[:, :n]


def dot_product_attention(q, k, v, mask=None, implementation: Implementation = "auto"):
    """Softmax(q k^T / sqrt(Dh)) v: q [B, N, h, Dh], k/v [B, M, h, Dh], mask None or bool [B, 1|h, N, M]
    -> [B, N, h, Dh]."""
    kernel = resolve(implementation, q.dtype)
    if kernel == "splash" and mask is None:
        return _splash(q, k, v)
    if kernel == "blocked":
        return _blocked(q, k, v, mask)
    return jax.nn.dot_product_attention(q, k, v, mask=mask, implementation="cudnn" if kernel == "cudnn" else "xla")
