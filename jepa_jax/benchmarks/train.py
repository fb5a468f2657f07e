r"""Train-loop step time with an asynchronous checkpoint after every step vs none, and MFU, printed as JSON.

    python -m jepa_jax.benchmarks.train [--config experiments/configs/tiny_world.py] [--steps 40] \
        [--config.model.size=small --config.data.batch_size=64 ...]

Both variants run the real loop (`jepa_jax.train.loop.train`) in a temporary folder for --steps steps; the step
time excludes the compiling first step. `save_stall_fraction` is (every-step time - no-save time) / no-save time;
`save_blocking_fraction` is the time the loop spends inside the save call (the synchronous part: device-to-host
copy and bookkeeping) per step, over the no-save step time. On an accelerator the rest of the write runs on host
threads beside the device's work; on a CPU-only machine those threads compete with the step for the same cores,
so there the end-to-end stall is larger than the blocking part.
MFU is the compiled step's FLOPs (XLA cost analysis, per device) x steps/s over the device's peak
(`metrics.PEAK_FLOPS`; on CPU an estimate, override with --config.monitor.peak_flops).
"""

import json
import tempfile

import jax
from absl import app, flags, logging
from ml_collections import config_flags

from jepa_jax import config as config_lib, metrics as metrics_lib
from jepa_jax.train import loop

_CONFIG = config_flags.DEFINE_config_file("config", "experiments/configs/tiny_world.py", "Run config to time.")
_STEPS = flags.DEFINE_integer("steps", 40, "Steps per variant.")
_COMPARE = flags.DEFINE_bool("compare_checkpointing", True, "Also time the loop with a checkpoint every step (off: "
                             "only the no-checkpoint variant, e.g. for models whose state takes long to write).")


def time_variant(config, steps: int, checkpoint_every: int) -> dict:
    config = config.copy_and_resolve_references()
    config.train.update(steps=steps, log_every=steps, checkpoint_every=checkpoint_every, checkpoint_keep=2,
                        resume=False)
    config.probe.update(report=False, at_fractions=(1.0,))
    with tempfile.TemporaryDirectory() as workdir:
        summary = loop.train(config, workdir)
    memory = jax.local_devices()[0].memory_stats() or {}  # accelerators only; the peak is since process start
    return {"steps_per_s": summary["steps_per_s"], "step_time_s": 1.0 / summary["steps_per_s"],
            "peak_device_bytes": memory.get("peak_bytes_in_use"),
            "save_blocking_s_per_step": summary["checkpoint_blocking_s"] / steps, "compile_s": summary["compile_s"],
            "flops_per_step_per_device": summary["flops_per_step_per_device"], "mfu": summary["mfu"]}


def main(argv) -> None:
    del argv
    logging.set_verbosity(logging.ERROR)
    config, steps = _CONFIG.value, _STEPS.value
    never = time_variant(config, steps, checkpoint_every=0)
    device = jax.devices()[0]
    result = {
        "device_kind": device.device_kind, "num_devices": jax.device_count(), "model": config.model.size,
        "objective": config.objective, "global_batch": config.data.batch_size, "steps": steps,
        "clip": list(config_lib.clip_shape(config)),
        "peak_flops_per_device": metrics_lib.peak_flops_per_device(device, config.monitor.peak_flops),
        "no_checkpoints": never,
    }
    if _COMPARE.value:
        every = time_variant(config, steps, checkpoint_every=1)
        result.update(checkpoint_every_step=every,
                      save_stall_fraction=every["step_time_s"] / never["step_time_s"] - 1.0,
                      save_blocking_fraction=every["save_blocking_s_per_step"] / never["step_time_s"])
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    app.run(main)
