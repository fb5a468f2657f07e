"""Orbax checkpoints of the TrainState, the grain data iterator and the resolved config, behind one small facade.

A checkpoint `{workdir}/checkpoints/{step}` holds item `state` (the TrainState), for training runs item `data`
(the iterator position, one JSON per process) and item `config` (the resolved run config), written together and
asynchronously by all processes. Restoring takes an abstract state whose leaves carry the target shardings, so a
checkpoint loads onto whatever mesh or device count the caller uses, with no conversion step.

Transformer blocks are stored unrolled (`blocks_0`, ...) whatever the run's layout: a run with stacked blocks
(config.model.scan_layers, models/stacking.py) is unstacked on save and stacked again on restore, so scanned and
unrolled runs read each other's checkpoints.
"""

import hashlib
import json
import os

from absl import logging
import grain
import jax
import jax.numpy as jnp
import orbax.checkpoint as ocp
from orbax.checkpoint import checkpoint_managers as policies

from jepa_jax import storage
from jepa_jax.models import stacking

COMMIT_FILE = "_CHECKPOINT_METADATA"  # written last by Orbax: a step directory without it is incomplete


class Checkpointer:
    """Saves at the steps the caller chooses; keeps the latest `keep` (0: all), every `keep_every`-th and
    `keep_steps` (e.g. the probe steps)."""

    def __init__(self, workdir: str, keep: int = 0, keep_every: int = 0, keep_steps=()):
        self.directory = storage.join(workdir if storage.is_remote(workdir) else os.path.abspath(workdir),
                                      "checkpoints")
        preservation = None
        if keep > 0:
            kept = [policies.LatestN(keep), policies.CustomSteps(list(keep_steps))]
            if keep_every > 0:
                kept.append(policies.EveryNSteps(keep_every))
            preservation = policies.AnyPreservationPolicy(kept)
        self.manager = ocp.CheckpointManager(self.directory, options=ocp.CheckpointManagerOptions(
            enable_async_checkpointing=True, create=True, preservation_policy=preservation,
            enable_background_delete=True))

    def save(self, step: int, state, data_iter=None, config=None) -> None:
        """Start an asynchronous save of `state` (plus the iterator's position and the config, if given); stacked
        blocks are saved unrolled (for a moment their unstacked copy is held too)."""
        items = {"state": ocp.args.StandardSave(stacking.unstack(state))}
        if data_iter is not None:
            items["data"] = grain.checkpoint.CheckpointSave(data_iter)
        if config is not None:
            items["config"] = ocp.args.JsonSave(config.to_dict())
        self.manager.save(step, args=ocp.args.Composite(**items), force=True)

    def steps(self) -> list[int]:
        """Complete checkpoints, oldest first (an interrupted save, left as a tmp folder or a step folder
        without its commit file, is never listed)."""
        return sorted(s for s in self.manager.all_steps()
                      if (storage.path(self.directory) / str(s) / COMMIT_FILE).exists())

    def latest_step(self) -> int | None:
        steps = self.steps()
        return steps[-1] if steps else None

    def reached_preemption(self, step: int) -> bool:
        """True at the step all hosts agreed to checkpoint at after a preemption notice (multi-process only)."""
        return self.manager.reached_preemption(step)

    def _state_metadata(self, step: int):
        """Shapes and dtypes of the stored TrainState of `step` (nothing is read but metadata)."""
        verbosity = logging.get_verbosity()
        logging.set_verbosity(logging.ERROR)  # Orbax warns that an item folder has no step metadata of its own
        try:
            return ocp.StandardCheckpointer().metadata(storage.join(self.directory, str(step), "state")).item_metadata
        finally:
            logging.set_verbosity(verbosity)

    def check_compatible(self, step: int, abstract_state) -> None:
        """One-line ValueError if checkpoint `step` holds a differently shaped state (another model or config)."""
        where = storage.join(self.directory, str(step))
        stored = self._state_metadata(step)
        name = lambda path: jax.tree_util.keystr(path, simple=True, separator=".")
        wanted = {name(p): tuple(x.shape) for p, x in jax.tree_util.tree_leaves_with_path(abstract_state)}
        stored_shapes = {name(p): tuple(m.shape) for p, m in jax.tree_util.tree_leaves_with_path(stored)}
        for p, x in jax.tree_util.tree_leaves_with_path(abstract_state):
            if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):  # stored as raw key data, another shape
                wanted.pop(name(p))
                stored_shapes.pop(name(p), None)
        for leaf in sorted(wanted.keys() | stored_shapes.keys(), key=lambda n: (not n.startswith("params."), n)):
            if stored_shapes.get(leaf) != wanted.get(leaf):
                raise ValueError(
                    f"{where} holds another model: {leaf} is {stored_shapes.get(leaf, 'absent')} there and "
                    f"{wanted.get(leaf, 'absent')} in this config; use a new --workdir or the run's own config")

    def restore(self, step: int, abstract_state, data_iter=None):
        """Restore `step` onto the shardings of `abstract_state` (a tree of jax.ShapeDtypeStruct with .sharding);
        also moves `data_iter` (if given) to where it was at that step. A stacked `abstract_state` is restored from
        the stored unrolled blocks and stacked onto its shardings."""
        stored_layout = stacking.unstack(abstract_state)
        self.check_compatible(step, stored_layout)
        items = {"state": ocp.args.StandardRestore(stored_layout)}
        if data_iter is not None:
            own_position = (storage.path(self.directory) / str(step) / "data" /
                            f"process_{jax.process_index()}-of-{jax.process_count()}.json")
            if own_position.exists():
                items["data"] = grain.checkpoint.CheckpointRestore(data_iter)
            else:
                data_iter.set_state(self._shared_data_position(step))
        state = self.manager.restore(step, args=ocp.args.Composite(**items))["state"]
        return stacking.stack_onto(state, abstract_state) if stacking.is_stacked(abstract_state) else state

    def _shared_data_position(self, step: int) -> dict:
        """The data iterator state every process of another process count saved at `step`, for this process count.

        Each process reads its share of one global stream, one local batch per step (data/pipeline.host_share), so
        global batch k holds the same clips, with the same crops, at any process count and the position, k, carries
        over; the masks, drawn per host, are not the ones the old process count would have drawn."""
        folder = storage.path(self.directory) / str(step) / "data"
        names = sorted(p.name for p in folder.iterdir() if p.name.startswith("process_") and p.name.endswith(".json"))
        states = [json.loads((folder / name).read_text()) for name in names]
        if not states or any(s != states[0] for s in states):
            raise ValueError(f"{folder}: the data positions {names} differ or are missing, so the run cannot move to "
                             f"{jax.process_count()} processes; resume it with the process count that wrote it")
        logging.warning("checkpoint %d was written by %d processes; %d go on from its data position %s", step,
                        len(names), jax.process_count(), states[0])
        return states[0]

    def restore_params(self, step: int, device=None) -> dict:
        """Only the model weights of checkpoint `step`, on one device (default this process's first):
        {"params": {"encoder", "predictor"}, "ema_params": target encoder or None}. The optimizer state is not read."""
        stored = self._state_metadata(step)
        wanted = {k: stored[k] for k in ("params", "ema_params") if stored[k] is not None}
        sharding = jax.sharding.SingleDeviceSharding(device or jax.local_devices()[0])
        abstract = jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=sharding), wanted)
        restored = ocp.PyTreeCheckpointer().restore(
            storage.join(self.directory, str(step), "state"),
            args=ocp.args.PyTreeRestore(item=abstract, partial_restore=True,
                                        restore_args=jax.tree.map(lambda _: ocp.ArrayRestoreArgs(sharding=sharding),
                                                                  abstract)))
        return {"params": restored["params"], "ema_params": restored.get("ema_params")}

    def restore_config(self, step: int) -> dict:
        """The resolved config the checkpoint was written with (a plain dict)."""
        return self.manager.restore(step, args=ocp.args.Composite(config=ocp.args.JsonRestore()))["config"]

    def wait(self) -> None:
        self.manager.wait_until_finished()

    def close(self) -> None:
        self.manager.close()


def resolve_step(run_dir: str, step: int | None = None) -> int:
    """`step` if it is a complete checkpoint of the run directory, else (None) its newest; one-line ValueError if
    there is no such checkpoint. Creates nothing."""
    steps = []
    if (storage.path(run_dir) / "checkpoints").is_dir():
        checkpointer = Checkpointer(run_dir)
        steps = checkpointer.steps()
        checkpointer.close()
    if not steps or (step is not None and step not in steps):
        raise ValueError(f"no complete checkpoint{'' if step is None else f' {step}'} in "
                         f"{storage.join(run_dir, 'checkpoints')} (found {steps})")
    return steps[-1] if step is None else step


def abstract_like(tree):
    """ShapeDtypeStructs (with shardings) of a live tree: the restore target for `Checkpointer.restore`."""
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), tree)


def fingerprint(tree) -> str:
    """16 hex digits that change when any bit of any leaf (or a leaf's name) does, and stay the same on any mesh,
    process count or block layout: each leaf's uint32 words are mixed with their row-major positions (murmur3's
    finalizer) and summed modulo 2^32 on the devices that hold them (an integer sum does not depend on the reduction
    order); the sums are hashed with the leaf paths of the unrolled tree. Leaves wider than 32 bits are refused."""
    paths, leaves = zip(*jax.tree_util.tree_flatten_with_path(stacking.unstack(tree))[0])
    digest = hashlib.sha256()
    for path, total in zip(paths, jax.device_get(_mixed_word_sums(list(leaves)))):
        digest.update(f"{jax.tree_util.keystr(path)}={int(total)};".encode())
    return digest.hexdigest()[:16]


@jax.jit
def _mixed_word_sums(leaves: list) -> list:
    """[sum_i mix(bits(x_i) ^ (i * 0x9E3779B9)) mod 2^32 for each leaf x], i the row-major position and mix
    murmur3's 32-bit finalizer."""
    sums = []
    for x in leaves:
        if x.dtype.itemsize > 4:
            raise ValueError(f"fingerprint: a {x.dtype} leaf is wider than 32 bits")
        words = x.astype(jnp.uint32) if x.dtype == jnp.bool_ else jax.lax.bitcast_convert_type(
            x, jnp.dtype(f"uint{8 * x.dtype.itemsize}")).astype(jnp.uint32)
        position = jax.lax.iota(jnp.uint32, x.size).reshape(x.shape)
        h = words ^ (position * jnp.uint32(0x9E3779B9))
        h = (h ^ (h >> 16)) * jnp.uint32(0x85EBCA6B)
        h = (h ^ (h >> 13)) * jnp.uint32(0xC2B2AE35)
        sums.append(jnp.sum(h ^ (h >> 16), dtype=jnp.uint32))
    return sums
