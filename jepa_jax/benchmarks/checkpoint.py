"""Checkpoint save stall (`jepa-jax bench --what checkpoint`): the real train loop (`jepa_jax.train.loop.train`)
in a temporary folder, once without checkpoints and once with an asynchronous checkpoint after every step; step
times exclude the compiling first step.

`save_stall_fraction` is (every-step time - no-save time) / no-save time; `save_blocking_fraction` is the time the
loop spends inside the save call (the synchronous part: device-to-host copy and bookkeeping) per step, over the
no-save step time. On an accelerator the rest of the write runs on host threads beside the device's work; on a
CPU-only machine those threads compete with the step for the same cores, so there the end-to-end stall is larger
than the blocking part.
"""

import tempfile

import jax

from jepa_jax.train import loop


def time_variant(config, steps: int, checkpoint_every: int) -> dict:
    """Step time of `steps` loop steps with a checkpoint every `checkpoint_every` steps (0: none)."""
    config = config.copy_and_resolve_references()
    config.train.update(steps=steps, log_every=steps, checkpoint_every=checkpoint_every, checkpoint_keep=2,
                        resume=False)
    config.probe.update(report=False, at_fractions=(1.0,))
    with tempfile.TemporaryDirectory() as workdir:
        summary = loop.train(config, workdir)
    return {"steps_per_s": summary["steps_per_s"], "step_time_s": 1.0 / summary["steps_per_s"],
            "save_blocking_s_per_step": summary["checkpoint_blocking_s"] / steps, "compile_s": summary["compile_s"]}


def checkpoint_stall(config, steps: int = 20) -> dict:
    """The loop's step time without checkpoints and with one after every step, and the stall they imply."""
    never = time_variant(config, steps, checkpoint_every=0)
    every = time_variant(config, steps, checkpoint_every=1)
    return {"measure": "checkpoint", "backend": jax.default_backend(), "model": config.model.size,
            "global_batch": config.data.batch_size, "steps": steps, "no_checkpoints": never,
            "checkpoint_every_step": every, "save_stall_fraction": every["step_time_s"] / never["step_time_s"] - 1.0,
            "save_blocking_fraction": every["save_blocking_s_per_step"] / never["step_time_s"]}
