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

from absl import logging
import jax
from jax.experimental import multihost_utils
import jax.numpy as jnp
import numpy as np

from jepa_jax import checkpoint, config as config_lib, metrics as metrics_lib, native, parallel, storage
from jepa_jax.data import pipeline, trajectories
from jepa_jax.data import video as video_lib
from jepa_jax.models import stacking
from jepa_jax.train import optim, state as state_lib, step as step_lib


@dataclasses.dataclass(frozen=True)
class Run:
    """Everything `build_run` builds from one config: the mesh, the models, the optimizer, the maskers, the train
    state (live arrays, or for a dry run ShapeDtypeStructs with shardings) and the jitted train step."""
    config: object
    mesh: object
    encoder: object
    predictor: object
    optimizer: object
    maskers: list
    grid: tuple
    state: state_lib.TrainState | None = None
    state_shardings: object = None
    train_step: object = None


TRAINING_CURVES = ("loss", "prediction_loss", "teacher_forcing_loss", "rollout_loss", "proprio_loss", "sigreg",
                   "best_probe_loss", "mean_probe_loss", "best_probe_accuracy", "online_probe_r2",
                   "target_spread", "target_effective_rank", "prediction_cosine", "lr", "mfu")


def checkpoint_steps(config) -> set[int]:
    """Probe steps, every config.train.checkpoint_every steps (0: none extra) and the last step."""
    every = config.train.checkpoint_every
    periodic = set(range(every, config.train.steps + 1, every)) if every > 0 else set()
    return set(config_lib.probe_steps(config)) | periodic | {config.train.steps}


def check_batch_split(config, mesh) -> None:
    replicas = mesh.shape["data"] * mesh.shape["fsdp"]
    if config.data.batch_size % (replicas * config.train.grad_accum):
        raise ValueError(f"config.data.batch_size={config.data.batch_size} must be divisible by the data x fsdp "
                         f"mesh size {replicas} x config.train.grad_accum={config.train.grad_accum}")


def parse_init_from(spec: str, field: str = "config.train.init_from") -> tuple[str, int | None]:
    """config.train.init_from (or another `field` naming weights): "RUN_DIR[:STEP]" -> (run dir, step; default the
    newest); a native export/import folder -> (folder, None). One-line error if there is no such checkpoint."""
    if native.is_folder(spec):
        return spec, None
    run_dir, step = spec, None
    head, separator, tail = spec.rpartition(":")
    if separator and tail.isdigit():
        run_dir, step = head, int(tail)
    try:
        return run_dir, checkpoint.resolve_step(run_dir, step)
    except ValueError as err:
        raise ValueError(f"{field}={spec!r}: {err}: give the directory of a `jepa-jax train` run, "
                         f"optionally :STEP, or a `jepa-jax export`/`import` folder") from None


def batch_spec(config, maskers, batch_size: int) -> dict:
    """The device batch of this config (pipeline.batch_spec or pipeline.trajectory_batch_spec), `batch_size`
    clips."""
    frames, size = config_lib.clip_shape(config)
    if config.objective == "ac":
        return pipeline.trajectory_batch_spec(frames, size, config.ac.action_dim, config.ac.proprio_dim, batch_size)
    if config.objective == "probe":
        return pipeline.probe_batch_spec(frames * config.attentive.segments, size,
                                         config_lib.probe_num_targets(config), batch_size,
                                         classes=config_lib.probe_classes(config) > 0)
    labels = config_lib.online_probe_shape(config)
    return pipeline.batch_spec(frames, size, maskers, batch_size, labels=labels[1] if labels else 0)


def check_trajectories(config) -> None:
    """One-line error if config.ac does not match the trajectories in config.data.trajectories (meta.json)."""
    directory = config.data.trajectories
    meta = trajectories.read_meta(directory)
    expected = {"ac.action_dim": (meta["action_dim"] * config.ac.frameskip,
                                  f"{meta['action_dim']}-d actions x frameskip {config.ac.frameskip}"),
                "ac.proprio_dim": (meta["proprio_dim"], f"{meta['proprio_dim']}-d proprio"),
                "ac.image_size": (meta["image_size"], f"{meta['image_size']}-pixel frames")}
    for field, (value, what) in expected.items():
        section, name = field.split(".")
        if config[section][name] != value:
            raise ValueError(f"config.{field}={config[section][name]} does not match the trajectories in {directory} "
                             f"({what} of {meta['env']}): set --config.{field}={value}")


def data_stream(config, maskers, local_batch_size: int):
    """This process's infinite stream of host batches for config.data.source (config.objective "probe": the
    probe task's labelled clips, pipeline.probe_dataset)."""
    if config.objective == "probe":
        return pipeline.probe_dataset(config, local_batch_size)
    if config.data.source != "trajectories":
        return pipeline.train_dataset(config, maskers, local_batch_size)
    return trajectories.trajectory_dataset(config.data.trajectories, config.ac.num_frames, config.ac.frameskip,
                                           local_batch_size, config.seed, num_threads=config.data.num_threads,
                                           prefetch=config.data.prefetch)


def train_state_init_fn(run: Run):
    """A function () -> TrainState with logical boxes (for parallel.init_sharded / abstract_sharded)."""
    config = run.config
    frames, size = config_lib.clip_shape(config)
    if config.objective == "ac":  # the encoder sees one frame at a time, as a clip of tubelet_size copies
        frames = config.model.tubelet_size
    members = len(config_lib.probe_members(config)) if config.objective == "probe" else 0
    # Key and sample clip are made inside the traced function: nothing runs eagerly on the mesh's devices (which
    # may be abstract, e.g. a TPU topology compiled for ahead of time).
    return lambda: state_lib.init_train_state(jax.random.key(config.seed), run.encoder, run.predictor, run.optimizer,
                                              jnp.zeros((1, frames, size, size, 3), jnp.float32),
                                              config_lib.predictor_inputs(config), use_ema=config.objective == "ema",
                                              stacked=config.model.scan_layers, members=members,
                                              online_probe=config_lib.online_probe_shape(config))


ENCODER_FIELDS = ("size", "custom", "patch_size", "tubelet_size", "pos_embedding", "rope_pairing")


def check_encoder_architecture(config, source: str, field: str) -> None:
    """One-line error, before anything is built, when the encoder saved in `source` (a run directory or export
    folder, with its config.json) differs from config.model in a field that shapes its weights or tokens."""
    if not (storage.path(source) / "config.json").is_file():
        return  # an imported folder without a run config: the tensor check of place_weights decides
    saved = config_lib.load_run(source).model
    for name in ENCODER_FIELDS:
        if name == "custom" and saved.size != "custom":
            continue
        if saved[name] != config.model[name]:
            raise ValueError(f"{field}={source!r} holds an encoder with model.{name}={saved[name]!r}, this config "
                             f"has {config.model[name]!r}: set --config.model.{name}={saved[name]} (its tokens "
                             f"and weights must match)")


def pretrained_encoder_spec(config) -> tuple[str, str]:
    """(where the run's encoder comes from, the field naming it): config.ac.encoder_from for "ac",
    config.attentive.encoder_from for "probe"; ("", "") for objectives that train their encoder from scratch."""
    if config.objective == "ac":
        return config.ac.encoder_from, "config.ac.encoder_from"
    if config.objective == "probe":
        return config.attentive.encoder_from, "config.attentive.encoder_from"
    return "", ""


def make_optimizer(config):
    """The objective's optimizer: the probe grid (probe), else AdamW with config.optim (the encoder of a frozen-
    encoder world model left alone)."""
    if config.objective == "probe":
        return optim.probe_optimizer(config_lib.probe_members(config), config.train.steps)
    return optim.make_optimizer(config.optim, config.train.steps, frozen_groups(config),
                                online_probe=bool(config.monitor.online_probe))


def frozen_groups(config) -> tuple[str, ...]:
    """Parameter groups the optimizer leaves alone: the encoder of a V-JEPA 2-AC-style world model."""
    return ("encoder",) if config.objective == "ac" and config.ac.encoder == "frozen" else ()


def use_compilation_cache(directory: str) -> None:
    """Turn on XLA's persistent compilation cache in `directory` (config.train.compilation_cache; "" leaves it
    off) unless one is set already (JAX_COMPILATION_CACHE_DIR)."""
    if not jax.config.jax_compilation_cache_dir and directory:
        jax.config.update("jax_compilation_cache_dir", os.path.expanduser(directory))


def build_run(config, devices=None, *, abstract: bool = False) -> Run:
    """Validate the config, build the mesh (over `devices`, default all), models, optimizer, maskers and a
    born-sharded train state (abstract=True: its ShapeDtypeStructs with shardings, nothing allocated), and jit the
    step with in/out shardings and state donation. Every config or mesh mismatch fails here, before compiling."""
    config_lib.validate(config)
    if config.train.init_from:
        parse_init_from(config.train.init_from)
    encoder_from, field = pretrained_encoder_spec(config)
    if encoder_from:
        check_encoder_architecture(config, parse_init_from(encoder_from, field)[0], field)
    mesh = parallel.make_mesh(config.mesh, devices)
    check_batch_split(config, mesh)
    use_compilation_cache(config.train.compilation_cache)
    run = Run(config, mesh, config_lib.build_encoder(config), config_lib.build_predictor(config),
              make_optimizer(config),
              config_lib.build_maskers(config),
              config_lib.token_grid(config))
    if abstract:
        with parallel.on_mesh(mesh):
            state = parallel.abstract_sharded(train_state_init_fn(run), mesh)
        shardings = jax.tree.map(lambda x: x.sharding, state)
    else:
        state, shardings = parallel.init_sharded(train_state_init_fn(run), mesh)
    step_fn = step_lib.make_train_step(config, run.encoder, run.predictor, run.optimizer, run.grid,
                                       list(config.masks.keys()))
    train_step = jax.jit(step_fn, in_shardings=(shardings, parallel.batch_sharding(mesh)),
                         out_shardings=(shardings, None), donate_argnums=0)
    return dataclasses.replace(run, state=state, state_shardings=shardings, train_step=train_step)


def lower(run: Run):
    """The run's train step lowered on its mesh against its (abstract or live) state and an abstract global batch
    (jax.stages.Lowered: call .compile() for XLA's memory analysis on the real target)."""
    sharding = parallel.batch_sharding(run.mesh)
    batch = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding),
                         batch_spec(run.config, run.maskers, run.config.data.batch_size))
    with parallel.on_mesh(run.mesh):
        return run.train_step.lower(run.state, batch)


def dry_run(config, devices=None) -> dict:
    """Dry run: build the run abstractly (nothing of the model's or the batch's size is allocated), lower its step on
    the config's mesh and summarise: mesh, parameter counts, state bytes per device. Config and mesh errors surface
    exactly as in a real run."""
    run = build_run(config, devices, abstract=True)
    lowered = lower(run)
    size = lambda tree: sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree))
    per_device = sum(int(np.prod(x.sharding.shard_shape(x.shape))) * x.dtype.itemsize
                     for x in jax.tree.leaves(run.state))
    return {"mesh": dict(run.mesh.shape), "encoder_params": size(run.state.params["encoder"]),
            "predictor_params": size(run.state.params["predictor"]), "state_bytes_per_device": per_device,
            "lowered_ops": lowered.as_text().count("\n")}


def write_config(config, workdir: str) -> None:
    if jax.process_index() == 0:
        config_lib.write_json(config, storage.join(workdir, "config.json"))


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


def place_weights(flat: dict, like, directory: str, group: str):
    """{name: numpy array} read from `directory` (an export folder or a run) as a tree shaped and sharded like
    `like` (each process places its own shards; stacked blocks are stacked, models/stacking.py); a missing, extra
    or mis-shaped tensor fails naming it."""
    unrolled = stacking.unstack(checkpoint.abstract_like(like))
    native.check_tensors(os.path.join(directory, native.WEIGHTS_FILE) if native.is_folder(directory) else directory,
                         native.flatten(unrolled, lambda x: x.shape), {k: v.shape for k, v in flat.items()},
                         f"the {group} of this run's config.model (set its fields as in "
                         f"{directory}/{native.CONFIG_FILE})")
    placed = jax.tree.map(lambda v, x: jax.make_array_from_callback(x.shape, x.sharding, lambda i: v[i]),
                          native.unflatten(flat), unrolled)
    return stacking.stack_onto(placed, like) if stacking.is_stacked(like) else placed


def pretrained_encoder(source: str, step: int | None) -> dict:
    """{name: numpy array} of an encoder: checkpoint `step` of run `source` (its EMA target encoder when it has one,
    as V-JEPA 2-AC takes) or, step None, an export/import folder (target_encoder, else encoder)."""
    if step is None:
        groups = native.read(source).groups
        return dict(groups.get("target_encoder") or groups["encoder"])
    checkpointer = checkpoint.Checkpointer(source)
    restored = checkpointer.restore_params(step)
    checkpointer.close()
    return native.flatten(restored["ema_params"] or restored["params"]["encoder"])


def with_pretrained_encoder(state: state_lib.TrainState, spec: str,
                            field: str = "config.ac.encoder_from") -> state_lib.TrainState:
    """`state` whose encoder holds the weights `spec` (the config `field`) names; the rest stays as it is."""
    source, step = parse_init_from(spec, field)
    encoder = place_weights(pretrained_encoder(source, step), state.params["encoder"], source, "encoder")
    return state.replace(params={**state.params, "encoder": encoder})


def state_from_export(state: state_lib.TrainState, directory: str) -> state_lib.TrainState:
    """`state` with the weights of an export/import folder (e.g. Meta's released V-JEPA 2 imported with
    `jepa-jax import`): encoder, predictor (a fresh one if the folder has none) and EMA copy (its target encoder, else
    its encoder); optimizer moments start fresh. Every process reads the file; each places its own shards."""
    groups = dict(native.read(directory).groups)
    if "encoder" not in groups and "target_encoder" not in groups:
        raise ValueError(f"config.train.init_from={directory!r} holds no encoder (groups {sorted(groups)})")
    groups.setdefault("encoder", groups.get("target_encoder"))
    groups.setdefault("target_encoder", groups["encoder"])

    params = {kind: place_weights(groups[kind], state.params[kind], directory, kind) if kind in groups
              else state.params[kind] for kind in ("encoder", "predictor")}
    if "predictor" not in groups:
        logging.warning("%s has no predictor: the predictor starts from its random init", directory)
    ema = (place_weights(groups["target_encoder"], state.ema_params, directory, "target_encoder")
           if state.ema_params is not None else None)
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
        run_dir, step = parse_init_from(config.train.init_from)
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
        encoder_from, field = pretrained_encoder_spec(config)
        if encoder_from:
            return with_pretrained_encoder(run.state, encoder_from, field), 0, None
        return run.state, 0, None
    state = checkpointer.restore(latest, checkpoint.abstract_like(run.state), data_iter)
    metrics_lib.truncate_jsonl(storage.join(workdir, "metrics.jsonl"), latest)
    logging.warning("resuming from checkpoint %d in %s", latest, workdir)
    return state, latest, latest


def train(config, workdir: str) -> dict:
    """Train for config.train.steps; returns a summary {steps, wall_s, steps_per_s, compile_s, params_fingerprint
    (checkpoint.fingerprint of the final parameters), final metrics}.

    Stops early (with a checkpoint of the current step) on SIGTERM / preemption: summary["preempted_at"].
    """
    storage.check(workdir, "--workdir")
    if config.data.source == "trajectories":
        check_trajectories(config)
    storage.path(workdir).mkdir(parents=True, exist_ok=True)
    run = build_run(config)
    data_iter = iter(data_stream(config, run.maskers, parallel.local_batch_size(config.data.batch_size)))
    checkpointer = checkpoint.Checkpointer(workdir, config.train.checkpoint_keep, config.train.checkpoint_keep_every,
                                           keep_steps=config_lib.probe_steps(config))
    try:
        state, start, resumed_from = restore_or_start(config, run, checkpointer, data_iter, workdir)
        write_config(config, workdir)
        if resumed_from is None:
            checkpointer.save(0, state, data_iter, config)
        summary = _train_steps(run, state, start, data_iter, checkpointer, workdir)
    finally:
        checkpointer.wait()
        checkpointer.close()
    if jax.process_index() == 0:
        metrics_lib.plot_training_curves(metrics_lib.read_jsonl(storage.join(workdir, "metrics.jsonl")),
                                         TRAINING_CURVES, storage.join(workdir, "training.png"))
    return {"steps": config.train.steps, "resumed_from": resumed_from, **summary}


def _train_steps(run: Run, state, start: int, data_iter, checkpointer, workdir: str) -> dict:
    """Steps start .. config.train.steps: dispatch step t + 1, then check and log step t; checkpoint at the
    checkpoint steps (after their metrics were checked) and on preemption."""
    config, save_at = run.config, checkpoint_steps(run.config)
    writer = metrics_lib.MetricWriter(workdir)
    progress = metrics_lib.Progress(config.train.steps, initial_step=start)
    logger = StepLogger(config, writer, progress)
    counted = config.data.source in ("video", "trajectories")
    bad_files = BadFileCounter(config.data.video.max_bad_fraction) if counted else None
    pending, preempted_at, train_step, save_blocking_s = None, None, run.train_step, 0.0
    started = time.perf_counter()

    def finish(step, device_metrics, step_bad_files):
        scalars = {k: float(v) for k, v in jax.device_get(device_metrics).items()}
        stop_if_nonfinite(config, checkpointer, step, scalars)
        if bad_files is not None and logger.logs(step):
            scalars.update(bad_files.check(step_bad_files))
        logger.log(step, scalars)

    try:
        with PreemptionWatch(checkpointer) as preemption, parallel.on_mesh(run.mesh):
            for step in range(start, config.train.steps):
                batch = dict(next(data_iter))
                step_bad_files = bad_files.add(batch.pop("bad_files")) if bad_files is not None else None
                batch = parallel.host_to_global(batch, run.mesh)
                if step == start:  # compile ahead of time, to read the step's FLOPs for MFU
                    train_step = run.train_step.lower(state, batch).compile()
                    logger.set_flops(metrics_lib.compiled_flops(train_step), time.perf_counter() - started)
                state, step_metrics = train_step(state, batch)
                if pending is not None:
                    finish(*pending)
                pending = (step + 1, step_metrics, step_bad_files)
                stop = preemption.reached(step + 1)
                if step + 1 in save_at or stop:
                    finish(*pending)  # never checkpoint a non-finite state
                    pending = None
                    save_started = time.perf_counter()
                    checkpointer.save(step + 1, state, data_iter, config)
                    save_blocking_s += time.perf_counter() - save_started
                    writer.flush()  # a run resumed from this checkpoint keeps the metrics up to it
                if stop:
                    preempted_at = step + 1
                    logging.warning("preemption notice: checkpointed step %d, stopping", preempted_at)
                    break
    finally:
        progress.close()
        writer.close()
    return {"preempted_at": preempted_at, "wall_s": time.perf_counter() - started,
            "compile_s": logger.compile_s, "compilation_cache": jax.config.jax_compilation_cache_dir or None,
            "steps_per_s": progress.steps_per_second(),
            "checkpoint_blocking_s": save_blocking_s, "params_fingerprint": checkpoint.fingerprint(state.params),
            "flops_per_step_per_device": logger.flops, **logger.last}


def stop_if_nonfinite(config, checkpointer, step: int, scalars: dict) -> None:
    """FloatingPointError naming the step when its loss or gradient is not finite (config.train.on_nonfinite
    "stop"), after the pending checkpoint writes finished: the last good checkpoint is kept."""
    if config.train.on_nonfinite != "stop" or (math.isfinite(scalars["loss"]) and math.isfinite(scalars["grad_norm"])):
        return
    checkpointer.wait()
    raise FloatingPointError(
        f"loss is {scalars['loss']} (grad norm {scalars['grad_norm']}) at step {step}; stopped with the last good "
        f"checkpoint (step {checkpointer.latest_step()}) kept: lower config.optim.lr, check the data, or set "
        f"--config.train.on_nonfinite=skip")


class BadFileCounter:
    """Counts the unusable files the data pipeline replaced, on the host (the counts never go to the device), and
    checks them against the budget at the logged steps, summed over all processes."""

    def __init__(self, max_fraction: float):
        self.budget = pipeline.BadFileBudget(max_fraction)
        self.unchecked = np.zeros(len(video_lib.REASONS), np.int64)
        self.clips = 0

    def add(self, bad_files: np.ndarray) -> np.ndarray:
        """Add one host batch's counts [b, len(REASONS)]; returns them summed over the batch [len(REASONS)]."""
        counts = np.asarray(bad_files).sum(axis=0)
        self.unchecked += counts
        self.clips += len(bad_files)
        return counts

    def check(self, step_counts: np.ndarray) -> dict:
        """{"bad_files/<reason>": that step's count, "bad_files_total/<reason>": running total}, over all processes;
        RuntimeError past config.data.video.max_bad_fraction. Every process calls it at the same steps."""
        local = np.concatenate([step_counts, self.unchecked, [self.clips]])
        summed = local if jax.process_count() == 1 else multihost_utils.process_allgather(local).sum(axis=0)
        reasons = len(video_lib.REASONS)
        self.unchecked[:], self.clips = 0, 0
        totals = self.budget.update(summed[reasons:2 * reasons], int(summed[-1]))
        return {**{f"bad_files/{r}": int(n) for r, n in zip(video_lib.REASONS, summed[:reasons])}, **totals}


class StepLogger:
    """Turns a step's metrics into logged scalars: progress bar, MFU, metrics.jsonl / TensorBoard at the logged
    steps (the collapse monitors only where the step computed them)."""

    def __init__(self, config, writer, progress):
        self.config, self.writer, self.progress = config, writer, progress
        self.peak = metrics_lib.peak_flops_per_device(override=config.monitor.peak_flops)
        self.flops, self.compile_s, self.last, self.spread = float("nan"), float("nan"), {}, float("nan")

    def set_flops(self, flops: float, compile_s: float) -> None:
        self.flops, self.compile_s = flops, compile_s

    def logs(self, step: int) -> bool:
        return bool(step_lib.on_schedule(step, self.config.train.log_every, self.config.train.steps))

    def log(self, step: int, scalars: dict) -> None:
        monitored = step_lib.on_schedule(step, self.config.monitor.every or self.config.train.log_every,
                                         self.config.train.steps)
        if not monitored:
            scalars = {k: v for k, v in scalars.items() if k not in step_lib.MONITORS}
        self.spread = scalars.get("target_spread", self.spread)
        shown = {"loss": scalars["loss"]}
        if math.isfinite(self.spread):  # objectives without collapse monitors (probe) have no spread
            shown["spread"] = self.spread
        self.progress.update(shown)
        rate = self.progress.steps_per_second()
        if math.isfinite(rate):
            scalars.update(steps_per_s=rate, step_time_s=1.0 / rate, mfu=self.flops * rate / self.peak)
        if self.logs(step):
            self.writer.write(step, scalars)
        self.last = scalars


def is_finished(workdir: str) -> bool:
    """Whether the run in `workdir` finished (save_summary wrote its summary.json)."""
    return (storage.path(workdir) / "summary.json").is_file()


def save_summary(summary: dict, workdir: str) -> None:
    if jax.process_index() == 0:
        (storage.path(workdir) / "summary.json").write_text(json.dumps(summary, indent=2))
