"""Mixed precision (config.model.dtype="bfloat16"): bf16 matmuls with float32 parameters, optimizer state, targets
and loss; the loss follows the float32 run's."""

import jax
import jax.numpy as jnp
import pytest

from jepa_jax import config as config_lib, parallel
from jepa_jax.train import loop


def train_losses(config, steps: int) -> tuple[list[float], object, str]:
    """Losses of `steps` steps of `config` on the built-in world, the final state and the step's HLO."""
    run = loop.build_run(config)
    stream = iter(loop.data_stream(config, run.maskers, config.data.batch_size))
    state, losses = run.state, []
    with parallel.on_mesh(run.mesh):
        for step in range(steps):
            batch = dict(next(stream))
            batch.pop("bad_files", None)
            batch = parallel.host_to_global(batch, run.mesh)
            if step == 0:
                hlo = run.train_step.lower(state, batch).as_text()
            state, metrics = run.train_step(state, batch)
            losses.append(float(metrics["loss"]))
    return losses, state, hlo


def test_bf16_step_keeps_float32_state_and_follows_the_float32_loss(smoke_config):
    smoke_config.objective = "ema"
    results = {}
    for dtype in ("float32", "bfloat16"):
        config = smoke_config.copy_and_resolve_references()
        config.model.dtype = dtype
        config.train.steps = 20
        results[dtype] = train_losses(config, 20)
    losses, state, hlo = results["bfloat16"]
    assert "bf16" in hlo and "bf16" not in results["float32"][2]  # the matmuls run in bf16
    for leaf in jax.tree.leaves((state.params, state.ema_params, state.opt_state)):
        assert leaf.dtype in (jnp.float32, jnp.int32), leaf.dtype  # master weights and moments stay float32
    assert losses[-1] == pytest.approx(results["float32"][0][-1], abs=2e-2)
    assert losses[-1] < losses[0]  # and it learns


def test_ac_objective_refuses_bf16_in_one_line():
    config = config_lib.load_spec("experiments/configs/pusht_ac.py:smoke")
    config.data.trajectories = "unused"
    config.model.dtype = "bfloat16"
    with pytest.raises(ValueError, match=r"^config.model.dtype='bfloat16': .*set --config.model.dtype=float32$"):
        config_lib.validate(config)
