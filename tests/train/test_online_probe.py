"""The online probe (config.monitor.online_probe): trained beside pretraining without changing it, its logged R^2
equal to the linear probe's on the batch recomputed by hand, and one-line errors where it cannot run."""

import copy
import dataclasses

import jax
import numpy as np
import pytest

from jepa_jax import config as config_lib
from jepa_jax.data import pipeline
from jepa_jax.models import vit
from jepa_jax.train import loop
from tests.train.test_step import run_steps


def batches_with_labels(config, run, count):
    it = iter(pipeline.train_dataset(config, run.maskers, config.data.batch_size))
    return [next(it) for _ in range(count)]


@pytest.mark.slow
def test_the_online_probe_learns_beside_pretraining_without_changing_it(smoke_config):
    config = copy.deepcopy(smoke_config)
    config.monitor.online_probe = True
    run = loop.build_run(config)
    batches = batches_with_labels(config, run, 4)
    assert batches[0]["probe_targets"].shape == (8, 4 * config.data.world.num_balls)
    state, history = run_steps(run, batches[:3])
    assert float(np.abs(jax.device_get(state.params["online_probe"]["kernel"])).max()) > 0  # the probe learned
    # a probe whose outputs are far from 0, so that step 4's R^2 depends on every feature it reads
    rng = np.random.default_rng(0)
    probe = jax.tree.map(lambda x: jax.device_put(rng.normal(size=x.shape).astype(np.float32) * 0.05, x.sharding),
                         state.params["online_probe"])
    state = state.replace(params={**state.params, "online_probe": probe})
    params = jax.device_get(state.params)  # a host copy: the next step donates the state
    state, last = run_steps(dataclasses.replace(run, state=state), batches[3:])
    history += last
    plain = loop.build_run(smoke_config)
    plain_state, plain_history = run_steps(plain, [{k: v for k, v in b.items() if k != "probe_targets"}
                                                   for b in batches])
    for group in ("encoder", "predictor"):  # pretraining is exactly what it is without the probe
        jax.tree.map(np.testing.assert_array_equal, jax.device_get(state.params[group]),
                     jax.device_get(plain_state.params[group]))
    assert [h["prediction_loss"] for h in history] == [h["prediction_loss"] for h in plain_history]
    # step 4's logged R^2: the step-3 probe on batch 4's quadrant-pooled, normalised target features, by hand
    batch = batches[3]
    features = np.asarray(vit.encode(run.encoder, params["encoder"], batch["video"]), np.float64)
    normed = (features - features.mean(-1, keepdims=True)) / np.sqrt(features.var(-1, keepdims=True) + 1e-5)
    t, h, w = config_lib.token_grid(config)
    pooled = normed.reshape(8, t, 2, h // 2, 2, w // 2, -1).mean(axis=(3, 5)).reshape(8, -1)
    predicted = pooled @ params["online_probe"]["kernel"] + params["online_probe"]["bias"]
    labels = batch["probe_targets"]
    r2 = 1 - np.mean(np.square(predicted - labels).mean(0) / labels.var(0))
    assert history[3]["online_probe_r2"] == pytest.approx(r2, abs=1e-4)


@pytest.mark.parametrize("field,value,message", [
    ("objective", "pixels", r"online_probe reads the built-in world's labels and the JEPA targets: it needs "
                            r"config.data.source='balls' and objective ema or sigreg, not 'balls' / 'pixels'"),
    ("model.patch_size", 16, r"online_probe pools each time slice into 2 x 2 quadrants: the 4 x 4 token grid"),
])
def test_where_the_online_probe_cannot_run_is_a_one_line_error(smoke_config, field, value, message):
    config = copy.deepcopy(smoke_config)
    config.monitor.online_probe = True
    config_lib.override(config, field, value)
    if field == "model.patch_size":
        config_lib.validate(config)  # 64 / 16 = 4 tokens a side: even sides pass
        config.data.world.size = 48  # 3 tokens a side
        message = message.replace("4 x 4", "3 x 3")
    with pytest.raises(ValueError, match=message):
        config_lib.validate(config)
