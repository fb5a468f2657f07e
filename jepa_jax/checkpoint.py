"""Orbax checkpoints of the TrainState (asynchronous), behind one small facade.

Restoring takes an abstract state whose leaves carry the target shardings, so a checkpoint loads onto whatever
mesh the caller uses.
"""

import os

import jax
import orbax.checkpoint as ocp


class Checkpointer:
    """Saves the train state at chosen steps under {workdir}/checkpoints/{step}; keeps all of them."""

    def __init__(self, workdir: str):
        self.manager = ocp.CheckpointManager(
            os.path.abspath(os.path.join(workdir, "checkpoints")),
            options=ocp.CheckpointManagerOptions(enable_async_checkpointing=True, create=True))

    def save(self, step: int, state) -> None:
        self.manager.save(step, args=ocp.args.StandardSave(state), force=True)

    def steps(self) -> list[int]:
        return sorted(self.manager.all_steps())

    def restore(self, step: int, abstract_state):
        """Restore `step` onto the shardings of `abstract_state` (a tree of jax.ShapeDtypeStruct with .sharding)."""
        return self.manager.restore(step, args=ocp.args.StandardRestore(abstract_state))

    def wait(self) -> None:
        self.manager.wait_until_finished()

    def close(self) -> None:
        self.manager.close()


def abstract_like(tree):
    """ShapeDtypeStructs (with shardings) of a live tree: the restore target for `Checkpointer.restore`."""
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), tree)
