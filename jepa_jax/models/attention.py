"""Softmax attention kernels behind one function, chosen by `model.attention`.

- "xla": jax.nn.dot_product_attention's XLA path (the whole [N, M] score matrix at once).
- "blocked": the same arithmetic in head-major layout, at most `QUERY_BLOCK` queries at a time (lax.map), each
  block rematerialised in the backward pass: the scores of one block ([B, h, <= QUERY_BLOCK, M]) are live
  instead of all [B, h, N, M], which keeps long sequences in cache on CPU and bounds their memory.
- "cudnn": jax.nn.dot_product_attention's cuDNN (flash) kernel; GPU only, bf16/fp16 only.
- "auto": cudnn on a GPU for bf16/fp16 inputs, blocked on other backends for sequences longer than
  QUERY_BLOCK, else xla.
"""

import functools
from typing import Literal

import jax
import jax.numpy as jnp
from absl import logging

Implementation = Literal["auto", "xla", "blocked", "cudnn"]
IMPLEMENTATIONS = ("auto", "xla", "blocked", "cudnn")
QUERY_BLOCK = 512
_HALF = (jnp.bfloat16, jnp.float16)


def check(implementation: str) -> None:
    """One-line error for an unknown model.attention."""
    if implementation not in IMPLEMENTATIONS:
        raise ValueError(f"model.attention={implementation!r}: choose one of {list(IMPLEMENTATIONS)}")


@functools.cache
def _warn_once(message: str) -> None:
    logging.warning(message)


def resolve(implementation: str, num_queries: int, dtype) -> str:
    """The kernel that runs: "auto" by backend, dtype and length; "cudnn" where it cannot run falls back (one
    warning line)."""
    check(implementation)
    on_gpu = jax.default_backend() == "gpu"
    if implementation == "cudnn" and not (on_gpu and dtype in _HALF):
        fallback = resolve("auto", num_queries, dtype)
        _warn_once(f"model.attention='cudnn' needs a GPU and bf16/fp16 inputs (here: {jax.default_backend()}, "
                   f"{jnp.dtype(dtype).name}); using {fallback!r}")
        return fallback
    if implementation != "auto":
        return implementation
    if on_gpu and dtype in _HALF:
        return "cudnn"
    return "blocked" if not on_gpu and num_queries > QUERY_BLOCK else "xla"


def _head_major_attention(q, k, v, mask):
    """q [B, h, n, Dh], k/v [B, h, M, Dh], mask None or bool [B, 1|h, n, M] -> [B, h, n, Dh] (scores in fp32)."""
    scores = jnp.einsum("bhnd,bhmd->bhnm", q * jnp.asarray(q.shape[-1] ** -0.5, q.dtype), k,
                        preferred_element_type=jnp.float32)
    if mask is not None:
        scores = jnp.where(mask, scores, jnp.finfo(jnp.float32).min)
    return jnp.einsum("bhnm,bhmd->bhnd", jax.nn.softmax(scores).astype(v.dtype), v)


def _blocked(q, k, v, mask):
    """q [B, N, h, Dh], k/v [B, M, h, Dh], mask None or [B, 1|h, N, M] -> [B, N, h, Dh] in head-major layout,
    ceil(N / QUERY_BLOCK) equal blocks of queries at a time (N padded up to a multiple of the block; padded rows
    attend everywhere and are dropped)."""
    batch, n, heads, head_dim = q.shape
    blocks = -(-n // QUERY_BLOCK)
    size = -(-n // blocks)  # 1,568 tokens: 4 blocks of 392, no padding
    pad = blocks * size - n
    q, k, v = (jnp.swapaxes(x, 1, 2) for x in (q, k, v))  # [B, h, *, Dh]
    q = jnp.pad(q, ((0, 0), (0, 0), (0, pad), (0, 0)))
    q_blocks = jnp.moveaxis(q.reshape(batch, heads, blocks, size, head_dim), 2, 0)
    if mask is None:
        mask_blocks = None
    else:
        mask = jnp.pad(mask, ((0, 0), (0, 0), (0, pad), (0, 0)), constant_values=True)
        mask_blocks = jnp.moveaxis(mask.reshape(mask.shape[:2] + (blocks, size, mask.shape[-1])), 2, 0)
    one = jax.checkpoint(lambda args: _head_major_attention(args[0], k, v, args[1]))
    out = jax.lax.map(one, (q_blocks, mask_blocks))  # [blocks, B, h, size, Dh]
    out = jnp.moveaxis(out, 0, 2).reshape(batch, heads, blocks * size, head_dim)[:, :, :n]
    return jnp.swapaxes(out, 1, 2)


def dot_product_attention(q, k, v, mask=None, implementation: Implementation = "auto"):
    """Softmax(q k^T / sqrt(Dh)) v: q [B, N, h, Dh], k/v [B, M, h, Dh], mask None or bool [B, 1|h, N, M]
    -> [B, N, h, Dh]."""
    kernel = resolve(implementation, q.shape[1], q.dtype)
    if kernel == "blocked" and q.shape[1] > QUERY_BLOCK:
        return _blocked(q, k, v, mask)
    return jax.nn.dot_product_attention(q, k, v, mask=mask, implementation="cudnn" if kernel == "cudnn" else "xla")
