"""The pure train step: (TrainState, batch) -> (TrainState, metrics), jitted by the loop with shardings.

JEPA batches are `pipeline.batch_spec`: {"video": uint8 [B, T, H, W, C], "masks": ((context [B, Kc], target
[B, Kt]), ...)}, one index pair per mask config; a target [B, n, Kt] (I-JEPA) holds n blocks, each predicted
separately from the same context. The action-conditioned objective ("ac") takes trajectory windows {"frames",
"actions", "proprio"}. Frames stay uint8 until here; normalisation happens on device.

The step is built from pieces a new objective reuses: a loss `loss_fn(params, batch, key) -> (loss, metrics)`
(`jepa_loss`, `ac_loss`), `mean_gradients` (gradient accumulation over micro-batches), `apply_gradients` (optax),
`skip_nonfinite`, and the EMA rule from `objectives`. With config.train.grad_accum = k the batch is split into k
micro-batches whose gradients are averaged before one update, which equals one step on the whole batch for the
prediction loss (SIGReg's batch statistic is then taken per micro-batch).
"""

import functools
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import optax

from jepa_jax import config as config_lib, metrics as metrics_lib, objectives
from jepa_jax.models import ac_predictor, pixel_decoder, probe as probe_lib, vit
from jepa_jax.train import optim

MONITORS = ("target_spread", "target_feature_std", "target_effective_rank", "prediction_cosine")


def on_schedule(step, every: int, total_steps: int):
    """True at steps (counted from 1) every `every`, the first and the last: the logging and monitor steps.
    Works on Python ints and traced step counters alike."""
    return (step % every == 0) | (step == 1) | (step == total_steps)


def collapse_monitors(features, targets, predictions, target_tokens) -> dict:
    """Collapse monitors (MONITORS) of the target features [B, N, D], their normalised form and the predictions /
    normalised targets of each mask config ([B', Kt, D] each)."""
    cosines = [metrics_lib.mean_cosine(p, t) for p, t in zip(predictions, target_tokens)]
    return {"target_spread": objectives.batch_spread(targets),
            "target_feature_std": metrics_lib.feature_std(features),
            "target_effective_rank": metrics_lib.effective_rank(features.reshape(-1, features.shape[-1])),
            "prediction_cosine": sum(cosines) / len(cosines)}


def maybe_monitors(monitor, *inputs) -> dict:
    """collapse_monitors(*inputs) where `monitor` (a traced bool) holds, NaNs otherwise: on other steps the
    monitors (an eigendecomposition among them) are not computed at all."""
    inputs = jax.lax.stop_gradient(inputs)
    skipped = lambda *_: {name: jnp.full((), jnp.nan, jnp.float32) for name in MONITORS}
    return jax.lax.cond(monitor, collapse_monitors, skipped, *inputs)


def online_probe_metrics(probe, targets, labels, grid: tuple[int, int, int]) -> dict:
    """The online probe (config.monitor.online_probe): a linear map of the normalised target features [B, N, D],
    each time slice pooled into 2 x 2 quadrants, to the batch's labels [B, K]. Returns "online_probe_loss" (mean
    squared error; targets carry no gradient, so only the probe learns from it) and "online_probe_r2" (R^2 over
    this batch, which the probe has not been trained on yet)."""
    predicted = vit.pool_quadrants(targets, grid) @ probe["kernel"] + probe["bias"]
    error = jnp.square(predicted - labels).mean(0)
    return {"online_probe_loss": error.mean(),
            "online_probe_r2": 1.0 - (error / jnp.maximum(labels.var(0), 1e-12)).mean()}


def jepa_loss(params, batch, key, *, encoder, predictor, grid: tuple[int, int, int], mask_names: Sequence[str],
              target_params=None, loss_kind: str = "l1", sigreg=None, pixels: bool = False, monitor=True):
    """The JEPA objective (or its pixel-reconstruction baseline): (loss, metrics) of one batch.

    Args:
      params: {"encoder", "predictor"}: the trained weights (the context encoder is params["encoder"]).
      batch: {"video": uint8 [B, T, H, W, C], "masks": ((context [B, Kc], target [B, Kt] or [B, n, Kt]), ...)}.
      key: PRNG key (SIGReg directions).
      target_params: the encoder weights that make the targets (the EMA copy, or params["encoder"] for SIGReg);
        targets are LayerNorm-ed features of the full clip, without gradient.
      loss_kind: "l1", "l2" or "smooth_l1", averaged over the mask configs.
      sigreg: config.sigreg (weight, num_slices, t_max, num_points) to add SIGReg on every context embedding of the
        batch (all mask configs: the tokens that carry gradient), or None (EMA objective).
      pixels: predict each target tubelet's standardised pixels instead (objective "pixels", VideoMAE-style:
        models/pixel_decoder.py; `predictor` is the pixel decoder, target_params unused); the collapse monitors
        then look at the context encoder's outputs of the first mask config.
      monitor: compute the collapse monitors (a bool, traced or not).
    """
    video = vit.normalize_video(batch["video"])
    # Targets, losses and monitors in float32 whatever the compute dtype (mixed precision).
    if pixels:
        targets = pixel_decoder.pixel_targets(batch["video"], encoder.patch_size, encoder.tubelet_size)
    else:
        features = jax.lax.stop_gradient(encoder.apply({"params": target_params}, video)).astype(jnp.float32)
        targets = objectives.normalize_targets(features)
    metrics, losses, contexts, predictions, target_tokens = {}, [], [], [], []
    for mask_index, (context_idx, target_idx) in enumerate(batch["masks"]):
        context = encoder.apply({"params": params["encoder"]}, video, keep=context_idx)
        contexts.append(context.reshape(-1, context.shape[-1]).astype(jnp.float32))
        clip_targets = targets
        if target_idx.ndim == 3:  # [B, n, Kt]: n blocks, each predicted on its own from the context (I-JEPA)
            blocks = target_idx.shape[1]
            context, context_idx, clip_targets = (jnp.repeat(x, blocks, axis=0) for x in (context, context_idx, targets))
            target_idx = target_idx.reshape(-1, target_idx.shape[-1])
        predictions.append(predictor.apply({"params": params["predictor"]}, context, context_idx, target_idx, grid,
                                           mask_index=mask_index))
        target_tokens.append(vit.gather_tokens(clip_targets, target_idx))
        losses.append(objectives.prediction_loss(predictions[-1], target_tokens[-1], loss_kind))
        metrics[f"loss_{mask_names[mask_index]}"] = losses[-1]
    loss = sum(losses) / len(losses)
    metrics["prediction_loss"] = loss
    if "online_probe" in params:
        metrics.update(online_probe_metrics(params["online_probe"], targets, batch["probe_targets"], grid))
        loss = loss + metrics["online_probe_loss"]
    if pixels:  # the representation to watch for collapse: the context encoder's (first mask config)
        features = contexts[0].reshape(video.shape[0], -1, contexts[0].shape[-1])
        targets = objectives.normalize_targets(features)
    metrics.update(maybe_monitors(monitor, features, targets, tuple(predictions), tuple(target_tokens)))
    if sigreg is not None:
        metrics["sigreg"] = objectives.sigreg(jnp.concatenate(contexts), key, sigreg.num_slices, sigreg.t_max,
                                              sigreg.num_points)
        loss = loss + sigreg.weight * metrics["sigreg"]
    return loss, metrics


def ac_loss(params, batch, key, *, encoder, predictor, grid_hw: tuple[int, int], train_encoder: bool,
            rollout_steps: int, loss_kind: str = "l1", proprio_weight: float = 1.0, pool_grid: int = 0,
            state_norm: str = "layer", rollout_proprio: str = "recorded", sigreg=None, monitor=True):
    """The action-conditioned world-model objective (V-JEPA 2-AC's): (loss, metrics) of one batch.

    h = features of every frame, each encoded on its own, pooled to pool_grid x pool_grid state tokens when
    pool_grid > 0 (ac_predictor.pool_states) and normalised by `state_norm` (ac_predictor.normalize_states: LN per
    token, or standardised with the batch's moments; predictions are LN-ed alike, or left as they are). Teacher
    forcing predicts frames 1..T-1 from the true frames 0..T-2; the rollout starts from h_0 and the predicted
    frame 1 and feeds its own predictions back for `rollout_steps` frames, with the true actions (gradients flow
    through it) and, by `rollout_proprio`, the recorded proprio (V-JEPA 2-AC) or, from frame 1 on, the predicted
    one (as planning's ac_predictor.rollout does). loss = L(teacher) + L(rollout) [+ proprio_weight * L1(next
    proprio) when the predictor predicts it] [+ sigreg.weight * SIGReg of the features; of h for state_norm
    "batch", as LeWorldModel's SIGReg sees its BatchNorm-ed embeddings].

    Args:
      params: {"encoder", "predictor"}.
      batch: {"frames": uint8 [B, T, H, W, C], "actions": [B, T-1, A], "proprio": [B, T, S]}.
      key: PRNG key (SIGReg directions).
      grid_hw: (H', W') patch grid of one frame (before pooling).
      train_encoder: False: the encoder is frozen (no gradient; V-JEPA 2-AC); True: trained jointly (LeWorldModel,
        with `sigreg` against collapse).
    """
    features = vit.encode_frames(encoder, params["encoder"], vit.normalize_video(batch["frames"]))
    features = ac_predictor.pool_states(features, grid_hw, pool_grid)
    state_grid = (pool_grid, pool_grid) if pool_grid else grid_hw
    if not train_encoder:
        features = jax.lax.stop_gradient(features)
    moments = ac_predictor.batch_moments(features) if state_norm == "batch" else None
    h = ac_predictor.normalize_states(features, state_norm, moments)  # [B, T, P, D]
    actions, proprio = batch["actions"], batch["proprio"]

    def predict(frames, frame_proprio):
        steps = frames.shape[1]
        out, next_proprio = predictor.apply({"params": params["predictor"]}, frames, actions[:, :steps],
                                            frame_proprio, state_grid)
        return ac_predictor.fed_back(out, state_norm), next_proprio

    teacher, next_proprio = predict(h[:, :-1], proprio[:, :-1])
    feed_proprio = rollout_proprio == "predicted"
    rollout = [h[:, :1], teacher[:, :1]]
    rolled_proprio = [proprio[:, :1], next_proprio[:, :1] if feed_proprio else proprio[:, 1:2]]
    for steps in range(2, rollout_steps + 1):
        out, out_proprio = predict(jnp.concatenate(rollout, axis=1), jnp.concatenate(rolled_proprio, axis=1))
        rollout.append(out[:, -1:])
        rolled_proprio.append(out_proprio[:, -1:] if feed_proprio else proprio[:, steps:steps + 1])
    rollout = jnp.concatenate(rollout[1:], axis=1)
    metrics = {"teacher_forcing_loss": objectives.prediction_loss(teacher, h[:, 1:], loss_kind),
               "rollout_loss": objectives.prediction_loss(rollout, h[:, 1:rollout_steps + 1], loss_kind)}
    loss = metrics["prediction_loss"] = metrics["teacher_forcing_loss"] + metrics["rollout_loss"]
    if next_proprio is not None:
        metrics["proprio_loss"] = objectives.prediction_loss(next_proprio, proprio[:, 1:], "l1")
        loss = loss + proprio_weight * metrics["proprio_loss"]
    tokens = lambda x: x.reshape(x.shape[0], -1, x.shape[-1])  # [B, T, P, D] -> [B, T * P, D]
    # Batch-standardised states are what SIGReg and the monitors look at (the raw features' mean would dominate).
    states = h if state_norm == "batch" else features
    metrics.update(maybe_monitors(monitor, tokens(states), tokens(h), (tokens(teacher),), (tokens(h[:, 1:]),)))
    if sigreg is not None:
        metrics["sigreg"] = objectives.sigreg(states.reshape(-1, states.shape[-1]), key, sigreg.num_slices,
                                              sigreg.t_max, sigreg.num_points)
        loss = loss + sigreg.weight * metrics["sigreg"]
    return loss, metrics


def probe_loss(params, batch, key, *, encoder, probe, features="encoder", segments=1, out_layers=(),
               classes=False, monitor=True):
    """The probe objective: (loss, metrics) of a grid of G attentive probes on frozen features.

    Args:
      params: {"encoder": frozen (no gradient reaches it), "probe": the probe heads, leaves [G, ...]}.
      batch: {"video": uint8 [B, S T, H, W, C], "targets": float32 [B, K] (regression) or int32 [B] (classes)}.
      features: "encoder" (its tokens) or "pixels"; segments: S clips per example; out_layers: the encoder
        blocks whose outputs the probe reads (probe_lib.frozen_tokens).
      classes: the targets are class indices (softmax cross-entropy) instead of regression targets (squared
        error).

    loss = the sum over members of each member's mean loss, so each member's gradient is its own loss's;
    metrics: "best_probe_loss" and "mean_probe_loss" over the members, and for classes "best_probe_accuracy".
    """
    del key, monitor  # deterministic; no collapse monitors for a frozen encoder
    tokens = probe_lib.frozen_tokens(encoder, params["encoder"], batch["video"], features, segments, out_layers)
    outputs = jax.vmap(lambda head: probe.apply({"params": head}, tokens))(params["probe"])  # [G, B, K]
    metrics = {}
    if classes:
        labels = jnp.broadcast_to(batch["targets"], outputs.shape[:2])
        per_member = optax.softmax_cross_entropy_with_integer_labels(outputs.astype(jnp.float32), labels).mean(1)
        metrics["best_probe_accuracy"] = (outputs.argmax(-1) == labels).mean(1).max()
    else:
        per_member = jnp.square(outputs - batch["targets"][None].astype(outputs.dtype)).mean(axis=(1, 2))
    return per_member.sum(), {**metrics, "best_probe_loss": per_member.min(), "mean_probe_loss": per_member.mean()}


def micro_batches(tree, k: int):
    """Split every leaf [B, ...] into [k, B / k, ...]; micro-batch i holds samples i, i + k, ... so each stays
    spread over the same devices as the whole batch."""
    return jax.tree.map(lambda x: jnp.swapaxes(x.reshape((x.shape[0] // k, k) + x.shape[1:]), 0, 1), tree)


def mean_gradients(loss_fn: Callable, params, batch, key, accum_steps: int = 1):
    """(gradients, metrics with "loss") of loss_fn(params, batch, key) -> (loss, metrics), averaged over
    `accum_steps` micro-batches (micro-batch i gets key fold_in(key, i))."""
    def grads_and_metrics(batch, key):
        (loss, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, batch, key)
        return grads, {**metrics, "loss": loss}

    if accum_steps == 1:
        return grads_and_metrics(batch, key)
    micro = micro_batches(batch, accum_steps)

    def add_micro_batch(total, inputs):
        index, micro_batch = inputs
        out = grads_and_metrics(micro_batch, jax.random.fold_in(key, index))
        return jax.tree.map(jnp.add, total, out), None

    first = jax.tree.map(lambda x: x[0], micro)
    zeros = jax.tree.map(lambda x: jnp.zeros(x.shape, x.dtype), jax.eval_shape(grads_and_metrics, first, key))
    total, _ = jax.lax.scan(add_micro_batch, zeros, (jnp.arange(accum_steps), micro))
    return jax.tree.map(lambda x: x / accum_steps, total)


def apply_gradients(state, grads, optimizer):
    """(params, opt_state, metrics {grad_norm, lr, weight_decay}) after one optax update of state.params."""
    updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    return params, opt_state, {"grad_norm": optax.tree.norm(grads), **optim.current_hyperparams(opt_state)}


def skip_nonfinite(new_state, old_state, metrics: dict):
    """new_state, but with the old weights, EMA copy and optimizer state where the loss or the gradient is not
    finite (the step counter still advances); adds metrics["skipped_update"] (1.0 when skipped)."""
    finite = jnp.isfinite(metrics["loss"]) & jnp.isfinite(metrics["grad_norm"])
    keep = lambda new, old: jax.tree.map(lambda n, o: jnp.where(finite, n, o), new, old)
    state = new_state.replace(params=keep(new_state.params, old_state.params),
                              ema_params=keep(new_state.ema_params, old_state.ema_params),
                              opt_state=keep(new_state.opt_state, old_state.opt_state))
    return state, {**metrics, "skipped_update": 1.0 - finite.astype(jnp.float32)}


def objective_loss(config, encoder, predictor, grid: tuple[int, int, int], mask_names: Sequence[str]):
    """config.objective's loss(params, batch, key, *, monitor[, target_params for JEPA]) -> (loss, metrics)."""
    if config.objective == "probe":
        return functools.partial(probe_loss, encoder=encoder, probe=predictor, features=config.attentive.features,
                                 segments=config.attentive.segments, out_layers=tuple(config.attentive.out_layers),
                                 classes=config_lib.probe_classes(config) > 0)
    if config.objective != "ac":  # pixels: VideoMAE's mean squared error on standardised pixels
        return functools.partial(jepa_loss, encoder=encoder, predictor=predictor, grid=grid, mask_names=mask_names,
                                 loss_kind="l2" if config.objective == "pixels" else config.loss.kind,
                                 sigreg=config.sigreg if config.objective == "sigreg" else None,
                                 pixels=config.objective == "pixels")
    joint = config.ac.encoder == "joint"
    return functools.partial(ac_loss, encoder=encoder, predictor=predictor, grid_hw=grid[1:], train_encoder=joint,
                             rollout_steps=config.ac.rollout_steps, loss_kind=config.loss.kind,
                             proprio_weight=config.ac.proprio_weight, pool_grid=config.ac.pool_grid,
                             state_norm=config.ac.state_norm, rollout_proprio=config.ac.rollout_proprio,
                             sigreg=config.sigreg if joint else None)


def make_train_step(config, encoder, predictor, optimizer, grid: tuple[int, int, int],
                    mask_names: Sequence[str]):
    """Build train_step(state, batch) -> (state, metrics) for config.objective ("ema", "sigreg" or "ac")."""
    use_ema = config.objective == "ema"
    total_steps = config.train.steps
    monitor_every = config.monitor.every or config.train.log_every
    loss = objective_loss(config, encoder, predictor, grid, mask_names)

    def train_step(state, batch):
        step = state.step + 1
        targets = {} if config.objective in ("ac", "probe", "pixels") else {
            "target_params": state.ema_params if use_ema else state.params["encoder"]}
        loss_fn = functools.partial(loss, monitor=on_schedule(step, monitor_every, total_steps), **targets)
        grads, metrics = mean_gradients(loss_fn, state.params, batch, jax.random.fold_in(state.rng, state.step),
                                        config.train.grad_accum)
        params, opt_state, update_metrics = apply_gradients(state, grads, optimizer)
        metrics.update(update_metrics)
        ema_params = state.ema_params
        if use_ema:
            momentum = objectives.ema_momentum(step, config.ema.start, config.ema.end,
                                               int(config.optim.ipe_scale * total_steps))
            ema_params = objectives.ema_update(ema_params, params["encoder"], momentum)
            metrics["ema_momentum"] = momentum
        new_state = state.replace(step=step, params=params, ema_params=ema_params, opt_state=opt_state)
        if config.train.on_nonfinite == "skip":
            new_state, metrics = skip_nonfinite(new_state, state, metrics)
        return new_state, metrics

    return train_step
