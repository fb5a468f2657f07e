"""Meshes, logical-axis rules and shardings. The only module that names mesh axes.

Mesh axes: `data` (pure data parallel), `fsdp` (data parallel with sharded parameters), `tensor` (Megatron-style
heads/MLP split). The batch is sharded over (data, fsdp). Model code names logical axes only (`embed`, `mlp`,
`heads`, `kv`, `layers` for stacked blocks, and `act_*` for activations); RULES maps them to mesh axes.
"""

import contextlib
import math
import os
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
    ("layers", None),  # the [L] axis of stacked blocks (models/stacking.py)
    ("members", None),  # the [G] axis of a probe grid (train/state.py replicate)
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


def _axes(entry) -> tuple[str, ...]:
    """The mesh axes of one PartitionSpec entry (None, an axis name or a tuple of them)."""
    return (entry,) if isinstance(entry, str) else tuple(entry or ())


def _drop_trivial_axes(spec: P, mesh: Mesh) -> P:
    """Remove mesh axes of size 1 from a PartitionSpec (under pure DP every parameter reads P())."""
    def keep(entry):
        axes = tuple(a for a in _axes(entry) if mesh.shape[a] > 1)
        return None if not axes else axes[0] if len(axes) == 1 else axes
    return P(*(keep(e) for e in spec))


def _unboxed(boxed_tree):
    """The values inside logical-partitioning boxes (works on abstract trees, unlike nn.meta.unbox)."""
    return jax.tree.map(lambda x: x.value if isinstance(x, nn.meta.AxisMetadata) else x, boxed_tree,
                        is_leaf=lambda x: isinstance(x, nn.meta.AxisMetadata))


def _without_empty_boxes(boxed_tree):
    """Unwrap boxes that hold no array (optax's MaskedNode for frozen parameters, boxed like the parameter)."""
    empty = lambda x: isinstance(x, nn.meta.AxisMetadata) and not jax.tree.leaves(x.value)
    return jax.tree.map(lambda x: x.value if empty(x) else x, boxed_tree,
                        is_leaf=lambda x: isinstance(x, nn.meta.AxisMetadata))


def logical_shardings(boxed_tree, mesh: Mesh, rules=RULES):
    """NamedShardings for a tree whose leaves may carry logical-partitioning boxes (unboxed leaves: replicated)."""
    specs = nn.logical_to_mesh(nn.get_partition_spec(boxed_tree), rules)
    return jax.tree.map(lambda spec: NamedSharding(mesh, _drop_trivial_axes(spec, mesh)), specs,
                        is_leaf=lambda x: isinstance(x, P))


def check_divisible(boxed_tree, shardings, mesh: Mesh) -> None:
    """One-line ValueError naming the first parameter whose dimension does not split over its mesh axes."""
    leaves = jax.tree_util.tree_leaves_with_path(_unboxed(boxed_tree))
    names = jax.tree.leaves(nn.get_partition_spec(boxed_tree), is_leaf=lambda x: isinstance(x, P))
    for (path, leaf), sharding, logical in zip(leaves, jax.tree.leaves(shardings), names):
        for dim, (size, entry) in enumerate(zip(leaf.shape, sharding.spec)):
            axes = _axes(entry)
            parts = math.prod(mesh.shape[a] for a in axes)
            if size % parts:
                raise ValueError(
                    f"{jax.tree_util.keystr(path, simple=True, separator='.')}: dimension {dim} "
                    f"('{logical[dim]}', size {size}) does not split over mesh axis {'x'.join(axes)} of size "
                    f"{parts}: change config.mesh.{axes[0]} or the model width/heads")


@contextlib.contextmanager
def on_mesh(mesh: Mesh, rules=RULES):
    """The context that models are initialised, lowered and run under: `mesh` as the current mesh and `rules`
    mapping their logical axis names to its axes."""
    with jax.set_mesh(mesh), nn.logical_axis_rules(rules):
        yield


def init_sharded(init_fn: Callable[[], Any], mesh: Mesh, rules=RULES):
    """Run `init_fn` (which returns a tree with logical boxes) under jit so every leaf is born sharded.

    Returns (unboxed tree, its shardings); no full copy is ever materialised on one device. Raises a one-line
    ValueError before compiling if a parameter does not divide over its mesh axes.
    """
    with on_mesh(mesh, rules):
        shardings = plan_shardings(init_fn, mesh, rules)
        tree = jax.jit(lambda: nn.meta.unbox(init_fn()), out_shardings=shardings)()
    return tree, shardings


def plan_shardings(init_fn: Callable[[], Any], mesh: Mesh, rules=RULES):
    """Shardings of what `init_fn` returns, from its abstract shapes (nothing is allocated); checks divisibility.

    Call under `jax.set_mesh(mesh)` and `nn.logical_axis_rules(rules)`.
    """
    return jax.tree.map(lambda x: x.sharding, abstract_sharded(init_fn, mesh, rules))


def abstract_sharded(init_fn: Callable[[], Any], mesh: Mesh, rules=RULES):
    """ShapeDtypeStructs, with their shardings, of the unboxed tree `init_fn` returns; checks divisibility.

    Call under `jax.set_mesh(mesh)` and `nn.logical_axis_rules(rules)`.
    """
    abstract = _without_empty_boxes(jax.eval_shape(init_fn))
    shardings = logical_shardings(abstract, mesh, rules)
    check_divisible(abstract, shardings, mesh)
    return jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), _unboxed(abstract),
                        shardings)


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


def cluster_detected(environ=os.environ) -> bool:
    """True inside a multi-process job that jax.distributed.initialize() configures by itself (Cloud TPU pod
    slices, SLURM with several tasks, or an explicit JAX_COORDINATOR_ADDRESS)."""
    if environ.get("JAX_COORDINATOR_ADDRESS"):
        return True
    if int(environ.get("SLURM_NTASKS", "1") or 1) > 1 and "SLURM_JOB_ID" in environ:
        return True
    return "," in environ.get("TPU_WORKER_HOSTNAMES", "")


def initialize_distributed(coordinator_address: str | None = None, num_processes: int | None = None,
                           process_id: int | None = None, multihost: bool = False) -> None:
    """Start jax.distributed: from explicit flags, else from the cluster (always with `multihost`, e.g. on TPU
    VMs whose hosts JAX finds through the metadata server); a no-op for one process.

    Must run before anything touches a JAX device.
    """
    if coordinator_address:
        if num_processes is None or process_id is None:
            raise ValueError("--coordinator_address needs --num_processes and --process_id")
        jax.distributed.initialize(coordinator_address, num_processes=num_processes, process_id=process_id)
    elif multihost or cluster_detected():
        jax.distributed.initialize()
