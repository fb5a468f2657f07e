"""Target topologies for pre-flight sizing: chips, memory and peak FLOP/s per chip, and devices that stand for them.

Names follow the cloud consoles: `v4-N`, `v5p-N` (N TensorCores, two per chip), `v5e-N` / `v5litepod-N`, `v6e-N`
(N chips), and `gpu:NODESxGPUS` (H100 80 GB nodes). `abstract_devices` gives the devices a mesh of that topology is
built over without owning them: with libtpu installed (the `tpu` extra) the real v5p / v5e / v6e topology, so
the step is compiled ahead of time by the TPU compiler (jax.experimental.topologies); otherwise, and for v4 and
GPUs, that many CPU devices (XLA:CPU's memory analysis then stands in for the accelerator's).
"""

import dataclasses
import importlib.util
import math
import os
import re

import jax

from jepa_jax import metrics

GIB = 2 ** 30


@dataclasses.dataclass(frozen=True)
class Generation:
    memory_bytes: int  # HBM per chip
    device_kind: str  # as JAX reports it; its peak FLOP/s comes from metrics.PEAK_FLOPS
    cores_per_chip: int  # TensorCores counted in the slice name (v4-N, v5p-N count cores)
    torus_dims: int  # 3 (v4, v5p) or 2 (v5e, v6e) chip grid


GENERATIONS = {
    "v4": Generation(32 * GIB, "TPU v4", 2, 3),
    "v5p": Generation(95 * GIB, "TPU v5", 2, 3),
    "v5e": Generation(16 * GIB, "TPU v5 lite", 1, 2),
    "v6e": Generation(32 * GIB, "TPU v6 lite", 1, 2),
    "gpu": Generation(80 * 10 ** 9, "NVIDIA H100 80GB HBM3", 1, 0),  # H100 SXM
}
_ALIASES = {"v5litepod": "v5e"}
AOT_GENERATIONS = ("v5p", "v5e", "v6e")  # libtpu's abstract topologies give one device per chip for these
EXAMPLES = ("v4-32", "v5e-256", "v5p-256", "v6e-64", "gpu:8x8")


@dataclasses.dataclass(frozen=True)
class Topology:
    name: str
    platform: str  # "tpu" or "gpu"
    generation: str
    chips: int
    chip_grid: tuple[int, ...]  # TPU chip torus, e.g. (4, 8, 8); GPU (nodes, gpus per node)
    memory_bytes: int
    peak_flops: float


def _tpu_grid(chips: int, dims: int) -> tuple[int, ...]:
    """The chip grid of a slice as the consoles write it: doubling the axes in turn, first in order, then from the
    last one back (3D: 2x2x1, 2x2x2, 2x2x4, 2x4x4, 4x4x4, 4x4x8; 2D: 2x2, 2x4, 4x4, 4x8)."""
    grid = [1] * dims
    order = list(range(dims)) + list(reversed(range(dims))) * int(math.log2(chips))
    for axis in order[:int(math.log2(chips))]:
        grid[axis] *= 2
    return tuple(grid)


def get(name: str) -> Topology:
    """The Topology called `name` (e.g. v5p-256, gpu:8x8); a one-line error listing the forms it knows."""
    gpu = re.fullmatch(r"gpu:(\d+)x(\d+)", name)
    tpu = re.fullmatch(r"(v4|v5p|v5e|v5litepod|v6e)-(\d+)", name)
    if gpu and int(gpu[1]) > 0 and int(gpu[2]) > 0:
        nodes, per_node = int(gpu[1]), int(gpu[2])
        spec = GENERATIONS["gpu"]
        return Topology(name, "gpu", "gpu", nodes * per_node, (nodes, per_node), spec.memory_bytes,
                        metrics.peak_flops_of_kind(spec.device_kind))
    if tpu:
        generation = _ALIASES.get(tpu[1], tpu[1])
        spec, count = GENERATIONS[generation], int(tpu[2])
        chips = count // spec.cores_per_chip
        if count % spec.cores_per_chip == 0 and chips >= 1 and chips & (chips - 1) == 0:
            return Topology(name, "tpu", generation, chips, _tpu_grid(chips, spec.torus_dims), spec.memory_bytes,
                            metrics.peak_flops_of_kind(spec.device_kind))
    raise ValueError(f"unknown topology {name!r}: use v4-N, v5p-N (N TensorCores, 2 per chip), v5e-N or v6e-N (N "
                     f"chips, a power of two), or gpu:NODESxGPUS, e.g. {', '.join(EXAMPLES)}")


def has_tpu_compiler() -> bool:
    """Whether libtpu is installed, so a TPU step can be compiled ahead of time on this host."""
    return importlib.util.find_spec("libtpu") is not None


def compiles_for_tpu(topology: Topology) -> bool:
    """Whether this host can compile for the topology's real TPU chips (else CPU devices stand for them)."""
    return topology.generation in AOT_GENERATIONS and has_tpu_compiler()


def abstract_devices(topology: Topology) -> tuple[list, str]:
    """(devices standing for the topology's chips, how): "tpu-aot" (the TPU topology, from libtpu) or "cpu" (that
    many CPU devices). One-line error naming the fix when neither is possible."""
    if compiles_for_tpu(topology):
        from jax.experimental import topologies  # pylint: disable=g-import-not-at-top
        # libtpu takes a lock file per host unless told otherwise; a pre-flight only compiles (nothing runs on a
        # TPU), so several may share it (and a training process on this host keeps its TPU).
        os.environ.setdefault("ALLOW_MULTIPLE_LIBTPU_LOAD", "1")
        shape = "x".join(map(str, topology.chip_grid))
        devices = topologies.get_topology_desc(platform="tpu", topology_name=f"{topology.generation}:{shape}").devices
        if len(devices) == topology.chips:
            return list(devices), "tpu-aot"
    cpus = jax.devices("cpu")
    if len(cpus) < topology.chips:
        extra = ("install the tpu extra (libtpu: the TPU compiler) or "
                 if topology.generation in AOT_GENERATIONS else "")
        raise ValueError(f"pre-flight for {topology.name} needs {topology.chips} devices, this process has "
                         f"{len(cpus)} CPU devices: {extra}set XLA_FLAGS=--xla_force_host_platform_device_count="
                         f"{topology.chips} before JAX starts")
    return cpus[:topology.chips], "cpu"
