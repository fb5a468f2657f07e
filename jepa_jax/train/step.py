"""The pure train step: (TrainState, batch) -> (TrainState, metrics), jitted by the loop with shardings.

A batch is {"video": uint8 [B, T, H, W, C], "masks": ((context [B, Kc], target [B, Kt]), ...)}, one index pair per
mask config; a target [B, n, Kt] (I-JEPA) holds n blocks, each predicted separately from the same context. Clips stay uint8 until here; normalisation happens on device. With config.train.grad_accum = k the
batch is split into k micro-batches whose gradients are averaged before one update, which equals one step on the
whole batch for the prediction loss (SIGReg's batch statistic is then taken per micro-batch).
"""

from typing import Sequence

import jax
import jax.numpy as jnp
import optax

from jepa_jax import metrics as metrics_lib, objectives
from jepa_jax.data import video as video_lib
from jepa_jax.models import vit
from jepa_jax.train import optim

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def normalize_video(video):
    """uint8 [..., C] -> float32, scaled to [0, 1] and standardised with the ImageNet mean/std (official)."""
    mean = jnp.asarray(IMAGENET_MEAN, jnp.float32)
    std = jnp.asarray(IMAGENET_STD, jnp.float32)
    return (video.astype(jnp.float32) / 255.0 - mean) / std


def make_train_step(config, encoder, predictor, optimizer, grid: tuple[int, int, int],
                    mask_names: Sequence[str]):
    """Build train_step(state, batch) -> (state, metrics) for config.objective in {"ema", "sigreg"}."""
    use_ema = config.objective == "ema"
    total_steps = config.train.steps

    def encode(params, video, keep=None):
        return encoder.apply({"params": params}, video, keep=keep)

    def loss_fn(params, ema_params, video, masks, key):
        metrics = {}
        # Targets: the EMA copy (ema) or the online encoder itself (sigreg), on the full clip, without gradient.
        features = jax.lax.stop_gradient(encode(ema_params if use_ema else params["encoder"], video))
        targets = objectives.normalize_targets(features)
        losses, contexts, cosines = [], [], []
        for mask_index, (context_idx, target_idx) in enumerate(masks):
            context = encode(params["encoder"], video, keep=context_idx)
            contexts.append(context.reshape(-1, context.shape[-1]))
            clip_targets = targets
            if target_idx.ndim == 3:  # [B, n, Kt]: n blocks, each predicted on its own from the context (I-JEPA)
                blocks = target_idx.shape[1]
                context, context_idx, clip_targets = (jnp.repeat(x, blocks, axis=0)
                                                      for x in (context, context_idx, targets))
                target_idx = target_idx.reshape(-1, target_idx.shape[-1])
            prediction = predictor.apply({"params": params["predictor"]}, context, context_idx, target_idx, grid,
                                         mask_index=mask_index)
            target = vit.gather_tokens(clip_targets, target_idx)
            losses.append(objectives.prediction_loss(prediction, target, config.loss.kind))
            cosines.append(metrics_lib.mean_cosine(prediction, target))
            metrics[f"loss_{mask_names[mask_index]}"] = losses[-1]
        loss = sum(losses) / len(losses)
        metrics["prediction_loss"] = loss
        metrics["target_spread"] = objectives.batch_spread(targets)
        metrics["target_feature_std"] = metrics_lib.feature_std(features)
        metrics["target_effective_rank"] = metrics_lib.effective_rank(features.reshape(-1, features.shape[-1]))
        metrics["prediction_cosine"] = sum(cosines) / len(cosines)
        if not use_ema:
            # SIGReg on every context-encoder embedding of the batch (all mask configs): the tokens that carry
            # gradient, so the regulariser costs no extra encoder pass.
            metrics["sigreg"] = objectives.sigreg(jnp.concatenate(contexts), key, config.sigreg.num_slices,
                                                  config.sigreg.t_max, config.sigreg.num_points)
            loss = loss + config.sigreg.weight * metrics["sigreg"]
        return loss, metrics

    def grads_and_metrics(params, ema_params, video, masks, key):
        (loss, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(
            params, ema_params, normalize_video(video), masks, key)
        return grads, {**metrics, "loss": loss}

    def accumulated_grads_and_metrics(params, ema_params, video, masks, key):
        """Mean gradient and metrics over k micro-batches; micro-batch i holds samples i, i + k, ... so each
        stays spread over the same devices as the whole batch."""
        k = config.train.grad_accum
        split = lambda x: jnp.swapaxes(x.reshape((x.shape[0] // k, k) + x.shape[1:]), 0, 1)  # [k, B/k, ...]
        micro = jax.tree.map(split, (video, masks))

        def add_micro_batch(total, inputs):
            index, (micro_video, micro_masks) = inputs
            out = grads_and_metrics(params, ema_params, micro_video, micro_masks, jax.random.fold_in(key, index))
            return jax.tree.map(jnp.add, total, out), None

        zeros = jax.tree.map(lambda x: jnp.zeros(x.shape, x.dtype), jax.eval_shape(
            grads_and_metrics, params, ema_params, micro[0][0], jax.tree.map(lambda x: x[0], micro[1]), key))
        total, _ = jax.lax.scan(add_micro_batch, zeros, (jnp.arange(k), micro))
        return jax.tree.map(lambda x: x / k, total)

    def train_step(state, batch):
        key = jax.random.fold_in(state.rng, state.step)
        compute = grads_and_metrics if config.train.grad_accum == 1 else accumulated_grads_and_metrics
        grads, metrics = compute(state.params, state.ema_params, batch["video"], batch["masks"], key)
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        metrics.update(grad_norm=optax.tree.norm(grads), **optim.current_hyperparams(opt_state))
        if "bad_files" in batch:  # [B, len(video.REASONS)] counts from the data pipeline, summed over the batch
            for i, reason in enumerate(video_lib.REASONS):
                metrics[f"bad_files/{reason}"] = batch["bad_files"][:, i].sum()
        ema_params = state.ema_params
        if use_ema:
            momentum = objectives.ema_momentum(state.step + 1, config.ema.start, config.ema.end,
                                               int(config.optim.ipe_scale * total_steps))
            ema_params = objectives.ema_update(ema_params, params["encoder"], momentum)
            metrics["ema_momentum"] = momentum
        if config.train.on_nonfinite == "skip":  # keep the previous weights when the loss or gradient is not finite
            finite = jnp.isfinite(metrics["loss"]) & jnp.isfinite(metrics["grad_norm"])
            keep_finite = lambda new, old: jax.tree.map(lambda n, o: jnp.where(finite, n, o), new, old)
            params, ema_params = keep_finite(params, state.params), keep_finite(ema_params, state.ema_params)
            opt_state = keep_finite(opt_state, state.opt_state)
            metrics["skipped_update"] = 1.0 - finite.astype(jnp.float32)
        new_state = state.replace(step=state.step + 1, params=params, ema_params=ema_params, opt_state=opt_state)
        return new_state, metrics

    return train_step
