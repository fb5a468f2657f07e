"""The training loop: build everything from one config, run the jitted step, log, checkpoint, report.

Metrics of step t are fetched after step t + 1 has been dispatched, so the host never waits on the device.
"""

import dataclasses
import json
import math
import os
import signal
import threading
import time

import flax.linen as nn
from absl import logging
import jax
import jax.numpy as jnp
import numpy as np

from jepa_jax import checkpoint, export, layouts, metrics as metrics_lib, parallel
from jepa_jax import config as config_lib
from jepa_jax.data import pipeline
from jepa_jax.data import video as video_lib
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


TRAINING_CURVES = ("loss", "prediction_loss", "sigreg", "target_spread", "target_effective_rank",
                   "prediction_cosine", "lr", "mfu")


def probe_steps(config) -> list[int]:
    """Steps whose train state is checkpointed for the probe learning curve: 0 (random init) and the fractions."""
    steps = config.train.steps
    return sorted({0} | {max(1, round(f * steps)) for f in config.probe.at_fractions})


def checkpoint_steps(config) -> set[int]:
    """Probe steps, every config.train.checkpoint_every steps (0: none extra) and the last step."""
    every = config.train.checkpoint_every
    periodic = set(range(every, config.train.steps + 1, every)) if every > 0 else set()
    return set(probe_steps(config)) | periodic | {config.train.steps}


def check_batch_split(config, mesh) -> None:
    replicas = mesh.shape["data"] * mesh.shape["fsdp"]
    if config.data.batch_size % (replicas * config.train.grad_accum):
        raise ValueError(f"config.data.batch_size={config.data.batch_size} must be divisible by the data x fsdp "
                         f"mesh size {replicas} x config.train.grad_accum={config.train.grad_accum}")


@dataclasses.dataclass(frozen=True)
class Components:
    """The config's models, optimizer and maskers, built once and shared by init, the step and the evaluations."""
    encoder: object
    predictor: object
    optimizer: object
    maskers: list
    grid: tuple

    @classmethod
    def build(cls, config) -> "Components":
        return cls(config_lib.build_encoder(config), config_lib.build_predictor(config),
                   optim.make_optimizer(config.optim, config.train.steps), config_lib.build_maskers(config),
                   config_lib.token_grid(config))


def train_state_init_fn(config, parts: Components | None = None):
    """A function () -> TrainState with logical boxes (for parallel.init_sharded / plan_shardings)."""
    parts = parts or Components.build(config)
    frames, size = config_lib.clip_shape(config)
    sample_video = np.zeros((1, frames, size, size, 3), np.float32)
    sample_masks = tuple((np.zeros((1, m.num_context), np.int32), np.zeros((1, m.num_target), np.int32))
                         for m in parts.maskers)
    key = jax.random.key(config.seed)
    return lambda: state_lib.init_train_state(key, parts.encoder, parts.predictor, parts.optimizer, sample_video,
                                              sample_masks, parts.grid, use_ema=config.objective == "ema")


def jit_train_step(config, parts: Components, mesh, state_shardings):
    """The train step jitted with in/out shardings and state donation (not yet compiled)."""
    step_fn = step_lib.make_train_step(config, parts.encoder, parts.predictor, parts.optimizer, parts.grid,
                                       list(config.masks.keys()))
    return jax.jit(step_fn, in_shardings=(state_shardings, parallel.batch_sharding(mesh)),
                   out_shardings=(state_shardings, None), donate_argnums=0)


def _validated_mesh(config, devices):
    config_lib.validate(config)
    mesh = parallel.make_mesh(config.mesh, devices)
    check_batch_split(config, mesh)
    return mesh


def build_run(config, devices=None) -> Run:
    """Validate the config, build the mesh (over `devices`, default all), models and a born-sharded train state,
    and jit the step. Every config or mesh mismatch fails here, before compiling."""
    mesh = _validated_mesh(config, devices)
    parts = Components.build(config)
    state, shardings = parallel.init_sharded(train_state_init_fn(config, parts), mesh)
    return Run(config, mesh, parts.encoder, parts.predictor, parts.maskers, parts.grid, state, shardings,
               jit_train_step(config, parts, mesh, shardings))


def abstract_batch(config, maskers, mesh) -> dict:
    """ShapeDtypeStructs (sharded over data x fsdp) of one global batch of this config."""
    frames, size = config_lib.clip_shape(config)
    batch_size, sharding = config.data.batch_size, parallel.batch_sharding(mesh)
    spec = lambda shape, dtype: jax.ShapeDtypeStruct(shape, dtype, sharding=sharding)
    batch = {"video": spec((batch_size, frames, size, size, 3), np.uint8),
             "masks": tuple(tuple(spec(shape, np.int32) for shape in m.shapes(batch_size)) for m in maskers)}
    if config.data.source == "video":
        batch["bad_files"] = spec((batch_size, len(video_lib.REASONS)), np.int32)
    return batch


def _lower(config, devices):
    """(lowered train step, abstract state with shardings, mesh) without allocating the model or the batch."""
    mesh = _validated_mesh(config, devices)
    parts = Components.build(config)
    with jax.set_mesh(mesh), nn.logical_axis_rules(parallel.RULES):
        state = parallel.abstract_sharded(train_state_init_fn(config, parts), mesh)
        shardings = jax.tree.map(lambda x: x.sharding, state)
        lowered = jit_train_step(config, parts, mesh, shardings).lower(state, abstract_batch(config, parts.maskers,
                                                                                             mesh))
    return lowered, state, mesh


def lower_train_step(config, devices=None):
    """Dry run: abstract init and lowering of the sharded train step on the config's mesh over `devices`.

    Nothing of the model's or the batch's size is allocated; returns the jax.stages.Lowered (call .compile() for
    XLA's memory analysis on the real target). Config and mesh errors surface exactly as in a real run.
    """
    return _lower(config, devices)[0]


def dry_run(config, devices=None) -> dict:
    """Lower the train step (see lower_train_step) and summarise: mesh, parameter counts, state bytes per device."""
    lowered, state, mesh = _lower(config, devices)
    size = lambda tree: sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree))
    per_device = sum(int(np.prod(x.sharding.shard_shape(x.shape))) * x.dtype.itemsize
                     for x in jax.tree.leaves(state))
    return {"mesh": dict(mesh.shape), "encoder_params": size(state.params["encoder"]),
            "predictor_params": size(state.params["predictor"]), "state_bytes_per_device": per_device,
            "lowered_ops": lowered.as_text().count("\n")}


def write_config(config, workdir: str) -> None:
    if jax.process_index() == 0:
        config_lib.write_json(config, os.path.join(workdir, "config.json"))


class PreemptionWatch:
    """Tells the loop when to checkpoint and stop after a preemption notice.

    One process: a SIGTERM handler sets a flag, honoured at the next step boundary. Several processes: JAX's own
    SIGTERM notifier and preemption sync point (via Orbax), so every host stops at the same step.
    """

    def __init__(self, checkpointer):
        self.checkpointer = checkpointer
        self.requested = False
        self.previous = None

    def __enter__(self):
        if jax.process_count() == 1 and threading.current_thread() is threading.main_thread():
            self.previous = signal.signal(signal.SIGTERM, self._request)
        return self

    def _request(self, signum, frame):  # pylint: disable=unused-argument
        self.requested = True

    def reached(self, step: int) -> bool:
        return self.requested or self.checkpointer.reached_preemption(step)

    def __exit__(self, *exc):
        if self.previous is not None:
            signal.signal(signal.SIGTERM, self.previous)


def new_stage(state: state_lib.TrainState) -> state_lib.TrainState:
    """A restored state as the start of a new stage: step 0 and schedules from 0 (as the official cooldown, which
    builds fresh schedulers); parameters, EMA copy, Adam moments and Adam's bias-correction count carry over."""
    def restart(path, leaf):
        keys = [str(getattr(k, "name", getattr(k, "key", k))) for k in path]
        return jnp.zeros_like(leaf) if keys[-1] == "count" and "inner_state" not in keys else leaf
    return state.replace(step=jnp.zeros_like(state.step),
                         opt_state=jax.tree_util.tree_map_with_path(restart, state.opt_state))


def state_from_export(state: state_lib.TrainState, directory: str) -> state_lib.TrainState:
    """`state` with the weights of an export/import folder (e.g. Meta's released V-JEPA 2 imported with
    `jepa-jax import`): encoder, predictor (a fresh one if the folder has none) and EMA copy (its target encoder, else
    its encoder); optimizer moments start fresh. Every process reads the file; each places its own shards."""
    groups = dict(export.read_native(directory).groups)
    if "encoder" not in groups and "target_encoder" not in groups:
        raise ValueError(f"config.train.init_from={directory!r} holds no encoder (groups {sorted(groups)})")
    groups.setdefault("encoder", groups.get("target_encoder"))
    groups.setdefault("target_encoder", groups["encoder"])

    def place(flat, like, group):
        layouts.check_tensors(os.path.join(directory, export.WEIGHTS_FILE), export.flatten(like, lambda x: x.shape),
                              {k: v.shape for k, v in flat.items()}, f"the {group} of this run's config.model "
                              f"(set its fields as in {directory}/config.json)")
        tree = export.unflatten(flat)
        return jax.tree.map(lambda v, x: jax.make_array_from_callback(x.shape, x.sharding, lambda i: v[i]), tree, like)
    params = {kind: place(groups[kind], state.params[kind], kind) if kind in groups else state.params[kind]
              for kind in ("encoder", "predictor")}
    if "predictor" not in groups:
        logging.warning("%s has no predictor: the predictor starts from its random init", directory)
    ema = place(groups["target_encoder"], state.ema_params, "target_encoder") if state.ema_params is not None else None
    return state.replace(params=params, ema_params=ema)


def restore_or_start(config, run, checkpointer, data_iter, workdir: str):
    """(state, start step, resumed-from step or None), in this order: the newest complete checkpoint in `workdir`
    (config.train.resume), a new stage from config.train.init_from, a fresh state. Refuses to mix with another
    run's checkpoints."""
    latest = checkpointer.latest_step()
    if latest is not None and not config.train.resume:
        raise ValueError(f"{checkpointer.directory} already holds checkpoints {checkpointer.steps()}: use a new "
                         f"--workdir or --config.train.resume=True")
    if latest is None and config.train.init_from:
        run_dir, step = checkpoint.parse_init_from(config.train.init_from)
        if step is None:
            logging.warning("new stage in %s from the weights in %s", workdir, run_dir)
            return new_stage(state_from_export(run.state, run_dir)), 0, None
        source = checkpoint.Checkpointer(run_dir)
        state = source.restore(step, checkpoint.abstract_like(run.state))
        source.close()
        logging.warning("new stage in %s from %s checkpoint %d", workdir, run_dir, step)
        return new_stage(state), 0, None
    if latest is None:
        logging.warning("starting from scratch in %s", workdir)
        return run.state, 0, None
    state = checkpointer.restore(latest, checkpoint.abstract_like(run.state), data_iter)
    metrics_lib.truncate_jsonl(os.path.join(workdir, "metrics.jsonl"), latest)
    logging.warning("resuming from checkpoint %d in %s", latest, workdir)
    return state, latest, latest


def train(config, workdir: str) -> dict:
    """Train for config.train.steps; returns a summary {steps, wall_s, steps_per_s, compile_s, final metrics}.

    Stops early (with a checkpoint of the current step) on SIGTERM / preemption: summary["preempted_at"].
    """
    os.makedirs(workdir, exist_ok=True)
    run = build_run(config)
    data_iter = iter(pipeline.train_dataset(config, run.maskers, parallel.local_batch_size(config.data.batch_size)))
    save_at = checkpoint_steps(config)
    checkpointer = checkpoint.Checkpointer(workdir, config.train.checkpoint_keep, config.train.checkpoint_keep_every,
                                           keep_steps=probe_steps(config))
    try:
        state, start, resumed_from = restore_or_start(config, run, checkpointer, data_iter, workdir)
        write_config(config, workdir)
        if resumed_from is None:
            checkpointer.save(0, state, data_iter, config)
        summary = _train_steps(config, run, state, start, data_iter, checkpointer, save_at, workdir)
    finally:
        checkpointer.wait()
        checkpointer.close()
    if jax.process_index() == 0:
        metrics_lib.plot_training_curves(metrics_lib.read_jsonl(os.path.join(workdir, "metrics.jsonl")),
                                         TRAINING_CURVES, os.path.join(workdir, "training.png"))
    return {"steps": config.train.steps, "resumed_from": resumed_from, **summary}


def _train_steps(config, run, state, start, data_iter, checkpointer, save_at, workdir) -> dict:
    writer = metrics_lib.MetricWriter(workdir)
    progress = metrics_lib.Progress(config.train.steps, initial_step=start)
    logger = StepLogger(config, writer, progress, checkpointer)
    pending, preempted_at, train_step, save_blocking_s = None, None, run.train_step, 0.0
    started = time.perf_counter()
    try:
        with PreemptionWatch(checkpointer) as preemption, jax.set_mesh(run.mesh), \
                nn.logical_axis_rules(parallel.RULES):
            for step in range(start, config.train.steps):
                batch = parallel.host_to_global(next(data_iter), run.mesh)
                if step == start:  # compile ahead of time, to read the step's FLOPs for MFU
                    train_step = run.train_step.lower(state, batch).compile()
                    logger.set_flops(metrics_lib.compiled_flops(train_step), time.perf_counter() - started)
                state, step_metrics = train_step(state, batch)
                if pending is not None:
                    logger.log(*pending)
                pending = (step + 1, step_metrics)
                stop = preemption.reached(step + 1)
                if step + 1 in save_at or stop:
                    logger.log(*pending)  # never checkpoint a non-finite state
                    pending = None
                    save_started = time.perf_counter()
                    checkpointer.save(step + 1, state, data_iter, config)
                    save_blocking_s += time.perf_counter() - save_started
                if stop:
                    preempted_at = step + 1
                    logging.warning("preemption notice: checkpointed step %d, stopping", preempted_at)
                    break
            if pending is not None:
                logger.log(*pending, force=True)
    finally:
        progress.close()
        writer.close()
    return {"preempted_at": preempted_at, "wall_s": time.perf_counter() - started,
            "compile_s": logger.compile_s, "steps_per_s": progress.steps_per_second(),
            "checkpoint_blocking_s": save_blocking_s,
            "flops_per_step_per_device": logger.flops, **logger.last}


class StepLogger:
    """Turns a step's device metrics into logged scalars: non-finite guard, bad-file budget, MFU, progress."""

    def __init__(self, config, writer, progress, checkpointer):
        self.config, self.writer, self.progress, self.checkpointer = config, writer, progress, checkpointer
        self.budget = (pipeline.BadFileBudget(config.data.video.max_bad_fraction, config.data.batch_size)
                       if config.data.source == "video" else None)
        self.peak = metrics_lib.peak_flops_per_device(override=config.monitor.peak_flops)
        self.flops, self.compile_s, self.last = float("nan"), float("nan"), {}

    def set_flops(self, flops: float, compile_s: float) -> None:
        self.flops, self.compile_s = flops, compile_s

    def log(self, step: int, device_metrics: dict, force: bool = False) -> None:
        scalars = {k: float(v) for k, v in jax.device_get(device_metrics).items()}
        finite = math.isfinite(scalars["loss"]) and math.isfinite(scalars["grad_norm"])
        if not finite and self.config.train.on_nonfinite == "stop":
            self.checkpointer.wait()
            raise FloatingPointError(
                f"loss is {scalars['loss']} (grad norm {scalars['grad_norm']}) at step {step}; stopped with the "
                f"last good checkpoint (step {self.checkpointer.latest_step()}) kept: lower config.optim.lr, "
                f"check the data, or set --config.train.on_nonfinite=skip")
        if self.budget is not None:
            scalars.update(self.budget.update(scalars))
        self.progress.update({"loss": scalars["loss"], "spread": scalars["target_spread"]})
        rate = self.progress.steps_per_second()
        if math.isfinite(rate):
            scalars.update(steps_per_s=rate, step_time_s=1.0 / rate, mfu=self.flops * rate / self.peak)
        if force or step % self.config.train.log_every == 0 or step == 1:
            self.writer.write(step, scalars)
        self.last = scalars


def save_summary(summary: dict, workdir: str) -> None:
    if jax.process_index() == 0:
        with open(os.path.join(workdir, "summary.json"), "w", encoding="utf-8") as f:
            json.dump(summary, f, indent=2)
