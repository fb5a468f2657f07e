"""Attention kernel times (`jepa-jax bench --what attention`): forward and forward + backward of each
`model.attention` kernel that runs on this backend and, with torch installed (the `interop` extra), of torch's
scaled_dot_product_attention on the same arrays, measured alternately in one run. One dict per kernel: median and
min milliseconds over `repeats` calls after a compiling/warm-up call, the ratio to the XLA kernel and to torch's
(whose thread count, torch.get_num_threads(), is given).
"""

import math

import jax
import jax.numpy as jnp
import numpy as np

from jepa_jax import config as config_lib
from jepa_jax.benchmarks import timing
from jepa_jax.models import attention


def _median_min_ms(fn, repeats: int) -> tuple[float, float]:
    _, seconds = timing.time_calls(lambda _: fn(), repeats)
    return round(1e3 * float(np.median(seconds)), 2), round(1e3 * float(np.min(seconds)), 2)


def jax_kernels(q, k, v) -> dict:
    """{kernel: (forward, forward + backward) callables} for the kernels this backend runs as asked."""
    kernels = {}
    for kind in ("xla", "blocked", "cudnn"):
        if attention.unavailable(kind, q.dtype):
            continue
        forward = jax.jit(lambda q, k, v, kind=kind: attention.dot_product_attention(q, k, v, None, kind))
        loss = lambda q, k, v, kind=kind: jnp.sum(attention.dot_product_attention(q, k, v, None, kind))
        backward = jax.jit(jax.grad(loss, argnums=(0, 1, 2)))
        kernels[kind] = (lambda f=forward: jax.block_until_ready(f(q, k, v)),
                         lambda f=backward: jax.block_until_ready(f(q, k, v)))
    return kernels


def torch_kernel(q, k, v):
    """torch SDPA (forward, forward + backward) on copies of q, k, v and torch's CPU thread count, or None
    without torch."""
    try:
        import torch  # pylint: disable=g-import-not-at-top
    except ImportError:
        return None
    device = "cuda" if jax.default_backend() == "gpu" and torch.cuda.is_available() else "cpu"
    dtype = getattr(torch, jnp.dtype(q.dtype).name)
    tq, tk, tv = (torch.from_numpy(np.asarray(x, np.float32)).to(device, dtype).transpose(1, 2).contiguous()
                  .requires_grad_() for x in (q, k, v))
    sdpa = torch.nn.functional.scaled_dot_product_attention
    sync = torch.cuda.synchronize if device == "cuda" else lambda: None

    def forward():
        with torch.no_grad():
            sdpa(tq, tk, tv)
        sync()

    def backward():
        sdpa(tq, tk, tv).sum().backward()
        sync()
    return (forward, backward), torch.get_num_threads()


def encoder_shape(config) -> tuple[int, int, int, int]:
    """(batch, tokens, heads, head dim) of the config's encoder attention on whole clips."""
    size = config_lib.encoder_size(config)
    return (config.data.batch_size, math.prod(config_lib.token_grid(config)), size.num_heads,
            size.width // size.num_heads)


def kernel_times(shape: tuple[int, int, int, int], dtype: str = "float32", repeats: int = 7,
                 with_torch: bool = True) -> list[dict]:
    """One dict per kernel at q = k = v of `shape` [B, N, h, Dh] (see the module docstring)."""
    keys = jax.random.split(jax.random.key(0), 3)
    q, k, v = (jax.random.normal(key, shape, dtype) for key in keys)
    kernels = jax_kernels(q, k, v)
    torch_side = torch_kernel(q, k, v) if with_torch else None
    if torch_side is not None:
        kernels["torch_sdpa"] = torch_side[0]
    rows = {name: {"measure": "attention", "kernel": name, "shape_bnhd": list(shape), "dtype": dtype,
                   "backend": jax.default_backend()} for name in kernels}
    for pass_index, pass_name in enumerate(("forward", "forward_backward")):
        for name, fns in kernels.items():  # alternating kernels within each pass
            rows[name][f"{pass_name}_ms_median"], rows[name][f"{pass_name}_ms_min"] = _median_min_ms(
                fns[pass_index], repeats)
    if torch_side is not None:
        rows["torch_sdpa"]["torch_threads"] = torch_side[1]
    for row in rows.values():
        for pass_name in ("forward", "forward_backward"):
            for reference in ("xla", "torch_sdpa"):
                if reference in rows:
                    row[f"{pass_name}_ratio_to_{reference}"] = round(
                        row[f"{pass_name}_ms_median"] / rows[reference][f"{pass_name}_ms_median"], 3)
    return list(rows.values())
