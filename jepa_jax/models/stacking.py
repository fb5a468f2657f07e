"""The two layouts of transformer-block weights: unrolled (`blocks_0`, `blocks_1`, ... each a tree) and stacked
(`blocks`: one tree whose leaves have a leading [L] axis, logical axis name `layers`).

Checkpoints, exports and imports always hold the unrolled layout. A run with config.model.scan_layers keeps its
train state stacked, so the step scans over blocks and updates a few stacked leaves instead of one per block and
parameter; the checkpointer converts on save and restore (`unstack`, `stack_onto`). The functions work on any
tree that holds parameter-shaped dicts: parameters, the EMA copy, optimizer moments, a whole TrainState; leaves
may be arrays, numpy arrays, ShapeDtypeStructs (with shardings) or logical-partitioning boxes.
"""

import re

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec

BLOCK_PREFIXES = ("blocks", "predictor_blocks")
LAYERS_AXIS = "layers"
_NUMBERED = re.compile(rf"({'|'.join(BLOCK_PREFIXES)})_(\d+)")


def _is_dict(x) -> bool:
    return isinstance(x, dict)


def _is_box(x) -> bool:
    return isinstance(x, nn.Partitioned)


def _stack_leaves(*leaves):
    """One stacked leaf of L per-block leaves (boxes keep their names, with `layers` in front)."""
    first = leaves[0]
    if isinstance(first, nn.Partitioned):
        return first.replace(value=jnp.stack([x.value for x in leaves]), names=(LAYERS_AXIS,) + tuple(first.names))
    if isinstance(first, np.ndarray):
        return np.stack(leaves)
    return jnp.stack(leaves)


@jax.jit
def _take(x, layer):
    """x[layer] of a device array: compiled once per shape, not once per layer."""
    return jax.lax.dynamic_index_in_dim(x, layer, keepdims=False)


def _layer_of(leaf, layer: int):
    """Block `layer`'s slice of a stacked leaf."""
    if isinstance(leaf, nn.Partitioned):
        return leaf.replace(value=leaf.value[layer], names=tuple(leaf.names)[1:])
    if isinstance(leaf, jax.ShapeDtypeStruct):
        sharding = leaf.sharding
        if isinstance(sharding, NamedSharding):
            sharding = NamedSharding(sharding.mesh, PartitionSpec(*tuple(sharding.spec)[1:]))
        return jax.ShapeDtypeStruct(leaf.shape[1:], leaf.dtype, sharding=sharding)
    return _take(leaf, layer) if isinstance(leaf, jax.Array) else leaf[layer]


def stack_trees(trees):
    """L trees of the same structure (one per block) as one tree of [L, ...] leaves."""
    return jax.tree.map(_stack_leaves, *trees, is_leaf=_is_box)


def _stack_dict(node):
    if not _is_dict(node):
        return node
    out, numbered = {}, {}
    for key, value in node.items():
        match = _NUMBERED.fullmatch(key)
        if match:
            numbered.setdefault(match.group(1), {})[int(match.group(2))] = value
        else:
            out[key] = _stack_dict(value)
    for prefix, layers in numbered.items():
        if sorted(layers) != list(range(len(layers))):
            raise ValueError(f"{prefix}_*: blocks {sorted(layers)} are not numbered 0..{len(layers) - 1}")
        out[prefix] = stack_trees([layers[i] for i in range(len(layers))])
    return out


def _unstack_dict(node):
    if not _is_dict(node):
        return node
    out = {}
    for key, value in node.items():
        if key in BLOCK_PREFIXES:
            first = jax.tree.leaves(value, is_leaf=_is_box)[0]
            depth = (first.value if _is_box(first) else first).shape[0]
            for layer in range(depth):
                out[f"{key}_{layer}"] = jax.tree.map(lambda x: _layer_of(x, layer), value, is_leaf=_is_box)
        else:
            out[key] = _unstack_dict(value)
    return out


def stack(tree):
    """Every `{prefix}_0..{prefix}_{L-1}` group of blocks in `tree` as one `{prefix}` tree of [L, ...] leaves."""
    return jax.tree.map(_stack_dict, tree, is_leaf=_is_dict)


def unstack(tree):
    """The inverse of `stack`: every stacked `{prefix}` back as `{prefix}_0..{prefix}_{L-1}`."""
    return jax.tree.map(_unstack_dict, tree, is_leaf=_is_dict)


def is_stacked(tree) -> bool:
    """Whether `tree` holds any stacked blocks."""
    return any(in_stacked_block(path) for path, _ in jax.tree_util.tree_leaves_with_path(tree))


def in_stacked_block(path) -> bool:
    """Whether a tree path (jax.tree_util key path) runs through a stacked `{prefix}` (its leaves have a [L] axis)."""
    return any(getattr(key, "key", None) in BLOCK_PREFIXES for key in path)


def stack_onto(tree, like):
    """`tree` (unrolled) stacked, laid out with the shardings of `like` (stacked arrays or ShapeDtypeStructs)."""
    shardings = jax.tree.map(lambda x: x.sharding, like)
    return jax.jit(stack, out_shardings=shardings)(tree)
