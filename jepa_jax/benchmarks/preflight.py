"""Pre-flight: will a config fit a target topology, and how fast should it run, before renting it.

`preflight(config, "v5p-256")` builds the run's mesh over devices standing for the topology (topology.py: the real
TPU topology through libtpu, compiled ahead of time by the TPU compiler, or that many CPU devices), builds the
sharded train state abstractly (nothing allocated), lowers and compiles the train step, and reads off:
- the mesh, and each state group's bytes per device beside the ideal (its total / chips) and its largest leaf's
  sharding;
- activation memory: the compiled step's temporary buffers (XLA's memory analysis, at the config's remat policy);
- FLOPs per step (benchmarks/flops.py, the analytic JEPA count) and, from the peak table, the step time at 100 %
  MFU and at `assumed_mfu`, with tokens/s.
A plan that does not fit the chip's memory fails in one line naming the largest item and the knob to turn.
Attention compiles with the kernel `model.attention` picks on this host ("auto": the blocked, memory-efficient
one), standing in for splash attention on a TPU.
"""

import contextlib
import math
import re
from typing import NoReturn

import jax
from jax.experimental.compilation_cache import compilation_cache
import numpy as np

from jepa_jax import config as config_lib, topology as topology_lib
from jepa_jax.benchmarks import flops
from jepa_jax.topology import GIB
from jepa_jax.train import loop


@contextlib.contextmanager
def _no_compilation_cache():
    """XLA's persistent compilation cache off: an executable for devices this host does not have cannot be loaded."""
    enabled = jax.config.jax_enable_compilation_cache
    jax.config.update("jax_enable_compilation_cache", False)
    compilation_cache.reset_cache()  # JAX decides once per process whether to use the cache: ask it again
    try:
        yield
    finally:
        jax.config.update("jax_enable_compilation_cache", enabled)
        compilation_cache.reset_cache()


def _group_bytes(state) -> dict:
    """{group: (bytes per device, total bytes, PartitionSpec of its largest leaf)} of a sharded abstract state."""
    groups = {"encoder": state.params["encoder"], "predictor": state.params.get("predictor"),
              "ema": state.ema_params, "optimizer": state.opt_state}
    out = {}
    for name, tree in groups.items():
        leaves = jax.tree.leaves(tree)
        if not leaves:
            continue
        per_device = sum(math.prod(x.sharding.shard_shape(x.shape)) * x.dtype.itemsize for x in leaves)
        total = sum(math.prod(x.shape) * x.dtype.itemsize for x in leaves)
        largest = max(leaves, key=lambda x: math.prod(x.shape))
        out[name] = (per_device, total, str(largest.sharding.spec))
    return out


def _step_flops(config, maskers) -> float | None:
    """Analytic FLOPs of one step of a JEPA objective (None for the others)."""
    if config.objective not in ("ema", "sigreg"):
        return None
    masks = [tuple(jax.ShapeDtypeStruct(s, np.int32) for s in m.shapes(config.data.batch_size)) for m in maskers]
    return flops.jepa_step_flops(config, masks)


def _knob(config, largest: str) -> str:
    """The setting to turn when `largest` ("activations" or "state") does not fit."""
    if largest == "activations":
        if config.model.remat in ("none", False):
            return "set --config.model.remat=nothing_saveable or lower --config.data.batch_size"
        return "lower --config.data.batch_size (--config.train.grad_accum keeps the global batch)"
    return "raise --config.mesh.fsdp (shards parameters, EMA copy and optimizer state over more chips)"


def preflight(config, topology: str, assumed_mfu: float = 0.4) -> dict:
    """Size `config`'s train step on `topology` (topology.get's names). Returns the table's figures; raises a
    one-line ValueError when the step does not fit the chip's memory."""
    target = topology_lib.get(topology)
    if not 0.0 < assumed_mfu <= 1.0:
        raise ValueError(f"assumed_mfu={assumed_mfu}: must be in (0, 1]")
    devices, compiled_for = topology_lib.abstract_devices(target)
    run = loop.build_run(config, devices, abstract=True)
    groups = _group_bytes(run.state)
    state_bytes = sum(per_device for per_device, _, _ in groups.values())
    try:
        with _no_compilation_cache():
            memory = loop.lower(run).compile().memory_analysis()
    except jax.errors.JaxRuntimeError as err:
        temporaries = _compiler_out_of_memory(str(err))
        if temporaries is None:
            raise
        _refuse(config, target, state_bytes + temporaries, groups, temporaries)
    activations = int(memory.temp_size_in_bytes)
    needed = int(memory.argument_size_in_bytes) + activations + int(memory.output_size_in_bytes) - int(
        memory.alias_size_in_bytes)
    step_flops = _step_flops(config, run.maskers)
    tokens = config.data.batch_size * math.prod(config_lib.token_grid(config))
    at_peak = step_flops / (target.chips * target.peak_flops) if step_flops else None
    result = {
        "topology": target.name, "compiled_for": compiled_for, "chips": target.chips,
        "chip_grid": list(target.chip_grid), "mesh": dict(run.mesh.shape),
        "memory_per_chip_bytes": target.memory_bytes, "state": {
            name: {"bytes_per_device": per_device, "ideal_bytes_per_device": total / target.chips, "sharding": spec}
            for name, (per_device, total, spec) in groups.items()},
        "state_bytes_per_device": state_bytes, "activation_bytes_per_device": activations,
        "needed_bytes_per_device": needed, "fits": needed <= target.memory_bytes,
        "flops_per_step": step_flops, "step_s_at_peak": at_peak, "assumed_mfu": assumed_mfu,
        "expected_step_s": at_peak / assumed_mfu if at_peak else None,
        "expected_tokens_per_s": tokens * assumed_mfu / at_peak if at_peak else None,
    }
    if not result["fits"]:
        _refuse(config, target, needed, groups, activations)
    return result


def _compiler_out_of_memory(message: str) -> int | None:
    """The temporaries' bytes of the TPU compiler's out-of-memory error ("... HLO temporaries (1.25T) exceeds
    available HBM ..."), or None for another error."""
    found = re.search(r"RESOURCE_EXHAUSTED.*?temporaries \(([\d.]+)([KMGT]?)\)", message)
    if not found:
        return None
    return int(float(found[1]) * 1024 ** " KMGT".index(found[2] or " "))


def _refuse(config, target, needed: int, groups: dict, activations: int) -> NoReturn:
    """The one-line error of a plan that does not fit: what is needed, the largest item and the knob to turn."""
    items = {**{f"{name} state": v[0] for name, v in groups.items()}, "activations": activations}
    largest = max(items, key=items.get)
    raise ValueError(
        f"{config.model.size} with batch {config.data.batch_size} does not fit {target.name}: "
        f"{needed / GIB:.1f} GiB per chip needed, {target.memory_bytes / GIB:.1f} GiB there; largest: {largest} "
        f"{items[largest] / GIB:.1f} GiB: {_knob(config, 'activations' if largest == 'activations' else 'state')}")


def table(result: dict) -> str:
    """The pre-flight figures as a Markdown table."""
    def gib(size: float) -> str:
        return f"{size / GIB:.3g} GiB" if size >= GIB / 10 else f"{size / 2 ** 20:.3g} MiB"

    rows = [("topology", f"{result['topology']} ({result['chips']} chips, grid "
                         f"{'x'.join(map(str, result['chip_grid']))}, compiled for {result['compiled_for']})"),
            ("mesh", ", ".join(f"{k} {v}" for k, v in result["mesh"].items()))]
    for name, s in result["state"].items():
        rows.append((f"{name} state per device", f"{gib(s['bytes_per_device'])} (ideal "
                                                 f"{gib(s['ideal_bytes_per_device'])}; largest leaf {s['sharding']})"))
    rows += [("activations per device", gib(result["activation_bytes_per_device"])),
             ("needed per device", f"{gib(result['needed_bytes_per_device'])} of "
                                   f"{gib(result['memory_per_chip_bytes'])}")]
    if result["flops_per_step"]:
        rows += [("FLOPs per step", f"{result['flops_per_step']:.3e}"),
                 ("step time at 100 % MFU", f"{result['step_s_at_peak']:.3g} s"),
                 (f"expected step time at {result['assumed_mfu']:.0%} MFU", f"{result['expected_step_s']:.3g} s"),
                 ("expected tokens/s", f"{result['expected_tokens_per_s']:.4g}")]
    return "\n".join(["| item | value |", "|---|---|"] + [f"| {k} | {v} |" for k, v in rows])
