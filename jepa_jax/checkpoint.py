"""Orbax checkpoints of the TrainState and the grain data iterator (asynchronous), behind one small facade.

A checkpoint holds item `state` (the TrainState) and, for training runs, item `data` (the iterator state, JSON),
written together so a resumed run continues the same data stream. Restoring takes an abstract state whose leaves
carry the target shardings, so a checkpoint loads onto whatever mesh the caller uses.
"""

import os

import grain
import jax
import orbax.checkpoint as ocp


class Checkpointer:
    """Saves the train state at chosen steps under {workdir}/checkpoints/{step}; keeps all of them."""

    def __init__(self, workdir: str):
        self.manager = ocp.CheckpointManager(
            os.path.abspath(os.path.join(workdir, "checkpoints")),
            options=ocp.CheckpointManagerOptions(enable_async_checkpointing=True, create=True))

    def save(self, step: int, state, data_iter=None) -> None:
        """Start an asynchronous save of `state` (and the iterator's position, if given) as checkpoint `step`."""
        items = {"state": ocp.args.StandardSave(state)}
        if data_iter is not None:
            items["data"] = grain.checkpoint.CheckpointSave(data_iter)
        self.manager.save(step, args=ocp.args.Composite(**items), force=True)

    def steps(self) -> list[int]:
        return sorted(self.manager.all_steps())

    def latest_step(self) -> int | None:
        """The newest complete checkpoint (an interrupted save is never listed)."""
        return self.manager.latest_step()

    def restore(self, step: int, abstract_state, data_iter=None):
        """Restore `step` onto the shardings of `abstract_state` (a tree of jax.ShapeDtypeStruct with .sharding);
        also moves `data_iter` (if given) to where it was at that step."""
        items = {"state": ocp.args.StandardRestore(abstract_state)}
        if data_iter is not None:
            items["data"] = grain.checkpoint.CheckpointRestore(data_iter)
        return self.manager.restore(step, args=ocp.args.Composite(**items))["state"]

    def wait(self) -> None:
        self.manager.wait_until_finished()

    def close(self) -> None:
        self.manager.close()


def abstract_like(tree):
    """ShapeDtypeStructs (with shardings) of a live tree: the restore target for `Checkpointer.restore`."""
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), tree)
