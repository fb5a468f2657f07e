"""The jitted train step: compiles once, data parallel == single device, EMA rule, sharding placement."""

import flax.linen as nn
import jax
import numpy as np
import pytest

from jepa_jax import parallel
from jepa_jax.data import pipeline
from jepa_jax.train import loop


def host_batches(config, run, count):
    source = pipeline.world_source(config, seed=config.seed)
    it = iter(pipeline.make_train_dataset(source, run.maskers, config.data.batch_size, seed=config.seed,
                                          process_index=0, process_count=1))
    return [next(it) for _ in range(count)]


def run_steps(run, batches):
    state, history = run.state, []
    with jax.set_mesh(run.mesh), nn.logical_axis_rules(parallel.RULES):
        for batch in batches:
            state, metrics = run.train_step(state, parallel.host_to_global(batch, run.mesh))
            history.append(jax.device_get(metrics))
    return state, history


def test_compiles_once_over_20_steps_with_fresh_masks(smoke_config):
    run = loop.build_run(smoke_config)
    batches = host_batches(smoke_config, run, 20)
    assert len({b["masks"][0][0].tobytes() for b in batches}) == 20  # masks really change
    compiles = []

    def count_compiles(event, _duration, **_):
        if event == "/jax/core/compile/backend_compile_duration":
            compiles.append(event)

    jax.monitoring.register_event_duration_secs_listener(count_compiles)
    try:
        _, history = run_steps(run, batches)
    finally:
        jax.monitoring.unregister_event_duration_listener(count_compiles)
    assert len(compiles) == 1
    assert all(np.isfinite(m["loss"]) for m in history)


@pytest.mark.parametrize("objective", ["sigreg", "ema"])
def test_data_parallel_on_8_devices_matches_one_device(smoke_config, objective):
    smoke_config.objective = objective
    single = loop.build_run(smoke_config, devices=jax.devices()[:1])
    multi = loop.build_run(smoke_config)
    assert multi.mesh.devices.size == 8
    batches = host_batches(smoke_config, single, 3)
    state_1, hist_1 = run_steps(single, batches)
    state_8, hist_8 = run_steps(multi, batches)
    np.testing.assert_allclose([m["loss"] for m in hist_8], [m["loss"] for m in hist_1], atol=1e-5)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-5),
                 state_8.params, state_1.params)


def test_batch_is_sharded_and_params_replicated_under_data_parallelism(smoke_config):
    run = loop.build_run(smoke_config)
    batch = parallel.host_to_global(host_batches(smoke_config, run, 1)[0], run.mesh)
    shards = batch["video"].addressable_shards
    assert len(shards) == 8 and all(s.data.shape[0] == 1 for s in shards)
    assert len({s.device for s in shards}) == 8
    assert all(leaf.sharding.is_fully_replicated for leaf in jax.tree.leaves(run.state.params))


def test_ema_target_changes_only_by_the_ema_rule(smoke_config):
    smoke_config.objective = "ema"
    run = loop.build_run(smoke_config, devices=jax.devices()[:1])
    before = jax.device_get(run.state.ema_params)
    state, history = run_steps(run, host_batches(smoke_config, run, 1))
    m = history[0]["ema_momentum"]
    assert 0.99 < m < 1.0
    after, online = jax.device_get(state.ema_params), jax.device_get(state.params["encoder"])
    expected = jax.tree.map(lambda t, o: m * t + (1 - m) * o, before, online)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-7), after, expected)
    changed = jax.tree.map(lambda a, b: bool(np.any(a != b)), after, before)
    assert any(jax.tree.leaves(changed))


def test_sigreg_objective_has_no_ema_copy_and_logs_collapse_monitor(smoke_config):
    run = loop.build_run(smoke_config, devices=jax.devices()[:1])
    assert run.state.ema_params is None
    _, history = run_steps(run, host_batches(smoke_config, run, 2))
    assert {"sigreg", "target_spread", "prediction_loss", "loss_short_range", "loss_long_range", "lr",
            "weight_decay", "grad_norm"} <= set(history[-1])
    assert history[-1]["target_spread"] > 0.05
