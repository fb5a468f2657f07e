"""The training loop: build everything from one config, run the jitted step, log, checkpoint, report.

Metrics of step t are fetched after step t + 1 has been dispatched, so the host never waits on the device.
"""

import dataclasses
import json
import math
import os
import time

import flax.linen as nn
from absl import logging
import jax
import numpy as np

from jepa_jax import checkpoint, metrics as metrics_lib, parallel
from jepa_jax import config as config_lib
from jepa_jax.data import pipeline
from jepa_jax.train import optim, state as state_lib, step as step_lib


@dataclasses.dataclass
class Run:
    """Everything built from a config that the loop and the evaluations share."""
    config: object
    mesh: object
    encoder: object
    predictor: object
    maskers: list
    grid: tuple
    state: state_lib.TrainState
    state_shardings: object
    train_step: object


def probe_steps(config) -> list[int]:
    """Steps whose train state is checkpointed for the probe learning curve: 0 (random init) and the fractions."""
    steps = config.train.steps
    return sorted({0} | {max(1, round(f * steps)) for f in config.probe.at_fractions})


def checkpoint_steps(config) -> set[int]:
    """Probe steps, every config.train.checkpoint_every steps (0: none extra) and the last step."""
    every = config.train.checkpoint_every
    periodic = set(range(every, config.train.steps + 1, every)) if every > 0 else set()
    return set(probe_steps(config)) | periodic | {config.train.steps}


def build_run(config, devices=None) -> Run:
    """Validate the config, build the mesh (over `devices`, default all), models and a born-sharded train state,
    and jit the step."""
    config_lib.validate(config)
    mesh = parallel.make_mesh(config.mesh, devices)
    replicas = mesh.shape["data"] * mesh.shape["fsdp"]
    if config.data.batch_size % replicas:
        raise ValueError(f"config.data.batch_size={config.data.batch_size} must be divisible by the "
                         f"data x fsdp mesh size {replicas}")
    encoder, predictor = config_lib.build_encoder(config), config_lib.build_predictor(config)
    maskers, grid = config_lib.build_maskers(config), config_lib.token_grid(config)
    optimizer = optim.make_optimizer(config.optim, config.train.steps)
    frames, size = config_lib.clip_shape(config)
    sample_video = np.zeros((1, frames, size, size, 3), np.float32)
    sample_masks = tuple((np.zeros((1, m.num_context), np.int32), np.zeros((1, m.num_target), np.int32))
                         for m in maskers)
    key = jax.random.key(config.seed)
    state, shardings = parallel.init_sharded(
        lambda: state_lib.init_train_state(key, encoder, predictor, optimizer, sample_video, sample_masks, grid,
                                           use_ema=config.objective == "ema"), mesh)
    step_fn = step_lib.make_train_step(config, encoder, predictor, optimizer, grid, list(config.masks.keys()))
    train_step = jax.jit(step_fn, in_shardings=(shardings, parallel.batch_sharding(mesh)),
                         out_shardings=(shardings, None), donate_argnums=0)
    return Run(config, mesh, encoder, predictor, maskers, grid, state, shardings, train_step)


def write_config(config, workdir: str) -> None:
    if jax.process_index() == 0:
        with open(os.path.join(workdir, "config.json"), "w", encoding="utf-8") as f:
            f.write(config.to_json_best_effort(indent=2, sort_keys=True))


def train(config, workdir: str) -> dict:
    """Train for config.train.steps; returns a summary {steps, wall_s, steps_per_s, compile_s, final metrics}."""
    os.makedirs(workdir, exist_ok=True)
    run = build_run(config)
    write_config(config, workdir)
    data_iter = iter(pipeline.train_dataset(config, run.maskers, parallel.local_batch_size(config.data.batch_size)))
    checkpointer = checkpoint.Checkpointer(workdir)
    save_at = checkpoint_steps(config)
    state, start = run.state, 0
    latest = checkpointer.latest_step() if config.train.resume else None
    if latest is not None:  # resume: train state and data stream exactly as they were at `latest`
        state = checkpointer.restore(latest, checkpoint.abstract_like(state), data_iter)
        start = latest
        metrics_lib.truncate_jsonl(os.path.join(workdir, "metrics.jsonl"), latest)
        logging.warning("resuming from checkpoint %d in %s", latest, workdir)
    else:
        checkpointer.save(0, state, data_iter)
    writer = metrics_lib.MetricWriter(workdir)
    progress = metrics_lib.Progress(config.train.steps, initial_step=start)
    budget = (pipeline.BadFileBudget(config.data.video.max_bad_fraction, config.data.batch_size)
              if config.data.source == "video" else None)
    pending, last = None, {}
    started = time.perf_counter()
    compile_s = float("nan")
    with jax.set_mesh(run.mesh), nn.logical_axis_rules(parallel.RULES):
        for step in range(start, config.train.steps):
            batch = parallel.host_to_global(next(data_iter), run.mesh)
            state, step_metrics = run.train_step(state, batch)
            if pending is not None:
                last = _log(*pending, writer, progress, config.train.log_every, budget)
            else:
                compile_s = time.perf_counter() - started
            pending = (step + 1, step_metrics)
            if step + 1 in save_at:
                checkpointer.save(step + 1, state, data_iter)
        if pending is not None:
            last = _log(*pending, writer, progress, 1, budget)
    checkpointer.wait()
    progress.close()
    writer.close()
    summary = {"steps": config.train.steps, "resumed_from": latest, "wall_s": time.perf_counter() - started,
               "compile_s": compile_s, "steps_per_s": progress.steps_per_second(), **last}
    checkpointer.close()
    return summary


def _log(step: int, device_metrics: dict, writer, progress, log_every: int, budget=None) -> dict:
    scalars = {k: float(v) for k, v in jax.device_get(device_metrics).items()}
    if not math.isfinite(scalars["loss"]):
        raise FloatingPointError(f"loss is {scalars['loss']} at step {step}: lower config.optim.lr or check the data")
    if budget is not None:
        scalars.update(budget.update(scalars))
    progress.update({"loss": scalars["loss"], "spread": scalars["target_spread"]})
    if step % log_every == 0 or step == 1:
        rate = progress.steps_per_second()
        writer.write(step, {**scalars, **({"steps_per_s": rate} if math.isfinite(rate) else {})})
    return scalars


def save_summary(summary: dict, workdir: str) -> None:
    if jax.process_index() == 0:
        with open(os.path.join(workdir, "summary.json"), "w", encoding="utf-8") as f:
            json.dump(summary, f, indent=2)
