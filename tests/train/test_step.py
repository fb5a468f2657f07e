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


@pytest.mark.slow
def test_compiles_once_over_20_steps_with_fresh_masks(smoke_config):
    run = loop.build_run(smoke_config)
    batches = host_batches(smoke_config, run, 20)
    assert len({b["masks"][0][0].tobytes() for b in batches}) == 20  # masks really change
    compiles = []

    def count_compiles(event, _duration, **_):
        if event == "/jax/core/compile/jaxpr_to_mlir_module_duration":  # every new executable, cached on disk or not
            compiles.append(event)

    jax.monitoring.register_event_duration_secs_listener(count_compiles)
    try:
        _, history = run_steps(run, batches)
    finally:
        jax.monitoring.unregister_event_duration_listener(count_compiles)
    assert len(compiles) == 1
    assert all(np.isfinite(m["loss"]) for m in history)


MESHES = {"dp": (8, 1, 1), "fsdp": (1, 8, 1), "tp": (4, 1, 2), "fsdp_tp": (1, 4, 2)}  # (data, fsdp, tensor)


@pytest.fixture(scope="module")
def single_device_reference():
    """objective -> (host batches, final state, metrics history) of 2 steps on one device, computed once."""
    cache = {}

    def get(config):
        if config.objective not in cache:
            run = loop.build_run(config, devices=jax.devices()[:1])
            batches = host_batches(config, run, 2)
            cache[config.objective] = (batches, *run_steps(run, batches))
        return cache[config.objective]
    return get


@pytest.mark.slow
@pytest.mark.parametrize("mesh_name,objective", [("dp", "ema"), ("fsdp", "ema"), ("tp", "ema"),
                                                 ("fsdp_tp", "ema"), ("fsdp_tp", "sigreg")])
def test_every_mesh_gives_the_single_device_loss_and_params(smoke_config, single_device_reference, mesh_name,
                                                            objective):
    smoke_config.objective = objective
    batches, state_1, hist_1 = single_device_reference(smoke_config)
    smoke_config.mesh.data, smoke_config.mesh.fsdp, smoke_config.mesh.tensor = MESHES[mesh_name]
    run = loop.build_run(smoke_config)
    assert run.mesh.devices.size == 8
    state_8, hist_8 = run_steps(run, batches)
    for key in ("loss", "grad_norm", "prediction_cosine"):
        np.testing.assert_allclose([m[key] for m in hist_8], [m[key] for m in hist_1], atol=1e-5, rtol=1e-5)
    # The effective rank goes through an eigendecomposition, whose reduction order differs per mesh.
    np.testing.assert_allclose([m["target_effective_rank"] for m in hist_8],
                               [m["target_effective_rank"] for m in hist_1], rtol=1e-3)
    close = lambda a, b: np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-5)
    jax.tree.map(close, state_8.params, state_1.params)
    jax.tree.map(close, state_8.ema_params, state_1.ema_params)


@pytest.mark.slow
def test_gradient_accumulation_over_4_micro_batches_equals_the_whole_batch(smoke_config):
    smoke_config.objective = "ema"
    smoke_config.ema.start, smoke_config.optim.start_lr = 0.5, 1e-3  # moves >> 1e-5, so the test means something
    # Adam's first steps divide by |g|: with eps=1e-8, a gradient of ~1e-9 turns float rounding into a visible
    # update, whatever the accumulation. A larger eps bounds that amplification to lr / eps.
    smoke_config.optim.eps = 1e-3
    whole = loop.build_run(smoke_config, devices=jax.devices()[:1])
    batches = host_batches(smoke_config, whole, 2)
    state_whole, hist_whole = run_steps(whole, batches)
    smoke_config.train.grad_accum = 4
    accumulated = loop.build_run(smoke_config, devices=jax.devices()[:1])
    state_acc, hist_acc = run_steps(accumulated, batches)
    for key in ("loss", "grad_norm"):
        np.testing.assert_allclose([m[key] for m in hist_acc], [m[key] for m in hist_whole], rtol=1e-5)
    close = lambda a, b: np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-5)
    jax.tree.map(close, state_acc.params, state_whole.params)
    jax.tree.map(close, state_acc.ema_params, state_whole.ema_params)
    moved = jax.tree.map(lambda a, b: float(np.abs(np.asarray(a) - np.asarray(b)).max()), state_acc.ema_params,
                         jax.device_get(loop.build_run(smoke_config, devices=jax.devices()[:1]).state.ema_params))
    assert max(jax.tree.leaves(moved)) > 1e-4  # the EMA really moved, so the comparison means something


def test_micro_batches_must_split_over_the_data_axes(smoke_config):
    smoke_config.train.grad_accum = 3
    with pytest.raises(ValueError, match=r"batch_size=8 must be divisible .*grad_accum=3"):
        loop.build_run(smoke_config)


def test_batch_is_sharded_and_params_replicated_under_data_parallelism(smoke_config):
    run = loop.build_run(smoke_config)
    batch = parallel.host_to_global(host_batches(smoke_config, run, 1)[0], run.mesh)
    shards = batch["video"].addressable_shards
    assert len(shards) == 8 and all(s.data.shape[0] == 1 for s in shards)
    assert len({s.device for s in shards}) == 8
    assert all(leaf.sharding.is_fully_replicated for leaf in jax.tree.leaves(run.state.params))


def test_ema_target_changes_only_by_the_ema_rule(smoke_config):
    """After each update the target is m * target + (1 - m) * online, with m the config's schedule: linear from
    ema.start to ema.end over int(optim.ipe_scale * train.steps) updates, taken after the update (count step + 1)."""
    smoke_config.objective = "ema"
    smoke_config.ema.start, smoke_config.ema.end = 0.9, 1.0  # momentum moves by 0.02 per update here
    run = loop.build_run(smoke_config, devices=jax.devices()[:1])
    horizon = int(smoke_config.optim.ipe_scale * smoke_config.train.steps)
    # Start the target away from the online encoder, so that the update moves it visibly.
    rng = np.random.default_rng(0)
    state = run.state.replace(ema_params=jax.tree.map(
        lambda x: jax.device_put(np.asarray(x) + rng.normal(0, 0.05, x.shape).astype(x.dtype), x.sharding),
        run.state.ema_params))
    with jax.set_mesh(run.mesh), nn.logical_axis_rules(parallel.RULES):
        for step, batch in enumerate(host_batches(smoke_config, run, 2)):
            before = jax.device_get(state.ema_params)
            state, metrics = run.train_step(state, parallel.host_to_global(batch, run.mesh))
            m = smoke_config.ema.start + (smoke_config.ema.end - smoke_config.ema.start) * min(
                (step + 1) / horizon, 1.0)
            after, online = jax.device_get(state.ema_params), jax.device_get(state.params["encoder"])
            expected = jax.tree.map(lambda t, o: m * t.astype(np.float64) + (1 - m) * o, before, online)
            jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7), after, expected)
            moved = jax.tree.map(lambda a, b: float(np.abs(a - b).max()), after, before)
            assert min(jax.tree.leaves(moved)) > 1e-4  # every leaf really moved
            np.testing.assert_allclose(float(metrics["ema_momentum"]), m, rtol=1e-6)


def test_sigreg_objective_has_no_ema_copy_and_logs_collapse_monitor(smoke_config):
    run = loop.build_run(smoke_config, devices=jax.devices()[:1])
    assert run.state.ema_params is None
    _, history = run_steps(run, host_batches(smoke_config, run, 2))
    assert {"sigreg", "target_spread", "prediction_loss", "loss_short_range", "loss_long_range", "lr",
            "weight_decay", "grad_norm"} <= set(history[-1])
    assert history[-1]["target_spread"] > 0.05
