"""The pure train step: (TrainState, batch) -> (TrainState, metrics), jitted by the loop with shardings.

A batch is {"video": uint8 [B, T, H, W, C], "masks": ((context [B, Kc], target [B, Kt]), ...)}, one index pair per
mask config. Clips stay uint8 until here; normalisation happens on device.
"""

from typing import Sequence

import jax
import jax.numpy as jnp
import optax

from jepa_jax import objectives
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
        losses, contexts = [], []
        for mask_index, (context_idx, target_idx) in enumerate(masks):
            context = encode(params["encoder"], video, keep=context_idx)
            prediction = predictor.apply({"params": params["predictor"]}, context, context_idx, target_idx, grid,
                                         mask_index=mask_index)
            losses.append(objectives.prediction_loss(prediction, vit.gather_tokens(targets, target_idx),
                                                     config.loss.kind))
            contexts.append(context.reshape(-1, context.shape[-1]))
            metrics[f"loss_{mask_names[mask_index]}"] = losses[-1]
        loss = sum(losses) / len(losses)
        metrics["prediction_loss"] = loss
        metrics["target_spread"] = objectives.batch_spread(targets)
        if not use_ema:
            # SIGReg on every context-encoder embedding of the batch (all mask configs): the tokens that carry
            # gradient, so the regulariser costs no extra encoder pass.
            metrics["sigreg"] = objectives.sigreg(jnp.concatenate(contexts), key, config.sigreg.num_slices,
                                                  config.sigreg.t_max, config.sigreg.num_points)
            loss = loss + config.sigreg.weight * metrics["sigreg"]
        return loss, metrics

    def train_step(state, batch):
        key = jax.random.fold_in(state.rng, state.step)
        video = normalize_video(batch["video"])
        (loss, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(
            state.params, state.ema_params, video, batch["masks"], key)
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        metrics.update(loss=loss, grad_norm=optax.tree.norm(grads), **optim.current_hyperparams(opt_state))
        if "bad_files" in batch:  # [B, len(video.REASONS)] counts from the data pipeline, summed over the batch
            for i, reason in enumerate(video_lib.REASONS):
                metrics[f"bad_files/{reason}"] = batch["bad_files"][:, i].sum()
        ema_params = state.ema_params
        if use_ema:
            momentum = objectives.ema_momentum(state.step + 1, config.ema.start, config.ema.end,
                                               int(config.optim.ipe_scale * total_steps))
            ema_params = objectives.ema_update(ema_params, params["encoder"], momentum)
            metrics["ema_momentum"] = momentum
        new_state = state.replace(step=state.step + 1, params=params, ema_params=ema_params, opt_state=opt_state)
        return new_state, metrics

    return train_step
