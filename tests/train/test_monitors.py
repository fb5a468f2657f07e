"""Collapse monitors run only on monitor steps (config.monitor.every) and never change the training numbers."""

import jax
import numpy as np

from jepa_jax.train import loop, step as step_lib
from tests.train.test_step import host_batches, run_steps


def history(config, every: int, batches=None):
    config.monitor.every = every
    run = loop.build_run(config, devices=jax.devices()[:1])
    batches = batches or host_batches(config, run, config.train.steps)
    return batches, run_steps(run, batches)[1]


def test_monitor_steps_skip_the_monitors_and_leave_the_loss_trajectory_unchanged(smoke_config):
    smoke_config.train.steps = 4
    batches, every_step = history(smoke_config, 1)
    _, sparse = history(smoke_config, 3, batches)
    monitored = [s for s in range(1, 5) if step_lib.on_schedule(s, 3, 4)]
    assert monitored == [1, 3, 4]  # every 3rd, the first and the last
    for step, (dense, thin) in enumerate(zip(every_step, sparse), start=1):
        for name in ("loss", "prediction_loss", "sigreg", "grad_norm"):
            np.testing.assert_array_equal(thin[name], dense[name], err_msg=f"{name} at step {step}")
        for name in step_lib.MONITORS:
            if step in monitored:
                np.testing.assert_allclose(thin[name], dense[name], rtol=1e-6, err_msg=f"{name} at step {step}")
            else:
                assert np.isnan(thin[name]) and np.isfinite(dense[name]), (name, step)


def test_batch_spec_describes_what_the_pipeline_yields(smoke_config):
    run = loop.build_run(smoke_config, devices=jax.devices()[:1])
    batch = host_batches(smoke_config, run, 1)[0]
    spec = loop.batch_spec(smoke_config, run.maskers, smoke_config.data.batch_size)
    shapes = lambda tree: jax.tree.map(lambda x: (tuple(x.shape), np.dtype(x.dtype)), tree)
    assert shapes(batch) == shapes(spec)
    assert set(batch) == set(spec) == {"video", "masks"}
