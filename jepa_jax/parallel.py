"""Meshes, logical-axis rules and shardings. The only module that names mesh axes.

Mesh axes: `data` (pure data parallel), `fsdp` (data parallel with sharded parameters), `tensor` (Megatron-style
heads/MLP split). The batch is sharded over (data, fsdp). Model code names logical axes only (`embed`, `mlp`,
`heads`, `kv`, and `act_*` for activations); RULES maps them to mesh axes.
"""

import math
from typing import Any, Callable

import flax.linen as nn
import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec as P

MESH_AXES = ("data", "fsdp", "tensor")
BATCH_AXES = ("data", "fsdp")

RULES = (
    ("act_batch", BATCH_AXES),
    ("act_tokens", None),
    ("act_embed", None),
    ("embed", "fsdp"),
    ("mlp", "tensor"),
    ("heads", "tensor"),
    ("kv", None),
)


def mesh_shape(mesh_config, num_devices: int) -> tuple[int, int, int]:
    """Resolve config.mesh {data, fsdp, tensor} (one of them may be -1 = the rest) for `num_devices`."""
    sizes = [mesh_config[axis] for axis in MESH_AXES]
    if sizes.count(-1) > 1 or any(s == 0 or s < -1 for s in sizes):
        raise ValueError(f"config.mesh={dict(zip(MESH_AXES, sizes))}: sizes must be positive, at most one -1")
    known = math.prod(s for s in sizes if s != -1)
    if -1 in sizes:
        if num_devices % known:
            raise ValueError(f"config.mesh={dict(zip(MESH_AXES, sizes))} does not divide {num_devices} devices")
        sizes[sizes.index(-1)] = num_devices // known
    if math.prod(sizes) != num_devices:
        raise ValueError(f"config.mesh={dict(zip(MESH_AXES, sizes))} needs {math.prod(sizes)} devices, "
                         f"{num_devices} are available: set one axis to -1")
    return tuple(sizes)


def make_mesh(mesh_config, devices=None) -> Mesh:
    """A (data, fsdp, tensor) mesh over `devices` (default: all devices of all processes), Auto axis types."""
    devices = jax.devices() if devices is None else devices
    shape = mesh_shape(mesh_config, len(devices))
    return jax.make_mesh(shape, MESH_AXES, axis_types=(AxisType.Auto,) * 3, devices=devices)


def logical_shardings(boxed_tree, mesh: Mesh, rules=RULES):
    """NamedShardings for a tree whose leaves may carry logical-partitioning boxes (unboxed leaves: replicated)."""
    specs = nn.get_partition_spec(boxed_tree)
    return nn.logical_to_mesh_sharding(specs, mesh, rules)


def init_sharded(init_fn: Callable[[], Any], mesh: Mesh, rules=RULES):
    """Run `init_fn` (which returns a tree with logical boxes) under jit so every leaf is born sharded.

    Returns (unboxed tree, its shardings); no full copy is ever materialised on one device.
    """
    with jax.set_mesh(mesh), nn.logical_axis_rules(rules):
        abstract = jax.eval_shape(init_fn)
        shardings = logical_shardings(abstract, mesh, rules)
        tree = jax.jit(lambda: nn.meta.unbox(init_fn()), out_shardings=shardings)()
    return tree, shardings


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """Leading (batch) axis over (data, fsdp); all other axes replicated."""
    return NamedSharding(mesh, P(BATCH_AXES))


def host_to_global(local_batch, mesh: Mesh):
    """Assemble the global batch from each process's local numpy shard (leading axis split over processes)."""
    sharding = batch_sharding(mesh)
    return jax.tree.map(lambda x: jax.make_array_from_process_local_data(sharding, np.asarray(x)), local_batch)


def local_batch_size(global_batch_size: int) -> int:
    """Per-process batch size; the global batch must split evenly over processes."""
    if global_batch_size % jax.process_count():
        raise ValueError(f"config.data.batch_size={global_batch_size} must be divisible by the number of "
                         f"processes ({jax.process_count()})")
    return global_batch_size // jax.process_count()
